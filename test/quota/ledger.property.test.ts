// Property: for random interleavings of acquisitions by workers with skewed clocks, random k, random
// priorities and holds, arrival jitter inside the margin, foreign traffic reported through Keap's
// headers and random 429 cool-downs, every granted slot passes the gateway's rules.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GatewayRules } from '#harness/gateway/rules.ts';
import { DAY_MS, parseKeapQuotaHeaders, QuotaLedger } from '#shared/quota/index.ts';
import { MemoryLedgerStore } from '../support/sim.ts';

interface Scenario {
  scope: 'tenant' | 'key';
  marginMs: number;
  minuteLimit: number;
  minuteWindowMs: number;
  dayLimit: number;
  tenantMinuteLimit: number;
  bucketMs: number;
  bulkShare: number;
  startBeforeMidnightMs: number;
  offsets: number[];
  keys: number;
  foreignCalls: number;
  returnsItemOnConflict: boolean;
  events: Array<{
    gapMs: number;
    worker: number;
    key: number;
    count: number;
    priority: 'bulk' | 'interactive';
    hold: boolean;
    waitBudgetMs: number;
    minGapMs: number;
    report: boolean;
    cool: boolean;
    jitter: number;
  }>;
}

const scenarioArb: fc.Arbitrary<Scenario> = fc
  .record({
    scope: fc.constantFrom('tenant' as const, 'key' as const),
    marginMs: fc.integer({ min: 20, max: 99 }).map((m) => m),
    minuteLimit: fc.integer({ min: 3, max: 30 }),
    minuteWindowMs: fc.integer({ min: 1_000, max: 4_000 }),
    dayLimit: fc.integer({ min: 10, max: 120 }),
    tenantMinuteLimit: fc.integer({ min: 3, max: 60 }),
    bucketFraction: fc.integer({ min: 4, max: 40 }),
    bulkShare: fc.double({ min: 0.2, max: 1, noNaN: true }),
    startBeforeMidnightMs: fc.integer({ min: 0, max: 8_000 }),
    workers: fc.integer({ min: 2, max: 5 }),
    keys: fc.integer({ min: 1, max: 3 }),
    foreignCalls: fc.integer({ min: 0, max: 20 }),
    returnsItemOnConflict: fc.boolean(),
    seed: fc.integer(),
  })
  .chain((p) =>
    fc.record({
      offsets: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), {
        minLength: p.workers,
        maxLength: p.workers,
      }),
      events: fc.array(
        fc.record({
          gapMs: fc.integer({ min: 0, max: 300 }),
          worker: fc.integer({ min: 0, max: p.workers - 1 }),
          key: fc.integer({ min: 0, max: p.keys - 1 }),
          count: fc.integer({ min: 1, max: 5 }),
          priority: fc.constantFrom('bulk' as const, 'interactive' as const),
          hold: fc.boolean(),
          waitBudgetMs: fc.integer({ min: 0, max: 3_000 }),
          minGapMs: fc.constantFrom(0, 0, 150, 400),
          report: fc.boolean(),
          cool: fc.integer({ min: 0, max: 40 }).map((n) => n === 0),
          jitter: fc.double({ min: 0, max: 1, noNaN: true }),
        }),
        { minLength: 20, maxLength: 160 },
      ),
      rest: fc.constant(p),
    }),
  )
  .map(({ offsets, events, rest }) => {
    const skewRange = Math.floor(rest.marginMs / 2);
    return {
      scope: rest.scope,
      marginMs: rest.marginMs,
      minuteLimit: rest.minuteLimit,
      minuteWindowMs: rest.minuteWindowMs,
      dayLimit: rest.dayLimit,
      tenantMinuteLimit:
        rest.scope === 'key'
          ? Math.max(rest.tenantMinuteLimit, rest.minuteLimit * 3)
          : rest.tenantMinuteLimit,
      bucketMs: Math.max(10, Math.floor(rest.minuteWindowMs / rest.bucketFraction)),
      bulkShare: rest.bulkShare,
      startBeforeMidnightMs: rest.startBeforeMidnightMs,
      offsets: offsets.map((o) => Math.floor(o * skewRange)),
      keys: rest.keys,
      foreignCalls: rest.scope === 'tenant' ? rest.foreignCalls : 0,
      returnsItemOnConflict: rest.returnsItemOnConflict,
      events,
    };
  });

