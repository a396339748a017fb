// Use case: one sync job. Pages while the invocation has time, writes each page to the mirror and
// checkpoints after it (so a crash resumes from the last page), then continues in a new message or
// advances the resource's cursor.
import { randomUUID } from 'node:crypto';
import type { AccountConfig } from '../config/app-config.ts';
import type { SyncJob } from '../jobs/schema.ts';
import { type KeapClient, QuotaDeferredError } from '../keap/index.ts';
import { RESOURCES, updateTimeOf } from '../keap/resources.ts';
import { MirrorWriteStoppedError } from '../store/errors.ts';
import { CustomFieldNamer } from './custom-fields.ts';
import type { PipelineDeps } from './deps.ts';
import { partitionable, probeMaxId, readPartitioned } from './partitioned-read.ts';
import { PartitionPlan } from './partitions.ts';
import type { Log } from './ports.ts';
import { deferralDelayMs } from './queue.ts';
import { listPages } from './tag-applications.ts';

export interface Invocation {
  /** Milliseconds left in this invocation (Lambda's context.getRemainingTimeInMillis). */
  remainingMs(): number;
  /** Told how long each page (read, mirror write, checkpoint) took; shared by the batch's records. */
  pageTook?(ms: number): void;
  /** Time a new page must find left (default worker.safetyMarginMs). */
  reserveMs?(): number;
}

export type SyncOutcome =
  | { status: 'finished'; pages: number; records: number; highWaterMs: number | null }
  | { status: 'continued'; pages: number; records: number }
  | { status: 'deferred'; retryAt: number; reason: string }
  | { status: 'skipped'; reason: 'busy' | 'finished' | 'stale' | 'duplicate' };

