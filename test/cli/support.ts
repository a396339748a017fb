// Test support for the command-line suites: spawn the real `keap-sync` command (bin/keap-sync.ts) as an
// operator would, with a temporary data folder, and read what it leaves behind: `status --json`, the
// log file, and (once it has stopped) the mirror in the data folder's embedded DynamoDB.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { StatusReport } from '#harness/cli/status.ts';
import { startDynalite } from '#harness/emulators/dynamo.ts';
import { LOCAL_TABLES, type LocalStack } from '#harness/local/stack.ts';
import type { ArrivalRecord, RunningSandbox, SandboxDataset } from '#harness/sandbox/index.ts';
import { SYNC_RESOURCES, type SyncResource } from '#shared/jobs/schema.ts';
import { MirrorStore } from '#shared/store/index.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = join(ROOT, 'bin', 'keap-sync.ts');
/** The account of keap-sync.config.json. */
export const ACCOUNT = 'demo';

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliProcess {
  child: ChildProcess;
  pid: number;
  /** Output so far. */
  stdout(): string;
  stderr(): string;
  exited: Promise<CliResult>;
}

/**
 * The environment of a spawned command: this one without any KEAP_* or AWS endpoint variable (so a
 * developer's real key can never reach a test), the repository's Node first on PATH, plus `extra`.
 */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('KEAP_') || k.startsWith('AWS_ENDPOINT_URL')) continue;
    env[k] = v;
  }
  env.PATH = `${join(ROOT, 'node_modules', '.bin')}:${process.env.PATH ?? ''}`;
  return { ...env, ...extra };
}

/**
 * What `--aws` commands read to reach a deployed stack (the AWS SDK's usual chain and the stack's
 * output names), pointed at a local stack's emulators standing in for AWS.
 */
export function deployedEnv(stack: LocalStack): Record<string, string> {
  return {
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'local',
    AWS_SECRET_ACCESS_KEY: 'local',
    AWS_ENDPOINT_URL_DYNAMODB: stack.dynamo.endpoint,
    AWS_ENDPOINT_URL_SQS: stack.sqs.endpoint,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: stack.secrets.endpoint,
    LEDGER_TABLE: LOCAL_TABLES.ledger,
    STATE_TABLE: LOCAL_TABLES.state,
    MIRROR_TABLE: LOCAL_TABLES.mirror,
    JOB_QUEUE_URL: stack.sqs.queue.queueUrl,
    DEAD_LETTER_QUEUE_URL: stack.sqs.queue.dlqUrl,
  };
}

