// Adapter: the DynamoDB mirror of Keap records. One item per record; conditional puts make the newer
// record win whatever order concurrent workers write in (no transactions, so it runs on dynalite too).
// A record Keap deleted stays as a tombstone (its last `data`, `deletedAt`, a TTL) that only a version
// updated after the deletion replaces.
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { callDynamo, documentClient, isConditionFailure, isItemTooLarge } from './dynamo.ts';
import {
  MalformedStoreItemError,
  MirrorWriteStoppedError,
  RecordTooLargeError,
  StoreInputError,
  StoreUnavailableError,
} from './errors.ts';
import type { NamedCustomFields } from './models.ts';
import { type MirrorSettings, type MirrorSettingsInput, parseMirrorSettings } from './settings.ts';
import { checkId, MAX_ITEM_BYTES, MIRROR_TABLE, mirrorPartitionKey } from './tables.ts';

/** One Keap record to mirror. */
export interface MirrorRecord {
  /** Keap record id (the item's sort key). */
  id: string;
  /**
   * The record's update time in epoch ms; for records without one, a value the caller chooses (e.g. the
   * run's start). An older value never overwrites a newer one; an equal value rewrites (idempotent).
   */
  updateTimeMs: number;
  /** The record as Keap returned it; stored as a native map (undefined values are dropped). */
  data: Record<string, unknown>;
  /** Its custom fields by name (lists with a model), stored as `customFields` and `customFieldInfo`. */
  customFields?: NamedCustomFields;
}

/** A record Keap no longer has, to mark deleted in the mirror. */
export interface MirrorTombstone {
  id: string;
  /**
   * When the record was known deleted (epoch ms): a mirrored version updated after it is not
   * tombstoned, and only a version updated after it replaces the tombstone.
   */
  deletedAtMs: number;
}

export interface TombstoneResult {
  /** Records marked deleted now (a stub item when the mirror never held the record). */
  tombstoned: number;
  /** Already tombstoned, or the mirror holds a version updated after the deletion: left unchanged. */
  unchanged: number;
}

export interface UpsertResult {
  /** Records written (new, newer, or an idempotent rewrite of the same update time). */
  written: number;
  /** Records not written because the mirror already holds a newer version. */
  skippedStale: number;
}

/** A mirrored record as stored. */
export interface MirrorItem {
  account: string;
  resource: string;
  id: string;
  data: Record<string, unknown>;
  updateTimeMs: number;
  /** ISO form of updateTimeMs. */
  updateTime: string;
  /** ISO time of the write that stored this version. */
  syncedAt: string;
  /** Lists with a custom-field model: `{<field_name>: value}`, and `{<field_name>: {id, label}}`. */
  customFields?: Record<string, unknown>;
  customFieldInfo?: Record<string, { id: string; label: string }>;
  /** Tombstones only: when Keap deleted the record (ISO, and epoch ms). */
  deletedAt?: string;
  deletedAtMs?: number;
  /** Tombstones only: the TTL attribute (epoch seconds). */
  expiresAt?: number;
}

/** One successful write: the item it replaced (undefined for a new record) and the item written. */
export interface MirrorWrite {
  old: Record<string, unknown> | undefined;
  item: Record<string, unknown>;
}

export interface MirrorStoreOptions {
  settings?: MirrorSettingsInput;
  /** Clock for `syncedAt`; Date.now by default. */
  now?: () => number;
  /**
   * Called after every successful put with the (old, new) pair a NEW_AND_OLD_IMAGES stream would carry,
   * for runtimes without a stream (the local runtime derives its change events from it). When set,
   * puts ask for ReturnValues ALL_OLD (no extra request or capacity); unset, requests are unchanged.
   */
  onWritten?: (write: MirrorWrite) => void;
}

const A = MIRROR_TABLE.attributes;

/** The Keap mirror table (partition key `<account>#<resource>`, sort key the record id). */
export class MirrorStore {
  readonly tableName: string;
  readonly settings: MirrorSettings;
  private readonly doc: DynamoDBDocumentClient;
  private readonly now: () => number;
  private readonly onWritten: ((write: MirrorWrite) => void) | undefined;

