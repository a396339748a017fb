// Domain: the Keap client's settings, validated once at construction (a bad one is named in the error).
import { z } from 'zod';
import { KeapConfigError } from './errors.ts';

export const DEFAULT_BASE_URL = 'https://api.infusionsoft.com/crm';

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();
const priority = z.enum(['bulk', 'interactive']);

export const keapClientSettingsSchema = z
  .object({
    /** Keap's API root; REST v2 lives at `${baseUrl}/rest/v2`, v1 at `${baseUrl}/rest/v1`. */
    baseUrl: z
      .url({ protocol: /^https?$/ })
      .default(DEFAULT_BASE_URL)
      .transform((u) => u.replace(/\/+$/, '')),
    /**
     * Each request (headers and body) is aborted after this many ms. With the default retry budget
     * (30 s) a hung request is tried again twice: the timeout must leave room for a retry (checked).
     */
    timeoutMs: positiveInt.max(300_000).default(10_000),
    /** Attempts per call on 5xx, network errors, timeouts and unreadable answers (reads and upserts only). */
    maxAttempts: positiveInt.max(20).default(4),
    /** Total time a call may spend retrying, from its first attempt; no retry starts past it. */
    retryBudgetMs: positiveInt.default(30_000),
    /** First backoff delay; doubles per attempt, with jitter. */
    backoffBaseMs: positiveInt.default(250),
    /** Largest backoff delay. */
    backoffMaxMs: positiveInt.default(8_000),
    /** Re-acquires after a 429 (each one after reporting it to the ledger) before RateLimitedError. */
    max429Retries: nonNegativeInt.max(20).default(3),
    /** Longest wait for a ledger slot before QuotaDeferredError (the job is deferred, not slept). */
    waitBudgetMs: nonNegativeInt.default(2_000),
    /** Incremental reads re-read this much before the cursor (bounds' inclusivity is unverified). */
    overlapMs: nonNegativeInt.default(300_000),
    /** Page size for lists (capped per endpoint: 1000, users 100). */
    pageSize: positiveInt.max(1000).default(1000),
    /** Contact ids per applyTags/removeTags call (Keap documents no maximum). */
    tagBatchSize: positiveInt.max(1000).default(100),
    /**
     * Ids per call when records are read by a list's id filter (`ids`, `tag_ids`, ...). Keap's file
     * states a maximum only for opportunities (100); the others name none, so every list uses it.
     */
    idBatchSize: positiveInt.max(100).default(100),
    /** Records read at once, one GET each, from a list without an id filter (companies). */
    byIdConcurrency: positiveInt.max(16).default(4),
    /** Slots reserved in one ledger write while a page run is going (first page always reserves one). */
    pageSlotBatch: positiveInt.max(100).default(3),
    /** Initial guess of one page's latency; the spacing of reserved slots adapts to measured latency. */
    expectedPageLatencyMs: nonNegativeInt.default(1_000),
    /** Ledger priority of reads (bulk may use only part of the budget) and of writes. */
    readPriority: priority.default('bulk'),
    writePriority: priority.default('interactive'),
    /** User-Agent header. */
    userAgent: z.string().min(1).max(200).default('keap-sync'),
  })
  .strict();

export type KeapClientSettingsInput = z.input<typeof keapClientSettingsSchema>;
export type KeapClientSettings = z.output<typeof keapClientSettingsSchema>;

export function parseKeapClientSettings(input: unknown): KeapClientSettings {
  const parsed = keapClientSettingsSchema.safeParse(input ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key =
      issue && issue.code === 'unrecognized_keys' ? issue.keys[0] : issue ? issue.path.join('.') : undefined;
    throw new KeapConfigError(key || '(settings)', `${issue?.message ?? 'invalid value'}.`);
  }
  const s = parsed.data;
  if (s.backoffMaxMs < s.backoffBaseMs) {
    throw new KeapConfigError('backoffMaxMs', `must be at least backoffBaseMs (${s.backoffBaseMs}).`);
  }
  return s;
}

/**
 * Why `s` leaves a timed-out request no retry inside the retry budget (its timeout plus the first
 * backoff pass `retryBudgetMs`), or undefined when it leaves room for one. Start-up configuration
 * checks it, so a single hung request cannot fail a call with no second try.
 */
export function timeoutLeavesNoRetry(s: KeapClientSettings): string | undefined {
  const firstBackoffMs = Math.min(s.backoffBaseMs, s.backoffMaxMs);
  if (s.timeoutMs + firstBackoffMs <= s.retryBudgetMs) return undefined;
  return (
    `${s.timeoutMs} ms leaves no room for a retry inside the Keap client's retry budget of ${s.retryBudgetMs} ms ` +
    `(a timed-out request and the first backoff of up to ${firstBackoffMs} ms must fit in it): use at most ` +
    `${s.retryBudgetMs - firstBackoffMs}`
  );
}
