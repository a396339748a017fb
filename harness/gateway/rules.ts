// Domain: the rules Keap's gateway enforces, applied to arrival times. This is the independent judge
// (tests, benchmark) and the heart of the Keap sandbox; it shares no code with the ledger on purpose.

export interface GatewayLimits {
  spikeIntervalMs: number;
  minuteLimit: number;
  minuteWindowMs: number;
  dayLimit: number;
  tenantMinuteLimit: number;
  tenantDayLimit: number;
  /** Whether minute and day limits count per tenant or per key (spike is always per key). */
  quotaScope: 'tenant' | 'key';
}

export const KEAP_GATEWAY_LIMITS: GatewayLimits = {
  spikeIntervalMs: 100,
  minuteLimit: 240,
  minuteWindowMs: 60_000,
  dayLimit: 30_000,
  tenantMinuteLimit: 10_000,
  tenantDayLimit: 250_000,
  quotaScope: 'tenant',
};

export type Violation = 'spike' | 'minute' | 'day' | 'tenant-minute' | 'tenant-day';

export type Verdict = { ok: true } | { ok: false; rule: Violation };

/** Remaining capacity after a call, as Keap's `x-keap-*` headers report it. */
export interface WindowState {
  limit: number;
  used: number;
  available: number;
}

export interface GatewayState {
  productMinute: WindowState;
  productDay: WindowState & { expiry: number };
  tenantMinute: WindowState;
  tenantDay: WindowState & { expiry: number };
}

const DAY_MS = 86_400_000;

/** Accepted arrival times inside a rolling window, oldest first. */
class RollingLog {
  private readonly times: number[] = [];
  private head = 0;
  count(now: number, windowMs: number): number {
    while (this.head < this.times.length && (this.times[this.head] ?? 0) <= now - windowMs) this.head++;
    if (this.head > 4096) {
      this.times.splice(0, this.head);
      this.head = 0;
    }
    return this.times.length - this.head;
  }
  add(t: number): void {
    this.times.push(t);
  }
}

class DayCounter {
  day = -1;
  n = 0;
  count(now: number): number {
    const d = Math.floor(now / DAY_MS);
    if (d !== this.day) {
      this.day = d;
      this.n = 0;
    }
    return this.n;
  }
}

/**
 * Applies Keap's gateway rules to calls in arrival order: spike arrest per key, a rolling minute and a
 * UTC-day limit per scope, and the tenant caps. A rejected call counts against nothing.
 */
export class GatewayRules {
  readonly limits: GatewayLimits;
  private readonly lastByKey = new Map<string, number>();
  private readonly minute = new Map<string, RollingLog>();
  private readonly day = new Map<string, DayCounter>();
  private readonly tenantMinute = new Map<string, RollingLog>();
  private readonly tenantDay = new Map<string, DayCounter>();
  private lastArrival = Number.NEGATIVE_INFINITY;

  constructor(limits: Partial<GatewayLimits> = {}) {
    this.limits = { ...KEAP_GATEWAY_LIMITS, ...limits };
  }

  /** Judges one call arriving at `arrival` (ms). Calls must be given in arrival order. */
  admit(arrival: number, tenant: string, key: string): Verdict {
    if (arrival < this.lastArrival) throw new Error('GatewayRules.admit: arrivals must be given in order');
    this.lastArrival = arrival;
    const l = this.limits;
    const scope = l.quotaScope === 'tenant' ? tenant : `${tenant}\u0000${key}`;
    const last = this.lastByKey.get(key);
    if (last !== undefined && arrival - last < l.spikeIntervalMs) return { ok: false, rule: 'spike' };
    const tMin = getOr(this.tenantMinute, tenant, () => new RollingLog());
    if (tMin.count(arrival, l.minuteWindowMs) >= l.tenantMinuteLimit)
      return { ok: false, rule: 'tenant-minute' };
    const tDay = getOr(this.tenantDay, tenant, () => new DayCounter());
    if (tDay.count(arrival) >= l.tenantDayLimit) return { ok: false, rule: 'tenant-day' };
    const min = getOr(this.minute, scope, () => new RollingLog());
    if (min.count(arrival, l.minuteWindowMs) >= l.minuteLimit) return { ok: false, rule: 'minute' };
    const day = getOr(this.day, scope, () => new DayCounter());
    if (day.count(arrival) >= l.dayLimit) return { ok: false, rule: 'day' };
    this.lastByKey.set(key, arrival);
    tMin.add(arrival);
    tDay.n++;
    min.add(arrival);
    day.n++;
    return { ok: true };
  }

