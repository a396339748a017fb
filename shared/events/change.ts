// Domain (pure): what a change to one mirror item means to the user's systems. From the item before
// and after a write (a DynamoDB stream record in AWS, the mirror's own put locally) to one EventBridge
// entry, or to a reason for publishing nothing. No I/O, no clock: the same pair always gives the same
// entry, which is what makes the event id a de-duplication key.
import { createHash } from 'node:crypto';
import type { SyncResource } from '../jobs/schema.ts';
import { MIRROR_TABLE } from '../store/tables.ts';

/** Every event's `source`. */
export const EVENT_SOURCE = 'keap-sync';

/**
 * EventBridge's limit on one PutEvents entry and on all entries of one request (256 KB), counted as
 * AWS documents it: the UTF-8 bytes of Source, DetailType, Detail and Resources (14 for a Time).
 */
export const MAX_ENTRY_BYTES = 256 * 1024;

/** Entries per PutEvents request. */
export const MAX_ENTRIES_PER_REQUEST = 10;

/** The attribute a tombstone carries (written by the deletions work): a NEW image with it is a deletion. */
export const DELETED_AT_ATTRIBUTE = 'deletedAt';

/** The singular name in `detail-type` of each synced list. A Record, so a new list cannot be forgotten. */
const LIST_NAMES: Record<SyncResource, string> = {
  contacts: 'Contact',
  companies: 'Company',
  orders: 'Order',
  opportunities: 'Opportunity',
  tags: 'Tag',
  tagApplications: 'TagApplication',
  notes: 'Note',
  tasks: 'Task',
  products: 'Product',
  subscriptions: 'Subscription',
  users: 'User',
};

export type ChangeKind = 'created' | 'updated' | 'deleted';

const KIND_WORD: Record<ChangeKind, string> = { created: 'Created', updated: 'Updated', deleted: 'Deleted' };

/** A mirror item as stored (a stream image after unmarshalling, or the item the mirror put). */
export interface MirrorImage {
  pk: string;
  id: string;
  account: string;
  resource: string;
  /** The Keap record; a tombstone may have none. */
  data: Record<string, unknown> | undefined;
  /** Update time, epoch ms. */
  ut: number;
  updateTime: string;
  syncedAt: string | undefined;
  /** Set on a tombstone: the record was deleted in Keap. */
  deletedAt: string | undefined;
  /** Lists with a custom-field model: the record's custom fields by `field_name`, and their id and label. */
  customFields: Record<string, unknown> | undefined;
  customFieldInfo: Record<string, { id: string; label: string }> | undefined;
}

/** Where a record too large for an event can be read. */
export interface RecordPointer {
  table: string;
  pk: string;
  id: string;
}

/** The `detail` of every event. */
export interface ChangeDetail {
  /** Deterministic: the same change always has the same id; de-duplicate on it. */
  eventId: string;
  account: string;
  /** The list's name as configured (contacts, companies, ...). */
  list: string;
  id: string;
  change: ChangeKind;
  /** The record's update time (ISO) and epoch ms: for a deletion, the tombstone's or the last version's. */
  updateTime: string;
  updateTimeMs: number;
  /** Top-level fields of the record that differ from the previous version (all of them on create/delete). */
  changedFields: string[];
  /** The record as Keap returned it (the last version for a deletion); absent when `recordPointer` is set. */
  record?: Record<string, unknown>;
  /**
   * Lists with a custom-field model: the record's custom fields as `{<field_name>: value}` (Keap's raw
   * `custom_fields` stays in `record`), `customFieldInfo` their `{id, label}`, and `changedCustomFields`
   * the names whose value differs from the previous version. Absent with `recordPointer`.
   */
  customFields?: Record<string, unknown>;
  customFieldInfo?: Record<string, { id: string; label: string }>;
  changedCustomFields?: string[];
  /** Set instead of `record` when the event would exceed EventBridge's 256 KB: read the record there. */
  recordPointer?: RecordPointer;
  /** When keap-sync wrote this version to the mirror. */
  syncedAt?: string;
}

/** A PutEvents entry (the SDK's shape, narrowed to what keap-sync sets). */
export interface ChangeEntry {
  Source: string;
  DetailType: string;
  Detail: string;
  EventBusName: string;
}

export interface BuiltEvent {
  kind: 'event';
  entry: ChangeEntry;
  detail: ChangeDetail;
  /** Identifies the record (pk and id): entries of one record must be published in order. */
  recordKey: string;
  /** The entry's size as EventBridge counts it. */
  bytes: number;
  /** The record was replaced by a pointer to fit. */
  oversize: boolean;
}

export type SkipReason =
  /** Nothing the user can see changed (an idempotent rewrite, or only syncedAt moved). */
  | 'unchanged'
  /** The new version is not newer than the old one (the mirror's newer-wins makes this rare). */
  | 'not-newer'
  /** A tombstone rewritten, or a REMOVE of a tombstone: the deletion was already published. */
  | 'already-deleted';

