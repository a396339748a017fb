// Adapter: the account registry in the state table (partition `#accounts`, one item per account, sort
// key the account id): what the scheduler and the worker sync, changed with `keap-sync accounts` and
// never deployed. Each item holds the account exactly as the configuration file would (validated with
// the same schema) and whether it is paused. The account's key status, cursors, leases and quota stay
// in their own items, keyed by the account id as before.
import { z } from 'zod';
import { type AccountConfig, accountSchema } from '../config/app-config.ts';
import { checkInput, epochMsField, iso } from './fields.ts';
import type { StateTable } from './table.ts';
import { checkName } from './tables.ts';

/** The registry's partition key: `#` first, so it can never be an account id (`[a-z0-9-]`). */
export const REGISTRY_PARTITION = '#accounts';

export interface RegisteredAccount {
  account: AccountConfig;
  /** A paused account is not scheduled; its key status, cursors and mirror are kept. */
  paused: boolean;
  addedAt: string;
  updatedAt: string;
  /** Where it came from: the CLI, or the configuration file that seeded it. */
  source: string;
}

const registryItemSchema = z.object({
  account: accountSchema,
  paused: z.boolean(),
  addedAt: z.string(),
  updatedAt: z.string(),
  source: z.string(),
});

/** The account is not in the registry. */
export class UnknownAccountError extends Error {
  readonly account: string;
  constructor(account: string) {
    super(`The account "${account}" is not registered; "keap-sync accounts list" shows the registered ones.`);
    this.name = 'UnknownAccountError';
    this.account = account;
  }
}

/** An account with this id is registered already. */
export class AccountExistsError extends Error {
  readonly account: string;
  constructor(account: string) {
    super(
      `The account "${account}" is registered already; remove it first, or choose another id ` +
        '("keap-sync accounts show" prints what it holds).',
    );
    this.name = 'AccountExistsError';
    this.account = account;
  }
}

const key = (id: string) => ({ pk: REGISTRY_PARTITION, sk: checkName('account', id) });

export class DynamoAccountRegistry {
  private readonly table: StateTable;
  private readonly now: () => number;

  constructor(table: StateTable, now: () => number) {
    this.table = table;
    this.now = now;
  }

  /** Every registered account, by id (one Query of 1 MB pages: ~2,500 accounts per page). */
  async list(): Promise<RegisteredAccount[]> {
    const items = await this.table.queryPartition(REGISTRY_PARTITION, registryItemSchema);
    return items.sort((a, b) => (a.account.id < b.account.id ? -1 : 1));
  }

  async get(id: string): Promise<RegisteredAccount | undefined> {
    return this.table.get(key(id), registryItemSchema);
  }

  /**
   * Registers `account` (validated by the caller with parseAccountConfig). `replace`: overwrite a
   * registered account of the same id (keeping its paused state and addedAt); otherwise
   * AccountExistsError. Returns the stored entry.
   */
  async add(
    account: AccountConfig,
    o: { source: string; replace?: boolean; nowMs?: number } = { source: 'cli' },
  ): Promise<RegisteredAccount> {
    const nowMs = checkInput(epochMsField, 'nowMs', o.nowMs ?? this.now());
    const k = key(account.id);
    if (o.replace) {
      await this.table.update('registerAccount', k, {
        UpdateExpression:
          'SET #account = :account, #source = :source, #updatedAt = :now, ' +
          '#paused = if_not_exists(#paused, :false), #addedAt = if_not_exists(#addedAt, :now)',
        ExpressionAttributeNames: {
          '#account': 'account',
          '#source': 'source',
          '#updatedAt': 'updatedAt',
          '#paused': 'paused',
          '#addedAt': 'addedAt',
        },
        ExpressionAttributeValues: {
          ':account': account,
          ':source': o.source,
          ':now': iso(nowMs),
          ':false': false,
        },
      });
    } else {
      const entry = { account, paused: false, addedAt: iso(nowMs), updatedAt: iso(nowMs), source: o.source };
      const written = await this.table.put('registerAccount', k, entry, {
        ConditionExpression: 'attribute_not_exists(pk)',
      });
      if (!written) throw new AccountExistsError(account.id);
    }
    const stored = await this.get(account.id);
    if (!stored) throw new UnknownAccountError(account.id);
    return stored;
  }

