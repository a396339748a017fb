// A second `keap-sync run --until-idle` on the same data folder, after the sandbox's data changed, reads
// only the changes: the mirror gets the changed records' new update times for about one Keap call per
// resource. The sandbox is started here and given to `run` as "the real Keap" (KEAP_API_KEY and
// KEAP_API_BASE_URL), so the test sees every call it receives.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { StatusReport } from '#harness/cli/status.ts';
import { type RunningSandbox, startSandbox } from '#harness/sandbox/index.ts';
import baseConfig from '../../keap-sync.config.json' with { type: 'json' };
import {
  countsOf,
  datasetCounts,
  logLines,
  logSize,
  readMirror,
  removeTempDirs,
  reportedCalls,
  runCli,
  sandboxEnv,
  statesOf,
  statusJson,
  tempDir,
} from './support.ts';

const CONTACTS = 1500;
const RESOURCES = Object.keys(baseConfig.accounts[0]?.resources ?? {});

/**
 * keap-sync.config.json with every resource due every 3 minutes: due 90 s after its last run finished
 * (half an interval of slack), so a run right after the first finds nothing due, even when the first
 * run took most of a minute beside a CPU hog and its earliest list finished at its start.
 */
function everyMinuteConfig(dir: string): string {
  const config = structuredClone(baseConfig);
  for (const a of config.accounts) for (const r of Object.values(a.resources)) r.everyMinutes = 3;
  const file = join(dir, 'every-minute.config.json');
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

function lastRuns(report: StatusReport): Record<string, string | null> {
  return Object.fromEntries((report.accounts[0]?.resources ?? []).map((r) => [r.resource, r.lastRunAt]));
}

describe('a second run after Keap changed syncs only the changes', () => {
  let sandbox: RunningSandbox;
  let env: Record<string, string>;
  let configFile: string;
  let dataDir: string;
  let firstRunCalls = 0;
  let afterFirst: StatusReport;

  beforeAll(async () => {
    sandbox = await startSandbox({ contacts: CONTACTS, seed: 1 });
    env = sandboxEnv(sandbox);
    const dir = tempDir();
    dataDir = join(dir, 'data');
    configFile = everyMinuteConfig(dir);
  });
  afterAll(async () => {
    await sandbox?.close();
    removeTempDirs();
  });

  const run = () =>
    runCli(['run', '--until-idle', '--config', configFile, '--data-dir', dataDir], {
      env,
      timeoutMs: 120_000,
    });

  test('first run: a full sync of every resource through the given key, exit 0', async () => {
    const r = await run();
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`Keap at ${sandbox.baseUrl}`);
    firstRunCalls = sandbox.arrivals.length;
    // Every call was accepted: the right key, and inside the gateway's limits.
    expect(sandbox.arrivals.filter((a) => a.status !== 200)).toEqual([]);
    expect(new Set(sandbox.arrivals.map((a) => a.keyId)).size).toBe(1);
    afterFirst = await statusJson(dataDir, env);
    expect(afterFirst.inSync).toBe(true);
    expect(countsOf(afterFirst)).toEqual(datasetCounts(sandbox.dataset));
    expect(afterFirst.accounts[0]?.resources.map((x) => x.lastRunMode)).toEqual(RESOURCES.map(() => 'full'));
    // At least a call per resource, and more for the lists longer than a page.
    expect(firstRunCalls).toBeGreaterThan(RESOURCES.length);
  }, 150_000);

  test('a run before any resource is due again reads nothing from Keap and changes nothing', async () => {
    const before = sandbox.arrivals.length;
    const r = await run();
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(sandbox.arrivals.length - before).toBe(0);
    expect(reportedCalls(r.stdout)).toBe(0);
    const report = await statusJson(dataDir, env);
    expect(report.inSync).toBe(true);
    expect(lastRuns(report)).toEqual(lastRuns(afterFirst));
    expect(countsOf(report)).toEqual(countsOf(afterFirst));
  }, 90_000);

  test('after the interval: 50 changed contacts reach the mirror for about one call per resource', async () => {
    const change = sandbox.mutate('contacts', { update: 50 });
    expect(change.updated).toHaveLength(50);
    // Every resource is due 90 s after its last run finished (everyMinutes: 3, half of it slack).
    const latest = Math.max(...Object.values(lastRuns(afterFirst)).map((t) => Date.parse(t ?? '')));
    await sleep(Math.max(0, latest + 91_000 - Date.now()));

    const before = sandbox.arrivals.length;
    const logFrom = logSize(dataDir);
    const r = await run();
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const calls = sandbox.arrivals.slice(before);
    const lines = logLines(dataDir, logFrom);
    expect(calls.filter((a) => a.status !== 200)).toEqual([]);
    expect(reportedCalls(r.stdout)).toBe(calls.length);
    // One read per resource (each list's changes fit one page), far fewer than the full sync; tag
    // applications are a walk: the tag list once more, then one read per tag.
    const TAG_CONTACTS = /\/tags\/[0-9]+\/contacts$/;
    const perResource = new Map<string, number>();
    for (const a of calls) {
      const path = a.path.replace(TAG_CONTACTS, '/tags/{id}/contacts');
      perResource.set(path, (perResource.get(path) ?? 0) + 1);
    }
    expect(perResource.size).toBe(RESOURCES.length);
    // By design, and logged, on a busy machine: a request retried after a transient failure arrives
    // twice, and a tag walk resumed in a new message (deferred by the ledger, or out of invocation
    // time) reads the tag list again before going on from its tag.
    const retried = (path: string) =>
      lines.filter(
        (l) =>
          l.message === 'Retrying a Keap request after a transient failure' &&
          path.endsWith(String(l.path).replace(TAG_CONTACTS, '/tags/{id}/contacts')),
      ).length;
    const walksResumed = lines.filter(
      (l) => l.message === 'Resuming sync from its checkpoint' && l.resource === 'tagApplications',
    ).length;
    const tags = sandbox.dataset.table('tags').size;
    for (const [path, n] of perResource)
      expect(n, path).toBe(
        (path.endsWith('/tags/{id}/contacts') ? tags : path.endsWith('/tags') ? 2 + walksResumed : 1) +
          retried(path),
      );
    expect(calls.length).toBeLessThan(firstRunCalls);

    const report = await statusJson(dataDir, env);
    expect(report.inSync).toBe(true);
    expect(Object.values(statesOf(report)).every((s) => s === 'in-sync')).toBe(true);
    expect(countsOf(report)).toEqual(datasetCounts(sandbox.dataset));
    const contacts = report.accounts[0]?.resources.find((x) => x.resource === 'contacts');
    expect(contacts?.lastRunMode).toBe('incremental');
    // The 50 changes, plus at most the few records re-read in the cursor's overlap window.
    expect(contacts?.lastRunRecords).toBeGreaterThanOrEqual(50);
    expect(contacts?.lastRunRecords).toBeLessThanOrEqual(60);
    for (const other of report.accounts[0]?.resources ?? []) {
      expect(other.lastRunMode, other.resource).toBe('incremental');
      if (other.resource !== 'contacts' && other.resource !== 'users')
        expect(other.lastRunRecords, other.resource).toBeLessThanOrEqual(10);
    }

    const mirror = await readMirror(dataDir, 'contacts');
    expect(mirror.size).toBe(CONTACTS);
    for (const id of change.updated) {
      const now = sandbox.dataset.contacts.get(id);
      expect(mirror.get(id)?.updateTimeMs, id).toBe(Date.parse(now?.update_time ?? ''));
      expect(mirror.get(id)?.data.update_time, id).toBe(now?.update_time);
    }
  }, 180_000);

  test("the closing line's Keap-call count is what Keap received", async () => {
    // A small run of its own with a fresh data folder and sandbox (its ledger starts at zero).
    const tiny = await startSandbox({ contacts: 50, seed: 1 });
    try {
      const r = await runCli(['run', '--until-idle', '--data-dir', join(tempDir(), 'd')], {
        env: sandboxEnv(tiny),
        timeoutMs: 60_000,
      });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(tiny.arrivals.length).toBeGreaterThanOrEqual(RESOURCES.length);
      expect(reportedCalls(r.stdout)).toBe(tiny.arrivals.length);
    } finally {
      await tiny.close();
    }
  }, 90_000);
});
