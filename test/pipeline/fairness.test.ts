// End to end: fairness between accounts. While one account backfills (every list a full sync), the
// scheduler keeps at most scheduler.bulkJobsPerAccount of its full syncs queued or running, so
// another account's incremental sync of 100 changes does not wait behind the backfill: it finishes
// within one scheduler interval, while the backfill is still going.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseAccountConfig } from '#shared/config/app-config.ts';
import { SYNC_RESOURCES } from '#shared/jobs/schema.ts';
import { runScheduler } from '#shared/pipeline/index.ts';
import { eventually, sandboxKey, secretIdOf, startWorld, TENANT_A, TENANT_B, type World } from './support.ts';

const KEY_BIG = sandboxKey(TENANT_A, 0);
const KEY_SMALL = sandboxKey(TENANT_B, 0);
const INTERVAL_MS = 5 * 60_000;

describe('fairness: one account backfilling, another syncing its changes', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({
      contacts: 2_000,
      keys: [KEY_BIG, KEY_SMALL],
      accounts: [{ id: 'small', tenant: TENANT_B, key: KEY_SMALL.key, resources: ['contacts'] }],
      worker: { concurrency: 2, batchSize: 1 },
      scheduler: { everyMinutes: 5, bulkJobsPerAccount: 1 },
    });
  });
  afterAll(async () => {
    await w?.close();
  });

  test("the small account's incremental sync of 100 changes finishes within one interval of a backfill", async () => {
    // The small account is in sync.
    const first = await runScheduler(w.stack.deps, Date.now());
    expect(first.enqueued.map((e) => `${e.account}/${e.resource}/${e.mode}`)).toEqual([
      'small/contacts/full',
    ]);
    const warm = w.stack.poller({ concurrency: 2, batchSize: 1 });
    await warm.start();
    try {
      await warm.whenIdle({ timeoutMs: 30_000 });
    } finally {
      await warm.stop();
    }

    // A big account is added (every list to backfill), Keap's pages get slow, 100 contacts change.
    w.stack.secrets.put(secretIdOf('big'), KEY_BIG.key);
    await w.stack.deps.registry.add(
      parseAccountConfig(
        {
          id: 'big',
          tenant: TENANT_A,
          secretId: secretIdOf('big'),
          resources: Object.fromEntries(SYNC_RESOURCES.map((r) => [r, { everyMinutes: 5 }])),
        },
        'keap-sync/',
      ),
      { source: 'test' },
    );
    w.sandbox.setFaults({ slowMs: 300 });
    expect(w.sandbox.mutate('contacts', { update: 100 }).updated).toHaveLength(100);

    const tickedAt = Date.now();
    const tick = await runScheduler(w.stack.deps, tickedAt + INTERVAL_MS + 1_000);
    // One backfill job of the big account at a time; the other ten lists wait for later runs.
    expect(tick.enqueued.filter((e) => e.account === 'big')).toHaveLength(1);
    expect(tick.skipped.filter((s) => s.account === 'big' && s.reason === 'bulk-cap')).toHaveLength(10);
    const small = tick.enqueued.find((e) => e.account === 'small');
    expect(small?.mode).toBe('incremental');

    const poller = w.stack.poller({ concurrency: 2, batchSize: 1 });
    const mark = w.sandbox.arrivals.length;
    await poller.start();
    try {
      const done = async () =>
        (await w.stack.deps.runs.getCursor('small', 'contacts')).lastRunId === small?.runId;
      expect(await eventually(done, 40_000)).toBe(true);
      const cursor = await w.stack.deps.runs.getCursor('small', 'contacts');
      // Within one scheduler interval of the tick that queued it, with the backfill still going.
      expect(Date.parse(cursor.lastRunAt ?? '') - tickedAt).toBeLessThan(INTERVAL_MS);
      expect(cursor.lastRunRecords).toBeGreaterThanOrEqual(100);
      const big = await w.stack.deps.runs.getCursors(
        SYNC_RESOURCES.map((resource) => ({ account: 'big', resource })),
      );
      expect(big.filter((c) => c.lastRunAt !== null).length).toBeLessThan(SYNC_RESOURCES.length);
      // The changes came in a page or two on the small account's own tenant.
      expect(w.sandbox.arrivals.slice(mark).filter((a) => a.tenant === TENANT_B).length).toBeLessThanOrEqual(
        2,
      );
    } finally {
      w.sandbox.setFaults({ slowMs: undefined });
      await poller.stop();
    }
  }, 60_000);
});
