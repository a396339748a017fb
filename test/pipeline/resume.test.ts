// End to end: a worker killed in the middle of a sync job loses nothing. SQS delivers the message
// again after its visibility timeout; the new invocation resumes from the last checkpoint, the mirror
// ends complete without duplicates, and the cursor advances.

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { abortSignalOf, type SqsLambdaPoller } from '#harness/local/index.ts';
import { createWorkerHandler, type PipelineDeps, type WorkerHandler } from '#shared/pipeline/index.ts';
import {
  arrivalsSince,
  cappedWrites,
  eventually,
  frozenWhenKilled,
  mirrorOf,
  sandboxKey,
  sendRaw,
  startWorld,
  TENANT_A,
  type World,
} from './support.ts';

const ACCOUNT = 'acme';
const KEY = sandboxKey(TENANT_A, 0);
// The client reads 1,000 records a page and the app config cannot lower it (reported): 3,000
// contacts make a three-page sync.
const CONTACTS = 3_000;

describe('a worker killed mid-sync', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({
      contacts: CONTACTS,
      keys: [KEY],
      accounts: [{ id: ACCOUNT, tenant: TENANT_A, key: KEY.key, resources: ['contacts'] }],
      // A short visibility timeout (= the function timeout) for a quick redelivery; the safety margin
      // makes a slow invocation continue in a new message instead of timing out mid-page.
      worker: { timeoutSeconds: 10, safetyMarginMs: 4_000, partitions: 1 },
      visibilityTimeoutSec: 8,
    });
  });
  afterAll(async () => {
    await w?.close();
  });

  test('resumes from its checkpoint with no record lost or duplicated', async () => {
    const { runs, leases } = w.stack.deps;
    /** Pages checkpointed when the worker was killed (page + 1 was in the mirror, not checkpointed). */
    let killedAtPage: number | undefined;
    const invocations: Array<{ fromPage: number | null; killed: boolean }> = [];
    let poller: SqsLambdaPoller | undefined;
    // Each invocation runs the pipeline over stores that freeze once it is killed. The first time a
    // page reaches the mirror while an earlier page is checkpointed, that worker is killed before it
    // checkpoints the page: one page saved, the next one written but not recorded.
    const handler: WorkerHandler = async (event, context) => {
      const signal = abortSignalOf(context);
      if (!signal) throw new Error('not invoked by the poller');
      const cursor = await runs.getCursor(ACCOUNT, 'contacts');
      const invocation = { fromPage: cursor.checkpoint?.pages ?? null, killed: false };
      invocations.push(invocation);
      const killing = new Proxy(w.stack.deps.mirror, {
        get(t, prop) {
          if (prop !== 'upsertMany') return Reflect.get(t, prop, t);
          return async (...args: Parameters<typeof t.upsertMany>) => {
            const out = await t.upsertMany(...args);
            const pages = (await runs.getCursor(ACCOUNT, 'contacts')).checkpoint?.pages ?? 0;
            if (killedAtPage === undefined && pages >= 1 && !signal.aborted) {
              killedAtPage = pages;
              invocation.killed = true;
              poller?.abandon(context.awsRequestId);
            }
            return out;
          };
        },
      });
      const deps: PipelineDeps = {
        ...w.stack.deps,
        mirror: frozenWhenKilled(killing, signal),
        runs: frozenWhenKilled(runs, signal),
        leases: frozenWhenKilled(leases, signal),
        accounts: frozenWhenKilled(w.stack.deps.accounts, signal),
        writes: frozenWhenKilled(w.stack.deps.writes, signal),
        queue: frozenWhenKilled(w.stack.deps.queue, signal),
      };
      return createWorkerHandler(deps)(event, context);
    };

    const scheduled = await w.stack.scheduler();
    expect(scheduled.enqueued).toHaveLength(1);
    const runId = scheduled.enqueued[0]?.runId;
    const mark = w.sandbox.arrivals.length;
    const logMark = w.log.lines.length;
    poller = w.stack.poller({ concurrency: 1, batchSize: 1, handler });
    await poller.start();
    try {
      expect(await eventually(() => killedAtPage !== undefined, 30_000)).toBe(true);
      const k = killedAtPage ?? 0;
      // Killed: k pages checkpointed, page k + 1 in the mirror only.
      const killed = await runs.getCursor(ACCOUNT, 'contacts');
      expect(killed.checkpoint?.runId).toBe(runId);
      expect(killed.checkpoint?.pages).toBe(k);
      expect(killed.checkpoint?.pageToken).toBeTruthy();
      expect(await w.stack.deps.mirror.count(ACCOUNT, 'contacts')).toBe((k + 1) * 1_000);
      expect(killed.highWaterMs).toBeNull();

      await poller.whenIdle({ timeoutMs: 40_000 });
    } finally {
      await poller.stop();
    }

    expect(poller.stats.killed).toBe(1);
    // The redelivered message resumed where the killed worker's checkpoint was.
    const killedIndex = invocations.findIndex((i) => i.killed);
    expect(invocations[killedIndex + 1]?.fromPage).toBe(killedAtPage);
    expect(
      w.log.lines.some(
        (l) => l.message === 'Resuming sync from its checkpoint' && l.fromPage === killedAtPage,
      ),
    ).toBe(true);

    // Complete, no duplicates, every record at its Keap version.
    const mirror = await mirrorOf(w.stack, ACCOUNT, 'contacts');
    const contacts = w.sandbox.dataset.contacts.values();
    expect(mirror.size).toBe(CONTACTS);
    expect(await w.stack.deps.mirror.count(ACCOUNT, 'contacts')).toBe(CONTACTS);
    const missing = contacts.filter((c) => mirror.get(c.id)?.updateTime !== c.update_time);
    expect(missing.map((c) => c.id)).toEqual([]);

    // The cursor advanced to the newest record; the run finished under the scheduler's run id.
    const cursor = await runs.getCursor(ACCOUNT, 'contacts');
    expect(cursor.checkpoint).toBeNull();
    expect(cursor.lastRunId).toBe(runId);
    expect(cursor.highWaterMs).toBe(Math.max(...contacts.map((c) => Date.parse(c.update_time))));
    expect(await leases.get(ACCOUNT, 'contacts')).toBeUndefined();

    // Three pages, plus the one page that was written but not checkpointed when the worker died
    // (plus, on a slow machine, one per invocation that timed out mid-page, one per page whose
    // mirror write the deadline stopped: that page is read again for the records it did not finish,
    // and one per job retried after a transient failure, such as a DynamoDB connection reset).
    // (The list's custom-field model, read once before the first page, is not a page.)
    const reads = arrivalsSince(w.sandbox, mark).filter(
      (a) => a.method === 'GET' && !a.path.endsWith('/model'),
    );
    const readAgain = w.log.lines
      .slice(logMark)
      .filter((l) => l.message === 'Out of invocation time: continuing in a new message')
      .reduce((n, l) => n + Number(l.pagesToReadAgain ?? 0), 0);
    expect(reads.length).toBeGreaterThanOrEqual(4);
    const retried = w.log.lines
      .slice(logMark)
      .filter(
        (l) =>
          l.message === 'Job failed on a transient error; it is retried after a backoff' &&
          l.resource === 'contacts',
      ).length;
    expect(reads.length).toBeLessThanOrEqual(4 + poller.stats.timeouts + readAgain + retried);
  }, 60_000);

  test('a page whose write never fits an invocation still gets through: each message writes only what the last did not', async () => {
    const { runs } = w.stack.deps;
    // A mirror that stops every write after 400 records, as the invocation's deadline would on a slow
    // store: without the checkpoint's done ids, every message would write the same 400 and stop.
    const { mirror: slow, writtenIds } = cappedWrites(w.stack.deps.mirror, 400);
    const handler = createWorkerHandler({ ...w.stack.deps, mirror: slow });
    const runId = randomUUID();
    const logMark = w.log.lines.length;
    const mark = w.sandbox.arrivals.length;
    await sendRaw(w.stack, [
      JSON.stringify({ kind: 'sync', account: ACCOUNT, resource: 'contacts', mode: 'full', runId }),
    ]);
    const poller = w.stack.poller({ concurrency: 1, batchSize: 1, handler });
    await poller.start();
    try {
      await poller.whenIdle({ timeoutMs: 40_000 });
    } finally {
      await poller.stop();
    }
    const cursor = await runs.getCursor(ACCOUNT, 'contacts');
    expect(cursor.lastRunId).toBe(runId);
    expect(cursor.checkpoint).toBeNull();
    expect(cursor.lastRunRecords).toBe(CONTACTS);
    // Every record written exactly once across the messages: nothing redone, nothing skipped.
    expect(writtenIds).toHaveLength(CONTACTS);
    expect(new Set(writtenIds).size).toBe(CONTACTS);
    // Each 1,000-record page read three times (400 + 400 + 200), no more.
    const reads = arrivalsSince(w.sandbox, mark).filter(
      (a) => a.method === 'GET' && !a.path.endsWith('/model'),
    );
    expect(reads).toHaveLength(3 * Math.ceil(CONTACTS / 1_000));
    const handovers = w.log.lines
      .slice(logMark)
      .filter((l) => l.message === 'Out of invocation time: continuing in a new message');
    expect(
      handovers.filter((l) => l.during === 'mirror-write').map((l) => [l.during, l.pageRecordsDone]),
    ).toEqual(
      Array.from({ length: CONTACTS / 1_000 }, () => [
        ['mirror-write', 400],
        ['mirror-write', 800],
      ]).flat(),
    );
    // On a slow machine a message may also run out of time between pages, before a read (the reads
    // above stay exact), with no page left to read again.
    const others = handovers.filter((l) => l.during !== 'mirror-write');
    expect(others.map((l) => l.pagesToReadAgain ?? 0)).toEqual(others.map(() => 0));
    expect(poller.stats.timeouts).toBe(0);
  }, 60_000);
});
