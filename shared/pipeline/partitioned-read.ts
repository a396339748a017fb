// Use case: a full read of one list in parallel id ranges (partitions.ts holds the plan). `readers`
// loops each take a range and read it page by page through the client (every call through the
// ledger, which keeps them all under Keap's limits together); after each page its records are written
// and the whole plan saved. A reader stops starting pages when the invocation runs out of time, and
// every reader stops after its page in flight once one of them fails or its write was stopped.
// Reads overlap, but at most `writes` pages are written at once (default 2): on a slow store the pages
// then reach the mirror one after another, each checkpointed, instead of every reader's write sharing
// the store until the invocation's deadline stops them all with none saved.
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import pLimit from 'p-limit';
import { type KeapClient, QuotaDeferredError } from '../keap/index.ts';
import type { SyncResource } from '../keap/registry.ts';
import { RESOURCES } from '../keap/resources.ts';
import type { Partition, PartitionPlan, SavedPlan } from './partitions.ts';

export interface PartitionedReadHooks {
  /** Before a page: false when the invocation has no time left for one (and its write). */
  canStartPage(): boolean;
  /** Milliseconds a reader may sleep for its ledger slot without the invocation running short. */
  sleepableMs(): number;
  /**
   * Writes a page's records to the mirror; `stopped` when the write was stopped (the page is read
   * again), with the ids it finished first.
   */
  write(
    records: Array<{ id: string } & Record<string, unknown>>,
  ): Promise<{ stopped: false } | { stopped: true; doneIds: readonly string[] }>;
  /**
   * After a page written (`partial`: a stopped write that finished some records): saves the plan (the
   * caller serialises saves).
   */
  save(
    plan: SavedPlan,
    page: { records: number; requests: number; ms: number; partial?: boolean },
  ): Promise<void>;
}

export type PartitionedReadResult =
  | { status: 'done' }
  /**
   * The invocation's time ran out (`out-of-time`: before a page; `write-stopped`: first seen as a
   * stopped write). `pagesToReadAgain`: pages read whose writes the deadline stopped, the ranges'
   * pages the next message reads again (a page that started before time ran out can still be one).
   */
  | { status: 'out-of-time'; pagesToReadAgain: number }
  | { status: 'write-stopped'; pagesToReadAgain: number }
  /** The ledger has no slot soon enough to wait for in this invocation: the job comes back later. */
  | { status: 'deferred'; error: QuotaDeferredError };

/** Longest a reader sleeps in the invocation for a deferred slot (longer: the job is re-queued). */
const MAX_SLEEP_MS = 10_000;

/** The highest id of a list (one one-record page, `order_by id desc`), or undefined when it is empty. */
export async function probeMaxId(client: KeapClient, resource: SyncResource): Promise<string | undefined> {
  if (resource === 'tagApplications') throw new Error('tag applications are not read in id ranges');
  for await (const page of client.pages(resource, {
    pageSize: 1,
    fields: [],
    orderBy: 'id desc',
    priority: 'bulk',
  })) {
    return page.records[0]?.id;
  }
  return undefined;
}

/** Whether `resource` can be read in id ranges (Keap has an id comparison filter on it). */
export function partitionable(resource: SyncResource): boolean {
  return resource !== 'tagApplications' && RESOURCES[resource].idRangeFilter !== undefined;
}

/** Reads every range of `plan` with `readers` loops; see the file's header. */
export async function readPartitioned(
  client: KeapClient,
  resource: SyncResource,
  plan: PartitionPlan,
  readers: number,
  hooks: PartitionedReadHooks,
  options: { writes?: number; now?: () => number } = {},
): Promise<PartitionedReadResult> {
  if (resource === 'tagApplications') throw new Error('tag applications are not read in id ranges');
  const writing = pLimit(Math.max(1, options.writes ?? 2));
  const now = options.now ?? Date.now;
  // Why readers stop starting pages; pages already in flight are still written and saved.
  let stop:
    | { status: 'out-of-time' | 'write-stopped' }
    | { status: 'deferred'; error: QuotaDeferredError }
    | undefined;
  let failure: { error: unknown } | undefined;
  let pagesToReadAgain = 0;
  const stopped = () => stop !== undefined || failure !== undefined;

  /** Reads `part` until it is done or the readers stop; returns on a deferral worth sleeping through. */
  const readRange = async (part: Partition): Promise<{ sleepMs: number } | undefined> => {
    const pages = client.pages(resource, {
      idRange: { min: part.lo, ...(part.queryHi !== null ? { max: part.queryHi } : {}) },
      ...(part.token !== null ? { pageToken: part.token } : {}),
      priority: 'bulk',
      slotBatch: 1,
    });
    try {
      while (!part.done) {
        if (stopped()) return undefined;
        if (!hooks.canStartPage()) {
          stop ??= { status: 'out-of-time' };
          return undefined;
        }
        const started = performance.now();
        let next: IteratorResult<Awaited<ReturnType<typeof pages.next>>['value']>;
        try {
          next = await pages.next();
        } catch (err) {
          if (!(err instanceof QuotaDeferredError)) throw err;
          // The quota, not latency, is the bound now: wait for the slot here if the invocation can.
          const sleepMs = Math.max(0, err.retryAt - now());
          if (sleepMs <= Math.min(MAX_SLEEP_MS, hooks.sleepableMs())) return { sleepMs };
          stop ??= { status: 'deferred', error: err };
          return undefined;
        }
        if (next.done || next.value === undefined) {
          // The client ended the range without a last page (it does not): treat it as read.
          part.done = true;
          break;
        }
        const page = next.value;
        // Records a stopped write of this page finished before are skipped, yet count for the page.
        const doneBefore = part.pageDone?.length ?? 0;
        const records = plan.within(
          part,
          page.records as unknown as Array<{ id: string } & Record<string, unknown>>,
        );
        const out = await writing(() => hooks.write(records));
        if (out.stopped) {
          stop ??= { status: 'write-stopped' };
          pagesToReadAgain++;
          // What the write finished stays done: the page read again in the next message skips it.
          if (out.doneIds.length > 0) {
            plan.keepDone(part, out.doneIds);
            await hooks.save(plan.snapshot(), {
              records: 0,
              requests: page.requests,
              ms: performance.now() - started,
              partial: true,
            });
          }
          return undefined;
        }
        plan.advance(part, page);
        await hooks.save(plan.snapshot(), {
          records: records.length + doneBefore,
          requests: page.requests,
          ms: performance.now() - started,
        });
      }
      return undefined;
    } finally {
      await pages.return(undefined);
    }
  };

  const reader = async (): Promise<void> => {
    for (;;) {
      if (stopped()) return;
      const part = plan.take();
      if (!part) return;
      try {
        // A range whose slot was deferred is read on after the wait, from its saved token.
        for (;;) {
          const wait = await readRange(part);
          if (!wait) break;
          await sleep(wait.sleepMs);
        }
      } catch (error) {
        failure ??= { error };
        return;
      } finally {
        plan.release(part);
      }
    }
  };

  await Promise.all(Array.from({ length: Math.max(1, readers) }, () => reader()));
  if (failure) throw failure.error;
  if (stop?.status === 'deferred') return stop;
  if (stop) return { status: stop.status, pagesToReadAgain };
  return plan.done ? { status: 'done' } : { status: 'out-of-time', pagesToReadAgain };
}
