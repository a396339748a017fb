// Adapter: the one door of the state table's record stores (runs, leases, accounts, writes) to
// DynamoDB. Every call goes through `send` (callDynamo: a failure the SDK's retries did not fix
// becomes a StoreUnavailableError); every conditional write through `put`, `update` or
// `remove`, which answer `false` for a failed condition instead of throwing; every read-decide-write
// loop through `rounds` (StoreContentionError when it keeps losing); every stored item is read back
// through a zod schema (MalformedStoreItemError when it does not fit).

import { setTimeout as sleep } from 'node:timers/promises';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
  type UpdateCommandInput,
} from '@aws-sdk/lib-dynamodb';
import type { z } from 'zod';
import { callDynamo, documentClient, isConditionFailure } from './dynamo.ts';
import { MalformedStoreItemError, StoreContentionError, StoreUnavailableError } from './errors.ts';

export type Key = { pk: string; sk: string };

/** A condition on the item as stored, in DynamoDB's expression syntax. */
export interface Condition {
  ConditionExpression: string;
  ExpressionAttributeNames?: Record<string, string>;
  ExpressionAttributeValues?: Record<string, unknown>;
}

export type Update = Pick<
  UpdateCommandInput,
  'UpdateExpression' | 'ConditionExpression' | 'ExpressionAttributeNames' | 'ExpressionAttributeValues'
>;

/** Read-decide-write loops give up after this many lost races (StoreContentionError). */
export const MAX_ROUNDS = 8;

/** Keys per BatchGetItem (DynamoDB's limit). */
export const BATCH_GET_KEYS = 100;
/** BatchGetItem rounds for keys DynamoDB left unprocessed (throttling) before StoreContentionError. */
const MAX_UNPROCESSED_ROUNDS = 8;

export function describeKey(key: Key): string {
  return `${key.pk} / ${key.sk}`;
}

/** A key as one string (`pk \u0000 sk`): the index of getMany's answer. */
export function itemId(key: Key): string {
  return `${key.pk}\u0000${key.sk}`;
}

export class StateTable {
  readonly tableName: string;
  private readonly doc: DynamoDBDocumentClient;

  /** `client` carries the retry settings (dynamoRetryConfig, where it is built). */
  constructor(client: DynamoDBClient, tableName: string) {
    this.tableName = tableName;
    this.doc = documentClient(client);
  }

