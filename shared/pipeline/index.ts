// Public surface of the sync pipeline (the code the Lambdas and the local runtime share).

export { type AccountGate, isKeyRejected, openAccount } from './account-gate.ts';
export {
  composePipeline,
  composeStores,
  type Pipeline,
  type PipelineClients,
  type PipelineTarget,
} from './compose.ts';
export { ClientCache, type PipelineDeps } from './deps.ts';
export { APPLIED_LOOKBACK_MS, type HookEventOutcome, runHookEvent } from './hooks.ts';
export { type AccountKey, KeyProvider, KeySecretError } from './keys.ts';
export {
  jsonLog,
  type Log,
  type LogFields,
  MemoryLog,
  MemoryMetrics,
  type MetricName,
  type Metrics,
  withFields,
} from './ports.ts';
export { JobQueue, MAX_DELAY_SECONDS } from './queue.ts';
export { runScheduler, type SchedulerResult, type SkipReason } from './scheduler.ts';
export type { AccountStore, KeySource, LeaseStore, Mirror, Queue, RunStore, WriteStore } from './stores.ts';
export { type Invocation, runSync, type SyncOutcome } from './sync.ts';
export { createWorkerHandler, type WorkerHandler } from './worker.ts';
export { runWrite, WriteInProgressError, type WriteJobOutcome } from './writes.ts';
