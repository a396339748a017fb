// End to end (sandbox with a page latency, dynalite, fauxqs): a full sync of a large list reads it in
// parallel id ranges. Every record lands once, the reads overlap in time (one page after another
// never could), records changed and created during the read are in the mirror after the next
// incremental run, and a worker killed mid-read resumes every range from the saved plan.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { abortSignalOf, type SqsLambdaPoller } from '#harness/local/index.ts';
import { createWorkerHandler, type PipelineDeps, type WorkerHandler } from '#shared/pipeline/index.ts';
import {
  arrivalsSince,
  cappedWrites,
  drain,
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
const CONTACTS = 9_000;
const PAGE_MS = 400;

/**
 * Pages read again since `logMark` by design: those the hand-overs left (their writes were stopped),
 * and the page a job retried after a transient failure (a DynamoDB connection reset) had in flight.
 */
function pagesReadAgain(w: World, logMark: number): number {
  const lines = w.log.lines.slice(logMark);
  const handedOver = lines
    .filter((l) => l.message === 'Out of invocation time: continuing in a new message')
    .reduce((n, l) => n + Number(l.pagesToReadAgain ?? 0), 0);
  const retried = lines.filter(
    (l) =>
      l.message === 'Job failed on a transient error; it is retried after a backoff' &&
      l.resource === 'contacts',
  ).length;
  return handedOver + retried;
}

/** Contact list reads (pages and the one-record probe) that arrived after `mark`, in arrival order. */
function contactReads(w: World, mark: number) {
  return arrivalsSince(w.sandbox, mark).filter((a) => a.method === 'GET' && a.path.endsWith('/contacts'));
}

/** Mirror ids whose update time differs from the sandbox's, and sandbox ids the mirror lacks. */
async function differences(w: World): Promise<string[]> {
  const mirror = await mirrorOf(w.stack, ACCOUNT, 'contacts');
  const contacts = w.sandbox.dataset.contacts.values();
  return contacts.filter((c) => mirror.get(c.id)?.updateTime !== c.update_time).map((c) => c.id);
}

describe('a full sync in parallel id ranges', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({
      contacts: CONTACTS,
      keys: [KEY],
      accounts: [{ id: ACCOUNT, tenant: TENANT_A, key: KEY.key, resources: ['contacts'] }],
      worker: { partitions: 4 },
      pageLatency: { baseMs: PAGE_MS, perRecordMs: 0 },
    });
  }, 60_000);
  afterAll(async () => {
    await w?.close();
  });

  test('reads every record once, with reads in flight together', async () => {
    const mark = w.sandbox.arrivals.length;
    const scheduled = await w.stack.scheduler();
    expect(scheduled.enqueued).toHaveLength(1);
    await drain(w, { timeoutMs: 60_000 });

    expect(await differences(w)).toEqual([]);
    expect(await w.stack.deps.mirror.count(ACCOUNT, 'contacts')).toBe(CONTACTS);
    const planned = w.log.lines.find((l) => l.message === 'Reading the rest of the list in id ranges');
    expect(planned).toMatchObject({ ranges: 4, fromId: '1001' });
    const cursor = await w.stack.deps.runs.getCursor(ACCOUNT, 'contacts');
    expect(cursor.checkpoint).toBeNull();
    expect(cursor.lastRunRecords).toBe(CONTACTS);

    const reads = contactReads(w, mark);
    // Nine pages and the probe of the highest id; a halved range costs a page at most.
    expect(reads.length).toBeGreaterThanOrEqual(10);
    expect(reads.length).toBeLessThanOrEqual(14);
    // One page after another, consecutive reads are at least a page's latency apart; in ranges, many
    // arrive while another is still being built.
    const gaps = reads.slice(1).map((a, i) => a.t - (reads[i]?.t ?? 0));
    expect(gaps.filter((g) => g < PAGE_MS / 2).length).toBeGreaterThanOrEqual(3);
  }, 90_000);

  test('records changed and created during the read are in the mirror after the next run', async () => {
    // A full run again; while its ranges are read, a tenth of the contacts change and some are created.
    const plans = () =>
      w.log.lines.filter((l) => l.message === 'Reading the rest of the list in id ranges').length;
    const before = plans();
    await sendRaw(w.stack, [
      JSON.stringify({ kind: 'sync', account: ACCOUNT, resource: 'contacts', mode: 'full' }),
    ]);
    const poller = w.stack.poller({ concurrency: 2 });
    await poller.start();
    let changed = { updated: [] as string[], created: [] as string[] };
    try {
      expect(await eventually(() => plans() > before, 30_000)).toBe(true);
      changed = w.sandbox.mutate('contacts', { update: 900, create: 50 });
      await poller.whenIdle({ timeoutMs: 60_000 });
    } finally {
      await poller.stop();
    }
    expect(changed.updated).toHaveLength(900);
    // The next incremental run reads from before the full run began.
    await sendRaw(w.stack, [JSON.stringify({ kind: 'sync', account: ACCOUNT, resource: 'contacts' })]);
    await drain(w, { timeoutMs: 60_000 });
    const diff = await differences(w);
    expect(diff).toEqual([]);
    expect(await w.stack.deps.mirror.count(ACCOUNT, 'contacts')).toBe(CONTACTS + 50);
  }, 120_000);
});

