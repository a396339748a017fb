// Handler (adapter): the worker Lambda's SQS batch handler, with partial batch failures. Each record
// is validated, then run as a sync or a write; poison goes to the dead-letter queue with its reason.
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { type AccountConfig, findAccount } from '../config/app-config.ts';
import { type Job, PoisonMessageError, parseJob } from '../jobs/schema.ts';
import { KeyRejectedError } from '../keap/index.ts';
import { IdempotencyConflictError, isKeyRejected } from '../store/index.ts';
import { ClientCache, type PipelineDeps } from './deps.ts';
import { KeySecretError } from './keys.ts';
import { type Log, withFields } from './ports.ts';
import { MAX_DELAY_SECONDS } from './queue.ts';
import { runSync } from './sync.ts';
import { runWrite } from './writes.ts';

export type WorkerHandler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

export function createWorkerHandler(deps: PipelineDeps): WorkerHandler {
  const clients = new ClientCache(deps);
  return async (event, context) => {
    try {
      return await processPartialResponse(
        event,
        (record: SQSRecord) => handleRecord(record, context, deps, clients),
        // One processor per invocation: outside Lambda's InvokeStore a processor keeps its records and
        // failures in instance fields, so concurrent invocations sharing one would report (or lose)
        // each other's failures.
        new BatchProcessor(EventType.SQS),
        {
          context,
          throwOnFullBatchFailure: false,
        },
      );
    } finally {
      for (const s of clients.drainStats()) {
        deps.metrics.add('KeapCalls', s.requests, { account: s.account });
        if (s.rateLimited > 0) deps.metrics.add('Keap429s', s.rateLimited, { account: s.account });
      }
      // How close this invocation's calls came to the spike margin (the alarm watches p99 and max).
      const late = deps.ledger.takeSendLateness();
      if (late.count > 0) {
        deps.metrics.add('SendLatenessP50Ms', late.p50);
        deps.metrics.add('SendLatenessP99Ms', late.p99);
        deps.metrics.add('SendLatenessMaxMs', late.max);
      }
      if (late.refused > 0) deps.metrics.add('CallsRefused', late.refused);
      if (late.max > late.toleranceMs * 0.8) {
        deps.log.warn('Calls left close to the ledger lateness tolerance', {
          sendLatenessP99Ms: Math.round(late.p99),
          sendLatenessMaxMs: Math.round(late.max),
          callsRefused: late.refused,
          toleranceMs: late.toleranceMs,
          spikeMarginMs: late.spikeMarginMs,
        });
      }
    }
  };
}

async function handleRecord(record: SQSRecord, context: Context, deps: PipelineDeps, clients: ClientCache) {
  const { log: rootLog, metrics, queue } = deps;
  let job: Job;
  let account: AccountConfig | undefined;
  try {
    job = parseJob(record.body);
    account = findAccount(deps.config, job.account);
    if (!account) {
      throw new PoisonMessageError(
        'unknown-account',
        `The account "${job.account}" is not in the configuration; add it or fix the message.`,
      );
    }
  } catch (err) {
    if (!(err instanceof PoisonMessageError)) throw err;
    await queue.deadLetter(record.body, err.reason, err.message, record.messageId);
    metrics.add('DeadLetters', 1, { reason: err.reason });
    rootLog.warn('Poison message moved to the dead-letter queue', {
      jobId: record.messageId,
      reason: err.reason,
      error: err.message,
    });
    return;
  }
  const log = withFields(rootLog, {
    jobId: record.messageId,
    kind: job.kind,
    account: account.id,
    ...(job.kind === 'sync' ? { resource: job.resource } : { idempotencyKey: job.idempotencyKey }),
    attempt: job.attempt,
  });
  try {
    await runJob(job, account, context, deps, clients, log);
  } catch (err) {
    if (!(err instanceof IdempotencyConflictError)) throw err;
    // The same idempotency key with a different request never succeeds: poison, with its reason.
    await queue.deadLetter(record.body, 'idempotency-conflict', err.message, record.messageId);
    metrics.add('DeadLetters', 1, { reason: 'idempotency-conflict' });
    log.warn('Message reuses an idempotency key for a different request: dead-lettered', {
      error: err.message,
    });
  }
}

async function runJob(
  job: Job,
  account: AccountConfig,
  context: Context,
  deps: PipelineDeps,
  clients: ClientCache,
  log: Log,
): Promise<void> {
  const { state, keys, metrics } = deps;
  let key = await keys.get(account).catch((err: unknown) => {
    if (err instanceof KeySecretError) log.error(err.message, { error: err.name });
    throw err;
  });
  // A key Keap rejected is not used again until a new secret value is stored.
  const status = await state.getAccountStatus(account.id);
  if (status.state === 'key-rejected') {
    if (isKeyRejected(status, key.versionId)) key = await keys.get(account, { fresh: true });
    if (isKeyRejected(status, key.versionId)) {
      await parkForNewKey(job, account, deps, log);
      return;
    }
    await state.markActive(account.id);
    log.info('A new key was stored for the account: it is active again');
  }
  for (let attempt = 0; ; attempt++) {
    const client = clients.for(account, key);
    try {
      if (job.kind === 'sync') {
        await runSync(
          job,
          account,
          client,
          deps,
          { remainingMs: () => context.getRemainingTimeInMillis() },
          log,
        );
      } else {
        await runWrite(job, account, client, deps, log);
      }
      return;
    } catch (err) {
      if (!(err instanceof KeyRejectedError)) throw err;
      clients.markRejected(account.id, key.versionId);
      // The key may have been rotated since it was cached: read it once more before giving up.
      const fresh = await keys.get(account, { fresh: true });
      if (attempt === 0 && fresh.versionId !== key.versionId) {
        key = fresh;
        continue;
      }
      await state.markKeyRejected(account.id, fresh.versionId, err.message);
      metrics.add('KeyRejected', 1, { account: account.id });
      log.error('Keap rejected the key: the account is stopped until a new key is stored', {
        error: err.name,
        message: err.message,
      });
      await parkForNewKey(job, account, deps, log);
      return;
    }
  }
}

/**
 * The account's key is rejected. A write waits in the queue (re-sent with SQS's longest delay, no
 * Keap call) until a new key is stored; a sync is dropped and its lease freed, because the scheduler
 * enqueues it again as soon as the account is active, without waiting for the lease to expire.
 */
async function parkForNewKey(job: Job, account: AccountConfig, deps: PipelineDeps, log: Log): Promise<void> {
  if (job.kind === 'sync') {
    if (job.runId) await deps.state.releaseLease(account.id, job.resource, job.runId);
    log.warn('The account is stopped: Keap rejected its key. The sync resumes when a new key is stored');
    deps.metrics.add('JobsSkipped', 1, { account: account.id, reason: 'key-rejected' });
    return;
  }
  await deps.queue.send(job, MAX_DELAY_SECONDS * 1000);
  log.warn('The account is stopped: Keap rejected its key. The write waits for a new key');
  deps.metrics.add('Deferrals', 1, { account: account.id, reason: 'key-rejected' });
}
