import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { delimiter, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const ENV = {
  ...process.env,
  PATH: `${join(ROOT, 'node_modules', '.bin')}${delimiter}${process.env.PATH ?? ''}`,
};

function run(args: string[]): ChildProcess {
  return spawn('node', ['scripts/sandbox.ts', ...args], {
    cwd: ROOT,
    env: ENV,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

async function firstLine(child: ChildProcess): Promise<string> {
  if (!child.stdout) throw new Error('no stdout');
  const lines = createInterface({ input: child.stdout });
  for await (const line of lines) return line;
  throw new Error('the sandbox printed nothing');
}

async function finish(child: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (c: Buffer) => {
    stdout += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

describe('CLI', () => {
  it('prints one JSON line with baseUrl and keys first, serves, and exits cleanly on SIGTERM', async () => {
    const child = run(['--port', '0', '--contacts', '50', '--spike-interval-ms', '0', '--minute-limit', '1']);
    try {
      const info = JSON.parse(await firstLine(child)) as {
        baseUrl: string;
        keys: Array<{ key: string; tenant: string }>;
        counts: Record<string, number>;
      };
      expect(info.baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/crm$/);
      expect(info.keys).toHaveLength(2);
      expect(info.counts.contacts).toBe(50);
      const headers = { 'X-Keap-API-Key': info.keys[0]?.key ?? '' };
      const first = await fetch(`${info.baseUrl}/rest/v2/contacts?page_size=5`, { headers });
      expect(first.status).toBe(200);
      expect(((await first.json()) as { contacts: unknown[] }).contacts).toHaveLength(5);
      const second = await fetch(`${info.baseUrl}/rest/v2/contacts?page_size=5`, { headers });
      expect(second.status).toBe(429);
      await second.text();
      const exited = finish(child);
      child.kill('SIGTERM');
      expect((await exited).code).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('rejects a bad flag with a message naming it and a non-zero exit', async () => {
    const cases: Array<[string[], string]> = [
      [['--port', '70000'], '--port'],
      [['--hang-rate', '2'], '--hang-rate'],
      [['--storm', '5'], '--storm'],
      [['--latency-min', '50', '--latency-max', '10'], '--latency-max'],
      [['--wat'], '--wat'],
    ];
    const results = await Promise.all(cases.map(([args]) => finish(run(args))));
    results.forEach((r, i) => {
      const flag = cases[i]?.[1] ?? '';
      expect(r.code, flag).not.toBe(0);
      expect(r.stderr, flag).toContain(flag);
      expect(r.stdout, flag).toBe('');
    });
  });

  it('prints help with examples', async () => {
    const r = await finish(run(['--help']));
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('npm run sandbox -- --port');
    expect(r.stdout).toContain('Examples');
  });
});
