// A `keap-sync run` killed with SIGKILL in the middle of a full sync, then started again with
// --until-idle on the same data folder, finishes with nothing lost: every resource in sync, the mirror
// equal to the dataset, and the interrupted list resumed from its last checkpoint rather than re-read.
// The sandbox (started here, slowed by 200-300 ms per call) plays the real Keap, so it outlives the kill.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { StatusReport } from '#harness/cli/status.ts';
import { type RunningSandbox, startSandbox } from '#harness/sandbox/index.ts';
import {
  countsOf,
  datasetCounts,
  logLines,
  logSize,
  readMirror,
  removeTempDirs,
  runCli,
  sandboxEnv,
  startCli,
  statesOf,
  statusJson,
  tempDir,
  waitFor,
} from './support.ts';

const CONTACTS = 3000;
const PAGE = 1000;

describe('SIGKILL mid-way, then a restart', () => {
  let sandbox: RunningSandbox;
  let env: Record<string, string>;
  let dataDir: string;
  /** contacts pages checkpointed when the first run was killed (at least). */
  let pagesBeforeKill = 0;

  beforeAll(async () => {
    sandbox = await startSandbox({ contacts: CONTACTS, seed: 1, latencyMs: { min: 200, max: 300 } });
    env = sandboxEnv(sandbox);
    dataDir = join(tempDir(), 'data');
  });
  afterAll(async () => {
    await sandbox?.close();
    removeTempDirs();
  });

  test('the first run is killed (kill -9) after a checkpoint of a list, before the sync ends', async () => {
    const first = startCli(['run', '--until-idle', '--data-dir', dataDir], { env });
    try {
      await waitFor(() => existsSync(join(dataDir, 'endpoints.json')), 'endpoints.json', 60_000, 100);
      let seen: StatusReport | undefined;
      await waitFor(
        async () => {
          // status of the running system (through endpoints.json)
          seen = await statusJson(dataDir, env);
          const contacts = seen.accounts[0]?.resources.find((r) => r.resource === 'contacts');
          return contacts?.state === 'syncing' && (contacts.pagesThisRun ?? 0) >= 1;
        },
        'a checkpoint of the contacts sync',
        90_000,
        100,
      );
      first.child.kill('SIGKILL');
      const r = await first.exited;
      expect(r.signal).toBe('SIGKILL');
      pagesBeforeKill =
        seen?.accounts[0]?.resources.find((x) => x.resource === 'contacts')?.pagesThisRun ?? 0;
      expect(pagesBeforeKill).toBeGreaterThanOrEqual(1);
      expect(pagesBeforeKill).toBeLessThan(CONTACTS / PAGE);
    } finally {
      first.child.kill('SIGKILL');
    }
  }, 120_000);

  test('status of the killed system reads its data folder (the stale endpoints.json is ignored)', async () => {
    expect(existsSync(join(dataDir, 'endpoints.json'))).toBe(true);
    const report = await statusJson(dataDir, env);
    expect(report.queue).toBeNull();
    expect(report.inSync).toBe(false);
    const contacts = report.accounts[0]?.resources.find((r) => r.resource === 'contacts');
    expect(contacts?.state).toBe('syncing');
    expect(contacts?.records).toBeGreaterThanOrEqual(PAGE);
    expect(contacts?.records).toBeLessThan(CONTACTS);
  }, 60_000);

  test('the restart with --until-idle finishes: exit 0, every resource in sync, nothing lost', async () => {
    const logFrom = logSize(dataDir);
    const callsFrom = sandbox.arrivals.length;
    const r = await runCli(['run', '--until-idle', '--data-dir', dataDir], { env, timeoutMs: 150_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/queue drained, every resource in sync/);
    expect(existsSync(join(dataDir, 'endpoints.json'))).toBe(false);

    const report = await statusJson(dataDir, env);
    expect(report.inSync).toBe(true);
    expect(Object.values(statesOf(report)).every((s) => s === 'in-sync')).toBe(true);
    expect(countsOf(report)).toEqual(datasetCounts(sandbox.dataset));

    const mirror = await readMirror(dataDir, 'contacts');
    const want = sandbox.dataset.contacts.values();
    expect([...mirror.keys()].sort()).toEqual(want.map((c) => c.id).sort());
    for (const c of want) expect(mirror.get(c.id)?.updateTimeMs, c.id).toBe(Date.parse(c.update_time));
    const contacts = report.accounts[0]?.resources.find((x) => x.resource === 'contacts');
    expect(contacts?.highWater).toBe(
      new Date(Math.max(...want.map((c) => Date.parse(c.update_time)))).toISOString(),
    );

    // The contacts run resumed from its checkpoint: the restart read only the pages left.
    const resumed = logLines(dataDir, logFrom).filter(
      (l) => l.message === 'Resuming sync from its checkpoint' && l.resource === 'contacts',
    );
    expect(resumed).toHaveLength(1);
    expect(Number(resumed[0]?.fromPage)).toBeGreaterThanOrEqual(pagesBeforeKill);
    const contactCalls = sandbox.arrivals.slice(callsFrom).filter((a) => /\/v2\/contacts$/.test(a.path));
    expect(contactCalls.length).toBeLessThanOrEqual(CONTACTS / PAGE - pagesBeforeKill);
    expect(sandbox.arrivals.filter((a) => a.status !== 200)).toEqual([]);
  }, 180_000);
});