  /** What Keap's headers would report for `tenant`/`key` at time `now`. */
  state(now: number, tenant: string, key: string): GatewayState {
    const l = this.limits;
    const scope = l.quotaScope === 'tenant' ? tenant : `${tenant}\u0000${key}`;
    const expiry = (Math.floor(now / DAY_MS) + 1) * DAY_MS;
    const win = (used: number, limit: number): WindowState => ({
      limit,
      used,
      available: Math.max(0, limit - used),
    });
    return {
      productMinute: win(this.minute.get(scope)?.count(now, l.minuteWindowMs) ?? 0, l.minuteLimit),
      productDay: { ...win(this.day.get(scope)?.count(now) ?? 0, l.dayLimit), expiry },
      tenantMinute: win(
        this.tenantMinute.get(tenant)?.count(now, l.minuteWindowMs) ?? 0,
        l.tenantMinuteLimit,
      ),
      tenantDay: { ...win(this.tenantDay.get(tenant)?.count(now) ?? 0, l.tenantDayLimit), expiry },
    };
  }
}

function getOr<K, V>(m: Map<K, V>, k: K, make: () => V): V {
  let v = m.get(k);
  if (v === undefined) {
    v = make();
    m.set(k, v);
  }
  return v;
}

export interface Arrival {
  at: number;
  tenant: string;
  key: string;
}

export interface JudgeReport {
  total: number;
  accepted: number;
  violations: number;
  byRule: Record<Violation, number>;
  acceptedTimes: number[];
}

/** Judges a whole log of arrivals (sorted here) by the gateway rules. */
export function judgeArrivals(
  arrivals: readonly Arrival[],
  limits: Partial<GatewayLimits> = {},
): JudgeReport {
  const rules = new GatewayRules(limits);
  const sorted = [...arrivals].sort((a, b) => a.at - b.at);
  const byRule: Record<Violation, number> = {
    spike: 0,
    minute: 0,
    day: 0,
    'tenant-minute': 0,
    'tenant-day': 0,
  };
  const acceptedTimes: number[] = [];
  for (const a of sorted) {
    const v = rules.admit(a.at, a.tenant, a.key);
    if (v.ok) acceptedTimes.push(a.at);
    else byRule[v.rule]++;
  }
  const violations = sorted.length - acceptedTimes.length;
  return { total: sorted.length, accepted: acceptedTimes.length, violations, byRule, acceptedTimes };
}

/**
 * Median over full rolling windows (one starting at each accepted call, while a whole window fits in
 * the run) of accepted calls in the window divided by the limit.
 */
export function minuteUtilization(acceptedTimes: readonly number[], limit: number, windowMs: number): number {
  const t = [...acceptedTimes].sort((a, b) => a - b);
  const last = t[t.length - 1];
  if (last === undefined) return 0;
  const ratios: number[] = [];
  let hi = 0;
  for (let lo = 0; lo < t.length; lo++) {
    const start = t[lo] ?? 0;
    if (start + windowMs > last) break;
    while (hi < t.length && (t[hi] ?? 0) < start + windowMs) hi++;
    ratios.push((hi - lo) / limit);
  }
  if (ratios.length === 0) return 0;
  ratios.sort((a, b) => a - b);
  return ratios[Math.floor(ratios.length / 2)] ?? 0;
}