  constructor(client: DynamoDBClient, tableName: string, options: MirrorStoreOptions = {}) {
    this.tableName = tableName;
    this.settings = parseMirrorSettings(options.settings);
    this.doc = documentClient(client);
    this.now = options.now ?? Date.now;
    this.onWritten = options.onWritten;
  }

  /**
   * Writes records newer-wins with conditional puts, `writeConcurrency` at a time. Every record is
   * checked first (ids, update times, value types, the 400 KB item limit): a bad one throws a
   * StoreInputError or RecordTooLargeError and nothing of the batch is written.
   */
  async upsertMany(
    account: string,
    resource: string,
    records: readonly MirrorRecord[],
    options: { signal?: AbortSignal } = {},
  ): Promise<UpsertResult> {
    const pk = mirrorPartitionKey(account, resource);
    const syncedAt = new Date(this.now()).toISOString();
    const items = records.map((record, index) => {
      const item = this.toItem(pk, account, resource, record, index, syncedAt);
      const size = estimateItemSize(item, record.id);
      if (size > MAX_ITEM_BYTES) {
        throw new RecordTooLargeError(account, resource, record.id, size, MAX_ITEM_BYTES);
      }
      return item;
    });
    const result: UpsertResult = { written: 0, skippedStale: 0 };
    // With a signal, no new put starts once it fired (the ones in flight finish): MirrorWriteStoppedError.
    let stopped = false;
    const doneIds: string[] = [];
    await forEachBounded(items, this.settings.writeConcurrency, async (item) => {
      if (options.signal?.aborted) {
        stopped = true;
        return;
      }
      if (await this.putIfNotOlder(item, account, resource)) result.written++;
      else result.skippedStale++;
      doneIds.push(String(item[MIRROR_TABLE.sortKey]));
    });
    if (stopped) throw new MirrorWriteStoppedError(doneIds.length, items.length, doneIds);
    return result;
  }

  /**
   * Marks records deleted, `writeConcurrency` at a time, each with one conditional update that keeps
   * `data`, `ut` and `syncedAt` and sets `deletedAt`, `deletedAtMs` and `expiresAt` (the TTL,
   * `tombstoneDays` on). A record already tombstoned keeps its first deletion time (a redelivered
   * delete changes nothing); one the mirror holds in a version updated after `deletedAtMs` is left
   * alone. A record the mirror never held gets a stub tombstone (empty `data`, update time 0), so a
   * late write of a version read before the deletion cannot bring it back.
   */
  async tombstoneMany(
    account: string,
    resource: string,
    tombstones: readonly MirrorTombstone[],
  ): Promise<TombstoneResult> {
    const pk = mirrorPartitionKey(account, resource);
    const syncedAt = new Date(this.now()).toISOString();
    const checked = tombstones.map((t, index) => {
      const id = checkId(`tombstones[${index}].id`, t?.id);
      const ms = t.deletedAtMs;
      if (typeof ms !== 'number' || !Number.isSafeInteger(ms) || ms < 0 || ms > 8_640_000_000_000_000) {
        throw new StoreInputError(
          `tombstones[${index}].deletedAtMs`,
          `must be epoch milliseconds (a non-negative integer), got ${String(ms)} for record "${id}".`,
        );
      }
      return { id, deletedAtMs: ms };
    });
    const result: TombstoneResult = { tombstoned: 0, unchanged: 0 };
    const ttlSeconds = this.settings.tombstoneDays * 86_400;
    await forEachBounded(checked, this.settings.writeConcurrency, async (t) => {
      try {
        const out = await callDynamo(this.tableName, 'UpdateItem', () =>
          this.doc.send(
            new UpdateCommand({
              TableName: this.tableName,
              Key: { [MIRROR_TABLE.partitionKey]: pk, [MIRROR_TABLE.sortKey]: t.id },
              ...(this.onWritten ? { ReturnValues: 'ALL_NEW' as const } : {}),
              UpdateExpression:
                'SET #account = if_not_exists(#account, :account), #resource = if_not_exists(#resource, :resource), ' +
                '#data = if_not_exists(#data, :emptyData), #ut = if_not_exists(#ut, :zero), ' +
                '#updateTime = if_not_exists(#updateTime, :epoch), #syncedAt = if_not_exists(#syncedAt, :syncedAt), ' +
                '#deletedAt = :deletedAt, #deletedAtMs = :deletedAtMs, #expiresAt = :expiresAt',
              ConditionExpression:
                'attribute_not_exists(#pk) OR (attribute_not_exists(#deletedAtMs) AND #ut <= :deletedAtMs)',
              ExpressionAttributeNames: {
                '#pk': MIRROR_TABLE.partitionKey,
                '#account': A.account,
                '#resource': A.resource,
                '#data': A.data,
                '#ut': A.updateTimeMs,
                '#updateTime': A.updateTime,
                '#syncedAt': A.syncedAt,
                '#deletedAt': A.deletedAt,
                '#deletedAtMs': A.deletedAtMs,
                '#expiresAt': A.expiresAt,
              },
              ExpressionAttributeValues: {
                ':account': account,
                ':resource': resource,
                ':emptyData': {},
                ':zero': 0,
                ':epoch': new Date(0).toISOString(),
                ':syncedAt': syncedAt,
                ':deletedAt': new Date(t.deletedAtMs).toISOString(),
                ':deletedAtMs': t.deletedAtMs,
                ':expiresAt': Math.floor(t.deletedAtMs / 1000) + ttlSeconds,
              },
            }),
          ),
        );
        result.tombstoned++;
        if (this.onWritten && out.Attributes) {
          // The stream's old image: the same item before the deletion marks (none if it was a placeholder).
          const item = out.Attributes;
          const { [A.deletedAt]: _d, [A.deletedAtMs]: _dm, [A.expiresAt]: _e, ...before } = item;
          this.onWritten({ old: Number(item[A.updateTimeMs] ?? 0) > 0 ? before : undefined, item });
        }
      } catch (err) {
        if (!isConditionFailure(err)) throw err;
        result.unchanged++;
      }
    });
    return result;
  }

