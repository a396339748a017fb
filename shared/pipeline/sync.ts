// Use case: one sync job. Pages while the invocation has time, writes each page to the mirror and
// checkpoints after it (so a crash resumes from the last page), then continues in a new message or
// advances the resource's cursor.
import { randomUUID } from 'node:crypto';
import type { AccountConfig } from '../config/app-config.ts';
import type { SyncJob } from '../jobs/schema.ts';
import { type KeapClient, QuotaDeferredError } from '../keap/index.ts';
import { RESOURCES, updateTimeOf } from '../keap/resources.ts';
import type { PipelineDeps } from './deps.ts';
import type { Log } from './ports.ts';
import { deferralDelayMs } from './queue.ts';

export interface Invocation {
  /** Milliseconds left in this invocation (Lambda's context.getRemainingTimeInMillis). */
  remainingMs(): number;
}

export type SyncOutcome =
  | { status: 'finished'; pages: number; records: number; highWaterMs: number | null }
  | { status: 'continued'; pages: number; records: number }
  | { status: 'deferred'; retryAt: number; reason: string }
  | { status: 'skipped'; reason: 'busy' };

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
  // The run id is the lease's one owner token: the scheduler took the lease for this run; an
  // on-demand job takes it here.
  if (!(await leases.claim(account.id, resource, runId, ttl))) {
    log.info('Another job is already syncing this resource; this one is dropped', { runId });
    metrics.add('JobsSkipped', 1, { ...dims, reason: 'busy' });
    return { status: 'skipped', reason: 'busy' };
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
  let runHigh = checkpoint.pageHighWaterMs;
  let pages = 0;
  let records = 0;
  log.info(started.status === 'resumed' ? 'Resuming sync from its checkpoint' : 'Starting sync', {
    runId,
    mode: job.mode,
    since: since === undefined ? null : new Date(since).toISOString(),
    fromPage: checkpoint.pages,
  });
  try {
    const iterator = client.pages(resource, {
      since,
      pageToken: checkpoint.pageToken ?? undefined,
      priority: 'bulk',
    });
    for await (const page of iterator) {
      const rows = page.records.map((rec) => {
        const data = rec as unknown as Record<string, unknown>;
        return { id: rec.id, updateTimeMs: updateTimeOf(spec, data) ?? 0, data };
      });
      const written = await mirror.upsertMany(account.id, resource, rows);
      for (const row of rows)
        if (row.updateTimeMs > 0 && (runHigh === null || row.updateTimeMs > runHigh))
          runHigh = row.updateTimeMs;
      await runs.checkpoint(account.id, resource, runId, {
        pageToken: page.nextPageToken ?? null,
        pageHighWaterMs: runHigh,
        pagesDelta: 1,
        recordsDelta: rows.length,
      });
      pages++;
      records += rows.length;
      metrics.add('Pages', 1, dims);
      metrics.add('RecordsWritten', written.written, dims);
      if (written.skippedStale) metrics.add('RecordsStale', written.skippedStale, dims);
      if (page.done) break;
      if (invocation.remainingMs() < config.worker.safetyMarginMs) {
        await iterator.return(undefined);
        await queue.requeue({ ...job, runId });
        await leases.renew(account.id, resource, runId, ttl);
        log.info('Out of invocation time: continuing in a new message', { runId, pages, records });
        return { status: 'continued', pages, records };
      }
    }
  } catch (err) {
    if (!(err instanceof QuotaDeferredError)) throw err;
    const waitMs = deferralDelayMs(err.retryAt, ledger.now());
    await queue.requeue({ ...job, runId }, waitMs);
    await leases.renew(account.id, resource, runId, ttl + waitMs);
    metrics.add('Deferrals', 1, { ...dims, reason: err.reason });
    log.info('The quota ledger deferred the job; it comes back through the queue', {
      runId,
      reason: err.reason,
      retryAt: new Date(err.retryAt).toISOString(),
    });
    return { status: 'deferred', retryAt: err.retryAt, reason: err.reason };
  }
  const highWaterMs = runHigh ?? cursor.highWaterMs;
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
