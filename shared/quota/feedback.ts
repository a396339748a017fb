// Domain: what Keap's response headers say is left, folded into the ledger so it never believes more.
import type { LedgerConfig } from './config.ts';
import { bucketCount, DAY_MS, type LedgerState } from './state.ts';

export interface WindowReading {
  /** Limit Keap reports for the window, if it sent one. */
  limit?: number | undefined;
  /** Calls Keap says are left in the window. */
  available: number;
}

/** The quota-related `x-keap-*` response headers, parsed. */
export interface KeapQuotaReading {
  productMinute?: WindowReading | undefined;
  tenantMinute?: WindowReading | undefined;
  productDay?: WindowReading | undefined;
  tenantDay?: WindowReading | undefined;
  /** Spacing implied by `x-keap-product-spike-limit` (e.g. "10ps" -> 100 ms), when sent. */
  spikeIntervalMs?: number | undefined;
}

type HeaderSource = Headers | Record<string, string | string[] | undefined>;

function header(h: HeaderSource, name: string): string | undefined {
  if (typeof (h as Headers).get === 'function') return (h as Headers).get(name) ?? undefined;
  const rec = h as Record<string, string | string[] | undefined>;
  const v = rec[name] ?? rec[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

function num(h: HeaderSource, name: string): number | undefined {
  const raw = header(h, name);
  if (raw === undefined || raw.trim() === '') return undefined;
  const n = Number(raw);
  return Number.isFinite(n) && n >= 0 ? Math.floor(n) : undefined;
}

function reading(h: HeaderSource, prefix: string): WindowReading | undefined {
  const available = num(h, `${prefix}-available`);
  if (available === undefined) return undefined;
  return { available, limit: num(h, `${prefix}-limit`) };
}

/** Reads Keap's quota headers (`x-keap-product-quota-*`, `x-keap-product-throttle-*`, `x-keap-tenant-*`). */
export function parseKeapQuotaHeaders(h: HeaderSource): KeapQuotaReading {
  return {
    productMinute: reading(h, 'x-keap-product-throttle'),
    tenantMinute: reading(h, 'x-keap-tenant-throttle'),
    productDay: reading(h, 'x-keap-product-quota'),
    tenantDay: reading(h, 'x-keap-tenant-quota'),
    spikeIntervalMs: spikeSpacing(header(h, 'x-keap-product-spike-limit')),
  };
}

/** Apigee SpikeArrest rates: "10ps" (per second) or "600pm" (per minute), as the spacing they enforce. */
export function spikeSpacing(raw: string | undefined): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*p([sm])\s*$/i.exec(raw ?? '');
  if (!m) return undefined;
  const rate = Number(m[1]);
  if (!(rate > 0)) return undefined;
  return Math.ceil((m[2]?.toLowerCase() === 's' ? 1_000 : 60_000) / rate);
}

/** Our cap implied by one reading: what Keap says is used, minus ours, is someone else's. */
function capFrom(r: WindowReading | undefined, configured: number, ours: number): number | undefined {
  if (!r) return undefined;
  const limit = Math.min(configured, r.limit ?? configured);
  const keapUsed = (r.limit ?? configured) - r.available;
  const external = Math.max(0, keapUsed - ours);
  return Math.max(0, limit - external);
}

/**
 * Lowers the item's minute and day caps when Keap's headers (for the call sent at `slot`) say less
 * is left than the ledger believes. Returns whether the state changed (a write is needed).
 */
export function applyFeedback(s: LedgerState, c: LedgerConfig, slot: number, r: KeapQuotaReading): boolean {
  let changed = false;
  const b = c.bucketMs;
  const slotBucket = Math.floor(slot / b);
  let oursMinute = 0;
  for (let j = Math.floor((slot - c.minuteWindowMs) / b) + 1; j <= slotBucket; j++)
    oursMinute += bucketCount(s, j);
  const productMin = capFrom(r.productMinute, c.minuteLimit, oursMinute);
  const tenantMin = capFrom(r.tenantMinute, c.tenantMinuteLimit, oursMinute);
  const minCandidates: Array<[number, boolean]> = [];
  if (productMin !== undefined) minCandidates.push([productMin, false]);
  if (tenantMin !== undefined) minCandidates.push([tenantMin, true]);
  for (const [cap, tenant] of minCandidates) {
    const current = slot < s.fbMinUntil ? Math.min(s.fbMinCap, c.itemMinuteLimit) : c.itemMinuteLimit;
    if (cap < current) {
      s.fbMinCap = cap;
      s.fbMinTenant = tenant;
      s.fbMinUntil = Math.max(s.fbMinUntil, slot + c.windowMs);
      changed = true;
    }
  }
  const day = Math.floor(slot / DAY_MS);
  let later = 0;
  const dayEndBucket = Math.floor(((day + 1) * DAY_MS - 1) / b);
  for (let j = slotBucket + 1; j <= Math.min(dayEndBucket, s.bucketBase + s.counts.length); j++) {
    later += bucketCount(s, j);
  }
  const oursDay = Math.max(0, (s.days.get(day) ?? 0) - later);
  const productDay = capFrom(r.productDay, c.dayLimit, oursDay);
  const tenantDay = capFrom(r.tenantDay, c.tenantDayLimit, oursDay);
  const dayCandidates: Array<[number, boolean]> = [];
  if (productDay !== undefined) dayCandidates.push([productDay, false]);
  if (tenantDay !== undefined) dayCandidates.push([tenantDay, true]);
  for (const [cap, tenant] of dayCandidates) {
    const current = s.fbDayIdx === day ? Math.min(s.fbDayCap, c.itemDayLimit) : c.itemDayLimit;
    if (cap < current) {
      s.fbDayIdx = day;
      s.fbDayCap = cap;
      s.fbDayTenant = tenant;
      changed = true;
    }
  }
  return changed;
}
