// `keap-sync enqueue` against a running `keap-sync run`: every job is validated before anything is sent
// (an unknown account or a malformed job: a clear message, exit 2, nothing reaches the queue, Keap or the
// dead-letter queue); valid jobs are processed (a contact written to Keap, then synced into the mirror);
// SIGTERM stops the run cleanly with exit 0. The sandbox is started here and used as "the real Keap".
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { StatusReport } from '#harness/cli/status.ts';
import { type RunningSandbox, startSandbox } from '#harness/sandbox/index.ts';
import {
  type CliProcess,
  removeTempDirs,
  runCli,
  sandboxEnv,
  startCli,
  statusJson,
  tempDir,
  waitFor,
} from './support.ts';

const CONTACTS = 100;
const EMAIL = 'enqueue-test@example.com';
const UPSERT = {
  kind: 'upsertContact',
  account: 'demo',
  idempotencyKey: 'cli-test-upsert-0001',
  contact: { given_name: 'Enqueued', email_addresses: [{ email: EMAIL, field: 'EMAIL1' }] },
};

function contactsOf(report: StatusReport) {
  return report.accounts[0]?.resources.find((r) => r.resource === 'contacts');
}

describe('enqueue against a running system', () => {
  let sandbox: RunningSandbox;
  let env: Record<string, string>;
  let dir: string;
  let dataDir: string;
  let running: CliProcess;

  beforeAll(async () => {
    sandbox = await startSandbox({ contacts: CONTACTS, seed: 1 });
    env = sandboxEnv(sandbox);
    dir = tempDir();
    dataDir = join(dir, 'data');
    running = startCli(['run', '--data-dir', dataDir], { env });
    await waitFor(() => existsSync(join(dataDir, 'endpoints.json')), 'endpoints.json', 60_000, 100);
    await waitFor(async () => (await statusJson(dataDir, env)).inSync, 'the initial sync', 90_000, 500);
  }, 180_000);
  afterAll(async () => {
    running?.child.kill('SIGKILL');
    await sandbox?.close();
    removeTempDirs();
  });

  const enqueue = (input: string, extra: string[] = []) =>
    runCli(['enqueue', '-', '--data-dir', dataDir, ...extra], { env, input, timeoutMs: 30_000 });

  test('status of the running system shows empty queues and every resource in sync', async () => {
    const report = await statusJson(dataDir, env);
    expect(report.queue).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
    expect(report.deadLetters).toBe(0);
    expect(report.inSync).toBe(true);
    expect(contactsOf(report)?.records).toBe(CONTACTS);
  }, 60_000);

  const invalid: Array<[string, unknown, RegExp]> = [
    [
      'an unknown account',
      { kind: 'sync', account: 'acme', resource: 'contacts' },
      /job 1: The account "acme" is not registered \(registered: demo\)/,
    ],
    [
      'an unknown resource',
      { kind: 'sync', account: 'demo', resource: 'leads' },
      /job 1: The sync job is invalid: resource: Invalid option/,
    ],
    [
      'an unknown kind',
      { kind: 'deleteEverything', account: 'demo' },
      /job 1: The job kind "deleteEverything"/,
    ],
    [
      'a bad job after a good one (nothing of the batch is sent)',
      [
        { kind: 'sync', account: 'demo', resource: 'contacts', mode: 'full' },
        { ...UPSERT, idempotencyKey: 'short', contact: {} },
      ],
      /job 2: The upsertContact job is invalid: idempotencyKey: .*contact: contact is empty/,
    ],
    [
      'a good job then one for an unknown account',
      [UPSERT, { ...UPSERT, account: 'other' }],
      /job 2: The account "other" is not registered/,
    ],
  ];

  test.each(invalid)('%s: a clear message, exit 2', async (_name, job, says) => {
    const r = await enqueue(JSON.stringify(job));
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^keap-sync: Nothing was sent\. /);
    expect(r.stderr).toMatch(says);
  });

  test.each([
    ['not JSON', 'sync contacts please', /The input is not JSON/],
    ['an empty array', '[]', /The input holds no job/],
  ])('input that is %s: a clear message, exit 2', async (_name, input, says) => {
    const r = await enqueue(input);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(says);
  });

  test('a job file that does not exist: a clear message, exit 2', async () => {
    const missing = join(dir, 'no-such-job.json');
    const r = await runCli(['enqueue', missing, '--data-dir', dataDir], { env, timeoutMs: 30_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`Cannot read the job file ${missing} (ENOENT)`);
  });

  test('after all those: nothing reached the queue, Keap or the dead-letter queue', async () => {
    const before = await statusJson(dataDir, env);
    const calls = sandbox.arrivals.length;
    // Long enough for a sent message to be received, processed or dead-lettered.
    await sleep(3_000);
    const after = await statusJson(dataDir, env);
    expect(after.queue).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
    expect(after.deadLetters).toBe(0);
    expect(sandbox.arrivals.length).toBe(calls);
    expect(sandbox.dataset.contacts.size).toBe(CONTACTS);
    expect(contactsOf(after)?.lastRunAt).toBe(contactsOf(before)?.lastRunAt);
    expect(contactsOf(after)?.lastRunMode).toBe('full');
  }, 60_000);

  test('a valid write job (from a file) is processed: the contact is created in Keap', async () => {
    const file = join(dir, 'upsert.json');
    writeFileSync(file, JSON.stringify(UPSERT));
    const r = await runCli(['enqueue', file, '--data-dir', dataDir], { env, timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Sent 1 job(s): upsertContact demo cli-test-upsert-0001');
    await waitFor(() => sandbox.dataset.contacts.size === CONTACTS + 1, 'the contact in Keap', 30_000);
    const created = sandbox.dataset.contacts.values().filter((c) => JSON.stringify(c).includes(EMAIL));
    expect(created).toHaveLength(1);
    expect(sandbox.arrivals.filter((a) => a.method !== 'GET')).toHaveLength(1);
  }, 60_000);

  test('the same job again (same idempotency key) does not write twice', async () => {
    const r = await enqueue(JSON.stringify(UPSERT));
    expect(r.code, r.stderr).toBe(0);
    await waitFor(
      async () => {
        const s = await statusJson(dataDir, env);
        return s.queue?.visible === 0 && s.queue.inFlight === 0 && s.queue.delayed === 0;
      },
      'the queue to drain',
      30_000,
      300,
    );
    expect(sandbox.dataset.contacts.size).toBe(CONTACTS + 1);
    expect(sandbox.arrivals.filter((a) => a.method !== 'GET')).toHaveLength(1);
    expect((await statusJson(dataDir, env)).deadLetters).toBe(0);
  }, 60_000);

  test('a valid sync job (from standard input) is processed: the new contact reaches the mirror', async () => {
    const before = contactsOf(await statusJson(dataDir, env));
    const r = await enqueue(JSON.stringify({ kind: 'sync', account: 'demo', resource: 'contacts' }));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('Sent 1 job(s): sync demo/contacts');
    let report: StatusReport | undefined;
    await waitFor(
      async () => {
        report = await statusJson(dataDir, env);
        return contactsOf(report)?.lastRunAt !== before?.lastRunAt && report.inSync;
      },
      'the sync job to finish',
      30_000,
      300,
    );
    const contacts = report ? contactsOf(report) : undefined;
    expect(contacts?.lastRunMode).toBe('incremental');
    expect(contacts?.records).toBe(CONTACTS + 1);
    expect(contacts?.lastRunRecords).toBeGreaterThanOrEqual(1);
    expect(report?.deadLetters).toBe(0);
  }, 60_000);

  test('dlq list: the dead-letter queue is empty', async () => {
    const r = await runCli(['dlq', 'list', '--data-dir', dataDir], { env, timeoutMs: 30_000 });
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('The dead-letter queue is empty.');
    const j = await runCli(['dlq', 'list', '--json', '--data-dir', dataDir], { env, timeoutMs: 30_000 });
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout)).toEqual([]);
  }, 60_000);

  test('SIGTERM stops the run cleanly: exit 0, a closing summary, endpoints.json removed', async () => {
    running.child.kill('SIGTERM');
    const r = await running.exited;
    expect(r.signal).toBeNull();
    expect(r.code, r.stderr).toBe(0);
    // Deferrals may be above 0: the scheduler sends a tick's jobs in one SendMessageBatch, so the first
    // sync's lists start together and some wait past worker.waitBudgetMs for the key's spacing.
    expect(r.stdout).toMatch(
      /keap-sync stopped \(signal\) after [\d.]+s {3}Keap calls: \d+ {3}deferrals: \d+ {3}dead letters: 0/,
    );
    expect(r.stdout).toContain(`Keap at ${sandbox.baseUrl}`);
    expect(existsSync(join(dataDir, 'endpoints.json'))).toBe(false);
    expect(
      Number(/Keap calls: (\d+)/.exec(r.stdout.slice(r.stdout.lastIndexOf('keap-sync stopped')))?.[1]),
    ).toBe(sandbox.arrivals.length);
  }, 60_000);

  test('once stopped, enqueue says the system is not running (exit 2) and sends nothing', async () => {
    const calls = sandbox.arrivals.length;
    const r = await enqueue(JSON.stringify({ kind: 'sync', account: 'demo', resource: 'users' }));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`keap-sync is not running with data folder ${dataDir}`);
    expect(sandbox.arrivals.length).toBe(calls);
  }, 60_000);
});

describe('SIGTERM right after start-up', () => {
  afterAll(removeTempDirs);

  test('a run stopped as soon as endpoints.json appears still stops cleanly with exit 0', async () => {
    const dataDir = join(tempDir(), 'data');
    const p = startCli(['run', '--contacts', '50', '--data-dir', dataDir]);
    try {
      await waitFor(() => existsSync(join(dataDir, 'endpoints.json')), 'endpoints.json', 60_000, 10);
      p.child.kill('SIGTERM');
      const r = await p.exited;
      expect(r.signal).toBeNull();
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('keap-sync stopped (signal)');
      expect(existsSync(join(dataDir, 'endpoints.json'))).toBe(false);
    } finally {
      p.child.kill('SIGKILL');
    }
  }, 90_000);
});