  /** The mirrored record, or undefined when it was never written. Strongly consistent. */
  async get(account: string, resource: string, id: string): Promise<MirrorItem | undefined> {
    const key = { [MIRROR_TABLE.partitionKey]: mirrorPartitionKey(account, resource), id: checkId('id', id) };
    const out = await callDynamo(this.tableName, 'GetItem', () =>
      this.doc.send(new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true })),
    );
    return out.Item ? this.fromItem(out.Item) : undefined;
  }

  /** Number of mirrored records of (account, resource); pages through the partition. */
  async count(account: string, resource: string): Promise<number> {
    const pk = mirrorPartitionKey(account, resource);
    let total = 0;
    let start: Record<string, unknown> | undefined;
    do {
      const out = await callDynamo(this.tableName, 'Query', () =>
        this.doc.send(
          new QueryCommand({
            ...this.partitionQuery(pk),
            Select: 'COUNT',
            ExclusiveStartKey: start,
          }),
        ),
      );
      total += out.Count ?? 0;
      start = out.LastEvaluatedKey;
    } while (start);
    return total;
  }

  /**
   * Every mirrored record of (account, resource) in id order (string order), a Query page at a time;
   * with `prefix`, only the ids that begin with it (a key condition: the other ids are never read).
   */
  async *iterate(
    account: string,
    resource: string,
    options: { prefix?: string } = {},
  ): AsyncGenerator<MirrorItem, void, undefined> {
    const pk = mirrorPartitionKey(account, resource);
    const base = this.partitionQuery(pk);
    const query =
      options.prefix === undefined || options.prefix === ''
        ? base
        : {
            ...base,
            KeyConditionExpression: '#pk = :pk AND begins_with(#id, :prefix)',
            ExpressionAttributeNames: { ...base.ExpressionAttributeNames, '#id': MIRROR_TABLE.sortKey },
            ExpressionAttributeValues: { ...base.ExpressionAttributeValues, ':prefix': options.prefix },
          };
    let start: Record<string, unknown> | undefined;
    do {
      const out = await callDynamo(this.tableName, 'Query', () =>
        this.doc.send(new QueryCommand({ ...query, ExclusiveStartKey: start })),
      );
      for (const item of out.Items ?? []) yield this.fromItem(item);
      start = out.LastEvaluatedKey;
    } while (start);
  }

  private partitionQuery(pk: string) {
    return {
      TableName: this.tableName,
      KeyConditionExpression: '#pk = :pk',
      ExpressionAttributeNames: { '#pk': MIRROR_TABLE.partitionKey },
      ExpressionAttributeValues: { ':pk': pk },
      ConsistentRead: true,
      Limit: this.settings.pageSize,
    };
  }

  /**
   * Puts the item unless the stored one is newer, or is a tombstone of a deletion at or after this
   * version's update time (an old version never resurrects a deleted record; one updated after the
   * deletion, a re-created record, replaces the tombstone). True when written.
   */
  private async putIfNotOlder(
    item: Record<string, unknown>,
    account: string,
    resource: string,
  ): Promise<boolean> {
    try {
      const out = await callDynamo(this.tableName, 'PutItem', () =>
        this.doc.send(
          new PutCommand({
            TableName: this.tableName,
            Item: item,
            ConditionExpression:
              'attribute_not_exists(#pk) OR (#ut <= :ut AND (attribute_not_exists(#del) OR #del < :ut))',
            ExpressionAttributeNames: {
              '#pk': MIRROR_TABLE.partitionKey,
              '#ut': A.updateTimeMs,
              '#del': A.deletedAtMs,
            },
            ExpressionAttributeValues: { ':ut': item[A.updateTimeMs] },
            ...(this.onWritten ? { ReturnValues: 'ALL_OLD' as const } : {}),
          }),
        ),
      );
      this.onWritten?.({ old: out.Attributes, item });
      return true;
    } catch (err) {
      if (isConditionFailure(err)) return false;
      if (err instanceof StoreUnavailableError && isItemTooLarge(err.cause)) {
        throw new RecordTooLargeError(account, resource, String(item.id), undefined, MAX_ITEM_BYTES);
      }
      throw err;
    }
  }

  private toItem(
    pk: string,
    account: string,
    resource: string,
    record: MirrorRecord,
    index: number,
    syncedAt: string,
  ): Record<string, unknown> {
    if (typeof record !== 'object' || record === null) {
      throw new StoreInputError(`records[${index}]`, 'must be an object with id, updateTimeMs and data.');
    }
    const id = checkId(`records[${index}].id`, record.id);
    const ut = record.updateTimeMs;
    if (typeof ut !== 'number' || !Number.isSafeInteger(ut) || ut < 0 || ut > 8_640_000_000_000_000) {
      throw new StoreInputError(
        `records[${index}].updateTimeMs`,
        `must be epoch milliseconds (a non-negative integer), got ${String(ut)} for record "${id}".`,
      );
    }
    if (!isPlainObject(record.data)) {
      throw new StoreInputError(`records[${index}].data`, `must be a plain object (record "${id}").`);
    }
    return {
      [MIRROR_TABLE.partitionKey]: pk,
      [MIRROR_TABLE.sortKey]: id,
      [A.account]: account,
      [A.resource]: resource,
      [A.data]: record.data,
      [A.updateTimeMs]: ut,
      [A.updateTime]: new Date(ut).toISOString(),
      [A.syncedAt]: syncedAt,
      ...(record.customFields === undefined
        ? {}
        : { [A.customFields]: record.customFields.values, [A.customFieldInfo]: record.customFields.info }),
    };
  }

  private fromItem(item: Record<string, unknown>): MirrorItem {
    const { account, resource, id, data, ut, updateTime, syncedAt } = {
      account: item[A.account],
      resource: item[A.resource],
      id: item[MIRROR_TABLE.sortKey],
      data: item[A.data],
      ut: item[A.updateTimeMs],
      updateTime: item[A.updateTime],
      syncedAt: item[A.syncedAt],
    };
    if (
      typeof account !== 'string' ||
      typeof resource !== 'string' ||
      typeof id !== 'string' ||
      !isPlainObject(data) ||
      typeof ut !== 'number' ||
      typeof updateTime !== 'string' ||
      typeof syncedAt !== 'string'
    ) {
      throw new MalformedStoreItemError(
        this.tableName,
        `${String(item[MIRROR_TABLE.partitionKey])}/${String(id)}`,
        'attributes account, resource, id, data, ut, updateTime or syncedAt are missing or of the wrong type',
      );
    }
    const out: MirrorItem = { account, resource, id, data, updateTimeMs: ut, updateTime, syncedAt };
    const [named, info] = [item[A.customFields], item[A.customFieldInfo]];
    if (isPlainObject(named)) out.customFields = named;
    if (isPlainObject(info)) out.customFieldInfo = info as MirrorItem['customFieldInfo'];
    const [deletedAt, deletedAtMs, expiresAt] = [item[A.deletedAt], item[A.deletedAtMs], item[A.expiresAt]];
    if (deletedAt !== undefined || deletedAtMs !== undefined) {
      if (typeof deletedAt !== 'string' || typeof deletedAtMs !== 'number') {
        throw new MalformedStoreItemError(
          this.tableName,
          `${String(item[MIRROR_TABLE.partitionKey])}/${id}`,
          'a tombstone needs both deletedAt (a string) and deletedAtMs (a number)',
        );
      }
      out.deletedAt = deletedAt;
      out.deletedAtMs = deletedAtMs;
      if (typeof expiresAt === 'number') out.expiresAt = expiresAt;
    }
    return out;
  }
}

