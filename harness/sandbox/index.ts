// Adapter: public surface of the Keap sandbox, a local stand-in for Keap's REST v2 API and its gateway.
export type { ContactInput, DuplicateOption, MutationChange, MutationResult } from './dataset.ts';
export { SANDBOX_DATA_END, SandboxDataset } from './dataset.ts';
export {
  ApiError,
  type ApiErrorDetail,
  SandboxConfigError,
  SandboxError,
  SandboxMutationError,
} from './errors.ts';
export { parseFaults, type SandboxFaults } from './faults.ts';
export { type ArrivalRecord, keyFingerprint, type SandboxKey, spikeLimitHeader } from './gateway.ts';
export {
  CONTACT_DEFAULT_FIELDS,
  GENERATORS,
  type Generator,
  RESOURCE_TYPES,
  type RecordTypes,
  type ResourceType,
  type SandboxRecords,
  SEED_ORDER,
  UPDATE_FIELD,
} from './generators.ts';
export {
  type DeliveryState,
  type HookAttempt,
  type HookDelivery,
  type HookObject,
  type HookSettings,
  type HookStatus,
  type HooksSnapshot,
  type HookVerification,
  KEAP_HOOK_POLICY,
  type SandboxHook,
  SandboxHooks,
} from './hooks.ts';
export {
  DEFAULT_TENANT,
  defaultKeys,
  type RunningSandbox,
  type SandboxOptions,
  startSandbox,
} from './server.ts';
export * from './shapes.ts';
export type { ReadonlyTable } from './tables.ts';
