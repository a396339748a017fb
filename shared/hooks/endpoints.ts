// Adapter: each account's REST hook endpoint in the state table (`<account>`, `hooks`): the
// unguessable token its hook URLs end with, and the event keys registered with Keap. Written by
// `keap-sync hooks register`; read by the receiver (which accepts nothing without it). The token is a
// secret: it is never logged, and only the receiver and the operator commands read this item.
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { StateTable } from '../store/table.ts';
import { stateKey } from '../store/tables.ts';
import { hookEventOf } from './events.ts';
import type { HookCheckRecord } from './lifecycle.ts';
import { MIN_TOKEN_LENGTH } from './receiver.ts';

/** Random bytes in a new token (base64url: 43 characters, 256 bits). */
const TOKEN_BYTES = 32;

export interface HookEndpoint {
  account: string;
  /** The URL token (a secret). */
  token: string;
  /** The event keys registered with Keap for this account, sorted. */
  eventKeys: string[];
  updatedAt: string;
  /** The last scheduled hook check, when one ran. */
  check?: HookCheckRecord;
}

const endpointItemSchema = z.object({
  account: z.string(),
  token: z
    .string()
    .min(MIN_TOKEN_LENGTH)
    .regex(/^[A-Za-z0-9_-]+$/),
  eventKeys: z.array(z.string()),
  updatedAt: z.string(),
  check: z
    .object({ checkedAt: z.string(), healthy: z.boolean(), statuses: z.record(z.string(), z.string()) })
    .optional(),
});

/** An event key given to the endpoint store names no list of the registry. */
export class UnknownHookEventKeyError extends Error {
  constructor(eventKey: string) {
    super(`The event key "${eventKey}" names no list of the registry; keap-sync cannot receive it.`);
    this.name = 'UnknownHookEventKeyError';
  }
}

/** A fresh URL token: 256 random bits, URL-safe. */
export function newHookToken(): string {
  return randomBytes(TOKEN_BYTES).toString('base64url');
}

/** The path of an account's hook URL (the receiver reads the account and token from its last two segments). */
export function hookPath(account: string, token: string): string {
  return `/hooks/${account}/${token}`;
}

/** The full hook URL for `baseUrl` (the Function URL, or the local receiver's address). */
export function hookUrl(baseUrl: string, account: string, token: string): string {
  return `${baseUrl.replace(/\/+$/, '')}${hookPath(account, token)}`;
}

export class DynamoHookEndpointStore {
  private readonly table: StateTable;
  private readonly now: () => number;

  constructor(table: StateTable, now: () => number = Date.now) {
    this.table = table;
    this.now = now;
  }

  /** The account's endpoint, or undefined before `hooks register` made one. */
  async get(account: string): Promise<HookEndpoint | undefined> {
    return this.table.get(stateKey.hooks(account), endpointItemSchema);
  }

  /**
   * The account's endpoint with `eventKeys` added to those it accepts. The token is created the first
   * time (a conditional put, so two concurrent registrations agree on one) and kept after that: the
   * hooks already registered with Keap carry it in their URLs.
   */
  async ensure(account: string, eventKeys: readonly string[] = []): Promise<HookEndpoint> {
    for (const key of eventKeys) if (!hookEventOf(key)) throw new UnknownHookEventKeyError(key);
    const key = stateKey.hooks(account);
    const updatedAt = new Date(this.now()).toISOString();
    await this.table.put(
      'createHookEndpoint',
      key,
      { account, token: newHookToken(), eventKeys: [], updatedAt },
      { ConditionExpression: 'attribute_not_exists(pk)' },
    );
    const current = await this.get(account);
    if (!current) throw this.table.malformed(key, 'the hook endpoint vanished right after it was written');
    const merged = [...new Set([...current.eventKeys, ...eventKeys])].sort();
    if (merged.length === current.eventKeys.length) return current;
    return this.setEventKeys(account, merged);
  }

  /** Replaces the event keys the receiver accepts (after `hooks remove`, say); the token stays. */
  async setEventKeys(account: string, eventKeys: readonly string[]): Promise<HookEndpoint> {
    for (const key of eventKeys) if (!hookEventOf(key)) throw new UnknownHookEventKeyError(key);
    const key = stateKey.hooks(account);
    const sorted = [...new Set(eventKeys)].sort();
    const updatedAt = new Date(this.now()).toISOString();
    await this.table.update('setHookEventKeys', key, {
      UpdateExpression: 'SET #keys = :keys, #updatedAt = :now',
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeNames: { '#keys': 'eventKeys', '#updatedAt': 'updatedAt' },
      ExpressionAttributeValues: { ':keys': sorted, ':now': updatedAt },
    });
    const current = await this.get(account);
    if (!current) throw this.table.malformed(key, 'the hook endpoint vanished right after it was updated');
    return current;
  }

  /** Keeps what the scheduled check found (the scheduler relaxes polling while hooks are healthy). */
  async recordCheck(account: string, check: HookCheckRecord): Promise<void> {
    await this.table.update('recordHookCheck', stateKey.hooks(account), {
      UpdateExpression: 'SET #check = :check',
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeNames: { '#check': 'check' },
      ExpressionAttributeValues: { ':check': check },
    });
  }
}
