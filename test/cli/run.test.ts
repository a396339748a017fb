// `npm start -- --until-idle` (keap-sync run with the embedded Keap sandbox) syncs the whole dataset and
// exits 0; `keap-sync status --json`, run afterwards on the stopped system's data folder, shows every
// resource in sync and a mirror holding exactly the sandbox dataset's records.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { startSandbox } from '#harness/sandbox/index.ts';
import {
  countsOf,
  datasetCounts,
  readMirror,
  removeTempDirs,
  runCli,
  statesOf,
  statusJson,
  tempDir,
} from './support.ts';

const CONTACTS = 300;

afterAll(removeTempDirs);

describe('npm start -- --until-idle (embedded sandbox)', () => {
  const dataDir = tempDir();

  test('syncs everything, stops by itself with exit 0 and a closing summary', async () => {
    const r = await runCli(
      ['start', '--', '--until-idle', '--contacts', String(CONTACTS), '--data-dir', dataDir],
      {
        command: 'npm',
        timeoutMs: 90_000,
      },
    );
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`Keap sandbox at http://127.0.0.1:`);
    expect(r.stdout).toContain(`(${CONTACTS} contacts)`);
    expect(r.stdout).toMatch(/keap-sync stopped \(queue drained, every resource in sync\)/);
    expect(r.stdout).toMatch(/dead letters: 0/);
    // The running system's address file is removed on a clean stop; the state stays on disk.
    expect(existsSync(join(dataDir, 'endpoints.json'))).toBe(false);
    expect(existsSync(join(dataDir, 'dynamo'))).toBe(true);
    expect(existsSync(join(dataDir, 'keap-sync.log'))).toBe(true);
  });

  test('status --json (system stopped) reads the data folder: every resource in sync, mirror complete', async () => {
    const expected = await startSandbox({ contacts: CONTACTS, seed: 1 }).then(async (s) => {
      const counts = datasetCounts(s.dataset);
      await s.close();
      return counts;
    });
    const report = await statusJson(dataDir);
    expect(report.inSync).toBe(true);
    // Not running: the queues are not reachable, and the report says so rather than guessing.
    expect(report.queue).toBeNull();
    expect(report.deadLetters).toBeNull();
    const account = report.accounts[0];
    expect(account?.id).toBe('demo');
    expect(account?.key).toBe('active');
    expect(Object.values(statesOf(report)).every((s) => s === 'in-sync')).toBe(true);
    expect(Object.keys(statesOf(report))).toHaveLength(11);
    expect(countsOf(report)).toEqual(expected);
    for (const r of account?.resources ?? []) {
      expect(r.lastRunMode, r.resource).toBe('full');
      expect(r.lastRunRecords, r.resource).toBe(expected[r.resource]);
      expect(r.highWater, r.resource).not.toBeNull();
    }
    // Every call the run made went through the ledger of the data folder.
    expect(account?.quota.day.used).toBeGreaterThanOrEqual(10);
  });

  test('the mirror holds the sandbox records themselves (ids and update times of the contacts)', async () => {
    const sandbox = await startSandbox({ contacts: CONTACTS, seed: 1 });
    try {
      const mirror = await readMirror(dataDir, 'contacts');
      const want = sandbox.dataset.contacts.values();
      expect([...mirror.keys()].sort()).toEqual(want.map((c) => c.id).sort());
      for (const c of want) expect(mirror.get(c.id)?.updateTimeMs, c.id).toBe(Date.parse(c.update_time));
    } finally {
      await sandbox.close();
    }
  });

  test('the human status table of the stopped system says IN SYNC', async () => {
    const r = await runCli(['status', '--data-dir', dataDir], { timeoutMs: 30_000 });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/contacts\s+in-sync\s+300/);
    expect(r.stdout).toContain('queue: not reachable');
    expect(r.stdout).toContain('IN SYNC');
  });
});