/** Runs fn over items with at most `limit` in flight; after a failure no new item starts; rethrows it. */
async function forEachBounded<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (failure === undefined && next < items.length) {
      const index = next++;
      if (!(index in items)) continue;
      try {
        await fn(items[index] as T);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.error;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

const utf8 = (s: string) => Buffer.byteLength(s, 'utf8');

/**
 * DynamoDB's size of an item given as plain values (names plus values, per AWS's published rules).
 * Throws a StoreInputError for values a mirror item cannot hold (functions, Dates, NaN, ...).
 */
export function estimateItemSize(item: Record<string, unknown>, recordId = '(item)'): number {
  let total = 0;
  for (const [name, value] of Object.entries(item)) {
    if (value !== undefined) total += utf8(name) + valueSize(value, name, recordId);
  }
  return total;
}

function valueSize(value: unknown, path: string, recordId: string): number {
  if (value === null || typeof value === 'boolean') return 1;
  if (typeof value === 'string') return utf8(value);
  if (typeof value === 'number' || typeof value === 'bigint') {
    if (typeof value === 'number' && !Number.isFinite(value)) {
      throw new StoreInputError(
        path,
        `holds ${value} in record "${recordId}"; DynamoDB stores finite numbers only.`,
      );
    }
    return numberSize(value);
  }
  if (value instanceof Uint8Array) return value.byteLength;
  if (Array.isArray(value)) {
    let size = 3;
    value.forEach((element, i) => {
      if (element !== undefined) size += 1 + valueSize(element, `${path}[${i}]`, recordId);
    });
    return size;
  }
  if (isPlainObject(value)) {
    let size = 3;
    for (const [key, element] of Object.entries(value)) {
      if (element !== undefined) size += 1 + utf8(key) + valueSize(element, `${path}.${key}`, recordId);
    }
    return size;
  }
  const kind = typeof value === 'object' ? (value.constructor?.name ?? 'object') : typeof value;
  throw new StoreInputError(
    path,
    `holds a ${kind} in record "${recordId}"; the mirror stores JSON values only. Convert it first.`,
  );
}

function numberSize(n: number | bigint): number {
  const text = typeof n === 'bigint' ? (n < 0n ? -n : n).toString() : Math.abs(n).toExponential();
  const mantissa = text.split('e')[0] ?? text;
  const digits = mantissa.replace('.', '').replace(/^0+/, '').replace(/0+$/, '');
  return Math.ceil(Math.max(digits.length, 1) / 2) + 1;
}
