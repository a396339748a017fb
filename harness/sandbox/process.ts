// Harness: the Keap sandbox CLI (scripts/sandbox.ts) in a process of its own, as Keap is a remote
// server: its arrival times (what the gateway rules judge) do not depend on how busy the workers'
// process is. Used by the tests and the benchmarks.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { ArrivalRecord, SandboxKey } from './gateway.ts';

export interface SandboxProcess {
  baseUrl: string;
  /** The sandbox's process id (to sample its memory apart from its callers'). */
  pid: number;
  keys: SandboxKey[];
  /** Record counts per type, from the admin health route. */
  counts(): Promise<Record<string, number>>;
  /** Stops the sandbox and returns every arrival it logged. */
  stop(): Promise<ArrivalRecord[]>;
}

const ROOT = resolve(import.meta.dirname, '../..');

/**
 * Runs the sandbox CLI in its own process, as Keap is a remote server: its arrival times (what the
 * gateway rules judge) do not depend on how busy the workers' process is.
 */
export async function startSandboxProcess(args: string[]): Promise<SandboxProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'keap-sync-sandbox-'));
  const log = join(dir, 'arrivals.jsonl');
  const child = spawn(
    process.execPath,
    ['scripts/sandbox.ts', '--port', '0', '--arrival-log', log, ...args],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const exited = once(child, 'exit');
  try {
    if (!child.stdout) throw new Error('the sandbox process has no stdout');
    let first: string | undefined;
    for await (const line of createInterface({ input: child.stdout })) {
      first = line;
      break;
    }
    if (first === undefined) throw new Error('the sandbox process printed nothing');
    const info = JSON.parse(first) as { baseUrl: string; keys: SandboxKey[] };
    return {
      baseUrl: info.baseUrl,
      pid: child.pid ?? 0,
      keys: info.keys,
      counts: async () => {
        const res = await fetch(`${info.baseUrl}/__admin/health`);
        return ((await res.json()) as { counts: Record<string, number> }).counts;
      },
      stop: async () => {
        if (child.exitCode === null) child.kill('SIGTERM');
        await exited;
        const text = await readFile(log, 'utf8').catch(() => '');
        await rm(dir, { recursive: true, force: true });
        return text
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => JSON.parse(l) as ArrivalRecord);
      },
    };
  } catch (err) {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