export interface SkippedChange {
  kind: 'skip';
  reason: SkipReason;
}

export interface BuildOptions {
  /** The bus every entry is put on. */
  eventBusName: string;
  /** The mirror table's name, for pointers. */
  tableName: string;
  /** Largest entry, bytes (default MAX_ENTRY_BYTES); smaller in tests. */
  maxEntryBytes?: number;
}

/** A mirror item cannot be turned into an event (malformed, or of a list keap-sync does not know). */
export class ChangeEventError extends Error {
  readonly reason: 'invalid-image' | 'unknown-list';
  constructor(reason: 'invalid-image' | 'unknown-list', message: string) {
    super(message);
    this.name = 'ChangeEventError';
    this.reason = reason;
  }
}

const A = MIRROR_TABLE.attributes;

/**
 * Reads a mirror item (plain values) as an image; throws a ChangeEventError naming what is wrong.
 * A tombstone may lack `data`; every other item has all of the mirror's attributes.
 */
export function toMirrorImage(item: Record<string, unknown>): MirrorImage {
  const pk = item[MIRROR_TABLE.partitionKey];
  const id = item[MIRROR_TABLE.sortKey];
  const deletedAt = item[DELETED_AT_ATTRIBUTE];
  const data = item[A.data];
  const fail = (what: string): never => {
    throw new ChangeEventError(
      'invalid-image',
      `The mirror item ${String(pk)}/${String(id)} cannot be published: ${what}.`,
    );
  };
  if (typeof pk !== 'string' || typeof id !== 'string') fail('it has no string pk and id');
  const [pkAccount, pkResource] = String(pk).split('#');
  const account = typeof item[A.account] === 'string' ? (item[A.account] as string) : pkAccount;
  const resource = typeof item[A.resource] === 'string' ? (item[A.resource] as string) : pkResource;
  if (!account || !resource) fail('its account and list are neither attributes nor in its pk');
  if (deletedAt !== undefined && typeof deletedAt !== 'string' && typeof deletedAt !== 'number') {
    fail(`${DELETED_AT_ATTRIBUTE} is neither a string nor a number`);
  }
  const deletedAtText = deletedAt === undefined ? undefined : String(deletedAt);
  let ut = item[A.updateTimeMs];
  if (ut === undefined && deletedAtText !== undefined) {
    ut = typeof deletedAt === 'number' ? deletedAt : Date.parse(deletedAtText);
  }
  if (typeof ut !== 'number' || !Number.isFinite(ut)) fail(`${A.updateTimeMs} is not a number`);
  if (data !== undefined && !isPlainObject(data)) fail(`${A.data} is not a map`);
  if (data === undefined && deletedAtText === undefined) fail(`it has no ${A.data}`);
  const updateTime = item[A.updateTime];
  const syncedAt = item[A.syncedAt];
  const named = item[A.customFields];
  const info = item[A.customFieldInfo];
  return {
    pk: pk as string,
    id: id as string,
    account: account as string,
    resource: resource as string,
    data: data as Record<string, unknown> | undefined,
    ut: ut as number,
    updateTime: typeof updateTime === 'string' ? updateTime : new Date(ut as number).toISOString(),
    syncedAt: typeof syncedAt === 'string' ? syncedAt : undefined,
    deletedAt: deletedAtText,
    customFields: isPlainObject(named) ? named : undefined,
    customFieldInfo: isPlainObject(info) ? (info as MirrorImage['customFieldInfo']) : undefined,
  };
}

/**
 * The event for one write: `old` is the item before (undefined for a new item), `next` after
 * (undefined for a removed item). Newer-wins: a version whose update time is not after the old one's
 * gives no event, nor does a write that left the record as it was.
 */