/** Starts `node bin/keap-sync.ts <args>` (or another command with `command`) in the repository. */
export function startCli(
  args: readonly string[],
  o: { env?: Record<string, string>; input?: string; command?: string; cwd?: string } = {},
): CliProcess {
  const child = spawn(o.command ?? process.execPath, o.command ? [...args] : [BIN, ...args], {
    cwd: o.cwd ?? ROOT,
    env: cliEnv(o.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  if (o.input !== undefined) child.stdin?.end(o.input);
  else child.stdin?.end();
  const exited = new Promise<CliResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, pid: child.pid ?? -1, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Runs a command to its end; kills it (and fails, showing its output) after `timeoutMs`. */
export async function runCli(
  args: readonly string[],
  o: {
    env?: Record<string, string>;
    input?: string;
    command?: string;
    cwd?: string;
    timeoutMs?: number;
  } = {},
): Promise<CliResult> {
  const p = startCli(args, o);
  const timeoutMs = o.timeoutMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const r = await Promise.race([p.exited, timedOut]);
  clearTimeout(timer);
  if (r === 'timeout') {
    p.child.kill('SIGKILL');
    await p.exited;
    throw new Error(
      `keap-sync ${args.join(' ')} did not finish in ${timeoutMs} ms.\nstdout:\n${p.stdout().slice(-3000)}\nstderr:\n${p.stderr().slice(-3000)}`,
    );
  }
  return r;
}

/** Waits until `cond` holds, polling; fails with `what` after `timeoutMs`. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 60_000,
  everyMs = 200,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

const made: string[] = [];

/** A new, empty temporary folder (removed by `removeTempDirs`). */
export function tempDir(prefix = 'keap-sync-cli-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** A path inside a new temporary folder that does not exist yet (for "nothing was created" checks). */
export function absentDir(name = 'data'): string {
  return join(tempDir(), name);
}

export function removeTempDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** `keap-sync status --json` of a data folder (the running system's, or the folder itself). */
export async function statusJson(dataDir: string, env: Record<string, string> = {}): Promise<StatusReport> {
  const r = await runCli(['status', '--json', '--data-dir', dataDir], { env, timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`status exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as StatusReport;
}

/** Records per resource of the (first) account in a status report. */
export function countsOf(report: StatusReport): Record<string, number> {
  const account = report.accounts[0];
  return Object.fromEntries((account?.resources ?? []).map((r) => [r.resource, r.records]));
}

export function statesOf(report: StatusReport): Record<string, string> {
  const account = report.accounts[0];
  return Object.fromEntries((account?.resources ?? []).map((r) => [r.resource, r.state]));
}

/** What the mirror must hold per resource: the sandbox dataset's sizes. */
export function datasetCounts(dataset: SandboxDataset): Record<string, number> {
  return Object.fromEntries(SYNC_RESOURCES.map((r) => [r, dataset.table(r).size]));
}

/** The environment that makes `run` use an external sandbox as "the real Keap". */
export function sandboxEnv(sandbox: RunningSandbox): Record<string, string> {
  const key = sandbox.keys[0];
  if (!key) throw new Error('the sandbox has no key');
  return { KEAP_API_KEY: key.key, KEAP_API_BASE_URL: sandbox.baseUrl };
}

/** Keap API calls in the sandbox's arrivals from index `from` on (the admin routes are not logged). */
export function keapCalls(sandbox: RunningSandbox, from = 0): ArrivalRecord[] {
  return sandbox.arrivals.slice(from);
}

/** The mirrored records of one resource, by id: read from the data folder of a stopped run. */
export async function readMirror(
  dataDir: string,
  resource: SyncResource,
  account = ACCOUNT,
): Promise<Map<string, { updateTimeMs: number; data: Record<string, unknown> }>> {
  const db = await startDynalite({ path: join(dataDir, 'dynamo') });
  try {
    const mirror = new MirrorStore(db.client, LOCAL_TABLES.mirror);
    const out = new Map<string, { updateTimeMs: number; data: Record<string, unknown> }>();
    for await (const item of mirror.iterate(account, resource))
      out.set(item.id, { updateTimeMs: item.updateTimeMs, data: item.data });
    return out;
  } finally {
    await db.close();
  }
}

export interface LogLine {
  level: string;
  time: string;
  message: string;
  process?: string;
  resource?: string;
  [k: string]: unknown;
}

/** The JSON lines of `<dataDir>/keap-sync.log` (from byte `from` on). */
export function logLines(dataDir: string, from = 0): LogLine[] {
  const file = join(dataDir, 'keap-sync.log');
  if (!existsSync(file)) return [];
  return readFileSync(file)
    .subarray(from)
    .toString('utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as LogLine);
}

export function logSize(dataDir: string): number {
  const file = join(dataDir, 'keap-sync.log');
  return existsSync(file) ? readFileSync(file).length : 0;
}

/** Processes still alive whose environment names this data folder's log (the run's worker processes). */
export function processesOf(dataDir: string): number[] {
  const marker = `KEAP_SYNC_LOG_FILE=${join(dataDir, 'keap-sync.log')}`;
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const env = readFileSync(`/proc/${entry}/environ`, 'latin1').split('\0');
      if (env.includes(marker)) pids.push(Number(entry));
    } catch {
      // gone, or not ours
    }
  }
  return pids;
}

/** The "Keap calls: N" figure of the run's closing line. */
export function reportedCalls(stdout: string): number | undefined {
  const m = /keap-sync stopped .*Keap calls: (\d+)/.exec(stdout);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}