  /** The item at `key` read through `schema`, or undefined when there is none (consistent read). */
  async get<S extends z.ZodType>(key: Key, schema: S): Promise<z.output<S> | undefined> {
    const out = await this.send('GetItem', () =>
      this.doc.send(new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true })),
    );
    return out.Item === undefined ? undefined : this.parse(schema, out.Item, key);
  }

  /**
   * The items at `keys` read through `schema` (consistent reads), in BatchGetItem calls of 100 keys
   * each; keys DynamoDB leaves unprocessed are asked again after a short backoff. Missing items are
   * absent from the map, keyed by `pk \u0000 sk`.
   */
  async getMany<S extends z.ZodType>(keys: readonly Key[], schema: S): Promise<Map<string, z.output<S>>> {
    const found = new Map<string, z.output<S>>();
    const unique = [...new Map(keys.map((k) => [itemId(k), k])).values()];
    for (let i = 0; i < unique.length; i += BATCH_GET_KEYS) {
      let pending: Key[] = unique.slice(i, i + BATCH_GET_KEYS);
      for (let round = 1; pending.length > 0; round++) {
        if (round > MAX_UNPROCESSED_ROUNDS) {
          throw new StoreUnavailableError(
            this.tableName,
            'BatchGetItem',
            MAX_UNPROCESSED_ROUNDS,
            true,
            new Error(`${pending.length} keys were left unprocessed`),
          );
        }
        if (round > 1) await sleep(Math.min(1_000, 25 * 2 ** round));
        const batch = pending;
        const out = await this.send('BatchGetItem', () =>
          this.doc.send(
            new BatchGetCommand({
              RequestItems: { [this.tableName]: { Keys: batch, ConsistentRead: true } },
            }),
          ),
        );
        for (const item of out.Responses?.[this.tableName] ?? []) {
          const key = { pk: String(item.pk), sk: String(item.sk) };
          found.set(itemId(key), this.parse(schema, item, key));
        }
        pending = (out.UnprocessedKeys?.[this.tableName]?.Keys ?? []) as Key[];
      }
    }
    return found;
  }

  /** Every item of partition `pk` read through `schema` (a paginated, consistent Query). */
  async queryPartition<S extends z.ZodType>(pk: string, schema: S): Promise<Array<z.output<S>>> {
    const items: Array<z.output<S>> = [];
    let start: Record<string, unknown> | undefined;
    do {
      const from = start;
      const out = await this.send('Query', () =>
        this.doc.send(
          new QueryCommand({
            TableName: this.tableName,
            KeyConditionExpression: '#pk = :pk',
            ExpressionAttributeNames: { '#pk': 'pk' },
            ExpressionAttributeValues: { ':pk': pk },
            ConsistentRead: true,
            ...(from ? { ExclusiveStartKey: from } : {}),
          }),
        ),
      );
      for (const item of out.Items ?? []) {
        items.push(this.parse(schema, item, { pk, sk: String(item.sk) }));
      }
      start = out.LastEvaluatedKey;
    } while (start);
    return items;
  }

  /** Writes `item` at `key` if `condition` holds. False when it did not (nothing was written). */
  async put(
    operation: string,
    key: Key,
    item: Record<string, unknown>,
    condition: Condition,
  ): Promise<boolean> {
    const written = await this.conditional(`PutItem (${operation})`, () =>
      this.doc.send(new PutCommand({ TableName: this.tableName, Item: { ...item, ...key }, ...condition })),
    );
    return written !== false;
  }

  /**
   * Applies `update` to the item at `key` if its condition holds. False when it did not; otherwise the
   * item as written when `returnItem` is set (read through `returnItem`), else true.
   */
  async update(operation: string, key: Key, update: Update): Promise<boolean>;
  async update<S extends z.ZodType>(
    operation: string,
    key: Key,
    update: Update,
    returnItem: S,
  ): Promise<z.output<S> | false>;
  async update<S extends z.ZodType>(
    operation: string,
    key: Key,
    update: Update,
    returnItem?: S,
  ): Promise<z.output<S> | boolean> {
    const out = await this.conditional(`UpdateItem (${operation})`, () =>
      this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: key,
          ...update,
          ...(returnItem ? { ReturnValues: 'ALL_NEW' } : {}),
        }),
      ),
    );
    if (out === false) return false;
    return returnItem ? this.parse(returnItem, out.Attributes ?? {}, key) : true;
  }

  /** Deletes the item at `key` if `condition` holds. False when it did not. */
  async remove(operation: string, key: Key, condition: Condition): Promise<boolean> {
    const out = await this.conditional(`DeleteItem (${operation})`, () =>
      this.doc.send(new DeleteCommand({ TableName: this.tableName, Key: key, ...condition })),
    );
    return out !== false;
  }

  /**
   * Runs a read-decide-write `round` until it returns a result (not undefined: it lost a race and reads
   * again). After MAX_ROUNDS lost races, StoreContentionError: nothing was changed by the caller.
   */
  async rounds<T>(key: Key, round: () => Promise<T | undefined>): Promise<T> {
    for (let n = 1; n <= MAX_ROUNDS; n++) {
      const result = await round();
      if (result !== undefined) return result;
    }
    throw new StoreContentionError(describeKey(key), MAX_ROUNDS);
  }

  /** `item` read through `schema`; MalformedStoreItemError names the first attribute that does not fit. */
  parse<S extends z.ZodType>(schema: S, item: unknown, key: Key): z.output<S> {
    const parsed = schema.safeParse(item);
    if (parsed.success) return parsed.data;
    const issue = parsed.error.issues[0];
    throw this.malformed(key, `${issue?.path.join('.') || '(item)'}: ${issue?.message ?? 'invalid'}`);
  }

  malformed(key: Key, problem: string): MalformedStoreItemError {
    return new MalformedStoreItemError(this.tableName, describeKey(key), problem);
  }

  /** The only place a failed condition is told apart from other errors: it answers false. */
  private async conditional<T>(operation: string, fn: () => Promise<T>): Promise<T | false> {
    try {
      return await this.send(operation, fn);
    } catch (err) {
      if (isConditionFailure(err)) return false;
      throw err;
    }
  }

  /** The one seam to DynamoDB's error mapping (StoreUnavailableError; retries are the client's). */
  private send<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    return callDynamo(this.tableName, operation, fn);
  }
}