interface Sent {
  reading?: ReturnType<GatewayRules['state']>;
  wantReport?: boolean;
  arrival: number;
  key: string;
  slot: number;
  priority: 'bulk' | 'interactive';
  worker: number;
}

async function runScenario(sc: Scenario) {
  const TENANT = 'acme';
  const midnight = Math.ceil(Date.UTC(2026, 10, 26) / DAY_MS) * DAY_MS;
  let trueNow = midnight - sc.startBeforeMidnightMs;
  const store = new MemoryLedgerStore(sc.returnsItemOnConflict);
  const settings = {
    tableName: 'mem',
    quotaScope: sc.scope,
    marginMs: sc.marginMs,
    lateToleranceMs: 0,
    minuteLimit: sc.minuteLimit,
    minuteWindowMs: sc.minuteWindowMs,
    dayLimit: sc.dayLimit,
    tenantMinuteLimit: sc.tenantMinuteLimit,
    tenantDayLimit: 1_000_000,
    maxKeysPerTenant: 3,
    bucketMs: sc.bucketMs,
    holdHorizonMs: 6_000,
    bulkShare: sc.bulkShare,
    spikeCoolDownMs: 300,
    quotaCoolDownMs: 700,
  };
  const ledgers = sc.offsets.map((off) => new QuotaLedger({ store, settings, clock: () => trueNow + off }));
  // The judge holds every limit the ledger was told about. Key scope: tenant caps are implied.
  const judge = new GatewayRules({
    spikeIntervalMs: 100,
    minuteLimit: sc.minuteLimit,
    minuteWindowMs: sc.minuteWindowMs,
    dayLimit: sc.dayLimit,
    tenantMinuteLimit: sc.scope === 'tenant' ? sc.tenantMinuteLimit : 1_000_000,
    tenantDayLimit: 1_000_000,
    quotaScope: sc.scope,
  });
  const keyName = (k: number) => `key${k}`;
  // Foreign traffic on the tenant before we start; Keap's headers on a probe tell the ledger.
  let foreignAccepted = 0;
  for (let i = 0; i < sc.foreignCalls; i++) {
    if (judge.admit(trueNow - 500 + i, TENANT, 'foreign').ok) foreignAccepted++;
  }
  if (foreignAccepted > 0) {
    const st = judge.state(trueNow, TENANT, keyName(0));
    const headers = {
      'x-keap-product-throttle-available': String(st.productMinute.available),
      'x-keap-product-throttle-limit': String(st.productMinute.limit),
      'x-keap-tenant-throttle-available': String(st.tenantMinute.available),
      'x-keap-product-quota-available': String(st.productDay.available),
      'x-keap-product-quota-limit': String(st.productDay.limit),
    };
    const first = ledgers[0];
    if (!first) throw new Error('no ledger');
    await first.reportResponse(TENANT, keyName(0), first.now(), parseKeapQuotaHeaders(headers));
  }
  const pending: Sent[] = [];
  const granted: Sent[] = [];
  const cools: Array<{ at: number; until: number; key: string }> = [];
  const toReport: Sent[] = [];
  let violations = 0;
  const deliverUntil = (t: number) => {
    pending.sort((a, b) => a.arrival - b.arrival);
    while (pending.length && (pending[0]?.arrival ?? Infinity) <= t) {
      const s = pending.shift();
      if (!s) break;
      if (!judge.admit(s.arrival, TENANT, s.key).ok) violations++;
      if (s.wantReport) {
        s.reading = judge.state(s.arrival, TENANT, s.key);
        toReport.push(s);
      }
    }
  };
  for (const ev of sc.events) {
    trueNow += ev.gapMs;
    deliverUntil(trueNow);
    const ledger = ledgers[ev.worker];
    const off = sc.offsets[ev.worker];
    if (!ledger || off === undefined) throw new Error('bad worker');
    // Responses that have come back are reported, as the Keap client does.
    for (const r of toReport.splice(0)) {
      const st = r.reading;
      if (!st) continue;
      await ledgers[r.worker]?.reportResponse(TENANT, r.key, r.slot, {
        productMinute: { available: st.productMinute.available, limit: st.productMinute.limit },
        productDay: { available: st.productDay.available, limit: st.productDay.limit },
        tenantMinute: sc.scope === 'tenant' ? { available: st.tenantMinute.available } : undefined,
      });
    }
    if (ev.cool) {
      const at = ledger.now();
      await ledger.report429(TENANT, keyName(ev.key), 'spike');
      cools.push({ at, until: at + 300, key: keyName(ev.key) });
      continue;
    }
    const d = await ledger.acquire({
      tenant: TENANT,
      key: keyName(ev.key),
      count: ev.count,
      priority: ev.priority,
      hold: ev.hold,
      waitBudgetMs: ev.waitBudgetMs,
      minGapMs: ev.minGapMs,
    });
    if (d.status === 'deferred') {
      expect(d.retryAt).toBeGreaterThan(ledger.now() - 1);
      continue;
    }
    const effectiveOffset = off + ledger.clockCorrectionMs;
    for (const slot of d.slots) {
      // The worker sends when its (corrected) clock reads `slot`; jitter stays inside the margin.
      const jitterRange = sc.marginMs - Math.floor(sc.marginMs / 2);
      const sent: Sent = {
        arrival: slot - effectiveOffset + ev.jitter * jitterRange,
        key: keyName(ev.key),
        slot,
        priority: ev.priority,
        worker: ev.worker,
      };
      pending.push(sent);
      granted.push(sent);
      for (const c of cools) {
        const sameItem = sc.scope === 'tenant' || c.key === sent.key;
        if (sameItem && ledger.now() >= c.at) expect(slot).toBeGreaterThanOrEqual(c.until - 1);
      }
    }
    const first = granted[granted.length - d.slots.length];
    if (ev.report && first) first.wantReport = true;
  }
  deliverUntil(Number.POSITIVE_INFINITY);
  return { violations, granted, store };
}

