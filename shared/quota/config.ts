// Domain: the quota ledger's settings, validated once at construction.
import { z } from 'zod';
import { LedgerConfigError } from './errors.ts';

const DAY_MS = 86_400_000;

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();

/**
 * Every number defaults to Keap's documented value for Personal Access Tokens and Service Account
 * Keys. Only `tableName` is required.
 */
export const ledgerSettingsSchema = z
  .object({
    /** DynamoDB table holding the ledger items (partition key `pk`, string). Required. */
    tableName: z.string().min(1),
    /** Whether minute and day limits count per tenant (Keap staff's reading, the safer one) or per key. */
    quotaScope: z.enum(['tenant', 'key']).default('tenant'),
    /** Keap's spike arrest: minimum spacing between two calls of one key, in ms (10 per second). */
    spikeIntervalMs: positiveInt.default(100),
    /** Calls allowed in any rolling minute window per scope. */
    minuteLimit: positiveInt.default(240),
    /** Length of the rolling window. */
    minuteWindowMs: positiveInt.default(60_000),
    /** Calls allowed per UTC calendar day per scope. */
    dayLimit: positiveInt.default(30_000),
    /** Calls allowed in any rolling minute across every key of a tenant (Keap's tenant cap). */
    tenantMinuteLimit: positiveInt.default(10_000),
    /** Calls allowed per UTC day across every key of a tenant. */
    tenantDayLimit: positiveInt.default(250_000),
    /**
     * Window margin: clock skew left after the ledger's clock alignment, send lateness and network
     * tails. Widens the rolling window, and keeps a band of this width on each side of UTC midnight
     * free. Costs about marginMs / minuteWindowMs of the minute budget (0.4% at the default).
     */
    marginMs: nonNegativeInt.default(250),
    /**
     * Spike margin: spacing of one key's calls beyond spikeIntervalMs, absorbing send lateness,
     * network tails and skew between two consecutive calls. Default: what pacing one key at its
     * sustained rate (minuteWindowMs / minuteLimit) leaves, at most 1.5 spike intervals, so under a
     * backlog, where the minute limit binds anyway, it costs no throughput (150 ms at Keap's limits:
     * one call per 250 ms); at least the window margin, below one spike interval.
     */
    spikeMarginMs: nonNegativeInt.optional(),
    /**
     * Checked at the last moment before a request is written (and when a caller wakes): a call more
     * than this late for its slot is not sent (the slot is spent). Must be smaller than the spike margin.
     * Default: 50 ms, or a third of the smaller margin when that is less.
     */
    lateToleranceMs: nonNegativeInt.optional(),
    /**
     * A worker whose clock is off by more than this from DynamoDB's (the Date header of its answers)
     * fails closed with ClockSkewError; no item stamp moves any worker's clock, or gates it, by more.
     */
    maxClockSkewMs: positiveInt.default(1_000),
    /**
     * Before its first call, a process times a few reads of the item across DynamoDB's second tick
     * (the Date header) and sets its clock to DynamoDB's, so workers that start apart agree without
     * each other's stamps. Off: only the stamps align clocks.
     */
    alignClock: z.boolean().default(true),
    /** A deferral decided on the cached item (no request) is trusted for at most this long after the read. */
    cacheTtlMs: nonNegativeInt.default(1_000),
    /**
     * A held slot is sent only on a view of the item at most this old (one read just before the slot
     * when it is older): a spike-arrest 429 or a cool-down another worker wrote reaches slots this
     * process reserved long before. 0: a read before every send.
     */
    sendViewMaxAgeMs: nonNegativeInt.default(1_000),
    /** Width of the rolling-window counting buckets. Smaller: closer to the limit, larger item. */
    bucketMs: positiveInt.default(500),
    /** How far ahead a slot may be held for a deferred caller. */
    holdHorizonMs: positiveInt.default(90_000),
    /** Share (0..1] of the minute and day budgets that `bulk` work may use; `interactive` may use all. */
    bulkShare: z.number().gt(0).lte(1).default(0.8),
    /** tenant scope: most keys of one tenant with reservations in flight at once (bounds the item size). */
    maxKeysPerItem: positiveInt.max(16).default(4),
    /** key scope: most keys one tenant may use; key limits times this must fit under the tenant caps. */
    maxKeysPerTenant: positiveInt.default(8),
    /** Bounded retries when another writer changed the item first. */
    maxContentionRetries: positiveInt.max(50).default(20),
    /** Cool-down written after a spike-arrest 429. */
    spikeCoolDownMs: positiveInt.default(1_000),
    /** Cool-down written after a quota 429 when Keap's headers do not say when capacity frees. */
    quotaCoolDownMs: positiveInt.default(60_000),
    /** Largest forward correction of this process's clock taken from other workers' stamps. */
    maxClockCorrectionMs: nonNegativeInt.default(1_000),
    /** A spike-arrest 429 widens the learned spacing of the item's keys; it relaxes one step per this long. */
    spikeRelaxMs: positiveInt.default(600_000),
    /** A release waits up to this long for another write of this process to ride along with. */
    releaseLingerMs: nonNegativeInt.default(500),
    /** Requests whose `notBefore` is further away than this wait to share a later write. */
    coalesceLeadMs: nonNegativeInt.default(1_000),
  })
  .strict();