export async function runSync(
  job: SyncJob,
  account: AccountConfig,
  client: KeapClient,
  deps: PipelineDeps,
  invocation: Invocation,
  log: Log,
): Promise<SyncOutcome> {
  const { runs, leases, mirror, queue, metrics, config, ledger } = deps;
  const { resource } = job;
  const dims = { account: account.id, resource };
  const runId = job.runId ?? randomUUID();
  const ttl = config.worker.leaseTtlMs;
  // A redelivered message of a run that already finished (its invocation timed out after the work,
  // say): drop it before taking the lease or calling Keap.
  if (job.runId !== undefined) {
    const before = await runs.getCursor(account.id, resource);
    if (before.lastRunId === runId && before.checkpoint?.runId !== runId) {
      log.info('This sync run already finished; the redelivered message is dropped', { runId });
      metrics.add('JobsSkipped', 1, { ...dims, reason: 'finished' });
      return { status: 'skipped', reason: 'finished' };
    }
  }
  // The run id is the lease's one owner token: the scheduler took the lease for this run; an
  // on-demand job takes it here. The claim is fenced by the attempt, so a message SQS delivered twice
  // is run by one invocation only.
  const claim = await leases.claimInvocation(
    account.id,
    resource,
    runId,
    job.attempt,
    ttl,
    Math.ceil(ledger.now() + invocation.remainingMs() + 1_000),
  );
  if (claim.status === 'busy') {
    log.info('Another job is already syncing this resource; this one is dropped', { runId });
    metrics.add('JobsSkipped', 1, { ...dims, reason: 'busy' });
    return { status: 'skipped', reason: 'busy' };
  }
  if (claim.status === 'stale') {
    log.info('A later attempt of this sync run has run; this older copy is dropped', {
      runId,
      heldAttempt: claim.heldAttempt,
    });
    metrics.add('JobsSkipped', 1, { ...dims, reason: 'stale' });
    return { status: 'skipped', reason: 'stale' };
  }
  if (claim.status === 'duplicate') {
    // Another invocation runs this very message now. This copy comes back once that invocation has
    // surely ended: then it is dropped (the run finished or went on) or takes over (it crashed).
    const waitMs = Math.max(1_000, claim.heldUntilMs - ledger.now() + 1_000);
    await queue.send(job, waitMs);
    log.info('This message is being run by another invocation (delivered twice); it is checked again later', {
      runId,
      retryInMs: Math.round(waitMs),
    });
    metrics.add('JobsSkipped', 1, { ...dims, reason: 'duplicate' });
    return { status: 'skipped', reason: 'duplicate' };
  }
  const started = await runs.start(account.id, resource, runId, job.mode);
  if (started.status === 'busy') {
    log.info('Another run holds this resource; this job is dropped', {
      runId,
      activeRunId: started.activeRunId,
    });
    metrics.add('JobsSkipped', 1, { ...dims, reason: 'busy' });
    return { status: 'skipped', reason: 'busy' };
  }
  const checkpoint = started.checkpoint;
  const cursor = await runs.getCursor(account.id, resource);
  const since = job.mode === 'incremental' ? (job.cursor ?? cursor.highWaterMs ?? undefined) : undefined;
  const spec = RESOURCES[resource];
  const namer = new CustomFieldNamer({
    models: deps.models,
    settings: config.customFields,
    log,
    metrics,
    now: () => ledger.now(),
  });
  let runHigh = checkpoint.pageHighWaterMs;
  /** The run's high-water mark, raised by records now in the mirror. */
  const raiseHigh = (high: number | null): void => {
    if (high !== null && (runHigh === null || high > runHigh)) runHigh = high;
  };
  let pages = 0;
  let records = 0;
  log.info(started.status === 'resumed' ? 'Resuming sync from its checkpoint' : 'Starting sync', {
    runId,
    mode: job.mode,
    since: since === undefined ? null : new Date(since).toISOString(),
    fromPage: checkpoint.pages,
  });
  try {
    const reserveMs = () => invocation.reserveMs?.() ?? config.worker.safetyMarginMs;
    /** Out of invocation time: the rest of the run in a new message, from the last checkpoint. */
    const continueInNewMessage = async (fields: Record<string, unknown>): Promise<SyncOutcome> => {
      // Progress made clears the transient-failure count; a job that did nothing keeps it.
      await queue.requeue({ ...job, runId, ...(pages > 0 ? { failures: undefined } : {}) });
      // The continuation is queued: from here nothing may fail the job, or its retry would be a
      // second copy of the run (two chains paging the same list until one finishes).
      await renewAfterRequeue(leases, account.id, resource, runId, ttl, log);
      log.info('Out of invocation time: continuing in a new message', { runId, pages, records, ...fields });
      return { status: 'continued', pages, records };
    };
    /** Names a page's custom fields and writes it; `stopped` when the invocation must hand over. */
    const writePage = async (
      records: ReadonlyArray<{ id: string } & Record<string, unknown>>,
    ): Promise<
      | { rows: number; written: number; skippedStale: number; high: number | null }
      | { stopped: { doneIds: readonly string[]; high: number | null } }
    > => {
      const rows = await namer.name(
        account.id,
        resource,
        records.map((data) => ({ id: data.id, updateTimeMs: updateTimeOf(spec, data) ?? 0, data })),
        client,
      );
      // The write stops where the invocation must hand over (half the safety margin before its end).
      const writeMs = Math.max(0, invocation.remainingMs() - config.worker.safetyMarginMs / 2);
      let written: Awaited<ReturnType<typeof mirror.upsertMany>>;
      try {
        written = await mirror.upsertMany(account.id, resource, rows, {
          signal: AbortSignal.timeout(writeMs),
        });
      } catch (err) {
        if (!(err instanceof MirrorWriteStoppedError)) throw err;
        const done = new Set(err.doneIds);
        return { stopped: { doneIds: err.doneIds, high: highOf(rows.filter((r) => done.has(r.id))) } };
      }
      const high = highOf(rows);
      metrics.add('Pages', 1, dims);
      metrics.add('RecordsWritten', written.written, dims);
      if (written.skippedStale) metrics.add('RecordsStale', written.skippedStale, dims);
      return { rows: rows.length, ...written, high };
    };
    // A full read of a list Keap filters by id comparison goes on in parallel id ranges once its first
    // page shows there is more than one (a one-page list costs no extra call); a run resumed from a
    // page token goes on one page after another.
    const pageSize = client.settings.pageSize;
    let plan =
      checkpoint.partitions === undefined
        ? undefined
        : PartitionPlan.resume(resource, checkpoint.partitions, { pageSize });
    const mayPartition =
      plan === undefined &&
      since === undefined &&
      partitionable(resource) &&
      config.worker.partitions > 1 &&
      checkpoint.pageToken === null &&
      checkpoint.pages === 0;
    /** After the first page: the ranges the rest of the list is read in, saved in the checkpoint. */
    const planRanges = async (first: ReadonlyArray<{ id: string }>): Promise<PartitionPlan | undefined> => {
      if (!first.every((r) => /^[0-9]{1,20}$/.test(r.id))) {
        log.warn('The list has ids that are not decimal; it is read one page after another', { runId });
        return undefined;
      }
      const at = first.reduce((m, r) => (BigInt(r.id) > m ? BigInt(r.id) : m), 0n);
      const max = await probeMaxId(client, resource);
      if (max === undefined || !/^[0-9]{1,20}$/.test(max)) return undefined;
      const planned = PartitionPlan.initial(at + 1n, BigInt(max), config.worker.partitions, { pageSize });
      await runs.checkpoint(account.id, resource, runId, {
        pageToken: null,
        pageHighWaterMs: runHigh,
        pagesDelta: 0,
        recordsDelta: 0,
        partitions: planned.snapshot(),
      });
      log.info('Reading the rest of the list in id ranges', {
        runId,
        ranges: planned.parts.length,
        fromId: String(at + 1n),
        highestId: max,
      });
      return planned;
    };
    let read = false;
    const iterator = listPages(client, resource, {
      ...(since !== undefined ? { since } : {}),
      ...(checkpoint.pageToken ? { pageToken: checkpoint.pageToken } : {}),
      priority: 'bulk',
    });
    // A write stopped part-way kept what it wrote: the page at the checkpoint's token, read again,
    // skips those records (so a page too big for one invocation's time still gets through).
    let pageToken = checkpoint.pageToken;
    let pageDone = new Set(checkpoint.pageDone ?? []);
    // However the loop ends, the page iterator is closed: ledger slots it reserved go back.
    try {
      while (!read && plan === undefined) {
        // Start a page only if the invocation (shared by the batch) can hold it and its mirror write.
        if (invocation.remainingMs() < reserveMs()) {
          return await continueInNewMessage({
            remainingMs: Math.round(invocation.remainingMs()),
            reserveMs: Math.round(reserveMs()),
            pagesToReadAgain: 0,
          });
        }
        const pageStarted = performance.now();
        const next = await iterator.next();
        if (next.done) {
          read = true;
          break;
        }
        const page = next.value;
        const todo = pageDone.size === 0 ? page.records : page.records.filter((r) => !pageDone.has(r.id));
        const out = await writePage(todo);
        if ('stopped' in out) {
          // The next message reads this page again and skips what this write finished.
          const { doneIds, high } = out.stopped;
          if (doneIds.length > 0) {
            raiseHigh(high);
            pageDone = new Set([...pageDone, ...doneIds]);
            await runs.checkpoint(account.id, resource, runId, {
              pageToken,
              pageHighWaterMs: runHigh,
              pagesDelta: 0,
              recordsDelta: 0,
              pageDone: [...pageDone],
            });
          }
          return await continueInNewMessage({
            during: 'mirror-write',
            pageRecords: page.records.length,
            pageRecordsDone: pageDone.size,
            pagesToReadAgain: 1,
          });
        }
        raiseHigh(out.high);
        pageToken = page.nextPageToken ?? null;
        pageDone = new Set();
        await runs.checkpoint(account.id, resource, runId, {
          pageToken,
          pageHighWaterMs: runHigh,
          pagesDelta: 1,
          recordsDelta: out.rows + (page.records.length - todo.length),
        });
        invocation.pageTook?.(performance.now() - pageStarted);
        pages++;
        records += out.rows;
        if (page.done) read = true;
        else if (mayPartition && pages === 1) {
          plan = await planRanges(page.records);
          if (plan) break;
        }
      }
    } finally {
      await iterator.return(undefined);
    }
    if (plan && !read) {
      let saves: Promise<unknown> = Promise.resolve();
      const ranges = plan;
      const result = await readPartitioned(
        client,
        resource,
        ranges,
        config.worker.partitions,
        {
          canStartPage: () => invocation.remainingMs() >= reserveMs(),
          sleepableMs: () => invocation.remainingMs() - reserveMs(),
          write: async (rows) => {
            const out = await writePage(rows);
            raiseHigh('stopped' in out ? out.stopped.high : out.high);
            return 'stopped' in out ? { stopped: true, doneIds: out.stopped.doneIds } : { stopped: false };
          },
          save: (saved, page) => {
            if (!page.partial) {
              pages++;
              invocation.pageTook?.(page.ms);
            }
            records += page.records;
            // One checkpoint write at a time, each with the whole plan as it stands.
            const next = saves.then(() =>
              runs.checkpoint(account.id, resource, runId, {
                pageToken: null,
                pageHighWaterMs: runHigh,
                pagesDelta: page.partial ? 0 : 1,
                recordsDelta: page.records,
                partitions: saved,
              }),
            );
            saves = next.catch(() => undefined);
            return next.then(() => undefined);
          },
        },
        { now: () => ledger.now() },
      );
      // Deferred: the ranges read so far are saved; the job comes back when the ledger has slots.
      if (result.status === 'deferred') throw result.error;
      if (result.status !== 'done')
        return await continueInNewMessage(
          result.status === 'write-stopped'
            ? {
                during: 'mirror-write',
                ranges: ranges.parts.length,
                pagesToReadAgain: result.pagesToReadAgain,
              }
            : {
                remainingMs: Math.round(invocation.remainingMs()),
                reserveMs: Math.round(reserveMs()),
                ranges: ranges.parts.length,
                pagesToReadAgain: result.pagesToReadAgain,
              },
        );
    }
  } catch (err) {
    if (!(err instanceof QuotaDeferredError)) throw err;
    const waitMs = deferralDelayMs(err.retryAt, ledger.now());
    await queue.requeue({ ...job, runId }, waitMs);
    await renewAfterRequeue(leases, account.id, resource, runId, ttl + waitMs, log);
    metrics.add('Deferrals', 1, { ...dims, reason: err.reason });
    log.info('The quota ledger deferred the job; it comes back through the queue', {
      runId,
      reason: err.reason,
      retryAt: new Date(err.retryAt).toISOString(),
    });
    return { status: 'deferred', retryAt: err.retryAt, reason: err.reason };
  }
  // The next cursor is the latest update time read, but never past the run's start: a list is read
  // in id order (or tag by tag), so a record changed while the run went on may sit on a page already
  // read, and only a cursor from before the run finds it next time. The cursor never moves back.
  const capped = runHigh === null ? null : Math.min(runHigh, checkpoint.startedAtMs);
  const highWaterMs =
    capped === null
      ? cursor.highWaterMs
      : cursor.highWaterMs === null || job.mode === 'full'
        ? capped
        : Math.max(capped, cursor.highWaterMs);
  // Sync lag (time since a list's last finished run) is the scheduler's to report, every tick.
  await runs.finish(account.id, resource, runId, highWaterMs);
  await leases.release(account.id, resource, runId);
  log.info('Sync finished', {
    runId,
    pages,
    records,
    highWater: highWaterMs === null ? null : new Date(highWaterMs).toISOString(),
  });
  return { status: 'finished', pages, records, highWaterMs };
}

/**
 * Renews the lease of a run whose next message is already queued. A failure (the state table
 * unreachable) is logged, not thrown: the message carries the run on, and a lease that lapses only
 * lets the scheduler start the list sooner (the checkpoint is taken over then).
 */
async function renewAfterRequeue(
  leases: PipelineDeps['leases'],
  account: string,
  resource: string,
  runId: string,
  ttlMs: number,
  log: Log,
): Promise<void> {
  await leases.renew(account, resource, runId, ttlMs).catch((e: unknown) => {
    log.warn('Could not renew the lease of a sync continued in a new message', {
      runId,
      error: e instanceof Error ? e.name : String(e),
    });
  });
}

/** The latest update time of `rows` (0 means unknown), or null. */
function highOf(rows: ReadonlyArray<{ updateTimeMs: number }>): number | null {
  let high: number | null = null;
  for (const row of rows)
    if (row.updateTimeMs > 0 && (high === null || row.updateTimeMs > high)) high = row.updateTimeMs;
  return high;
}
