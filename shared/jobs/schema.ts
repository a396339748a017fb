// Domain: the messages on the job queue. Every message is validated with these schemas before any
// work; anything else is poison and goes to the dead-letter queue with the reason.
import { z } from 'zod';
import {
  type HookCheckJob,
  type HookEventJob,
  hookCheckJobSchema,
  hookEventJobSchema,
} from '../hooks/job.ts';
import { SYNC_RESOURCES, type SyncResource } from '../keap/registry.ts';

/** Lists the sync pipeline mirrors: every registry entry with a `sync` part. */
/** A REST hook delivery turned into a job by the receiver (shared/hooks/job.ts owns its schema). */
export {
  type HookCheckJob,
  type HookEventJob,
  hookCheckJobSchema,
  hookEventJobSchema,
  SYNC_RESOURCES,
  type SyncResource,
};

const accountId = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,39}$/, 'an account id is 1-40 lower-case letters, digits and dashes');
const idempotencyKey = z
  .string()
  .min(8)
  .max(128)
  .regex(/^[A-Za-z0-9._:-]+$/, 'letters, digits and . _ : -');
const keapId = z.string().regex(/^[0-9]{1,20}$/, 'a Keap id is a string of digits');

export const syncJobSchema = z
  .object({
    kind: z.literal('sync'),
    account: accountId,
    resource: z.enum(SYNC_RESOURCES),
    mode: z.enum(['incremental', 'full']).default('incremental'),
    /** Start from this update time instead of the stored cursor (ISO-8601). */
    cursor: z.iso.datetime({ offset: true }).optional(),
    /** Set by the scheduler or the worker: the run this message belongs to. */
    runId: z.string().min(1).max(64).optional(),
    /** Increases every time the job is re-sent (continuation or deferral); older copies are stale. */
    attempt: z.number().int().nonnegative().default(0),
    /** Transient failures in a row (set by the worker's retry); a continuation that made progress clears it. */
    failures: z.number().int().nonnegative().optional(),
    /**
     * Ignored: accepted so messages from versions that carried held slots still parse. Nothing in a
     * message can let a call skip the ledger; a resumed job always acquires its slots afresh.
     */
    heldSlots: z.array(z.number().int().positive()).max(100).optional(),
    enqueuedAt: z.iso.datetime().optional(),
  })
  .strict();

const writeBase = {
  account: accountId,
  /** Chosen by the sender; the same key never performs the operation twice. */
  idempotencyKey,
  heldSlots: z.array(z.number().int().positive()).max(100).optional(),
  attempt: z.number().int().nonnegative().default(0),
  /** Transient failures in a row (set by the worker's retry). */
  failures: z.number().int().nonnegative().optional(),
  /**
   * Set by the worker's retry: the claim of this attempt number never reached Keap and its failure
   * could not be recorded (the state table was down), so the next delivery may take it over.
   */
  unsentAttempt: z.number().int().positive().optional(),
};

export const upsertContactJobSchema = z
  .object({
    kind: z.literal('upsertContact'),
    ...writeBase,
    duplicateOption: z.enum(['Email', 'EmailAndName', 'EmailAndNameAndCompany']).default('Email'),
    contact: z.record(z.string(), z.unknown()).refine((c) => Object.keys(c).length > 0, 'contact is empty'),
  })
  .strict();

export const tagsJobSchema = z
  .object({
    kind: z.enum(['applyTags', 'removeTags']),
    ...writeBase,
    tagId: keapId,
    contactIds: z.array(keapId).min(1).max(10_000),
  })
  .strict();

export const createNoteJobSchema = z
  .object({
    kind: z.literal('createNote'),
    ...writeBase,
    contactId: keapId,
    note: z
      .object({
        title: z.string().max(500).optional(),
        body: z.string().max(100_000).optional(),
        type: z.string().max(100).optional(),
        user_id: z.union([z.string(), z.number()]),
      })
      .passthrough()
      .refine((n) => n.title !== undefined || n.type !== undefined, 'a note needs a title or a type'),
  })
  .strict();

