// `keap-sync run --processes 2 --concurrency 2 --until-idle`: two OS processes share the work and one
// quota ledger. The sync completes (exit 0, in sync, mirror complete), both processes ran sync jobs,
// every Keap call of either process was counted in the one ledger and none was refused by Keap's
// gateway (Keap's real limits: 10 calls/s, 240/min), and no worker process outlives the run.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type RunningSandbox, startSandbox } from '#harness/sandbox/index.ts';
import {
  countsOf,
  datasetCounts,
  logLines,
  processesOf,
  removeTempDirs,
  reportedCalls,
  runCli,
  sandboxEnv,
  statesOf,
  statusJson,
  tempDir,
  waitFor,
} from './support.ts';

describe('run --processes 2 --concurrency 2 --until-idle', () => {
  let sandbox: RunningSandbox;
  let dataDir: string;
  let stdout = '';

  beforeAll(async () => {
    // Some latency, so that every job takes a moment and both processes get some.
    sandbox = await startSandbox({ contacts: 600, seed: 1, latencyMs: { min: 150, max: 250 } });
    dataDir = join(tempDir(), 'data');
  });
  afterAll(async () => {
    await sandbox?.close();
    removeTempDirs();
  });

  test('exits 0 with every resource in sync and the mirror complete', async () => {
    const r = await runCli(
      ['run', '--processes', '2', '--concurrency', '2', '--until-idle', '--data-dir', dataDir],
      { env: sandboxEnv(sandbox), timeoutMs: 150_000 },
    );
    stdout = r.stdout;
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('2 process(es) x 2 workers');
    expect(r.stdout).toMatch(/queue drained, every resource in sync/);
    const report = await statusJson(dataDir);
    expect(report.inSync).toBe(true);
    expect(Object.values(statesOf(report)).every((s) => s === 'in-sync')).toBe(true);
    expect(countsOf(report)).toEqual(datasetCounts(sandbox.dataset));
  }, 180_000);

  test('both processes ran sync jobs, each job once', () => {
    const finished = logLines(dataDir).filter((l) => l.message === 'Sync finished');
    const byProcess = new Map<string, number>();
    for (const l of finished) byProcess.set(String(l.process), (byProcess.get(String(l.process)) ?? 0) + 1);
    expect([...byProcess.keys()].sort()).toEqual(['main', 'worker-1']);
    expect(finished).toHaveLength(11);
    expect(new Set(finished.map((l) => l.resource)).size).toBe(11);
  });

  test('one ledger counted every call of both processes; Keap refused none', async () => {
    const report = await statusJson(dataDir);
    expect(sandbox.arrivals.length).toBeGreaterThanOrEqual(10);
    expect(sandbox.arrivals.filter((a) => a.status !== 200)).toEqual([]);
    expect(report.accounts[0]?.quota.day.used).toBe(sandbox.arrivals.length);
    expect(reportedCalls(stdout)).toBe(sandbox.arrivals.length);
  }, 60_000);

  test('no worker process outlives the run', async () => {
    await waitFor(() => processesOf(dataDir).length === 0, 'the worker processes to exit', 10_000);
  }, 30_000);
});
