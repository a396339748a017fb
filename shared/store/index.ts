// Public surface of the DynamoDB store: the Keap mirror, the sync state table's record stores (runs,
// leases, accounts, writes), and their key design.
export { type AccountStatus, DynamoAccountStore } from './accounts.ts';
export {
  callDynamo,
  type DynamoRetrySettings,
  type DynamoRetrySettingsInput,
  dynamoRetryConfig,
  isTransient,
  parseDynamoRetrySettings,
} from './dynamo.ts';
export * from './errors.ts';
export { DynamoLeaseStore, type InvocationClaim, type Lease } from './leases.ts';
export {
  estimateItemSize,
  type MirrorItem,
  type MirrorRecord,
  MirrorStore,
  type MirrorStoreOptions,
  type MirrorTombstone,
  type MirrorWrite,
  type TombstoneResult,
  type UpsertResult,
} from './mirror.ts';
export {
  type CustomFieldDef,
  DynamoModelStore,
  type NamedCustomFields,
  type StoredModel,
} from './models.ts';
export {
  AccountDirectory,
  AccountExistsError,
  DynamoAccountRegistry,
  REGISTRY_PARTITION,
  type RegisteredAccount,
  UnknownAccountError,
} from './registry.ts';
export {
  type Checkpoint,
  type CheckpointProgress,
  type Cursor,
  DynamoRunStore,
  type StartRunResult,
} from './runs.ts';
export {
  type MirrorSettings,
  type MirrorSettingsInput,
  mirrorSettingsSchema,
  parseMirrorSettings,
  parseStateSettings,
  type StateSettings,
  type StateSettingsInput,
  stateSettingsSchema,
} from './settings.ts';
export { openStateStores, type StateStoreOptions, type StateStores } from './state.ts';
export {
  createMirrorTable,
  createStateTable,
  KEY_SEPARATOR,
  MAX_ITEM_BYTES,
  MIRROR_TABLE,
  mirrorPartitionKey,
  STATE_TABLE,
  stateKey,
} from './tables.ts';
export {
  type BeginWriteResult,
  DynamoWriteStore,
  type WriteFailure,
  type WriteKind,
  type WriteOutcome,
  type WriteRecord,
  type WriteRequest,
} from './writes.ts';
