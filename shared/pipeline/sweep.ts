// Use case: the reconciliation sweep of one list. Keap lists no deletions, so every id is read (the
// list's cheapest form: no `fields`, Keap's defaults only, the largest page) and compared with the
// mirror; a live record the mirror holds and Keap no longer lists is tombstoned as of the moment the
// read finished. Only records stored before the sweep began can be tombstoned, so a record created
// and mirrored (by a hook) while the ids were being read is never taken for a deleted one. A sweep
// that cannot finish inside the invocation keeps the ids it read in the state table (deps.sweeps) and
// continues in a new message from Keap's page token; only the message that reads the last page
// compares and tombstones. Tag applications are swept tag by tag (sweepTagApplications).
import { randomUUID } from 'node:crypto';
import type { AccountConfig } from '../config/app-config.ts';
import type { SweepJob } from '../jobs/schema.ts';
import { type KeapClient, QuotaDeferredError } from '../keap/index.ts';
import { RESOURCES } from '../keap/resources.ts';
import type { PipelineDeps } from './deps.ts';
import type { Log } from './ports.ts';
import { deferralDelayMs } from './queue.ts';
import type { Invocation } from './sync.ts';
import { listPages, tagApplicationCalls, vanishedApplications } from './tag-applications.ts';

export type SweepOutcome =
  | { status: 'done'; listed: number; mirrored: number; tombstoned: number; calls: number }
  | { status: 'continued'; listed: number; tombstoned: number; calls: number }
  | { status: 'deferred'; retryAt: number; reason: string }
  | { status: 'incomplete'; listed: number; calls: number };

/**
 * Calls one sweep of a list of `records` records costs: a page of ids per call (at least one); for
 * tag applications, the walk over `tags` tags.
 */
export function sweepCalls(resource: SweepJob['resource'], records: number, tags = 0): number {
  if (resource === 'tagApplications') return tagApplicationCalls(tags, records);
  return Math.max(1, Math.ceil(records / RESOURCES[resource].maxPageSize));
}

/** The mirror cannot be read by the sweep (a port without `iterate`). */
export class SweepUnsupportedError extends Error {
  constructor() {
    super('The mirror given to the sweep cannot be iterated; the reconciliation sweep needs MirrorStore.');
    this.name = 'SweepUnsupportedError';
  }
}

export async function runSweep(
  job: SweepJob,
  account: AccountConfig,
  client: KeapClient,
  deps: PipelineDeps,
  invocation: Invocation,
  log: Log,
): Promise<SweepOutcome> {
  const { mirror, metrics, queue, ledger, config } = deps;
  if (!mirror.iterate) throw new SweepUnsupportedError();
  if (job.resource === 'tagApplications')
    return sweepTagApplications(job, account, client, deps, invocation, log);
  const { resource } = job;
  const dims = { account: account.id, resource };
  const startedAt = job.startedAtMs ?? ledger.now();
  const runId = job.runId ?? randomUUID();
  const chunks = job.chunks ?? 0;
  const listed = new Set<string>();
  let calls = 0;
  const fresh: string[] = [];
  try {
    for await (const page of listPages(client, resource, {
      idsOnly: true,
      priority: 'bulk',
      ...(job.pageToken ? { pageToken: job.pageToken } : {}),
    })) {
      calls += page.requests;
      for (const record of page.records) {
        listed.add(record.id);
        fresh.push(record.id);
      }
      if (!page.done && invocation.remainingMs() < config.worker.safetyMarginMs) {
        if (!deps.sweeps || !page.nextPageToken) {
          log.warn(
            'Sweep stopped: the invocation has no time left; nothing tombstoned, the next sweep retries',
            {
              listed: listed.size,
              calls,
            },
          );
          return { status: 'incomplete', listed: listed.size, calls };
        }
        // Keep what was read, and read the rest in a new message from this page's token.
        const next = await deps.sweeps.save(runId, chunks, fresh);
        await queue.requeue({
          ...job,
          runId,
          pageToken: page.nextPageToken,
          startedAtMs: startedAt,
          chunks: next,
        });
        metrics.add('SweepCalls', calls, dims);
        log.info('Sweep continued in a new message', { listed: listed.size, calls, chunks: next });
        return { status: 'continued', listed: listed.size, tombstoned: 0, calls };
      }
    }
  } catch (err) {
    if (!(err instanceof QuotaDeferredError)) throw err;
    // The same message again: it resumes where the ids saved so far end (its own reads are redone).
    await queue.requeue(job, deferralDelayMs(err.retryAt, ledger.now()));
    metrics.add('Deferrals', 1, { ...dims, reason: err.reason });
    log.info('The quota ledger deferred the sweep; it comes back through the queue', { reason: err.reason });
    return { status: 'deferred', retryAt: err.retryAt, reason: err.reason };
  }
  // The ids earlier messages of this sweep read.
  if (chunks > 0 && deps.sweeps) for (const id of await deps.sweeps.load(runId)) listed.add(id);
  const answeredAt = ledger.now();
  const gone: string[] = [];
  let mirrored = 0;
  for await (const item of mirror.iterate(account.id, resource)) {
    if (item.deletedAt !== undefined) continue;
    mirrored++;
    if (!listed.has(item.id) && Date.parse(item.syncedAt) < startedAt) gone.push(item.id);
  }
  const result = await mirror.tombstoneMany(
    account.id,
    resource,
    gone.map((id) => ({ id, deletedAtMs: answeredAt })),
  );
  if (result.tombstoned) metrics.add('RecordsDeleted', result.tombstoned, dims);
  metrics.add('SweepCalls', calls, dims);
  if (chunks > 0 && deps.sweeps)
    await deps.sweeps.clear(runId, chunks).catch((e: unknown) => {
      log.warn('Could not delete the ids a finished sweep kept; their TTL removes them', {
        error: e instanceof Error ? e.name : String(e),
      });
    });
  // What Keap listed is the list's size: the scheduler budgets the next full read or sweep from it.
  await deps.runs.recordListSize(account.id, resource, listed.size).catch((e: unknown) => {
    log.warn("Could not record the list's size the sweep found; the scheduler keeps the last one", {
      error: e instanceof Error ? e.name : String(e),
    });
  });
  log.info('Sweep finished', { listed: listed.size, mirrored, tombstoned: result.tombstoned, calls });
  return { status: 'done', listed: listed.size, mirrored, tombstoned: result.tombstoned, calls };
}

