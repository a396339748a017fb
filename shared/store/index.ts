// Public surface of the DynamoDB store: the Keap mirror, the sync state table, and their key design.
export { isTransient } from './dynamo.ts';
export * from './errors.ts';
export {
  estimateItemSize,
  type MirrorItem,
  type MirrorRecord,
  MirrorStore,
  type MirrorStoreOptions,
  type MirrorWrite,
  type UpsertResult,
} from './mirror.ts';
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
export {
  type AccountStatus,
  type BeginWriteResult,
  type Checkpoint,
  type CheckpointProgress,
  type Cursor,
  isKeyRejected,
  type Lease,
  type StartRunResult,
  StateStore,
  type StateStoreOptions,
  type WriteFailure,
  type WriteKind,
  type WriteOutcome,
  type WriteRecord,
  type WriteRequest,
} from './state.ts';
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