function maxInWindow(times: number[], windowMs: number): number {
  const t = [...times].sort((a, b) => a - b);
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < t.length; hi++) {
    while ((t[hi] ?? 0) - (t[lo] ?? 0) >= windowMs) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}

describe('quota ledger decisions (property-based)', () => {
  it('every granted slot passes the gateway rules, for any interleaving, skew, jitter, k and feedback', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, async (sc) => {
        const { violations, granted } = await runScenario(sc);
        if (process.env.LEDGER_STATS)
          console.log('granted', granted.length, 'violations', violations, 'events', sc.events.length);
        expect(violations).toBe(0);
        // Every slot on the grid is handed out once per key.
        const seen = new Set(granted.map((g) => `${g.key}@${g.slot}`));
        expect(seen.size).toBe(granted.length);
      }),
      { numRuns: 120 },
    );
  });

  it('bulk work never uses more than its share of the minute budget', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, async (sc) => {
        const onlyBulk = {
          ...sc,
          foreignCalls: 0,
          events: sc.events.map((e) => ({ ...e, priority: 'bulk' as const })),
        };
        const { granted } = await runScenario(onlyBulk);
        const limit =
          onlyBulk.scope === 'tenant' ? Math.min(sc.minuteLimit, sc.tenantMinuteLimit) : sc.minuteLimit;
        const share = Math.floor(limit * sc.bulkShare);
        const byScope = new Map<string, number[]>();
        for (const g of granted) {
          const scope = onlyBulk.scope === 'tenant' ? 'all' : g.key;
          byScope.set(scope, [...(byScope.get(scope) ?? []), g.slot]);
        }
        for (const slots of byScope.values()) {
          expect(maxInWindow(slots, sc.minuteWindowMs)).toBeLessThanOrEqual(share);
        }
      }),
      { numRuns: 60 },
    );
  });
});
