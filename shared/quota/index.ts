// Public surface of the quota ledger.
export type { Decision, DeferReason, Priority, SlotRequest } from './allocator.ts';
export { allocate } from './allocator.ts';
export { ClockOffsetEstimate, type ServerDateSample } from './clock.ts';
export {
  type LedgerConfig,
  type LedgerSettingsInput,
  ledgerSettingsSchema,
  parseLedgerSettings,
} from './config.ts';
export * from './errors.ts';
export {
  applyFeedback,
  type KeapQuotaReading,
  parseKeapQuotaHeaders,
  type WindowReading,
} from './feedback.ts';
export {
  type AcquireOptions,
  type Admission,
  QuotaLedger,
  type QuotaLedgerOptions,
  type QuotaSnapshot,
  type SendLateness,
  type WindowSnapshot,
} from './ledger.ts';
export { cloneState, DAY_MS, decodeState, emptyState, encodeState, type LedgerState } from './state.ts';
export { DynamoLedgerStore, type LedgerStore, type StoredItem, type StoreStats } from './store.ts';
export { createLedgerTable } from './table.ts';
