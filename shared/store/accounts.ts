// Adapter: each account's key status in the state table (`<account>`, `account`): active, or the
// secret version Keap rejected. What the pipeline does about it is the account gate's
// (shared/pipeline/account-gate.ts); this module only stores it.
import { z } from 'zod';
import { checkInput, epochMsField, idField, iso, MAX_TEXT } from './fields.ts';
import { itemId, type StateTable } from './table.ts';
import { stateKey } from './tables.ts';

export type AccountStatus =
  | { state: 'active'; since: string | null }
  | { state: 'key-rejected'; reason: string; since: string; secretVersionRejected: string };

const accountItemSchema = z.discriminatedUnion('state', [
  z.object({ state: z.literal('active'), since: z.string() }),
  z.object({
    state: z.literal('key-rejected'),
    since: z.string(),
    reason: z.string(),
    secretVersionRejected: z.string(),
  }),
]);

export class DynamoAccountStore {
  private readonly table: StateTable;
  private readonly now: () => number;

  constructor(table: StateTable, now: () => number) {
    this.table = table;
    this.now = now;
  }

  /** The account's key status; an account never marked is active (since null). */
  async getStatus(account: string): Promise<AccountStatus> {
    return (
      (await this.table.get(stateKey.account(account), accountItemSchema)) ?? { state: 'active', since: null }
    );
  }

  /** The key status of many accounts in BatchGetItem calls of 100 (the scheduler's read). */
  async getStatuses(accounts: readonly string[]): Promise<Map<string, AccountStatus>> {
    const items = await this.table.getMany(accounts.map(stateKey.account), accountItemSchema);
    return new Map(
      accounts.map((a) => [a, items.get(itemId(stateKey.account(a))) ?? { state: 'active', since: null }]),
    );
  }

  /**
   * Marks the account's key rejected by Keap for secret version `secretVersionId`. Idempotent: marking
   * the same version again keeps the first reason and time. Returns the stored status.
   */
  async markKeyRejected(
    account: string,
    secretVersionId: string,
    reason: string,
    nowMs: number = this.now(),
  ): Promise<AccountStatus> {
    const key = stateKey.account(account);
    checkInput(idField, 'secretVersionId', secretVersionId);
    checkInput(
      z.string().min(1, { error: 'must be a non-empty string saying why Keap rejected the key.' }),
      'reason',
      reason,
    );
    checkInput(epochMsField, 'nowMs', nowMs);
    // A failed condition: this version is marked already, and its first reason and time stand.
    await this.table.update('markKeyRejected', key, {
      UpdateExpression:
        'SET #state = :rejected, #reason = :reason, #version = :version, #since = :now, #account = :account, ' +
        '#updatedAt = :now',
      ConditionExpression: 'attribute_not_exists(#state) OR #state <> :rejected OR #version <> :version',
      ExpressionAttributeNames: {
        '#state': 'state',
        '#reason': 'reason',
        '#version': 'secretVersionRejected',
        '#since': 'since',
        '#account': 'account',
        '#updatedAt': 'updatedAt',
      },
      ExpressionAttributeValues: {
        ':rejected': 'key-rejected',
        ':reason': reason.slice(0, MAX_TEXT),
        ':version': secretVersionId,
        ':now': iso(nowMs),
        ':account': account,
      },
    });
    return this.getStatus(account);
  }

  /** Marks the account active (its key works again). Idempotent: an active account keeps its `since`. */
  async markActive(account: string, nowMs: number = this.now()): Promise<AccountStatus> {
    const key = stateKey.account(account);
    checkInput(epochMsField, 'nowMs', nowMs);
    // A failed condition: the account is active already, since its first activation.
    await this.table.update('markActive', key, {
      UpdateExpression:
        'SET #state = :active, #since = :now, #account = :account, #updatedAt = :now REMOVE #reason, #version',
      ConditionExpression: 'attribute_not_exists(#state) OR #state <> :active',
      ExpressionAttributeNames: {
        '#state': 'state',
        '#reason': 'reason',
        '#version': 'secretVersionRejected',
        '#since': 'since',
        '#account': 'account',
        '#updatedAt': 'updatedAt',
      },
      ExpressionAttributeValues: { ':active': 'active', ':now': iso(nowMs), ':account': account },
    });
    return this.getStatus(account);
  }
}
