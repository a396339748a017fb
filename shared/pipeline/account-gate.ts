// Use case: the account gate. Whether an account may call Keap at all, decided in this one place for
// the scheduler and the worker: not while Keap rejects the key version its secret holds. A rejected
// account is stopped here (on a 401), its jobs are parked here (a write waits in the queue, a sync is
// dropped for the scheduler to enqueue again), and it opens again here once a new key is stored.
import type { AccountConfig } from '../config/app-config.ts';
import type { Job } from '../jobs/schema.ts';
import type { AccountStatus } from '../store/index.ts';
import type { PipelineDeps } from './deps.ts';
import type { AccountKey } from './keys.ts';
import type { Log } from './ports.ts';
import { MAX_DELAY_SECONDS } from './queue.ts';

/** The shortest wait of a parked write: a key replaced soon after the 401 resumes writes this soon. */
export const PARK_MIN_MS = 15_000;

/**
 * How long a write of an account stopped for `stoppedForMs` waits before it looks again: a quarter of
 * the time stopped, from PARK_MIN_MS to SQS's longest delay. Writes resume within a minute of a key
 * replaced at once, and an account left stopped for a day costs one status read per write every
 * 15 minutes, not every 30 s. (SQS cannot wake a delayed message when the key is stored.)
 */
export function parkDelayMs(stoppedForMs: number): number {
  const quarter = Math.round(Math.max(0, stoppedForMs) / 4);
  return Math.min(MAX_DELAY_SECONDS * 1000, Math.max(PARK_MIN_MS, quarter));
}

export type AccountGate =
  /** The account may call Keap; `key` is the key to use when the gate had to read it afresh. */
  | { open: true; key: AccountKey | undefined }
  /** Keap rejected the key version the secret still holds (since `since`): store a new key to resume. */
  | { open: false; reason: 'key-rejected'; since: string }
  /** The secret could not be read while checking for a new key. */
  | { open: false; reason: 'key-missing'; error: unknown };

type GateDeps = Pick<PipelineDeps, 'accounts' | 'keys' | 'log'>;

/** Whether `status` says Keap rejected secret version `secretVersionId` (a newer version may be tried). */
export function isKeyRejected(status: AccountStatus, secretVersionId: string): boolean {
  return status.state === 'key-rejected' && status.secretVersionRejected === secretVersionId;
}

/**
 * Opens the account unless Keap rejected its key. `key`: the key the caller already read (the worker);
 * when it is the rejected version the secret is read once more, since it may have been rotated. A
 * stopped account whose secret now holds another version is marked active again.
 */
export async function openAccount(
  account: AccountConfig,
  deps: GateDeps,
  key?: AccountKey,
  /** The status the caller already read (the scheduler's batched read); otherwise it is read here. */
  known?: AccountStatus,
): Promise<AccountGate> {
  const status = known ?? (await deps.accounts.getStatus(account.id));
  if (status.state !== 'key-rejected') return { open: true, key: undefined };
  let current = key;
  if (current === undefined || isKeyRejected(status, current.versionId)) {
    try {
      current = await deps.keys.get(account, { fresh: true });
    } catch (error) {
      return { open: false, reason: 'key-missing', error };
    }
  }
  if (isKeyRejected(status, current.versionId))
    return { open: false, reason: 'key-rejected', since: status.since };
  await deps.accounts.markActive(account.id);
  deps.log.info('A new key was stored for the account: it is active again', { account: account.id });
  return { open: true, key: current };
}

/** Keap answered 401 to `secretVersionId`: the account is stopped until a new key is stored. */
export async function stopAccount(
  account: AccountConfig,
  secretVersionId: string,
  error: Error,
  deps: Pick<PipelineDeps, 'accounts' | 'metrics'>,
  log: Log,
): Promise<void> {
  await deps.accounts.markKeyRejected(account.id, secretVersionId, error.message);
  deps.metrics.add('KeyRejected', 1, { account: account.id });
  log.error('Keap rejected the key: the account is stopped until a new key is stored', {
    error: error.name,
    message: error.message,
  });
}

/**
 * The account is stopped (since `since`, an ISO time). A write waits in the queue (re-sent with
 * `parkDelayMs`, no Keap call) until a new key is stored; a sync is dropped and its lease freed,
 * because the scheduler enqueues it again as soon as the account is open, without waiting for the
 * lease to expire.
 */
export async function parkJob(
  job: Job,
  account: AccountConfig,
  since: string,
  deps: Pick<PipelineDeps, 'leases' | 'queue' | 'metrics'>,
  log: Log,
  now: number = Date.now(),
): Promise<void> {
  if (job.kind === 'sync') {
    if (job.runId) await deps.leases.release(account.id, job.resource, job.runId);
    log.warn('The account is stopped: Keap rejected its key. The sync resumes when a new key is stored');
    deps.metrics.add('JobsSkipped', 1, { account: account.id, reason: 'key-rejected' });
    return;
  }
  const stoppedAt = Date.parse(since);
  const delayMs = parkDelayMs(Number.isFinite(stoppedAt) ? now - stoppedAt : 0);
  await deps.queue.requeue(job, delayMs);
  log.warn('The account is stopped: Keap rejected its key. The write waits for a new key', {
    next: 'park',
    retryInMs: delayMs,
  });
  deps.metrics.add('Deferrals', 1, { account: account.id, reason: 'key-rejected' });
}
