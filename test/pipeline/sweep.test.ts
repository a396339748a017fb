// End to end (sandbox, dynalite, fauxqs): the reconciliation sweep finds deletions without hooks. After
// random creates, updates and deletes in every synced list, with no hook delivering, one scheduler
// run a day later queues the incremental syncs and the sweeps (inside the bulk share), and afterwards
// the mirror equals the sandbox for every list: every live record present, every deleted one a
// tombstone. A sweep reads ids only (no `fields`), a page of the list's largest size per call.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseJob, SYNC_RESOURCES, type SyncResource } from '#shared/jobs/schema.ts';
import { RESOURCES } from '#shared/keap/resources.ts';
import { ClientCache, type PipelineDeps } from '#shared/pipeline/deps.ts';
import { runScheduler, sweepLease } from '#shared/pipeline/scheduler.ts';
import { runSweep, sweepCalls } from '#shared/pipeline/sweep.ts';
import {
  arrivalsSince,
  countingMirror,
  drain,
  mirrorOf,
  sandboxKey,
  sendRaw,
  startWorld,
  TENANT_A,
  type World,
} from './support.ts';

const ACCOUNT = 'acme';
const KEY = sandboxKey(TENANT_A, 0);
const LISTS: SyncResource[] = [...SYNC_RESOURCES];

