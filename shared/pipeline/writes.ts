// Use case: one write operation from the queue (upsert a contact, apply or remove tags, add a note).
// An idempotency record makes a redelivered or duplicated message never repeat a create; the outcome
// is recorded for the sender to read.
import { createHash } from 'node:crypto';
import type { AccountConfig } from '../config/app-config.ts';
import type { WriteJob } from '../jobs/schema.ts';
import {
  type ContactInput,
  type KeapClient,
  KeapError,
  KeyRejectedError,
  type NoteInput,
  QuotaDeferredError,
  RetryableError,
} from '../keap/index.ts';
import { LedgerContentionError, LedgerUnavailableError } from '../quota/index.ts';
import type { PipelineDeps } from './deps.ts';
import type { Log } from './ports.ts';
import { deferralDelayMs } from './queue.ts';

export type WriteJobOutcome =
  | { status: 'done'; outcome: Record<string, unknown> }
  | { status: 'duplicate' }
  | { status: 'failed'; error: string }
  | { status: 'deferred'; retryAt: number }
  | { status: 'outcome-unknown' };

/** A write whose earlier attempt is still in progress: retry the message later (visibility timeout). */
export class WriteInProgressError extends Error {
  constructor(idempotencyKey: string) {
    super(`Write ${idempotencyKey} is being performed by another attempt; this delivery will be retried.`);
    this.name = 'WriteInProgressError';
  }
}

function requestHash(job: WriteJob): string {
  const { heldSlots: _h, attempt: _a, failures: _f, unsentAttempt: _u, ...request } = job;
  return createHash('sha256').update(stableJson(request)).digest('hex').slice(0, 32);
}

function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

async function perform(job: WriteJob, client: KeapClient): Promise<Record<string, unknown>> {
  // Nothing in the message can reserve or skip a slot: every call asks the ledger.
  const call = { priority: 'interactive' as const };
  switch (job.kind) {
    case 'upsertContact': {
      const r = await client.upsertContact(job.contact as ContactInput, {
        ...call,
        duplicateOption: job.duplicateOption,
      });
      return { contactId: r.contact.id, created: r.created };
    }
    case 'applyTags':
    case 'removeTags': {
      const r =
        job.kind === 'applyTags'
          ? await client.applyTags(job.tagId, job.contactIds, call)
          : await client.removeTags(job.tagId, job.contactIds, call);
      return { tagId: job.tagId, contacts: r.contacts, batches: r.batches, results: r.results };
    }
    case 'createNote': {
      // The job carries the note's text as `body` (Keap's field is `text`, and the client drops
      // properties it does not know): send it as `text` unless the job set `text` itself.
      const { body, ...rest } = job.note;
      const input = rest.text === undefined && body !== undefined ? { ...rest, text: body } : rest;
      const note = await client.createNote(job.contactId, input as NoteInput, call);
      return { noteId: note.id, contactId: job.contactId };
    }
  }
}

export async function runWrite(
  job: WriteJob,
  account: AccountConfig,
  client: KeapClient,
  deps: PipelineDeps,
  log: Log,
): Promise<WriteJobOutcome> {
  const { writes, queue, metrics, ledger } = deps;
  const dims = { account: account.id, operation: job.kind };
  const begin = await writes.begin(job.idempotencyKey, {
    kind: job.kind === 'createNote' ? 'create' : 'safe',
    account: account.id,
    requestHash: requestHash(job),
    operation: job.kind,
    ...(job.unsentAttempt === undefined ? {} : { unsentAttempt: job.unsentAttempt }),
  });
  if (begin.state === 'done' || begin.state === 'failed') {
    metrics.add('WritesDuplicate', 1, dims);
    log.info('This write was already performed; the duplicate delivery is acknowledged', {
      state: begin.state,
    });
    return { status: 'duplicate' };
  }
  if (begin.state === 'in-progress') {
    if (begin.unknown) {
      log.error('An earlier attempt of this create may or may not have reached Keap; it is not repeated', {
        since: begin.since,
      });
      return { status: 'outcome-unknown' };
    }
    throw new WriteInProgressError(job.idempotencyKey);
  }
  const claimed = begin.attempt;
  let outcome: Record<string, unknown>;
  try {
    outcome = await perform(job, client);
  } catch (err) {
    if (err instanceof QuotaDeferredError) {
      // Nothing was sent: give the write up for the next delivery, then defer through the queue.
      await writes.fail(job.idempotencyKey, err, true);
      await queue.requeue(job, deferralDelayMs(err.retryAt, ledger.now()));
      metrics.add('Deferrals', 1, { ...dims, reason: err.reason });
      return { status: 'deferred', retryAt: err.retryAt };
    }
    if (err instanceof KeyRejectedError) {
      await writes.fail(job.idempotencyKey, err, true);
      throw err;
    }
    if (err instanceof RetryableError) {
      // A create whose answer was lost may have happened: never let it be repeated blindly.
      await writes.fail(job.idempotencyKey, err, !err.outcomeUnknown);
      if (err.outcomeUnknown) return { status: 'outcome-unknown' };
      throw err;
    }
    if (err instanceof KeapError) {
      await writes.fail(job.idempotencyKey, err, false);
      log.warn('Keap refused the write; the failure is recorded for the sender', {
        error: err.name,
        message: err.message,
      });
      return { status: 'failed', error: err.name };
    }
    const error = err instanceof Error ? err : new Error(String(err));
    // The ledger allowed no call, so Keap never saw this attempt. If even its release cannot be
    // recorded (the state table is down too), the retry carries the attempt number and takes the
    // claim over, instead of finding it in progress for writeTakeoverAfterMs (16 minutes), which for a
    // create would end as outcome-unknown: a write lost though it never reached Keap.
    const unsent = err instanceof LedgerUnavailableError || err instanceof LedgerContentionError;
    try {
      await writes.fail(job.idempotencyKey, error, true);
    } catch (recordErr) {
      if (unsent) throw new WriteClaimNotReleasedError(claimed, error);
      throw recordErr;
    }
    throw err;
  }
  // Keap took the write. Recording it may fail (the state table down): the job is then retried and
  // finds its claim in progress, never a claim marked retryable, so the write is not repeated.
  await writes.complete(job.idempotencyKey, outcome);
  metrics.add('WritesDone', 1, dims);
  log.info('Write performed', { outcome });
  return { status: 'done', outcome };
}

/**
 * A write attempt that never reached Keap (the ledger allowed no call) could not record its own
 * release. Transient: the retry names `attempt` as unsent so its claim is taken over at once.
 */
export class WriteClaimNotReleasedError extends Error {
  readonly attempt: number;
  constructor(attempt: number, cause: Error) {
    super(
      `Write attempt ${attempt} never reached Keap and its release could not be recorded: ${cause.message}`,
      {
        cause,
      },
    );
    this.name = 'WriteClaimNotReleasedError';
    this.attempt = attempt;
  }
}