/**
 * The sweep of tag applications, tag by tag: once a tag's contacts are all read, the applications of
 * it the mirror holds (stored before the sweep began) and Keap no longer lists are tombstoned, so a
 * sweep out of invocation time keeps what it found and continues in a new message from the next tag
 * (`pageToken`, with the sweep's start). After the last tag, the applications of tags Keap no longer
 * has are tombstoned too.
 */
async function sweepTagApplications(
  job: SweepJob,
  account: AccountConfig,
  client: KeapClient,
  deps: PipelineDeps,
  invocation: Invocation,
  log: Log,
): Promise<SweepOutcome> {
  const { mirror, metrics, queue, ledger, config } = deps;
  const dims = { account: account.id, resource: job.resource };
  const startedAt = job.startedAtMs ?? ledger.now();
  let calls = 0;
  let listed = 0;
  let tombstoned = 0;
  let tagIds: readonly string[] = [];
  let seen = new Set<string>();
  let resumeFrom = job.pageToken;
  const tombstone = async (gone: Array<{ id: string; deletedAtMs: number }>) => {
    if (gone.length === 0) return;
    const r = await mirror.tombstoneMany(account.id, job.resource, gone);
    tombstoned += r.tombstoned;
  };
  const report = () => {
    if (tombstoned) metrics.add('RecordsDeleted', tombstoned, dims);
    metrics.add('SweepCalls', calls, dims);
  };
  try {
    for await (const page of listPages(client, job.resource, {
      idsOnly: true,
      priority: 'bulk',
      ...(job.pageToken ? { pageToken: job.pageToken } : {}),
    })) {
      calls += page.requests;
      if (page.tags) tagIds = page.tags;
      for (const r of page.records) seen.add(String(r.contact_id));
      listed += page.records.length;
      if (page.tag?.done) {
        await tombstone(
          await vanishedApplications(mirror, account.id, page.tag.id, seen, startedAt, ledger.now()),
        );
        seen = new Set();
        if (page.nextPageToken) resumeFrom = page.nextPageToken;
        // A tag finished and the invocation is short of time: the rest of the walk in a new message.
        if (!page.done && page.nextPageToken && invocation.remainingMs() < config.worker.safetyMarginMs) {
          await queue.requeue({ ...job, pageToken: page.nextPageToken, startedAtMs: startedAt });
          report();
          log.info('Sweep continued in a new message', {
            listed,
            tombstoned,
            calls,
            next: page.nextPageToken,
          });
          return { status: 'continued', listed, tombstoned, calls };
        }
      }
    }
  } catch (err) {
    if (!(err instanceof QuotaDeferredError)) throw err;
    // Resumes at the tag it was reading (the finished ones are tombstoned already).
    const next = resumeFrom === undefined ? job : { ...job, pageToken: resumeFrom, startedAtMs: startedAt };
    await queue.requeue(next, deferralDelayMs(err.retryAt, ledger.now()));
    report();
    metrics.add('Deferrals', 1, { ...dims, reason: err.reason });
    log.info('The quota ledger deferred the sweep; it comes back through the queue', { reason: err.reason });
    return { status: 'deferred', retryAt: err.retryAt, reason: err.reason };
  }
  // The walk is complete: applications of tags Keap no longer lists went with their tag.
  const known = new Set(tagIds);
  const at = ledger.now();
  const orphans: Array<{ id: string; deletedAtMs: number }> = [];
  let mirrored = 0;
  for await (const item of mirror.iterate?.(account.id, job.resource) ?? []) {
    if (item.deletedAt !== undefined) continue;
    mirrored++;
    const tagId = item.id.slice(0, item.id.indexOf(':'));
    if (!known.has(tagId) && Date.parse(item.syncedAt) < startedAt)
      orphans.push({ id: item.id, deletedAtMs: at });
  }
  await tombstone(orphans);
  report();
  log.info('Sweep finished', { listed, mirrored, tombstoned, calls, tags: known.size });
  return { status: 'done', listed, mirrored, tombstoned, calls };
}