/**
 * A reconciliation sweep of one list: read every id (the cheapest `fields`), tombstone what the mirror
 * holds and Keap no longer lists. Queued by the scheduler every `sweep.everyHours` inside the bulk share.
 */
export const sweepJobSchema = z
  .object({
    kind: z.literal('sweep'),
    account: accountId,
    resource: z.enum(SYNC_RESOURCES),
    runId: z.string().min(1).max(64).optional(),
    attempt: z.number().int().nonnegative().default(0),
    failures: z.number().int().nonnegative().optional(),
    enqueuedAt: z.iso.datetime().optional(),
    /**
     * Set by the worker on a sweep continued in a new message: where the read resumes (Keap's page
     * token; `tag:<tagId>` for tag applications), when the sweep began (only records stored before it
     * are tombstoned) and, but for tag applications (swept tag by tag), how many chunks of ids read so
     * far the state table holds under the sweep's `runId`.
     */
    pageToken: z.string().min(1).max(4096).optional(),
    startedAtMs: z.number().int().positive().optional(),
    chunks: z.number().int().nonnegative().max(10_000).optional(),
  })
  .strict()
  .refine(
    (j) =>
      j.resource !== 'tagApplications' || j.pageToken === undefined || /^tag:[0-9]{1,20}$/.test(j.pageToken),
    {
      message: 'a sweep of tagApplications continues from "tag:<tagId>"',
      path: ['pageToken'],
    },
  )
  .refine((j) => (j.pageToken === undefined) === (j.startedAtMs === undefined), {
    message: 'a continued sweep carries both pageToken and startedAtMs',
    path: ['startedAtMs'],
  })
  .refine(
    (j) =>
      j.resource === 'tagApplications' ||
      j.pageToken === undefined ||
      (j.runId !== undefined && j.chunks !== undefined),
    { message: 'a continued sweep carries its runId and chunks', path: ['chunks'] },
  );

export type SweepJob = z.output<typeof sweepJobSchema>;

export const jobSchema = z.discriminatedUnion('kind', [
  syncJobSchema,
  upsertContactJobSchema,
  tagsJobSchema,
  createNoteJobSchema,
  hookEventJobSchema,
  hookCheckJobSchema,
  sweepJobSchema,
]);

export type SyncJob = z.output<typeof syncJobSchema>;
export type UpsertContactJob = z.output<typeof upsertContactJobSchema>;
export type TagsJob = z.output<typeof tagsJobSchema>;
export type CreateNoteJob = z.output<typeof createNoteJobSchema>;
export type WriteJob = UpsertContactJob | TagsJob | CreateNoteJob;
export type Job = z.output<typeof jobSchema>;
export type JobInput = z.input<typeof jobSchema>;

/** Why a message is poison: it will never succeed, however often it is retried. */
export class PoisonMessageError extends Error {
  readonly reason: 'invalid-json' | 'invalid-job' | 'unknown-kind' | 'unknown-account';
  constructor(reason: PoisonMessageError['reason'], message: string) {
    super(message);
    this.name = 'PoisonMessageError';
    this.reason = reason;
  }
}

/** Parses a queue message body into a job, or throws PoisonMessageError saying exactly what is wrong. */
export function parseJob(body: string): Job {
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch {
    throw new PoisonMessageError('invalid-json', 'The message body is not JSON.');
  }
  const kind = (raw as { kind?: unknown } | null)?.kind;
  const kinds = [
    'sync',
    'upsertContact',
    'applyTags',
    'removeTags',
    'createNote',
    'hookEvent',
    'hookCheck',
    'sweep',
  ];
  if (typeof kind !== 'string' || !kinds.includes(kind)) {
    throw new PoisonMessageError(
      'unknown-kind',
      `The job kind ${JSON.stringify(kind ?? null)} is not one of ${kinds.join(', ')}.`,
    );
  }
  const parsed = jobSchema.safeParse(raw);
  if (!parsed.success) {
    const details = parsed.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join('.') || '(job)'}: ${i.message}`)
      .join('; ');
    throw new PoisonMessageError('invalid-job', `The ${kind} job is invalid: ${details}.`);
  }
  return parsed.data;
}
