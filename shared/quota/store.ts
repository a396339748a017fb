// Port + adapter: where ledger items live. The ledger needs only a read and a conditional put, so it
// runs unchanged on DynamoDB, DynamoDB Local and dynalite (no transactions, no server-side extras).
import {
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';

export interface StoredItem {
  /** Incremented by every write; the condition of the next write. */
  version: number;
  /** Random token of the write that produced this version (tells an unknown outcome apart). */
  writer: string;
  state: Uint8Array;
}

export type PutOutcome = { ok: true } | { ok: false; current: StoredItem | undefined; returned: boolean };

/** The ledger's storage port. */
export interface LedgerStore {
  read(pk: string): Promise<StoredItem | undefined>;
  /** Writes `next` only if the stored version is `expected` (undefined: only if absent). */
  put(pk: string, next: StoredItem, expected: number | undefined): Promise<PutOutcome>;
}

/** Requests made, successful and failed, for the operators' and the benchmark's cost figures. */
export interface StoreStats {
  reads: number;
  writes: number;
  failedWrites: number;
}

export class DynamoLedgerStore implements LedgerStore, KeyRegistry {
  readonly stats: StoreStats = { reads: 0, writes: 0, failedWrites: 0 };
  private readonly client: DynamoDBClient;
  private readonly tableName: string;
  constructor(client: DynamoDBClient, tableName: string) {
    this.client = client;
    this.tableName = tableName;
  }

  async read(pk: string): Promise<StoredItem | undefined> {
    this.stats.reads++;
    const out = await this.client.send(
      new GetItemCommand({ TableName: this.tableName, Key: { pk: { S: pk } }, ConsistentRead: true }),
    );
    return out.Item ? toStored(out.Item) : undefined;
  }

  async put(pk: string, next: StoredItem, expected: number | undefined): Promise<PutOutcome> {
    this.stats.writes++;
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: {
            pk: { S: pk },
            v: { N: String(next.version) },
            w: { S: next.writer },
            s: { B: next.state },
          },
          ConditionExpression: expected === undefined ? 'attribute_not_exists(pk)' : 'v = :v',
          ExpressionAttributeValues: expected === undefined ? undefined : { ':v': { N: String(expected) } },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return { ok: true };
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) {
        this.stats.failedWrites++;
        // DynamoDB and DynamoDB Local return the item that won; dynalite does not.
        const item = err.Item;
        return item
          ? { ok: false, current: toStored(item), returned: true }
          : { ok: false, current: undefined, returned: false };
      }
      throw err;
    }
  }

  async registerKey(pk: string, key: string, max: number): Promise<boolean> {
    this.stats.writes++;
    try {
      await this.client.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: { pk: { S: pk } },
          UpdateExpression: 'ADD ks :k',
          ConditionExpression: 'attribute_not_exists(ks) OR contains(ks, :key) OR size(ks) < :max',
          ExpressionAttributeValues: { ':k': { SS: [key] }, ':key': { S: key }, ':max': { N: String(max) } },
        }),
      );
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) {
        this.stats.failedWrites++;
        return false;
      }
      throw err;
    }
  }
}

type Attr = { S?: string; N?: string; B?: Uint8Array };

function toStored(item: Record<string, Attr>): StoredItem {
  const v = Number(item.v?.N);
  const w = item.w?.S;
  const s = item.s?.B;
  if (!Number.isInteger(v) || v < 0 || typeof w !== 'string' || !(s instanceof Uint8Array)) {
    throw new MalformedItemError('attributes v, w or s are missing or of the wrong type');
  }
  return { version: v, writer: w, state: s };
}

/** The stored item lacks the ledger's attributes. */
export class MalformedItemError extends Error {
  override name = 'MalformedItemError';
}

/** Optional port extension (key scope): register a key id under a tenant, at most `max` distinct. */
export interface KeyRegistry {
  registerKey(pk: string, key: string, max: number): Promise<boolean>;
}
