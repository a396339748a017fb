// Property: one worker's clock is off by any amount beyond what one Date header tells, ahead or behind, from the
// start or stepping mid-run. Once DynamoDB's Date has answered it, it gets no grant and writes nothing;
// the healthy workers' calls, judged at arrival on the true clock, keep the spike spacing and the
// rolling minute, and are never deferred by anything the bad clock did.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GatewayRules } from '#harness/gateway/rules.ts';
import { ClockSkewError, QuotaLedger } from '#shared/quota/index.ts';
import { DatedStore } from '../support/sim.ts';

const settings = {
  tableName: 'mem',
  minuteLimit: 240,
  minuteWindowMs: 60_000,
  dayLimit: 30_000,
  bulkShare: 1,
};

// Beyond maxClockSkewMs (1 s) plus the Date header's one-second resolution, one answer tells; a clock
// off by 1-2 s is told as answers at different sub-second phases accumulate.
const offset = fc.oneof(
  fc.integer({ min: 2_001, max: 86_400_000 }),
  fc.integer({ min: -86_400_000, max: -2_001 }),
);

describe('quota ledger: a far clock (property)', () => {
  it('never grants to a clock known to be off, and never lets it disturb healthy workers', async () => {
    await fc.assert(
      fc.asyncProperty(
        offset,
        fc.integer({ min: 0, max: 30 }),
        fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 20, maxLength: 60 }),
        async (badOffset, stepAt, order) => {
          let now = Date.UTC(2026, 11, 2, 12, 0, 0, 300);
          const store = new DatedStore(() => now);
          let off = 0;
          const healthy = [0, 1, 2].map(() => new QuotaLedger({ store, settings, clock: () => now }));
          // The bad worker's clock is fine until it steps at `stepAt` (0: off from the start).
          const bad = new QuotaLedger({ store, settings, clock: () => now + off });
          const judge = new GatewayRules({ spikeIntervalMs: 100, minuteLimit: 240, minuteWindowMs: 60_000 });
          let badGrantsAfterStep = 0;
          let writesAfterBadKnew = 0;
          for (const [i, who] of order.entries()) {
            if (i === stepAt) off = badOffset;
            if (who === 3) {
              // Successful writes only: a conditional write that lost changes nothing.
              const landed = () => store.stats.writes - store.stats.failedWrites;
              const before = landed();
              const d = await bad.acquire({ tenant: 't', key: 'k' }).catch((err: unknown) => err);
              if (off !== 0 && !(d instanceof ClockSkewError)) {
                // Its first answer after the step may still be decided on the old evidence; never twice.
                if (!(d instanceof Error) && (d as { status: string }).status === 'granted')
                  badGrantsAfterStep++;
              }
              if (d instanceof ClockSkewError) writesAfterBadKnew += landed() - before;
              continue;
            }
            const ledger = healthy[who];
            if (!ledger) continue;
            const d = await ledger.acquire({ tenant: 't', key: 'k', waitBudgetMs: 5_000 });
            expect(d.status).toBe('granted');
            if (d.status !== 'granted') return;
            for (const slot of d.slots) {
              now = Math.max(now, slot);
              const a = ledger.admit('t', 'k', slot);
              expect(a.ok).toBe(true);
              // Healthy calls keep Keap's rules at arrival (true time = the healthy clock).
              expect(judge.admit(now, 't', 'k').ok).toBe(true);
            }
          }
          expect(badGrantsAfterStep).toBeLessThanOrEqual(1);
          expect(writesAfterBadKnew).toBe(0);
        },
      ),
      { numRuns: 40 },
    );
  });
});