export function buildChangeEvent(
  old: MirrorImage | undefined,
  next: MirrorImage | undefined,
  options: BuildOptions,
): BuiltEvent | SkippedChange {
  const current = next ?? old;
  if (!current) throw new ChangeEventError('invalid-image', 'A change needs an old or a new item.');
  const oldDeleted = old !== undefined && old.deletedAt !== undefined;
  const nextDeleted = next === undefined || next.deletedAt !== undefined;
  let kind: ChangeKind;
  if (nextDeleted) {
    if (oldDeleted) return { kind: 'skip', reason: 'already-deleted' };
    kind = 'deleted';
  } else if (old === undefined || oldDeleted) {
    kind = 'created';
  } else {
    if (sameValue(old.data, next.data)) return { kind: 'skip', reason: 'unchanged' };
    if (next.ut <= old.ut) return { kind: 'skip', reason: 'not-newer' };
    kind = 'updated';
  }
  // REMOVE: the record's last version. Tombstone: its own time, with the last data it or the old item has.
  const version = next ?? (old as MirrorImage);
  const record = (nextDeleted ? (next?.data ?? old?.data) : next?.data) ?? {};
  const before = kind === 'created' ? {} : (old?.data ?? {});
  const after = kind === 'deleted' ? {} : record;
  // A REMOVE of a tombstone-less item carries the old image's names; a tombstone its own (kept) ones.
  const named = nextDeleted ? (next?.customFields ?? old?.customFields) : next?.customFields;
  const info = nextDeleted ? (next?.customFieldInfo ?? old?.customFieldInfo) : next?.customFieldInfo;
  const listName = Object.hasOwn(LIST_NAMES, current.resource)
    ? LIST_NAMES[current.resource as SyncResource]
    : undefined;
  if (listName === undefined) {
    throw new ChangeEventError(
      'unknown-list',
      `The mirror item ${current.pk}/${current.id} is of the list "${current.resource}", which has no event type.`,
    );
  }
  const detail: ChangeDetail = {
    eventId: changeEventId(current.account, current.resource, current.id, version.ut, kind),
    account: current.account,
    list: current.resource,
    id: current.id,
    change: kind,
    updateTime: version.updateTime,
    updateTimeMs: version.ut,
    changedFields: changedFields(before, after),
    record,
    ...(named === undefined
      ? {}
      : {
          customFields: named,
          customFieldInfo: info ?? {},
          changedCustomFields: changedFields(
            kind === 'created' ? {} : (old?.customFields ?? {}),
            kind === 'deleted' ? {} : named,
          ),
        }),
    ...(version.syncedAt === undefined ? {} : { syncedAt: version.syncedAt }),
  };
  const detailType = `Keap ${listName} ${KIND_WORD[kind]}`;
  const max = options.maxEntryBytes ?? MAX_ENTRY_BYTES;
  let entry = toEntry(detailType, detail, options.eventBusName);
  let bytes = entrySize(entry);
  let oversize = false;
  if (bytes > max) {
    const { record: _omitted, customFields: _named, customFieldInfo: _info, ...rest } = detail;
    const pointed: ChangeDetail = {
      ...rest,
      recordPointer: { table: options.tableName, pk: current.pk, id: current.id },
    };
    entry = toEntry(detailType, pointed, options.eventBusName);
    bytes = entrySize(entry);
    oversize = true;
    if (bytes > max) {
      // Only thousands of changed field names could do this: keep the names out too.
      const trimmed: ChangeDetail = { ...pointed, changedFields: [] };
      entry = toEntry(detailType, trimmed, options.eventBusName);
      bytes = entrySize(entry);
      return { kind: 'event', entry, detail: trimmed, recordKey: recordKey(current), bytes, oversize };
    }
    return { kind: 'event', entry, detail: pointed, recordKey: recordKey(current), bytes, oversize };
  }
  return { kind: 'event', entry, detail, recordKey: recordKey(current), bytes, oversize };
}

/**
 * The event id: a hash of (account, list, id, update time) and the kind of change. The kind is in it
 * because a REMOVE carries the update time of the last version, whose own event must keep its id.
 */
export function changeEventId(
  account: string,
  list: string,
  id: string,
  updateTimeMs: number,
  kind: ChangeKind,
): string {
  return createHash('sha256')
    .update(JSON.stringify([account, list, id, updateTimeMs, kind]))
    .digest('hex')
    .slice(0, 32);
}

/** The size EventBridge counts for an entry (AWS: "Calculating PutEvents event entry size"). */
export function entrySize(entry: Pick<ChangeEntry, 'Source' | 'DetailType' | 'Detail'>): number {
  return (
    Buffer.byteLength(entry.Source, 'utf8') +
    Buffer.byteLength(entry.DetailType, 'utf8') +
    Buffer.byteLength(entry.Detail, 'utf8')
  );
}

/** Names of the top-level fields whose values differ (added, removed or changed), sorted. */
export function changedFields(before: Record<string, unknown>, after: Record<string, unknown>): string[] {
  const names = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...names].filter((name) => !sameValue(before[name], after[name])).sort();
}

/**
 * Deep equality of JSON-like values as DynamoDB stores them: object key order does not matter (a map
 * comes back in any order), array order does, and an undefined property is the same as a missing one
 * (the mirror drops undefined values when it writes).
 */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') {
    return typeof a === 'number' && typeof b === 'number' && Number.isNaN(a) && Number.isNaN(b);
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((value, i) => sameValue(value, b[i]));
  }
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    return a instanceof Uint8Array && b instanceof Uint8Array && Buffer.from(a).equals(Buffer.from(b));
  }
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const keys = new Set([...Object.keys(ra), ...Object.keys(rb)]);
  for (const key of keys) if (!sameValue(ra[key], rb[key])) return false;
  return true;
}

function toEntry(detailType: string, detail: ChangeDetail, eventBusName: string): ChangeEntry {
  return {
    Source: EVENT_SOURCE,
    DetailType: detailType,
    Detail: JSON.stringify(detail),
    EventBusName: eventBusName,
  };
}

function recordKey(image: MirrorImage): string {
  return `${image.pk}\u0000${image.id}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
