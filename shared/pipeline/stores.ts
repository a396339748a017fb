// Ports: the state, mirror, queue and keys the use cases (scheduler, sync, writes, worker) read and
// write. The DynamoDB, SQS and Secrets Manager adapters implement them; compose.ts wires them for the
// Lambdas and the local runtime alike, and a test may pass any object that fits.
import type { AccountConfig } from '../config/app-config.ts';
import type { Job, JobInput } from '../jobs/schema.ts';
import type {
  AccountStatus,
  BeginWriteResult,
  Checkpoint,
  CheckpointProgress,
  Cursor,
  InvocationClaim,
  Lease,
  MirrorItem,
  MirrorRecord,
  MirrorTombstone,
  RegisteredAccount,
  StartRunResult,
  TombstoneResult,
  UpsertResult,
  WriteFailure,
  WriteOutcome,
  WriteRecord,
  WriteRequest,
} from '../store/index.ts';
import type { AccountKey } from './keys.ts';

/** Cursors and the checkpoint of the run in progress, per (account, resource). */
export interface RunStore {
  getCursor(account: string, resource: string): Promise<Cursor>;
  /** Many cursors in batched reads (the scheduler's one read of every list's position). */
  getCursors(pairs: ReadonlyArray<{ account: string; resource: string }>): Promise<Cursor[]>;
  /** `runId` is the lease owner too: another run's checkpoint is taken over only once it lost its lease. */
  start(account: string, resource: string, runId: string, mode: string): Promise<StartRunResult>;
  /** Throws StaleRunError when `runId` no longer owns the checkpoint. */
  checkpoint(
    account: string,
    resource: string,
    runId: string,
    progress: CheckpointProgress,
  ): Promise<Checkpoint>;
  finish(account: string, resource: string, runId: string, newHighWaterMs: number | null): Promise<Cursor>;
  /** The list's size a finished sweep found (Cursor.listRecords); false for a list never synced. */
  recordListSize(account: string, resource: string, records: number): Promise<boolean>;
}

/** The (account, resource) lease; its owner is the run id of the sync it was taken for. */
export interface LeaseStore {
  acquire(account: string, resource: string, owner: string, ttlMs: number, nowMs?: number): Promise<boolean>;
  renew(account: string, resource: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Renews `owner`'s lease, or takes it when free or expired. */
  claim(account: string, resource: string, owner: string, ttlMs: number): Promise<boolean>;
  /** claim, fenced by the job attempt: one invocation at a time runs an attempt of a run. */
  claimInvocation(
    account: string,
    resource: string,
    owner: string,
    attempt: number,
    ttlMs: number,
    holdUntilMs: number,
  ): Promise<InvocationClaim>;
  release(account: string, resource: string, owner: string): Promise<boolean>;
  get(account: string, resource: string): Promise<Lease | undefined>;
  /** Many leases in batched reads (the scheduler skips lists whose lease is live without a write). */
  getMany(pairs: ReadonlyArray<{ account: string; resource: string }>): Promise<Array<Lease | undefined>>;
}

/** Each account's key status (read and changed only through the account gate). */
export interface AccountStore {
  getStatus(account: string): Promise<AccountStatus>;
  /** Many accounts' status in batched reads (the scheduler's). */
  getStatuses(accounts: readonly string[]): Promise<Map<string, AccountStatus>>;
  markKeyRejected(account: string, secretVersionId: string, reason: string): Promise<AccountStatus>;
  markActive(account: string): Promise<AccountStatus>;
}

/** The accounts to sync: the registry (plus, locally, the configuration file's unseeded accounts). */
export interface AccountDirectoryPort {
  list(): Promise<RegisteredAccount[]>;
  /** The account a job names, or undefined when it is not registered. */
  find(id: string): Promise<RegisteredAccount | undefined>;
}

/** Write idempotency records and their outcomes. */
export interface WriteStore {
  begin(idempotencyKey: string, request: WriteRequest): Promise<BeginWriteResult>;
  complete(idempotencyKey: string, outcome: WriteOutcome): Promise<WriteRecord>;
  fail(idempotencyKey: string, error: Error | WriteFailure, retryable: boolean): Promise<WriteRecord>;
  getOutcome(idempotencyKey: string): Promise<WriteRecord | undefined>;
}

/** The mirror of Keap's lists. */
export interface Mirror {
  /** With `signal`, stops starting puts once it fires and throws MirrorWriteStoppedError. */
  upsertMany(
    account: string,
    resource: string,
    records: readonly MirrorRecord[],
    options?: { signal?: AbortSignal },
  ): Promise<UpsertResult>;
  /** Marks records Keap deleted (tombstones); an older deletion or a redelivered one changes nothing. */
  tombstoneMany(
    account: string,
    resource: string,
    tombstones: readonly MirrorTombstone[],
  ): Promise<TombstoneResult>;
  count(account: string, resource: string): Promise<number>;
  /** Every mirrored record of the list, tombstones too (the reconciliation sweep compares them). */
  iterate?(account: string, resource: string, options?: { prefix?: string }): AsyncIterable<MirrorItem>;
}

/** The job queue and its dead-letter queue. */
export interface Queue {
  /** A new job (the scheduler, other systems). */
  send(job: JobInput, delayMs?: number): Promise<void>;
  /** Many new jobs in batches (SendMessageBatch); resolves to the jobs that were refused. */
  sendMany(jobs: readonly JobInput[]): Promise<JobInput[]>;
  /** The same job again as its next attempt: a continuation, a deferral, a job waiting for a new key. */
  requeue<J extends Job>(job: J, delayMs?: number): Promise<void>;
  deadLetter(body: string, reason: string, detail: string, messageId: string): Promise<void>;
}

/** Each account's Keap key (Secrets Manager behind a cache). */
export interface KeySource {
  get(account: AccountConfig, options?: { fresh?: boolean }): Promise<AccountKey>;
}

/** The ids a reconciliation sweep read in earlier messages of its run. */
export interface SweepIdStore {
  /** Stores ids as chunks from index `from`; resolves to the next index. */
  save(runId: string, from: number, ids: readonly string[]): Promise<number>;
  load(runId: string): Promise<string[]>;
  clear(runId: string, chunks: number): Promise<void>;
}
