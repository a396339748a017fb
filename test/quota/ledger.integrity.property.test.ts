// Property: whatever mix of grants, sends (admit), releases, repeated releases and forged or foreign
// releases several workers make, the ledger counts exactly the calls sent plus the slots granted and
// still outstanding: a sent slot never comes back, a slot is never given back twice, and a slot
// nobody was granted (a made-up one, as a forged message would carry) changes nothing.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DAY_MS, decodeState, QuotaLedger } from '#shared/quota/index.ts';
import { MemoryLedgerStore } from '../support/sim.ts';

const settings = {
  tableName: 'mem',
  minuteLimit: 1_000,
  minuteWindowMs: 60_000,
  dayLimit: 100_000,
  spikeMarginMs: 40,
  marginMs: 40,
  lateToleranceMs: 10,
  bucketMs: 1_000,
  holdHorizonMs: 20_000,
  bulkShare: 1,
  releaseLingerMs: 0,
};

type Op =
  | { kind: 'grant'; worker: number; count: number }
  | { kind: 'send'; worker: number; pick: number }
  | { kind: 'release'; worker: number; pick: number; twice: boolean }
  | { kind: 'foreign'; worker: number; pick: number }
  | { kind: 'forged'; worker: number; slot: number }
  | { kind: 'wait'; ms: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('grant' as const),
    worker: fc.nat(2),
    count: fc.integer({ min: 1, max: 4 }),
  }),
  fc.record({ kind: fc.constant('send' as const), worker: fc.nat(2), pick: fc.nat() }),
  fc.record({
    kind: fc.constant('release' as const),
    worker: fc.nat(2),
    pick: fc.nat(),
    twice: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('foreign' as const), worker: fc.nat(2), pick: fc.nat() }),
  fc.record({
    kind: fc.constant('forged' as const),
    worker: fc.nat(2),
    slot: fc.integer({ min: -5_000, max: 20_000 }),
  }),
  fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 1_500 }) }),
);

describe('quota ledger integrity (property)', () => {
  it('counts exactly what was sent plus what is granted and outstanding', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: 40 }), async (ops) => {
        const store = new MemoryLedgerStore();
        let now = Date.UTC(2026, 10, 26, 12, 0, 0);
        const ledgers = [0, 1, 2].map(() => new QuotaLedger({ store, settings, clock: () => now }));
        const outstanding: number[][] = [[], [], []];
        let sent = 0;
        const take = (w: number, pick: number) => {
          const list = outstanding[w] ?? [];
          if (list.length === 0) return undefined;
          return list.splice(pick % list.length, 1)[0];
        };
        for (const o of ops) {
          if (o.kind === 'wait') {
            now += o.ms;
            continue;
          }
          const ledger = ledgers[o.worker];
          const mine = outstanding[o.worker];
          if (!ledger || !mine) continue;
          if (o.kind === 'grant') {
            const d = await ledger.acquire({
              tenant: 't',
              key: 'k',
              count: o.count,
              waitBudgetMs: 10_000,
              spreadMs: 5_000,
            });
            if (d.status !== 'deferred') mine.push(...d.slots);
          } else if (o.kind === 'send') {
            const slot = take(o.worker, o.pick);
            if (slot === undefined) continue;
            if (now < slot) now = slot; // the caller waits for its slot
            if (ledger.admit('t', 'k', slot).ok) sent++;
            else await ledger.release('t', 'k', [slot]); // refused: never sent, given back
          } else if (o.kind === 'release') {
            const slot = take(o.worker, o.pick);
            if (slot === undefined) continue;
            await ledger.release('t', 'k', [slot]);
            if (o.twice) await ledger.release('t', 'k', [slot]);
          } else if (o.kind === 'foreign') {
            // Another worker's outstanding slot, released by this one: not its to give back.
            const other = outstanding[(o.worker + 1) % 3] ?? [];
            const slot = other[o.pick % Math.max(1, other.length)];
            if (slot !== undefined) await ledger.release('t', 'k', [slot]);
          } else {
            await ledger.release('t', 'k', [now + o.slot]);
          }
        }
        const item = store.items.get('quota#tenant#t');
        const counted = item ? (decodeState(item.state).days.get(Math.floor(now / DAY_MS)) ?? 0) : 0;
        const held = outstanding.reduce((n, l) => n + l.length, 0);
        expect(counted).toBe(sent + held);
      }),
      { numRuns: 60, seed: 9 },
    );
  });
});
