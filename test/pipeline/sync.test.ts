// End to end: the scheduler enqueues each due sync once, a full sync leaves the mirror equal to Keap
// record for record, and an incremental sync brings exactly the changes in a handful of Keap calls.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SYNC_RESOURCES, type SyncResource } from '#shared/jobs/schema.ts';
import { RESOURCES } from '#shared/keap/resources.ts';
import { runScheduler } from '#shared/pipeline/index.ts';
import { tagApplicationCalls } from '#shared/pipeline/tag-applications.ts';
import {
  arrivalsSince,
  countingMirror,
  diffRecords,
  mirrorOf,
  receiveAll,
  sandboxKey,
  startWorld,
  TENANT_A,
  type World,
} from './support.ts';

const ACCOUNT = 'acme';
/** Every list the pipeline mirrors (the registry's synced lists). */
const RESOURCES_SYNCED: SyncResource[] = [...SYNC_RESOURCES];

const KEY = sandboxKey(TENANT_A, 0);

/** Every field of the sandbox records, compared with the mirrored copies (less `except`). */
function fieldsOf(records: ReadonlyArray<Record<string, unknown>>, except: readonly string[] = []): string[] {
  const names = new Set<string>();
  for (const r of records) for (const k of Object.keys(r)) if (!except.includes(k)) names.add(k);
  return [...names];
}

function sandboxRecords(w: World, resource: SyncResource): Array<Record<string, unknown> & { id: string }> {
  return w.sandbox.dataset.table(resource).values() as unknown as Array<
    Record<string, unknown> & { id: string }
  >;
}

function timeField(resource: SyncResource, record: Record<string, unknown>): string {
  return RESOURCES[resource].timeFields.find((f) => typeof record[f] === 'string') ?? 'update_time';
}

