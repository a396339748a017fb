// Port + adapter: where ledger items live. The ledger needs only a read and a conditional put, so it
// runs unchanged on DynamoDB, DynamoDB Local and dynalite (no transactions, no server-side extras).

import {
  BatchGetItemCommand,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import type { DeserializeHandler, DeserializeHandlerArguments, MiddlewareStack } from '@smithy/types';

export interface StoredItem {
  /** Incremented by every write; the condition of the next write. */
  version: number;
  /** Random token of the write that produced this version (tells an unknown outcome apart). */
  writer: string;
  state: Uint8Array;
}

export type PutOutcome = { ok: true } | { ok: false; current: StoredItem | undefined; returned: boolean };

/** Called with the `Date` of a store answer (ms) and performance.now() when the request left and the answer came. */
export type ServerDateListener = (dateMs: number, sentPerf: number, receivedPerf: number) => void;

/** The ledger's storage port. */
export interface LedgerStore {
  read(pk: string): Promise<StoredItem | undefined>;
  /** Optional: many items in batched reads (the scheduler's snapshots of every account's scope). */
  readMany?(pks: readonly string[]): Promise<Map<string, StoredItem>>;
  /** Writes `next` only if the stored version is `expected` (undefined: only if absent). */
  put(pk: string, next: StoredItem, expected: number | undefined): Promise<PutOutcome>;
  /** Optional: the ledger sets it to check its clock against the server's (the `Date` header). */
  onServerDate?: ServerDateListener | undefined;
  /**
   * Optional: the `Date` of its answers comes from a server clock running in real time, so reads
   * timed across its second tick align the ledger's clock (`alignClock`). Simulated stores leave it out.
   */
  readonly realTimeDates?: boolean;
}

/** Requests made, successful and failed, for the operators' and the benchmark's cost figures. */
export interface StoreStats {
  reads: number;
  writes: number;
  failedWrites: number;
}

export class DynamoLedgerStore implements LedgerStore, KeyRegistry {
  readonly stats: StoreStats = { reads: 0, writes: 0, failedWrites: 0 };
  onServerDate: ServerDateListener | undefined;
  readonly realTimeDates = true;
  private readonly client: DynamoDBClient;
  private readonly tableName: string;
  constructor(client: DynamoDBClient, tableName: string) {
    this.client = client;
    this.tableName = tableName;
  }

  async read(pk: string): Promise<StoredItem | undefined> {
    this.stats.reads++;
    const out = await this.client.send(
      this.dated(
        new GetItemCommand({ TableName: this.tableName, Key: { pk: { S: pk } }, ConsistentRead: true }),
      ),
    );
    return out.Item ? toStored(out.Item) : undefined;
  }

  /** BatchGetItem in calls of 100 keys (consistent reads); unprocessed keys are asked again. */
  async readMany(pks: readonly string[]): Promise<Map<string, StoredItem>> {
    const found = new Map<string, StoredItem>();
    const unique = [...new Set(pks)];
    for (let i = 0; i < unique.length; i += 100) {
      let pending = unique.slice(i, i + 100).map((pk) => ({ pk: { S: pk } }));
      for (let round = 1; pending.length > 0; round++) {
        if (round > 8)
          throw new Error(`${pending.length} ledger items stayed unprocessed after 8 BatchGetItem calls`);
        if (round > 1) await new Promise((r) => setTimeout(r, Math.min(1_000, 25 * 2 ** round)));
        this.stats.reads++;
        const out = await this.client.send(
          new BatchGetItemCommand({
            RequestItems: { [this.tableName]: { Keys: pending, ConsistentRead: true } },
          }),
        );
        for (const item of out.Responses?.[this.tableName] ?? []) {
          const pk = item.pk?.S;
          if (pk !== undefined) found.set(pk, toStored(item as Record<string, Attr>));
        }
        pending = (out.UnprocessedKeys?.[this.tableName]?.Keys ?? []) as typeof pending;
      }
    }
    return found;
  }

  async put(pk: string, next: StoredItem, expected: number | undefined): Promise<PutOutcome> {
    this.stats.writes++;
    try {
      await this.client.send(
        this.dated(
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
        ),
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

  /** Reads the `Date` header of the command's HTTP answer (failed ones too) for the clock check. */
  private dated<C extends GetItemCommand | PutItemCommand>(command: C): C {
    const stack = command.middlewareStack as unknown as MiddlewareStack<object, object>;
    stack.add(
      (next: DeserializeHandler<object, object>) => async (args: DeserializeHandlerArguments<object>) => {
        const sent = performance.now();
        const report = (response: unknown) => {
          const date = (response as { headers?: Record<string, string | undefined> } | undefined)?.headers
            ?.date;
          const ms = date ? Date.parse(date) : Number.NaN;
          if (Number.isFinite(ms)) this.onServerDate?.(ms, sent, performance.now());
        };
        try {
          const out = await next(args);
          report(out.response);
          return out;
        } catch (err) {
          report((err as { $response?: unknown }).$response);
          throw err;
        }
      },
      { step: 'deserialize', name: 'keapSyncServerDate', override: true },
    );
    return command;
  }

  async registerKey(
    pk: string,
    key: string,
    max: number,
    now: number,
    stale: (lastUsed: number) => boolean,
  ): Promise<boolean> {
    for (let attempt = 0; attempt < 8; attempt++) {
      this.stats.reads++;
      const out = await this.client.send(
        new GetItemCommand({ TableName: this.tableName, Key: { pk: { S: pk } }, ConsistentRead: true }),
      );
      const version = Number(out.Item?.kv?.N ?? 0);
      // Keys not used since before today (and at least one window ago) are forgotten: they can no
      // longer spend any of today's quota, so they no longer count against maxKeysPerTenant.
      const live: Record<string, { N: string }> = {};
      for (const [k, v] of Object.entries(out.Item?.km?.M ?? {})) {
        const last = Number(v.N);
        if (Number.isFinite(last) && !stale(last)) live[k] = { N: String(last) };
      }
      if (!(key in live) && Object.keys(live).length >= max) return false;
      live[key] = { N: String(now) };
      this.stats.writes++;
      try {
        await this.client.send(
          new PutItemCommand({
            TableName: this.tableName,
            Item: { pk: { S: pk }, km: { M: live }, kv: { N: String(version + 1) } },
            ConditionExpression: out.Item?.kv ? 'kv = :kv' : 'attribute_not_exists(kv)',
            ExpressionAttributeValues: out.Item?.kv ? { ':kv': { N: String(version) } } : undefined,
          }),
        );
        return true;
      } catch (err) {
        if (!(err instanceof ConditionalCheckFailedException)) throw err;
        this.stats.failedWrites++;
      }
    }
    throw new Error(`the key registry ${pk} kept changing under 8 conditional writes`);
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

/**
 * Optional port extension (key scope): register (or refresh) a key id under a tenant with its last
 * use `now`, at most `max` distinct keys not `stale`; false when the set is full.
 */
export interface KeyRegistry {
  registerKey(
    pk: string,
    key: string,
    max: number,
    now: number,
    stale: (lastUsed: number) => boolean,
  ): Promise<boolean>;
}
