// Use case: one REST hook event job. Hook payloads carry ids only, so the records are read again by id
// through the Keap client (and so the ledger), batched by the list's id filter, and written newer-wins;
// ids Keap no longer has become tombstones. Tag applications are read per tag.
import type { AccountConfig } from '../config/app-config.ts';
import type { HookEventJob } from '../hooks/job.ts';
import { type KeapClient, NotFoundError, QuotaDeferredError } from '../keap/index.ts';
import { RESOURCES, updateTimeOf } from '../keap/resources.ts';
import type { MirrorRecord, MirrorTombstone } from '../store/index.ts';
import { CustomFieldNamer } from './custom-fields.ts';
import type { PipelineDeps } from './deps.ts';
import type { Log } from './ports.ts';
import { deferralDelayMs } from './queue.ts';
import { applicationRecord, vanishedApplications } from './tag-applications.ts';

/**
 * How far before the delivery's receipt a tag's contacts are read for an `applied` event: Keap sends
 * `contactGroup.applied` 5-10 minutes after the change and retries for about 36 minutes more.
 */
export const APPLIED_LOOKBACK_MS = 60 * 60_000;

export type HookEventOutcome =
  | { status: 'done'; written: number; stale: number; tombstoned: number; unchanged: number }
  | { status: 'deferred'; retryAt: number; reason: string };

interface Changes {
  upserts: MirrorRecord[];
  tombstones: MirrorTombstone[];
}

export async function runHookEvent(
  job: HookEventJob,
  account: AccountConfig,
  client: KeapClient,
  deps: PipelineDeps,
  log: Log,
): Promise<HookEventOutcome> {
  const { mirror, metrics, queue, ledger } = deps;
  const dims = { account: account.id, resource: job.resource };
  const resource = job.resource;
  let changes: Changes;
  try {
    changes =
      resource === 'tagApplications'
        ? await tagApplicationChanges(job, client, () => ledger.now(), mirror)
        : await refetchChanges(resource, job, client, () => ledger.now(), log);
    const namer = new CustomFieldNamer({
      models: deps.models,
      settings: deps.config.customFields,
      log,
      metrics,
      now: () => ledger.now(),
    });
    changes.upserts = await namer.name(account.id, resource, changes.upserts, client);
  } catch (err) {
    if (!(err instanceof QuotaDeferredError)) throw err;
    // Nothing is written before every read is done, so the next attempt starts afresh.
    await queue.requeue(job, deferralDelayMs(err.retryAt, ledger.now()));
    metrics.add('Deferrals', 1, { ...dims, reason: err.reason });
    log.info('The quota ledger deferred the hook job; it comes back through the queue', {
      reason: err.reason,
      retryAt: new Date(err.retryAt).toISOString(),
    });
    return { status: 'deferred', retryAt: err.retryAt, reason: err.reason };
  }
  const written = await mirror.upsertMany(account.id, job.resource, changes.upserts);
  const deleted = await mirror.tombstoneMany(account.id, job.resource, changes.tombstones);
  metrics.add('RecordsWritten', written.written, dims);
  if (written.skippedStale) metrics.add('RecordsStale', written.skippedStale, dims);
  if (deleted.tombstoned) metrics.add('RecordsDeleted', deleted.tombstoned, dims);
  const lag = ledger.now() - Date.parse(job.receivedAt);
  if (lag >= 0) metrics.add('HookLagMs', lag, dims);
  log.info('Hook event applied to the mirror', {
    event: job.event,
    ids: job.ids.length,
    written: written.written,
    stale: written.skippedStale,
    tombstoned: deleted.tombstoned,
    unchanged: deleted.unchanged,
  });
  return {
    status: 'done',
    written: written.written,
    stale: written.skippedStale,
    tombstoned: deleted.tombstoned,
    unchanged: deleted.unchanged,
  };
}

/**
 * Any event of a list other than tag applications: the ids are read again (a delete is trusted only
 * once Keap no longer returns the record; Keap signs no delivery). Found records are upserted; missing
 * ones are tombstoned as of the moment Keap answered without them.
 */