describe('reconciliation sweep', () => {
  let w: World;

  /** Per list: ids live in the mirror but not in the sandbox, and in the sandbox but not live. */
  async function differences(): Promise<Record<string, { extra: string[]; missing: string[] }>> {
    const out: Record<string, { extra: string[]; missing: string[] }> = {};
    for (const list of LISTS) {
      const all = await mirrorOf(w.stack, ACCOUNT, list);
      const live = new Set([...all].filter(([, i]) => i.deletedAt === undefined).map(([id]) => id));
      const keap = new Set([...w.sandbox.dataset.table(list).ids()].map(String));
      const extra = [...live].filter((id) => !keap.has(id));
      const missing = [...keap].filter((id) => !live.has(id));
      if (extra.length || missing.length)
        out[list] = { extra: extra.slice(0, 5), missing: missing.slice(0, 5) };
    }
    return out;
  }

  beforeAll(async () => {
    w = await startWorld({
      contacts: 300,
      keys: [KEY],
      accounts: [{ id: ACCOUNT, tenant: TENANT_A, key: KEY.key, resources: LISTS }],
      scheduler: { reserveCallsForIncremental: 0 },
    });
    await w.stack.scheduler();
    await drain(w);
  }, 60_000);
  afterAll(async () => {
    await w?.close();
  });

  test('the first scheduler run starts each list sweep clock without sweeping (its first read was full)', async () => {
    for (const list of LISTS)
      expect(await w.stack.deps.leases.get(ACCOUNT, sweepLease(list)), list).toBeDefined();
    expect(await differences()).toEqual({});
  });

  test('after random changes in every list, no hooks, syncs and sweeps make mirror == sandbox', async () => {
    const deleted = new Map<SyncResource, string[]>();
    for (const list of LISTS) {
      const size = w.sandbox.dataset.table(list).size;
      const n = Math.max(1, Math.floor(size / 10));
      const change = w.sandbox.mutate(list, { update: n, create: n, delete: Math.min(n, size - 2 * n) });
      deleted.set(list, change.deleted);
    }
    expect(Object.keys(await differences()).length).toBeGreaterThan(0);
    const mark = w.sandbox.arrivals.length;
    const counts = new Map(
      await Promise.all(LISTS.map(async (l) => [l, await w.stack.deps.mirror.count(ACCOUNT, l)] as const)),
    );

    // A day later: every list is due for its incremental sync and its sweep, each sweep budgeted from
    // its list's size in the cursor (the mirror is not counted).
    const { mirror, counts: mirrorCounts } = countingMirror(w.stack.deps.mirror);
    const result = await runScheduler({ ...w.stack.deps, mirror }, Date.now() + 25 * 3_600_000);
    expect(mirrorCounts()).toBe(0);
    expect(result.enqueued.map((e) => e.resource).sort()).toEqual([...LISTS].sort());
    await drain(w);

    expect(await differences()).toEqual({});
    // Each sweep recorded what Keap lists as the list's size (the next full read's and sweep's budget);
    // tag applications, swept tag by tag, keep theirs.
    for (const list of LISTS.filter((l) => l !== 'tagApplications'))
      expect((await w.stack.deps.runs.getCursor(ACCOUNT, list)).listRecords, list).toBe(
        w.sandbox.dataset.table(list).size,
      );
    for (const [list, ids] of deleted) {
      const all = await mirrorOf(w.stack, ACCOUNT, list);
      for (const id of ids) expect(all.get(id)?.deletedAt, `${list} ${id}`).toBeDefined();
    }
    // Each sweep cost a page of ids per call (tag applications: the walk over every tag).
    expect(arrivalsSince(w.sandbox, mark).length).toBeGreaterThan(0);
    const tags = w.sandbox.dataset.table('tags').size;
    const expectedCalls = LISTS.reduce((n, l) => n + sweepCalls(l, counts.get(l) ?? 0, tags), 0);
    expect(w.metrics.sum('SweepCalls', { account: ACCOUNT })).toBe(expectedCalls);
    expect(RESOURCES.contacts.maxPageSize).toBe(1000);
  }, 60_000);

  test('a sweep job sent twice, with the mirror already true, tombstones nothing', async () => {
    const before = w.metrics.sum('RecordsDeleted', { account: ACCOUNT });
    await sendRaw(w.stack, [
      JSON.stringify({ kind: 'sweep', account: ACCOUNT, resource: 'contacts' }),
      JSON.stringify({ kind: 'sweep', account: ACCOUNT, resource: 'contacts' }),
    ]);
    await drain(w);
    expect(w.metrics.sum('RecordsDeleted', { account: ACCOUNT })).toBe(before);
    expect(await differences()).toEqual({});
  }, 30_000);

  test('a sweep out of time after every page keeps its ids in the state table and finishes in later messages', async () => {
    const size = w.sandbox.dataset.table('notes').size;
    const removed = w.sandbox.mutate('notes', { delete: 7 }).deleted;
    expect(removed).toHaveLength(7);
    const account = w.config.accounts[0];
    if (!account) throw new Error('no account');
    const requeued: unknown[] = [];
    const deps: PipelineDeps = {
      ...w.stack.deps,
      queue: { requeue: async (j: unknown) => void requeued.push(j) } as unknown as PipelineDeps['queue'],
    };
    // Pages of 25 ids instead of the sweep's 1,000: a read of every note takes many messages.
    const client = new ClientCache(w.stack.deps).for(account, await w.stack.deps.keys.get(account));
    const small = new Proxy(client, {
      get(target, prop) {
        if (prop === 'pages')
          return (resource: 'notes', o: Record<string, unknown> = {}) =>
            target.pages(resource, { ...o, pageSize: 25 });
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const before = w.metrics.sum('RecordsDeleted', { account: ACCOUNT, resource: 'notes' });
    let job = parseJob(JSON.stringify({ kind: 'sweep', account: ACCOUNT, resource: 'notes' }));
    const outcomes: string[] = [];
    for (let i = 0; i < 100; i++) {
      if (job.kind !== 'sweep') throw new Error('not a sweep');
      const out = await runSweep(job, account, small, deps, { remainingMs: () => 0 }, w.log);
      outcomes.push(out.status);
      // Nothing is tombstoned before the last page is read.
      if (out.status === 'continued') expect(out.tombstoned).toBe(0);
      if (out.status !== 'continued') break;
      job = parseJob(JSON.stringify(requeued.at(-1)));
    }
    expect(outcomes.at(-1)).toBe('done');
    expect(outcomes.length).toBeGreaterThan(2);
    expect(outcomes.length).toBeLessThanOrEqual(Math.ceil(size / 25) + 1);
    const mirror = await mirrorOf(w.stack, ACCOUNT, 'notes');
    for (const id of removed) expect(mirror.get(id)?.deletedAt, id).toBeDefined();
    expect(w.metrics.sum('RecordsDeleted', { account: ACCOUNT, resource: 'notes' }) - before).toBe(7);
    expect(await differences()).toEqual({});
    // The kept ids are gone once the sweep finished.
    const last = requeued.at(-1) as { runId: string };
    expect(await w.stack.deps.sweeps?.load(last.runId)).toEqual([]);
  }, 60_000);
});
