// Adapter: the sync state table, one record kind per module over one table helper (table.ts):
// runs and checkpoints (runs.ts), leases (leases.ts), account status (accounts.ts), the account
// registry (registry.ts), write idempotency (writes.ts) and custom-field models (models.ts). Every
// change is a single-item conditional write (no transactions), so it
// runs unchanged on DynamoDB, DynamoDB Local and dynalite, and a stale or duplicated worker can never
// overwrite what the current one wrote.
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoAccountStore } from './accounts.ts';
import { DynamoLeaseStore } from './leases.ts';
import { DynamoModelStore } from './models.ts';
import { DynamoAccountRegistry } from './registry.ts';
import { DynamoRunStore } from './runs.ts';
import { parseStateSettings, type StateSettings, type StateSettingsInput } from './settings.ts';
import { DynamoSweepStore } from './sweeps.ts';
import { StateTable } from './table.ts';
import { DynamoWriteStore } from './writes.ts';

export interface StateStoreOptions {
  settings?: StateSettingsInput;
  /** Clock used where a method's `nowMs` is omitted; Date.now by default. */
  now?: () => number;
}

/** The record stores of one state table (partition key `pk`, sort key `sk`; see STATE_TABLE). */
export interface StateStores {
  tableName: string;
  settings: StateSettings;
  runs: DynamoRunStore;
  leases: DynamoLeaseStore;
  accounts: DynamoAccountStore;
  writes: DynamoWriteStore;
  models: DynamoModelStore;
  registry: DynamoAccountRegistry;
  sweeps: DynamoSweepStore;
}

export function openStateStores(
  client: DynamoDBClient,
  tableName: string,
  options: StateStoreOptions = {},
): StateStores {
  const settings = parseStateSettings(options.settings);
  const now = options.now ?? Date.now;
  const table = new StateTable(client, tableName);
  const leases = new DynamoLeaseStore(table, settings.leaseRetentionMs, now);
  return {
    tableName,
    settings,
    runs: new DynamoRunStore(table, leases, now),
    leases,
    accounts: new DynamoAccountStore(table, now),
    writes: new DynamoWriteStore(table, settings, now),
    models: new DynamoModelStore(table),
    registry: new DynamoAccountRegistry(table, now),
    sweeps: new DynamoSweepStore(table, now),
  };
}
