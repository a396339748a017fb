// Handler (adapter): the worker Lambda's SQS batch handler, with partial batch failures. Each record
// is validated, then run as a sync or a write; poison goes to the dead-letter queue with its reason.
import { randomUUID } from 'node:crypto';
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { AccountConfig } from '../config/app-config.ts';
import { type Job, PoisonMessageError, parseJob } from '../jobs/schema.ts';
import { KeyRejectedError } from '../keap/index.ts';
import { IdempotencyConflictError } from '../store/index.ts';
import { openAccount, parkJob, stopAccount } from './account-gate.ts';
import { InvocationDeadline } from './deadline.ts';
import { ClientCache, type PipelineDeps } from './deps.ts';
import { runHookCheck } from './hook-check.ts';
import { runHookEvent } from './hooks.ts';
import { KeySecretError } from './keys.ts';
import { type Log, withFields } from './ports.ts';
import { isTransient, retryLater } from './retry.ts';
import { runSweep } from './sweep.ts';
import { type Invocation, runSync } from './sync.ts';
import { runWrite } from './writes.ts';

export type WorkerHandler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

export function createWorkerHandler(deps: PipelineDeps): WorkerHandler {
  const clients = new ClientCache(deps);
  return async (event, context) => {
    // One deadline for the whole batch: its records page concurrently within this invocation's time.
    const deadline = new InvocationDeadline(
      () => context.getRemainingTimeInMillis(),
      deps.config.worker.safetyMarginMs,
    );
    try {
      return await processPartialResponse(
        event,
        (record: SQSRecord) => handleRecord(record, deadline, deps, clients),
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
      if (late.handoverGapMinMs !== null) deps.metrics.add('HandoverGapMinMs', late.handoverGapMinMs);
      if (late.max > late.toleranceMs * 0.8) {
        deps.log.warn('Calls left close to the ledger lateness tolerance', {
          sendLatenessP99Ms: Math.round(late.p99),
          sendLatenessMaxMs: Math.round(late.max),
          callsRefused: late.refused,
          handovers: late.handovers,
          handoverGapMinMs: late.handoverGapMinMs === null ? null : Math.round(late.handoverGapMinMs),
          toleranceMs: late.toleranceMs,
          spikeMarginMs: late.spikeMarginMs,
        });
      }
    }
  };
}

async function handleRecord(
  record: SQSRecord,
  invocation: Invocation,
  deps: PipelineDeps,
  clients: ClientCache,
) {
  const { log: rootLog, metrics, queue } = deps;
  let job: Job;
  let account: AccountConfig | undefined;
  try {
    job = parseJob(record.body);
    // A sync names its run before any work, so a retry after a transient failure resumes that run.
    if (job.kind === 'sync' && job.runId === undefined) job = { ...job, runId: randomUUID() };
    account = (await deps.directory.find(job.account))?.account;
    if (!account) {
      throw new PoisonMessageError(
        'unknown-account',
        `The account "${job.account}" is not registered; add it with "keap-sync accounts add" or fix the message.`,
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
    ...(job.kind === 'sync' || job.kind === 'hookEvent' || job.kind === 'sweep'
      ? { resource: job.resource }
      : job.kind === 'hookCheck'
        ? {}
        : { idempotencyKey: job.idempotencyKey }),
    attempt: job.attempt,
  });
  try {
    await runJob(job, account, invocation, deps, clients, log);
  } catch (err) {
    // A timeout, 5xx, unreadable body, or unavailable ledger or store: back in seconds, not after
    // the visibility timeout, and this record is done.
    if (isTransient(err)) return retryLater(job, err, record, account, deps, log);
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
  invocation: Invocation,
  deps: PipelineDeps,
  clients: ClientCache,
  log: Log,
): Promise<void> {
  let key = await deps.keys.get(account).catch((err: unknown) => {
    if (err instanceof KeySecretError) log.error(err.message, { error: err.name });
    throw err;
  });
  const gate = await openAccount(account, deps, key);
  if (!gate.open) {
    if (gate.reason === 'key-missing') throw gate.error;
    await parkJob(job, account, gate.since, deps, log);
    return;
  }
  key = gate.key ?? key;
  for (let attempt = 0; ; attempt++) {
    const client = clients.for(account, key);
    try {
      if (job.kind === 'sync') {
        await runSync(job, account, client, deps, invocation, log);
      } else if (job.kind === 'hookEvent') {
        await runHookEvent(job, account, client, deps, log);
      } else if (job.kind === 'hookCheck') {
        await runHookCheck(job, account, client, deps, log);
      } else if (job.kind === 'sweep') {
        await runSweep(job, account, client, deps, invocation, log);
      } else {
        await runWrite(job, account, client, deps, log);
      }
      return;
    } catch (err) {
      if (!(err instanceof KeyRejectedError)) throw err;
      clients.markRejected(account.id, key.versionId);
      // The key may have been rotated since it was cached: read it once more before giving up.
      const fresh = await deps.keys.get(account, { fresh: true });
      if (attempt === 0 && fresh.versionId !== key.versionId) {
        key = fresh;
        continue;
      }
      await stopAccount(account, fresh.versionId, err, deps, log);
      await parkJob(job, account, new Date().toISOString(), deps, log);
      return;
    }
  }
}