describe('scheduler, full sync and incremental sync', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({
      contacts: 600,
      keys: [KEY],
      accounts: [{ id: ACCOUNT, tenant: TENANT_A, key: KEY.key, resources: RESOURCES_SYNCED }],
    });
  });
  afterAll(async () => {
    await w?.close();
  });

  test('the scheduler firing twice (even at once) enqueues each due sync exactly once', async () => {
    const [a, b] = await Promise.all([w.stack.scheduler(), w.stack.scheduler()]);
    const again = await w.stack.scheduler();
    const enqueued = [...(a?.enqueued ?? []), ...(b?.enqueued ?? []), ...again.enqueued];
    expect(enqueued.map((e) => e.resource).sort()).toEqual([...RESOURCES_SYNCED].sort());
    expect(enqueued.every((e) => e.mode === 'full')).toBe(true);
    expect(again.skipped.map((s) => s.reason)).toEqual(RESOURCES_SYNCED.map(() => 'in-flight'));

    // The queue holds one message per resource, nothing more (peeked, then made visible again).
    const messages = await receiveAll(w.stack, w.stack.sqs.queue.queueUrl, { putBack: true });
    const bodies = messages.map((m) => JSON.parse(m.body) as { resource: string; runId: string });
    expect(bodies.map((m) => m.resource).sort()).toEqual([...RESOURCES_SYNCED].sort());
    expect(new Set(bodies.map((m) => m.runId)).size).toBe(RESOURCES_SYNCED.length);
  });

  test('a full sync leaves the mirror equal to Keap, record for record', async () => {
    const poller = w.stack.poller({ concurrency: 4 });
    await poller.start();
    try {
      await poller.whenIdle({ timeoutMs: 60_000 });
    } finally {
      await poller.stop();
    }
    expect(poller.stats.handlerErrors).toBe(0);
    expect(poller.stats.retried).toBe(0);

    for (const resource of RESOURCES_SYNCED) {
      const expected = sandboxRecords(w, resource);
      expect(expected.length, resource).toBeGreaterThan(0);
      const mirror = await mirrorOf(w.stack, ACCOUNT, resource);
      const first = expected[0] ?? {};
      const problems = diffRecords(expected, mirror, timeField(resource, first), fieldsOf(expected));
      expect(problems.slice(0, 5), resource).toEqual([]);
      expect(mirror.size, resource).toBe(expected.length);

      const cursor = await w.stack.deps.runs.getCursor(ACCOUNT, resource);
      expect(cursor.checkpoint, resource).toBeNull();
      expect(cursor.lastRunMode, resource).toBe('full');
      expect(cursor.lastRunRecords, resource).toBe(expected.length);
      expect(cursor.listRecords, resource).toBe(expected.length);
      const newest = Math.max(...expected.map((r) => Date.parse(String(r[timeField(resource, r)]))));
      expect(cursor.highWaterMs, resource).toBe(newest);
      expect(await w.stack.deps.leases.get(ACCOUNT, resource), resource).toBeUndefined();
    }
    expect(w.sandbox.arrivals.filter((a) => a.status !== 200)).toEqual([]);
    // The worker reports the Keap calls it made (operators' KeapCalls metric) and no 429s.
    expect(w.metrics.sum('KeapCalls', { account: ACCOUNT })).toBe(w.sandbox.arrivals.length);
    expect(w.metrics.sum('Keap429s')).toBe(0);
  }, 60_000);

  test('opportunities carry the properties Keap lists only on request (created_by, status_id, ...)', async () => {
    const expected = sandboxRecords(w, 'opportunities');
    const mirror = await mirrorOf(w.stack, ACCOUNT, 'opportunities');
    expect(diffRecords(expected, mirror, 'last_updated_time', fieldsOf(expected))).toEqual([]);
  });

  test('an incremental sync brings exactly the changed records, in a handful of Keap calls', async () => {
    const before = await mirrorOf(w.stack, ACCOUNT, 'contacts');
    const change = w.sandbox.mutate('contacts', { update: 100, create: 5 });
    expect(change.updated).toHaveLength(100);
    const mark = w.sandbox.arrivals.length;

    // The next scheduler tick, once the contacts are due again.
    const tick = await runScheduler(w.stack.deps, Date.now() + 6 * 60_000);
    expect(tick.enqueued.map((e) => [e.resource, e.mode])).toContainEqual(['contacts', 'incremental']);
    const poller = w.stack.poller({ concurrency: 4 });
    await poller.start();
    try {
      await poller.whenIdle({ timeoutMs: 60_000 });
    } finally {
      await poller.stop();
    }

    const contactCalls = arrivalsSince(w.sandbox, mark).filter((a) => /\/v2\/contacts$/.test(a.path));
    expect(contactCalls.length).toBeGreaterThanOrEqual(1);
    expect(contactCalls.length).toBeLessThanOrEqual(3);
    // Every resource's incremental pass together is still a handful, not a re-read of everything
    // (tag applications: the tag list and a call per tag, however little changed).
    const tagWalk = tagApplicationCalls(w.sandbox.dataset.table('tags').size, 0);
    expect(arrivalsSince(w.sandbox, mark).length).toBeLessThanOrEqual(2 * RESOURCES_SYNCED.length + tagWalk);

    const contacts = sandboxRecords(w, 'contacts');
    const after = await mirrorOf(w.stack, ACCOUNT, 'contacts');
    expect(diffRecords(contacts, after, 'update_time', fieldsOf(contacts)).slice(0, 5)).toEqual([]);
    const changed = new Set([...change.updated, ...change.created]);
    for (const id of changed) {
      const rec = w.sandbox.dataset.contacts.get(id);
      expect(after.get(id)?.data.job_title).toBe(rec?.job_title);
      expect(after.get(id)?.updateTime).toBe(rec?.update_time);
    }
    // Unchanged records were not read again, except those inside the overlap the client re-reads
    // before the cursor (overlapMs, 5 minutes): those are rewritten with the same version.
    const fullHigh = Math.max(...[...before.values()].map((i) => i.updateTimeMs));
    const rewritten = [...before].filter(
      ([id, item]) => !changed.has(id) && after.get(id)?.syncedAt !== item.syncedAt,
    );
    for (const [id, item] of rewritten) {
      expect(item.updateTimeMs, id).toBeGreaterThanOrEqual(fullHigh - 300_000);
      expect(after.get(id)?.updateTimeMs, id).toBe(item.updateTimeMs);
    }
    expect(rewritten.length).toBeLessThan(10);

    const cursor = await w.stack.deps.runs.getCursor(ACCOUNT, 'contacts');
    expect(cursor.lastRunMode).toBe('incremental');
    expect(cursor.highWaterMs).toBe(
      Date.parse(w.sandbox.dataset.contacts.get(change.updated[0] ?? '')?.update_time ?? ''),
    );
  }, 60_000);

  test("a due full read is budgeted from each cursor's list size: the mirror is not counted", async () => {
    const { mirror, counts } = countingMirror(w.stack.deps.mirror);
    // Every list configured to be read in full each time, and the jobs kept out of the queue.
    const directory = new Proxy(w.stack.deps.directory, {
      get(t, prop) {
        if (prop !== 'list') return Reflect.get(t, prop, t);
        return async () =>
          (await t.list()).map((e) => ({
            ...e,
            account: {
              ...e.account,
              resources: Object.fromEntries(
                Object.entries(e.account.resources).map(([r, s]) => [r, { ...s, mode: 'full' as const }]),
              ),
            },
          }));
      },
    });
    const sent: unknown[] = [];
    const queue = new Proxy(w.stack.deps.queue, {
      get(t, prop) {
        if (prop === 'sendMany')
          return async (jobs: unknown[]) => {
            sent.push(...jobs);
            return [];
          };
        return Reflect.get(t, prop, t);
      },
    });
    const contacts = await w.stack.deps.runs.getCursor(ACCOUNT, 'contacts');
    // The full sync's 600: the incremental run after it (100 updates, 5 creates) left the size alone.
    expect(contacts.lastRunMode).toBe('incremental');
    expect(contacts.listRecords).toBe(600);
    const tick = await runScheduler({ ...w.stack.deps, mirror, directory, queue }, Date.now() + 60 * 60_000);
    expect(tick.enqueued.map((e) => e.resource).sort()).toEqual([...RESOURCES_SYNCED].sort());
    expect(tick.enqueued.every((e) => e.mode === 'full')).toBe(true);
    expect(sent).toHaveLength(RESOURCES_SYNCED.length);
    expect(counts()).toBe(0);
  });
});