export type LedgerSettingsInput = z.input<typeof ledgerSettingsSchema>;
export type LedgerSettings = z.output<typeof ledgerSettingsSchema>;

/** Settings plus the quantities derived from them, computed once. */
export interface LedgerConfig extends Omit<LedgerSettings, 'spikeMarginMs' | 'lateToleranceMs'> {
  /** Spike margin and late tolerance, resolved (see the settings). */
  readonly spikeMarginMs: number;
  readonly lateToleranceMs: number;
  /** Grid step: spike interval plus spike margin. Every slot is a multiple of it. */
  readonly cellMs: number;
  /** Rolling window widened by the margin. */
  readonly windowMs: number;
  /** Consecutive buckets that cover any window of `windowMs` (conservative). */
  readonly windowBuckets: number;
  /** Minute limit enforced by one ledger item, and whether the tenant cap is the binding one. */
  readonly itemMinuteLimit: number;
  readonly itemMinuteIsTenant: boolean;
  readonly itemDayLimit: number;
  readonly itemDayIsTenant: boolean;
}

export const MAX_ITEM_BYTES = 1024;

export function parseLedgerSettings(input: unknown): LedgerConfig {
  const parsed = ledgerSettingsSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const setting = issue ? issue.path.join('.') || (unknownKey(issue) ?? '(settings)') : '(settings)';
    throw new LedgerConfigError(setting, issue?.message ?? 'invalid value');
  }
  const s = parsed.data;
  const sustainedMs = Math.ceil(s.minuteWindowMs / s.minuteLimit);
  // Pace a key at its sustained rate where that costs nothing (up to 1.5 spike intervals of margin),
  // and never below the window margin's share of the interval.
  const spikeMarginMs =
    s.spikeMarginMs ??
    Math.max(
      Math.min(s.marginMs, s.spikeIntervalMs - 1),
      Math.min(sustainedMs - s.spikeIntervalMs, Math.ceil(1.5 * s.spikeIntervalMs)),
    );
  const lateToleranceMs =
    s.lateToleranceMs ?? Math.min(50, Math.floor(Math.min(spikeMarginMs, s.marginMs) / 3));
  if (lateToleranceMs >= spikeMarginMs && spikeMarginMs > 0) {
    throw new LedgerConfigError(
      'lateToleranceMs',
      `must be smaller than the spike margin (${spikeMarginMs} ms), or a late call could crowd the next one.`,
    );
  }
  if (lateToleranceMs >= s.marginMs && s.marginMs > 0) {
    throw new LedgerConfigError('lateToleranceMs', `must be smaller than marginMs (${s.marginMs}).`);
  }
  if (s.maxClockCorrectionMs > s.maxClockSkewMs) {
    throw new LedgerConfigError(
      'maxClockCorrectionMs',
      `must not exceed maxClockSkewMs (${s.maxClockSkewMs}): a larger correction would follow a bad clock.`,
    );
  }
  if (s.minuteWindowMs + s.marginMs >= DAY_MS / 2) {
    throw new LedgerConfigError('minuteWindowMs', 'must be well under half a day.');
  }
  if (s.holdHorizonMs > DAY_MS / 4) {
    throw new LedgerConfigError('holdHorizonMs', 'must be at most 6 hours.');
  }
  if (s.bucketMs > s.minuteWindowMs / 4) {
    throw new LedgerConfigError(
      'bucketMs',
      `must be at most a quarter of minuteWindowMs (${s.minuteWindowMs}).`,
    );
  }
  if (s.quotaScope === 'key') {
    if (s.maxKeysPerTenant * s.minuteLimit > s.tenantMinuteLimit) {
      throw new LedgerConfigError(
        'maxKeysPerTenant',
        `with quotaScope "key", maxKeysPerTenant x minuteLimit (${s.maxKeysPerTenant} x ${s.minuteLimit}) must not ` +
          `exceed tenantMinuteLimit (${s.tenantMinuteLimit}), or the tenant cap could be broken; lower it or use quotaScope "tenant".`,
      );
    }
    if (s.maxKeysPerTenant * s.dayLimit > s.tenantDayLimit) {
      throw new LedgerConfigError(
        'maxKeysPerTenant',
        `with quotaScope "key", maxKeysPerTenant x dayLimit (${s.maxKeysPerTenant} x ${s.dayLimit}) must not ` +
          `exceed tenantDayLimit (${s.tenantDayLimit}), or the tenant cap could be broken; lower it or use quotaScope "tenant".`,
      );
    }
  }
  const cellMs = s.spikeIntervalMs + spikeMarginMs;
  const windowMs = s.minuteWindowMs + s.marginMs;
  const windowBuckets = Math.floor((windowMs - 1) / s.bucketMs) + 2;
  const tenantScope = s.quotaScope === 'tenant';
  const itemMinuteIsTenant = tenantScope && s.tenantMinuteLimit < s.minuteLimit;
  const itemDayIsTenant = tenantScope && s.tenantDayLimit < s.dayLimit;
  const config: LedgerConfig = {
    ...s,
    spikeMarginMs,
    lateToleranceMs,
    cellMs,
    windowMs,
    windowBuckets,
    itemMinuteLimit: itemMinuteIsTenant ? s.tenantMinuteLimit : s.minuteLimit,
    itemMinuteIsTenant,
    itemDayLimit: itemDayIsTenant ? s.tenantDayLimit : s.dayLimit,
    itemDayIsTenant,
  };
  const worst = worstCaseItemBytes(config);
  if (worst > MAX_ITEM_BYTES) {
    throw new LedgerConfigError(
      'bucketMs',
      `the ledger item could reach ${worst} bytes (over ${MAX_ITEM_BYTES}, more than 1 WCU per write); ` +
        'raise bucketMs, or lower holdHorizonMs or maxKeysPerItem.',
    );
  }
  return config;
}

function unknownKey(issue: { code: string; keys?: readonly string[] }): string | undefined {
  return issue.code === 'unrecognized_keys' ? issue.keys?.[0] : undefined;
}

/** Bytes of the stored item at its largest: see `state.ts` for the layout. */
export function worstCaseItemBytes(c: LedgerConfig): number {
  const spanMs = c.windowMs + c.holdHorizonMs + c.cellMs;
  const buckets = Math.ceil(spanMs / c.bucketMs) + 3;
  const bitBytes = Math.ceil(Math.ceil((c.holdHorizonMs + 6 * c.cellMs) / c.cellMs) / 8) + 2;
  const keys = c.quotaScope === 'tenant' ? c.maxKeysPerItem : 1;
  const fixed = 1 + 8 + 8 + 1 + 8 + 2 + 1 + 2 * 8 + (8 + 4 + 1 + 4 + 4 + 1) + (2 + 8) + 1 + 4;
  const perKey = 1 + MAX_KEY_ID_BYTES + 8 + 2 + bitBytes;
  const attributes = 2 + 40 + 1 + 10 + 1 + 12 + 1; // pk name+value, v, w
  return fixed + buckets + keys * perKey + attributes;
}

export const MAX_KEY_ID_BYTES = 24;
