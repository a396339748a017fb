// Public surface of the Keap REST client.
export {
  type ByIdResource,
  type ByIdResult,
  type CallOptions,
  type ContactInput,
  type DuplicateOption,
  deriveKeyId,
  KeapClient,
  type KeapClientOptions,
  type NoteInput,
  type TagChangeResult,
} from './client.ts';
export * from './errors.ts';
export {
  keapTime,
  type Page,
  type PageOptions,
  type PageOptionsFor,
  type ReadResult,
  type TagPageOptions,
  type TimeInput,
} from './paging.ts';
export {
  type Company,
  type Contact,
  type CustomFieldMeta,
  type IncrementalMode,
  MODEL_OBJECTS,
  type ModelObject,
  type Note,
  type ObjectModel,
  type Opportunity,
  type Order,
  type Product,
  RESOURCE_NAMES,
  RESOURCES,
  type RecordTypes,
  type ResourceName,
  type ResourceSpec,
  type RestHook,
  type Subscription,
  type Tag,
  type TaggedContact,
  type Task,
  type User,
} from './resources.ts';
export {
  DEFAULT_BASE_URL,
  type KeapClientSettings,
  type KeapClientSettingsInput,
  keapClientSettingsSchema,
  parseKeapClientSettings,
} from './settings.ts';
export {
  type KeapLogger,
  type QuotaLedgerPort,
  SlotPool,
  silentLogger,
  type TransportStats,
} from './transport.ts';