async function refetchChanges(
  resource: Exclude<HookEventJob['resource'], 'tagApplications'>,
  job: HookEventJob,
  client: KeapClient,
  now: () => number,
  log: Log,
): Promise<Changes> {
  const spec = RESOURCES[resource];
  const read = await client.getByIds(resource, job.ids);
  const answeredAt = now();
  const upserts = read.records.map((rec) => {
    const data = rec as unknown as Record<string, unknown>;
    return { id: rec.id, updateTimeMs: updateTimeOf(spec, data) ?? 0, data };
  });
  if (job.event === 'delete' && upserts.length > 0) {
    log.warn('A delete event named records Keap still has: they are kept', {
      stillPresent: upserts.length,
    });
  }
  return { upserts, tombstones: read.missing.map((id) => ({ id, deletedAtMs: answeredAt })) };
}

/**
 * Tag applications, ids `<tagId>:<contactId>` or a bare tag id. `removed` tombstones the applications
 * as of the delivery's receipt (an application re-applied later, with a later update time, survives
 * and replaces it). `applied` reads each tag's contacts applied since an hour before the receipt and
 * upserts the named ones; one not seen in that window is written as the id says (receipt time), so
 * whichever of an `applied` and a later `removed` is handled first, the removal wins. A bare tag id
 * re-reads all of that tag's contacts. A tag Keap no longer has tombstones its named applications.
 */
async function tagApplicationChanges(
  job: HookEventJob,
  client: KeapClient,
  now: () => number,
  mirror?: PipelineDeps['mirror'],
): Promise<Changes> {
  const receivedMs = Date.parse(job.receivedAt);
  const pairs = new Map<string, Set<string>>();
  const wholeTags = new Set<string>();
  for (const id of job.ids) {
    const [tagId = '', contactId] = id.split(':');
    if (contactId === undefined) wholeTags.add(tagId);
    else pairs.set(tagId, (pairs.get(tagId) ?? new Set()).add(contactId));
  }
  const changes: Changes = { upserts: [], tombstones: [] };
  if (job.event === 'removed') {
    for (const [tagId, contacts] of pairs)
      for (const c of contacts) changes.tombstones.push({ id: `${tagId}:${c}`, deletedAtMs: receivedMs });
  }
  const toRead = new Set([...wholeTags, ...(job.event === 'applied' ? pairs.keys() : [])]);
  const spec = RESOURCES.tagApplications;
  for (const tagId of toRead) {
    const whole = wholeTags.has(tagId);
    const named = job.event === 'applied' ? (pairs.get(tagId) ?? new Set<string>()) : new Set<string>();
    const seen = new Set<string>();
    const readStartedAt = now();
    try {
      for await (const page of client.pages('tagApplications', {
        tagId,
        ...(whole ? {} : { since: receivedMs - APPLIED_LOOKBACK_MS, overlapMs: 0 }),
      })) {
        for (const rec of page.records) {
          if (!whole && !named.has(rec.id)) continue;
          seen.add(rec.id);
          const data = applicationRecord(tagId, rec);
          const applied = updateTimeOf(spec, data) ?? 0;
          changes.upserts.push({
            id: data.id,
            updateTimeMs: whole ? applied : Math.max(applied, receivedMs),
            data,
          });
        }
      }
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      // The tag is gone, and every application of it with it.
      const at = now();
      for (const c of named) changes.tombstones.push({ id: `${tagId}:${c}`, deletedAtMs: at });
      if (whole)
        changes.tombstones.push(...(await vanishedApplications(mirror, job.account, tagId, seen, at, at)));
      continue;
    }
    // A whole tag was read (Keap's documented payload names the tag only): every application of it the
    // mirror holds and Keap no longer lists was removed, as a sweep of that one tag would find.
    if (whole)
      changes.tombstones.push(
        ...(await vanishedApplications(mirror, job.account, tagId, seen, readStartedAt, now())),
      );
    for (const c of named) {
      if (seen.has(c)) continue;
      changes.upserts.push({
        id: `${tagId}:${c}`,
        updateTimeMs: receivedMs,
        data: applicationRecord(tagId, { id: c }),
      });
    }
  }
  return changes;
}