describe('a worker killed in the middle of a read in id ranges', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({
      contacts: CONTACTS,
      keys: [KEY],
      accounts: [{ id: ACCOUNT, tenant: TENANT_A, key: KEY.key, resources: ['contacts'] }],
      worker: { partitions: 4, timeoutSeconds: 20, safetyMarginMs: 4_000 },
      visibilityTimeoutSec: 8,
      pageLatency: { baseMs: PAGE_MS, perRecordMs: 0 },
    });
  }, 60_000);
  afterAll(async () => {
    await w?.close();
  });

  test('resumes each range from the saved plan, nothing lost or duplicated', async () => {
    const { runs } = w.stack.deps;
    let killed = false;
    let poller: SqsLambdaPoller | undefined;
    // Killed once the plan holds three pages read: ranges part-read, pages in flight lost.
    const handler: WorkerHandler = async (event, context) => {
      const signal = abortSignalOf(context);
      if (!signal) throw new Error('not invoked by the poller');
      const watching = new Proxy(runs, {
        get(t, prop) {
          if (prop !== 'checkpoint') return Reflect.get(t, prop, t);
          return async (...args: Parameters<typeof t.checkpoint>) => {
            const out = await t.checkpoint(...args);
            if (!killed && out.partitions !== undefined && out.pages >= 3) {
              killed = true;
              poller?.abandon(context.awsRequestId);
            }
            return out;
          };
        },
      });
      const deps: PipelineDeps = {
        ...w.stack.deps,
        runs: frozenWhenKilled(watching, signal),
        mirror: frozenWhenKilled(w.stack.deps.mirror, signal),
        leases: frozenWhenKilled(w.stack.deps.leases, signal),
        queue: frozenWhenKilled(w.stack.deps.queue, signal),
      };
      return createWorkerHandler(deps)(event, context);
    };
    const mark = w.sandbox.arrivals.length;
    const logMark = w.log.lines.length;
    await w.stack.scheduler();
    poller = w.stack.poller({ concurrency: 1, batchSize: 1, handler });
    await poller.start();
    try {
      const ok = await eventually(() => killed, 30_000);
      expect(ok).toBe(true);
      const cursor = await runs.getCursor(ACCOUNT, 'contacts');
      expect(cursor.checkpoint?.partitions).toMatchObject({ ranges: expect.any(Array) });
      await poller.whenIdle({ timeoutMs: 60_000 });
    } finally {
      await poller.stop();
    }
    expect(poller.stats.killed).toBe(1);
    expect(w.log.lines.some((l) => l.message === 'Resuming sync from its checkpoint')).toBe(true);
    // The plan was made once: the resumed run read on from it.
    expect(w.log.lines.filter((l) => l.message === 'Reading the rest of the list in id ranges')).toHaveLength(
      1,
    );
    expect(await differences(w)).toEqual([]);
    expect(await w.stack.deps.mirror.count(ACCOUNT, 'contacts')).toBe(CONTACTS);
    expect((await runs.getCursor(ACCOUNT, 'contacts')).checkpoint).toBeNull();
    // Nine pages, the probe, and at most the pages in flight when it died read again (one per range);
    // on a slow machine also each page whose mirror write a hand-over's deadline stopped (each
    // hand-over logs how many: those pages are read again for the records they did not finish).
    expect(contactReads(w, mark).length).toBeLessThanOrEqual(10 + 4 + 4 + pagesReadAgain(w, logMark));
  }, 120_000);

  test('ranges whose page writes never fit an invocation still finish, each record written once', async () => {
    const { runs } = w.stack.deps;
    const total = w.sandbox.dataset.contacts.values().length;
    // Every write stops after 300 records, as the invocation's deadline does on a slow store: each
    // message must write only what the one before did not, in the first page and in every range.
    const { mirror, writtenIds } = cappedWrites(w.stack.deps.mirror, 300);
    const handler = createWorkerHandler({ ...w.stack.deps, mirror });
    const runId = randomUUID();
    const logMark = w.log.lines.length;
    await sendRaw(w.stack, [
      JSON.stringify({ kind: 'sync', account: ACCOUNT, resource: 'contacts', mode: 'full', runId }),
    ]);
    await drain(w, { handler, timeoutMs: 90_000 });

    const cursor = await runs.getCursor(ACCOUNT, 'contacts');
    expect(cursor.lastRunId).toBe(runId);
    expect(cursor.checkpoint).toBeNull();
    expect(cursor.lastRunRecords).toBe(total);
    expect(writtenIds).toHaveLength(total);
    expect(new Set(writtenIds).size).toBe(total);
    const handovers = w.log.lines
      .slice(logMark)
      .filter((l) => l.message === 'Out of invocation time: continuing in a new message');
    expect(handovers.filter((l) => l.ranges !== undefined).length).toBeGreaterThan(0);
    // Each hand-over says how many pages are read again: at least the one whose write stopped it.
    const stopped = handovers.filter((l) => l.during === 'mirror-write');
    expect(stopped.length).toBeGreaterThan(0);
    expect(stopped.map((l) => Number(l.pagesToReadAgain) >= 1)).toEqual(stopped.map(() => true));
    expect(await differences(w)).toEqual([]);
  }, 120_000);
});
