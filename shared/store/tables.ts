// Adapter: the key design of the mirror and state tables (shared with the CDK stack and the README) and
// their creation for local runs and tests (the CDK stack owns the tables in AWS).
import {
  CreateTableCommand,
  type CreateTableCommandInput,
  type DynamoDBClient,
  ResourceInUseException,
  UpdateTimeToLiveCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import { checkInput, idField, KEY_SEPARATOR, nameField } from './fields.ts';

export { KEY_SEPARATOR };

/** DynamoDB's item size limit (attribute names and values, UTF-8). */
export const MAX_ITEM_BYTES = 400 * 1024;

/** Mirror table: one item per Keap record. */
/** The mirror's TTL attribute (tombstones only). */
const MIRROR_TTL_ATTRIBUTE = 'expiresAt';

export const MIRROR_TABLE = {
  partitionKey: 'pk',
  sortKey: 'id',
  /** `pk` value: `<account>#<resource>`; `id` is the Keap record id. */
  partitionKeyFormat: `<account>${KEY_SEPARATOR}<resource>`,
  /** Stream of changes for downstream consumers. */
  streamViewType: 'NEW_AND_OLD_IMAGES',
  /** Epoch seconds after which AWS may delete a tombstone (`mirror.tombstoneDays`). Never relied on. */
  ttlAttribute: MIRROR_TTL_ATTRIBUTE,
  attributes: {
    data: 'data',
    updateTimeMs: 'ut',
    updateTime: 'updateTime',
    syncedAt: 'syncedAt',
    account: 'account',
    resource: 'resource',
    /** Tombstones only: when Keap deleted the record (ISO, and epoch ms); `data` keeps its last version. */
    deletedAt: 'deletedAt',
    deletedAtMs: 'deletedAtMs',
    /** Tombstones only: epoch seconds after which DynamoDB's TTL may remove the item. Never relied on. */
    expiresAt: MIRROR_TTL_ATTRIBUTE,
    /** Lists with a custom-field model: `{<field_name>: value}` of the record's custom fields. */
    customFields: 'customFields',
    /** Beside `customFields`: `{<field_name>: {id, label}}`, from the list's model. */
    customFieldInfo: 'customFieldInfo',
  },
} as const;

/** State table: cursors with checkpoints, leases, account status, write records, custom-field models; the sort key names the type. */
export const STATE_TABLE = {
  partitionKey: 'pk',
  sortKey: 'sk',
  /** Epoch seconds after which AWS may delete the item (leases, write records). Never relied on. */
  ttlAttribute: 'ttl',
  items: {
    cursor: { pk: `<account>${KEY_SEPARATOR}<resource>`, sk: 'cursor' },
    lease: { pk: `<account>${KEY_SEPARATOR}<resource>`, sk: 'lease' },
    account: { pk: '<account>', sk: 'account' },
    /** The account registry: one item per account in one partition (registry.ts). */
    registeredAccount: { pk: '#accounts', sk: '<account>' },
    write: { pk: `write${KEY_SEPARATOR}<idempotencyKey>`, sk: 'write' },
    /** The account's REST hook endpoint: its URL token and the event keys registered with Keap. */
    hooks: { pk: '<account>', sk: 'hooks' },
    /** The custom-field model (`GET /rest/v2/<list>/model`) of one list of one account. */
    model: { pk: `<account>${KEY_SEPARATOR}<resource>`, sk: 'model' },
  },
} as const;

/** Checks an account or resource name: non-empty, at most 200 characters, no `#`. */
export function checkName(field: string, value: unknown): string {
  return checkInput(nameField, field, value);
}

/** Checks a free-form key part (record id, run id, owner, idempotency key): non-empty, at most 1024 characters. */
export function checkId(field: string, value: unknown): string {
  return checkInput(idField, field, value);
}

export function mirrorPartitionKey(account: string, resource: string): string {
  return `${checkName('account', account)}${KEY_SEPARATOR}${checkName('resource', resource)}`;
}

/** Keys of the state table's items. */
export const stateKey = {
  cursor: (account: string, resource: string) => ({
    pk: mirrorPartitionKey(account, resource),
    sk: STATE_TABLE.items.cursor.sk,
  }),
  lease: (account: string, resource: string) => ({
    pk: mirrorPartitionKey(account, resource),
    sk: STATE_TABLE.items.lease.sk,
  }),
  account: (account: string) => ({ pk: checkName('account', account), sk: STATE_TABLE.items.account.sk }),
  hooks: (account: string) => ({ pk: checkName('account', account), sk: STATE_TABLE.items.hooks.sk }),
  model: (account: string, resource: string) => ({
    pk: mirrorPartitionKey(account, resource),
    sk: STATE_TABLE.items.model.sk,
  }),
  write: (idempotencyKey: string) => ({
    pk: `write${KEY_SEPARATOR}${checkId('idempotencyKey', idempotencyKey)}`,
    sk: STATE_TABLE.items.write.sk,
  }),
};

async function createTable(client: DynamoDBClient, input: CreateTableCommandInput): Promise<void> {
  try {
    await client.send(new CreateTableCommand(input));
  } catch (err) {
    if (!(err instanceof ResourceInUseException)) throw err;
  }
  await waitUntilTableExists({ client, maxWaitTime: 60, minDelay: 1 }, { TableName: input.TableName });
}

function isUnsupported(err: unknown): boolean {
  return (
    err instanceof Error &&
    (err.name === 'UnknownOperationException' ||
      (err.name === 'ValidationException' && /stream|time ?to ?live|ttl/i.test(err.message)))
  );
}

/**
 * Creates the mirror table (on-demand) and waits until it is ACTIVE; an existing table is accepted.
 * A stream (NEW_AND_OLD_IMAGES) is asked for; an emulator that rejects stream settings gets none.
 */
export async function createMirrorTable(client: DynamoDBClient, tableName: string): Promise<void> {
  const base: CreateTableCommandInput = {
    TableName: tableName,
    AttributeDefinitions: [
      { AttributeName: MIRROR_TABLE.partitionKey, AttributeType: 'S' },
      { AttributeName: MIRROR_TABLE.sortKey, AttributeType: 'S' },
    ],
    KeySchema: [
      { AttributeName: MIRROR_TABLE.partitionKey, KeyType: 'HASH' },
      { AttributeName: MIRROR_TABLE.sortKey, KeyType: 'RANGE' },
    ],
    BillingMode: 'PAY_PER_REQUEST',
  };
  try {
    await createTable(client, {
      ...base,
      StreamSpecification: { StreamEnabled: true, StreamViewType: MIRROR_TABLE.streamViewType },
    });
  } catch (err) {
    if (!isUnsupported(err)) throw err;
    await createTable(client, base);
  }
  await enableTtl(client, tableName, MIRROR_TABLE.ttlAttribute);
}

/** Turns on TTL deletion where the emulator supports it (dynalite does not; correctness never depends on it). */
async function enableTtl(client: DynamoDBClient, tableName: string, attribute: string): Promise<void> {
  try {
    await client.send(
      new UpdateTimeToLiveCommand({
        TableName: tableName,
        TimeToLiveSpecification: { AttributeName: attribute, Enabled: true },
      }),
    );
  } catch (err) {
    // Already enabled (a second call) or not supported by the emulator: TTL is housekeeping only.
    if (!isUnsupported(err) && !(err instanceof Error && /already enabled/i.test(err.message))) throw err;
  }
}

/**
 * Creates the state table (on-demand), waits until it is ACTIVE, and turns on TTL deletion where the
 * emulator supports it (dynalite does not; correctness never depends on it).
 */
export async function createStateTable(client: DynamoDBClient, tableName: string): Promise<void> {
  await createTable(client, {
    TableName: tableName,
    AttributeDefinitions: [
      { AttributeName: STATE_TABLE.partitionKey, AttributeType: 'S' },
      { AttributeName: STATE_TABLE.sortKey, AttributeType: 'S' },
    ],
    KeySchema: [
      { AttributeName: STATE_TABLE.partitionKey, KeyType: 'HASH' },
      { AttributeName: STATE_TABLE.sortKey, KeyType: 'RANGE' },
    ],
    BillingMode: 'PAY_PER_REQUEST',
  });
  await enableTtl(client, tableName, STATE_TABLE.ttlAttribute);
}
