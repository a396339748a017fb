// Domain: the job message a REST hook delivery becomes: one list, one event kind, at most
// HOOK_JOB_MAX_IDS ids. The lead wires it into the job union of shared/jobs/schema.ts.
import { z } from 'zod';
import { HOOK_EVENT_KINDS, HOOK_RESOURCES } from './events.ts';

/** Most ids one hook job carries (a v2 `ids` filter reads them in one call). */
export const HOOK_JOB_MAX_IDS = 100;

const accountId = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,39}$/, 'an account id is 1-40 lower-case letters, digits and dashes');

/** A Keap id; for tag applications `<tagId>:<contactId>`, or the tag id alone (re-read the tag's contacts). */
const KEAP_ID = /^[0-9]{1,20}$/;
const APPLICATION_ID = /^[0-9]{1,20}(:[0-9]{1,20})?$/;

export const hookEventJobSchema = z
  .object({
    kind: z.literal('hookEvent'),
    account: accountId,
    resource: z.enum(HOOK_RESOURCES),
    event: z.enum(HOOK_EVENT_KINDS),
    /** Distinct ids, as Keap sent them (the records are re-read by id before anything is trusted). */
    ids: z.array(z.string()).min(1).max(HOOK_JOB_MAX_IDS),
    /** When the receiver accepted the delivery (ISO-8601): change-to-mirror lag is measured from it. */
    receivedAt: z.iso.datetime(),
    /** Increases every time the job is re-sent (deferral); as on every other job. */
    attempt: z.number().int().nonnegative().default(0),
    /** Transient failures in a row (set by the worker's retry), as on every other job. */
    failures: z.number().int().nonnegative().optional(),
  })
  .strict()
  .superRefine((job, ctx) => {
    const pattern = job.resource === 'tagApplications' ? APPLICATION_ID : KEAP_ID;
    job.ids.forEach((id, i) => {
      if (!pattern.test(id))
        ctx.addIssue({
          code: 'custom',
          path: ['ids', i],
          message:
            job.resource === 'tagApplications'
              ? 'a tag application id is "<tagId>:<contactId>" or a tag id, in digits'
              : 'a Keap id is a string of digits',
        });
    });
    if (new Set(job.ids).size !== job.ids.length)
      ctx.addIssue({ code: 'custom', path: ['ids'], message: 'ids must be distinct' });
  });

export type HookEventJob = z.output<typeof hookEventJobSchema>;
export type HookEventJobInput = z.input<typeof hookEventJobSchema>;

/**
 * The scheduled REST hook check of one account (queued by the scheduler every
 * `hooks.checkEveryMinutes`, run by the worker, which calls Keap through the ledger).
 */
export const hookCheckJobSchema = z
  .object({
    kind: z.literal('hookCheck'),
    account: accountId,
    attempt: z.number().int().nonnegative().default(0),
    failures: z.number().int().nonnegative().optional(),
    enqueuedAt: z.iso.datetime().optional(),
  })
  .strict();

export type HookCheckJob = z.output<typeof hookCheckJobSchema>;
