// Domain: tag applications as a synced list. Keap serves them per tag (`GET /tags/{id}/contacts`,
// filtered and ordered by applied time), so one list is a walk over every tag: the tag ids are read
// (a call per 1,000 tags, in id order), then each tag's contacts, incrementally by applied time. A
// mirror record is one application, id `<tagId>:<contactId>`, holding the tag, the contact and the
// applied time only (the contact's name and email belong to the contacts mirror, where they stay
// current; copied here they would go stale on every contact edit). The walk's page token says where
// it is, `tag:<tagId>` (that tag's first page) or `tag:<tagId>:<Keap's token>`, so a run continued in
// a new message, or resumed from its checkpoint, picks up at the tag it had reached.
import { type KeapClient, NotFoundError } from '../keap/index.ts';
import type { SyncResource } from '../keap/registry.ts';
import { RESOURCES, updateTimeOf } from '../keap/resources.ts';
import type { Priority } from '../quota/index.ts';
import type { MirrorTombstone } from '../store/mirror.ts';
import type { Mirror } from './stores.ts';

/** One page of a synced list as the sync and the sweep consume it. */
export interface ListPage {
  records: Array<{ id: string } & Record<string, unknown>>;
  /** Where to resume after this page; undefined when the list is done. */
  nextPageToken: string | undefined;
  done: boolean;
  /** HTTP requests this page took (the tag list's reads are counted on the first page after them). */
  requests: number;
  /** Tag applications: the tag this page belongs to, and whether it was the tag's last page. */
  tag?: { id: string; done: boolean };
  /** Tag applications, first page of a walk only: every tag id Keap listed. */
  tags?: readonly string[];
}

export interface ListPageOptions {
  /** Epoch ms, or an ISO-8601 time (a job's `cursor`). */
  since?: number | string;
  pageToken?: string;
  priority?: Priority;
  /** Ids only (the sweep): Keap's default fields, the largest page. */
  idsOnly?: boolean;
}

const TOKEN = /^tag:([0-9]{1,20})(?::(.+))?$/s;

/** A page token of the tag walk that cannot be one (a corrupted checkpoint, another list's token). */
export class TagWalkTokenError extends Error {
  constructor(token: string) {
    super(
      `The tag applications page token "${token.slice(0, 40)}" is not "tag:<tagId>[:<token>]"; ` +
        'clear the list checkpoint (keap-sync restart) to start the walk again.',
    );
    this.name = 'TagWalkTokenError';
  }
}

/** The mirror record of one application: composite id, tag, contact and applied time. */
export function applicationRecord(
  tagId: string,
  contact: { id: string; applied_time?: string | null },
): { id: string; tag_id: string; contact_id: string; applied_time: string | null } {
  return {
    id: `${tagId}:${contact.id}`,
    tag_id: tagId,
    contact_id: contact.id,
    applied_time: contact.applied_time ?? null,
  };
}

/**
 * Calls one read of every application costs: a call per 1,000 tags, then at least one per tag (an
 * empty tag still answers one page) and one per further 1,000 applications. `changed` bounds the
 * applications an incremental read finds (default: all of them).
 */
export function tagApplicationCalls(tags: number, applications: number, changed = applications): number {
  const t = Math.max(0, Math.round(tags));
  const read = Math.min(applications, changed);
  return Math.max(1, Math.ceil(t / 1000)) + t + Math.floor(Math.max(0, read) / 1000);
}

/** The ids of every tag Keap has, in numeric order, and the calls the read took. */
async function tagIds(
  client: KeapClient,
  priority: Priority | undefined,
): Promise<{ ids: string[]; requests: number }> {
  const ids: string[] = [];
  let requests = 0;
  for await (const page of client.pages('tags', {
    pageSize: RESOURCES.tags.maxPageSize,
    ...(priority ? { priority } : {}),
  })) {
    requests += page.requests;
    for (const tag of page.records) ids.push(String(tag.id));
  }
  ids.sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0));
  return { ids: [...new Set(ids)], requests };
}

/**
 * Pages of every tag's applications, in tag order, from `pageToken` when resuming. A tag deleted
 * while the walk runs is passed over (its applications went with it; the next sweep tombstones them).
 */
