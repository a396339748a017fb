// Use case policy: which failures are transient, and how soon a job that hit one comes back. A
// transient failure is re-sent through the queue with an exponential backoff of seconds (not left to
// the queue's visibility timeout), until worker.maxRetries failures in a row dead-letter it.
import type { AccountConfig } from '../config/app-config.ts';
import type { Job } from '../jobs/schema.ts';
import { RetryableError, UnexpectedResponseError } from '../keap/index.ts';
import { LedgerContentionError, LedgerUnavailableError } from '../quota/index.ts';
import { StoreContentionError, StoreUnavailableError } from '../store/index.ts';
import type { PipelineDeps } from './deps.ts';
import type { Log } from './ports.ts';
import { WriteClaimNotReleasedError } from './writes.ts';

/** First retry delay; doubles per failure in a row. */
export const RETRY_BASE_MS = 1_000;
/** Longest retry delay (well under SQS's 15-minute message delay). */
export const RETRY_MAX_MS = 60_000;

/**
 * True for a failure that may not happen again: Keap timed out, failed on the network or with a 5xx,
 * or answered with a body this client cannot read (cut or HTML), after the client's own retries; the
 * quota ledger or the state store was unavailable or contended. A write whose outcome is unknown never
 * reaches here (it is recorded and not repeated).
 */
export function isTransient(err: unknown): err is Error {
  if (err instanceof RetryableError) return !err.outcomeUnknown;
  if (err instanceof UnexpectedResponseError) return true;
  if (err instanceof LedgerContentionError || err instanceof LedgerUnavailableError) return true;
  if (err instanceof WriteClaimNotReleasedError) return true;
  if (err instanceof StoreUnavailableError) return err.retryable;
  return err instanceof StoreContentionError;
}

/**
 * The delay before retry number `failures` (1 = the first): 2^(failures-1) seconds, capped, with
 * "equal jitter" (between half and all of it) so jobs that failed together do not return together.
 */
export function retryDelayMs(failures: number, random: () => number = Math.random): number {
  const cap = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.max(0, failures - 1));
  return Math.round(cap / 2 + random() * (cap / 2));
}

/** The message a failed job came in (its body as received, for the dead-letter queue). */
export interface ReceivedMessage {
  body: string;
  messageId: string;
}

/**
 * A job failed on a transient error: re-send it through the queue after a backoff of seconds, or,
 * after worker.maxRetries failures in a row, dead-letter it (`retries-exhausted`) with the last error.
 * Logged once either way, with the error class, the failure count and what happens next. A sync keeps
 * its run id, so the retry resumes its checkpoint under the lease it holds.
 */
export async function retryLater(
  job: Job,
  err: Error,
  message: ReceivedMessage,
  account: AccountConfig,
  deps: PipelineDeps,
  log: Log,
): Promise<void> {
  const { queue, leases, metrics, config } = deps;
  const failures = (job.failures ?? 0) + 1;
  const { maxRetries, leaseTtlMs } = config.worker;
  const fields = { error: err.name, detail: err.message, failures, maxRetries };
  const lease =
    job.kind === 'sync' && job.runId !== undefined ? { resource: job.resource, runId: job.runId } : null;
  if (failures > maxRetries) {
    await queue.deadLetter(
      message.body,
      'retries-exhausted',
      `${err.name}: ${err.message}`,
      message.messageId,
    );
    metrics.add('DeadLetters', 1, { reason: 'retries-exhausted' });
    // The scheduler may start the list again at its next tick (the checkpoint is taken over then).
    if (lease) await leases.release(account.id, lease.resource, lease.runId).catch(() => false);
    log.error('Job failed on a transient error too many times in a row: dead-lettered', {
      ...fields,
      next: 'dead-letter',
      reason: 'retries-exhausted',
    });
    return;
  }
  const delayMs = retryDelayMs(failures);
  // A write whose claim never reached Keap tells its retry so (the claim is taken over at once).
  const unsent =
    err instanceof WriteClaimNotReleasedError && job.kind !== 'sync' && job.kind !== 'hookEvent'
      ? { unsentAttempt: err.attempt }
      : {};
  await queue.requeue({ ...job, failures, ...unsent }, delayMs);
  if (lease) {
    await leases.renew(account.id, lease.resource, lease.runId, leaseTtlMs + delayMs).catch((e: unknown) => {
      // The retry is queued; a lease that lapses only lets the scheduler start the list sooner.
      log.warn('Could not renew the lease of a sync waiting for its retry', {
        error: e instanceof Error ? e.name : String(e),
      });
    });
  }
  log.warn('Job failed on a transient error; it is retried after a backoff', {
    ...fields,
    next: 'retry',
    retryInMs: delayMs,
  });
}