  /**
   * Registers each account of the configuration file that is not registered yet (the registry's
   * version wins: a paused or edited account stays as it is). Returns the ids it added.
   */
  async seed(accounts: readonly AccountConfig[], source: string): Promise<string[]> {
    const added: string[] = [];
    for (const account of accounts) {
      const entry = { account, paused: false, addedAt: iso(this.now()), updatedAt: iso(this.now()), source };
      if (
        await this.table.put('seedAccount', key(account.id), entry, {
          ConditionExpression: 'attribute_not_exists(pk)',
        })
      ) {
        added.push(account.id);
      }
    }
    return added;
  }

  /** Pauses or resumes a registered account; UnknownAccountError when there is none. */
  async setPaused(id: string, paused: boolean, nowMs: number = this.now()): Promise<RegisteredAccount> {
    const done = await this.table.update('pauseAccount', key(id), {
      UpdateExpression: 'SET #paused = :paused, #updatedAt = :now',
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeNames: { '#paused': 'paused', '#updatedAt': 'updatedAt' },
      ExpressionAttributeValues: { ':paused': paused, ':now': iso(nowMs) },
    });
    const stored = done ? await this.get(id) : undefined;
    if (!stored) throw new UnknownAccountError(id);
    return stored;
  }

  /** Removes the account from the registry (its state and mirror items stay); UnknownAccountError when absent. */
  async remove(id: string): Promise<void> {
    const done = await this.table.remove('removeAccount', key(id), {
      ConditionExpression: 'attribute_exists(pk)',
    });
    if (!done) throw new UnknownAccountError(id);
  }
}

/**
 * The registry as the pipeline reads it: the registered accounts, plus the configuration file's
 * accounts that are not registered (a local run or test that never seeded them). In a Lambda the
 * configuration holds no accounts, so this is the registry alone.
 */
export class AccountDirectory {
  private readonly registry: DynamoAccountRegistry;
  private readonly fromConfig: readonly AccountConfig[];
  private readonly cacheMs: number;
  private readonly now: () => number;
  private readonly cache = new Map<string, { at: number; entry: RegisteredAccount }>();

  /** `cacheMs`: how long `find` trusts an entry it read (0: read every time). */
  constructor(
    registry: DynamoAccountRegistry,
    fromConfig: readonly AccountConfig[],
    o: { cacheMs: number; now: () => number },
  ) {
    this.registry = registry;
    this.fromConfig = fromConfig;
    this.cacheMs = o.cacheMs;
    this.now = o.now;
  }

  /** Every account to schedule or report on: registered ones first-class, then unseeded file accounts. */
  async list(): Promise<RegisteredAccount[]> {
    const registered = await this.registry.list();
    const ids = new Set(registered.map((r) => r.account.id));
    const unseeded = this.fromConfig.filter((a) => !ids.has(a.id)).map((a) => fileEntry(a));
    return [...registered, ...unseeded];
  }

  /** The account a job names (cached for `cacheMs`), or undefined when it is neither registered nor in the file. */
  async find(id: string): Promise<RegisteredAccount | undefined> {
    const nowMs = this.now();
    const hit = this.cache.get(id);
    if (hit && nowMs - hit.at < this.cacheMs) return hit.entry;
    const file = this.fromConfig.find((a) => a.id === id);
    const entry = (await this.registry.get(id)) ?? (file ? fileEntry(file) : undefined);
    // Only what was found is cached: an account added a moment ago is found by the next job.
    if (entry) this.cache.set(id, { at: nowMs, entry });
    else this.cache.delete(id);
    return entry;
  }
}

function fileEntry(account: AccountConfig): RegisteredAccount {
  return { account, paused: false, addedAt: '', updatedAt: '', source: 'config file (not seeded)' };
}