export async function* tagApplicationPages(
  client: KeapClient,
  options: ListPageOptions = {},
): AsyncGenerator<ListPage, void, undefined> {
  let fromTag: bigint | undefined;
  let innerToken: string | undefined;
  if (options.pageToken !== undefined) {
    const m = TOKEN.exec(options.pageToken);
    if (!m?.[1]) throw new TagWalkTokenError(options.pageToken);
    fromTag = BigInt(m[1]);
    innerToken = m[2];
  }
  const tags = await tagIds(client, options.priority);
  let pending = tags.requests;
  const walk = fromTag === undefined ? tags.ids : tags.ids.filter((t) => BigInt(t) >= (fromTag as bigint));
  // The resumed tag's own token applies only if that tag still exists.
  if (walk[0] === undefined || BigInt(walk[0]) !== fromTag) innerToken = undefined;
  const spec = RESOURCES.tagApplications;
  let ended = false;
  let first = true;
  for (const [i, tagId] of walk.entries()) {
    const nextTag = walk[i + 1];
    const last = nextTag === undefined;
    try {
      for await (const page of client.pages('tagApplications', {
        tagId,
        ...(options.since !== undefined ? { since: options.since } : {}),
        ...(i === 0 && innerToken !== undefined ? { pageToken: innerToken } : {}),
        ...(options.idsOnly ? { pageSize: spec.maxPageSize } : {}),
        ...(options.priority ? { priority: options.priority } : {}),
      })) {
        const more = !page.done && page.nextPageToken !== undefined;
        const records = page.records.map((rec) => applicationRecord(tagId, rec));
        yield {
          records,
          nextPageToken: more ? `tag:${tagId}:${page.nextPageToken}` : last ? undefined : `tag:${nextTag}`,
          done: !more && last,
          requests: page.requests + pending,
          tag: { id: tagId, done: !more },
          ...(first ? { tags: tags.ids } : {}),
        };
        pending = 0;
        first = false;
        ended = !more && last;
        if (!more) break;
      }
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
  }
  // Nothing yielded the end (no tags, or the last one vanished): one empty, final page.
  if (!ended)
    yield {
      records: [],
      nextPageToken: undefined,
      done: true,
      requests: pending,
      ...(first ? { tags: tags.ids } : {}),
    };
}

/**
 * The live applications of `tagId` the mirror holds, stored before `before`, that are not in `seen`
 * (contact ids): removed in Keap, as of `at`. Reads that tag's ids only (a key condition on the
 * prefix). Without an iterable mirror, none (a later sweep finds them).
 */
export async function vanishedApplications(
  mirror: Mirror | undefined,
  account: string,
  tagId: string,
  seen: ReadonlySet<string>,
  before: number,
  at: number,
): Promise<MirrorTombstone[]> {
  if (!mirror?.iterate) return [];
  const out: MirrorTombstone[] = [];
  const prefix = `${tagId}:`;
  for await (const item of mirror.iterate(account, 'tagApplications', { prefix })) {
    if (!item.id.startsWith(prefix) || item.deletedAt !== undefined) continue;
    if (seen.has(item.id.slice(prefix.length)) || Date.parse(item.syncedAt) >= before) continue;
    out.push({ id: item.id, deletedAtMs: at });
  }
  return out;
}

/** The pages of any synced list, in the one shape the sync and the sweep read. */
export async function* listPages(
  client: KeapClient,
  resource: SyncResource,
  options: ListPageOptions = {},
): AsyncGenerator<ListPage, void, undefined> {
  if (resource === 'tagApplications') {
    yield* tagApplicationPages(client, options);
    return;
  }
  const spec = RESOURCES[resource];
  for await (const page of client.pages(resource, {
    ...(options.since !== undefined ? { since: options.since } : {}),
    ...(options.pageToken !== undefined ? { pageToken: options.pageToken } : {}),
    ...(options.priority ? { priority: options.priority } : {}),
    ...(options.idsOnly ? { fields: [], pageSize: spec.maxPageSize } : {}),
  })) {
    yield {
      records: page.records as unknown as ListPage['records'],
      nextPageToken: page.nextPageToken,
      done: page.done,
      requests: page.requests,
    };
  }
}

/** A record's update time for the mirror's newer-wins rule (applied time for tag applications). */
export function listUpdateTime(resource: SyncResource, data: Record<string, unknown>): number {
  return updateTimeOf(RESOURCES[resource], data) ?? 0;
}
