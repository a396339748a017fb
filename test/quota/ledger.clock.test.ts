// The ledger against bad clocks, spacing learned after a grant, and the send timing it keeps for
// operators: an in-memory store whose answers carry a `Date` header from the true clock, as DynamoDB's do.
import { describe, expect, it } from 'vitest';
import { ClockSkewError, QuotaLedger } from '#shared/quota/index.ts';
import { DatedStore } from '../support/sim.ts';

const settings = {
  tableName: 'mem',
  minuteLimit: 240,
  minuteWindowMs: 60_000,
  dayLimit: 30_000,
  bulkShare: 1,
};

function fleet() {
  let now = Date.UTC(2026, 11, 2, 12, 0, 0, 300);
  const store = new DatedStore(() => now);
  const worker = (offsetMs: number | (() => number)) =>
    new QuotaLedger({
      store,
      settings,
      clock: () => now + (typeof offsetMs === 'number' ? offsetMs : offsetMs()),
    });
  return { store, worker, advance: (ms: number) => (now += ms), now: () => now };
}

describe('quota ledger: clocks', () => {
  for (const offset of [-3_000, 3_000, 600_000]) {
    it(`a worker ${offset / 1000} s off fails closed with ClockSkewError and writes nothing; healthy workers keep their pace`, async () => {
      const { store, worker, advance, now } = fleet();
      const good = worker(0);
      const bad = worker(offset);
      // Healthy traffic first, so the bad worker's first answer tells it its clock is off.
      const first = await good.acquire({ tenant: 't', key: 'k' });
      expect(first.status).toBe('granted');
      const before = store.stats.writes;
      const version = store.items.get(good.itemFor('t', 'k'))?.version;
      await expect(bad.acquire({ tenant: 't', key: 'k' })).rejects.toBeInstanceOf(ClockSkewError);
      await expect(bad.acquire({ tenant: 't', key: 'k' })).rejects.toBeInstanceOf(ClockSkewError);
      // A bad clock never writes a cool-down (it would be in its future, or its past).
      await expect(bad.report429('t', 'k', 'quota')).rejects.toBeInstanceOf(ClockSkewError);
      expect(store.stats.writes).toBe(before);
      expect(store.items.get(good.itemFor('t', 'k'))?.version).toBe(version);
      // Its last-moment check refuses too, whatever slot it holds.
      expect(bad.admit('t', 'k', now() + offset)).toMatchObject({ ok: false, reason: 'clock' });
      // The healthy worker gets 10 calls at the key's pace (250 ms a call), starting at once.
      const slots: number[] = [];
      for (let i = 0; i < 10; i++) {
        const d = await good.acquire({ tenant: 't', key: 'k', waitBudgetMs: 1_000 });
        if (d.status !== 'granted') throw new Error(`expected a grant, got ${d.status}`);
        slots.push(...d.slots);
        advance((d.slots[0] ?? now()) - now() + 1);
      }
      const span = (slots[slots.length - 1] ?? 0) - (slots[0] ?? 0);
      expect(span / 9).toBeLessThan(good.config.cellMs * 1.6);
    });
  }

  it('a worker whose clock is fixed (NTP stepped it) works again after a re-probe', async () => {
    const { worker, advance } = fleet();
    let offset = -3_000;
    const w = worker(() => offset);
    await expect(w.acquire({ tenant: 't', key: 'k' })).rejects.toBeInstanceOf(ClockSkewError);
    offset = 0;
    // The re-probe runs at most every few seconds of this process's monotonic time.
    await new Promise((r) => setTimeout(r, 5_100));
    advance(5_100);
    await expect(w.acquire({ tenant: 't', key: 'k' })).resolves.toMatchObject({ status: 'granted' });
  });
});

describe('quota ledger: a clock that steps', () => {
  it('a worker whose clock jumps 9 hours ahead mid-run reads before it writes, fails closed, and healthy workers go on', async () => {
    const { store, worker, advance } = fleet();
    let off = 0;
    const good = worker(0);
    const jumpy = worker(() => off);
    expect((await good.acquire({ tenant: 't', key: 'k', waitBudgetMs: 2_000 })).status).toBe('granted');
    // The jumpy worker wrote last: its cached view is current, so nothing but the step stops its write.
    expect((await jumpy.acquire({ tenant: 't', key: 'k', waitBudgetMs: 2_000 })).status).toBe('granted');
    off = 9 * 3_600_000; // the VM resumed with a wrong clock, say
    const landed = store.stats.writes - store.stats.failedWrites;
    await expect(jumpy.acquire({ tenant: 't', key: 'k' })).rejects.toBeInstanceOf(ClockSkewError);
    expect(store.stats.writes - store.stats.failedWrites).toBe(landed);
    advance(300);
    const d = await good.acquire({ tenant: 't', key: 'k', waitBudgetMs: 2_000 });
    expect(d.status).toBe('granted');
  });
});

describe('quota ledger: own calls never compressed', () => {
  it("refuses a call that a forward clock correction would bring closer than its slots to this process's previous call of the key", async () => {
    const { worker, advance, now } = fleet();
    const slow = worker(0);
    const fast = worker(80); // another worker's clock 80 ms ahead: its stamps move slow's clock up
    const d = await slow.acquire({ tenant: 't', key: 'k', count: 2, waitBudgetMs: 2_000, spreadMs: 2_000 });
    if (d.status !== 'granted') throw new Error('expected a grant');
    const [s0, s1] = d.slots;
    if (s0 === undefined || s1 === undefined) throw new Error('expected 2 slots');
    advance(s0 - now());
    expect(slow.admit('t', 'k', s0)).toMatchObject({ ok: true });
    await fast.acquire({ tenant: 't', key: 'k', waitBudgetMs: 5_000 });
    // slow reads fast's stamp: its ledger clock jumps 80 ms forward.
    await slow.snapshot('t', 'k');
    expect(slow.clockCorrectionMs).toBeGreaterThan(60);
    // s1 comes 80 ms early on slow's own clock: sent now, it would arrive 80 ms closer to s0's call.
    advance(s1 - slow.now());
    expect(slow.admit('t', 'k', s1)).toMatchObject({ ok: false, reason: 'early' });
  });
});

describe('quota ledger: spacing learned after a grant', () => {
  it("refuses at the last check a held slot too close behind an earlier call once a spike 429 widened the key's spacing", async () => {
    const { worker, advance, now } = fleet();
    const a = worker(0);
    const b = worker(0);
    const d = await a.acquire({ tenant: 't', key: 'k', count: 4, waitBudgetMs: 2_000, spreadMs: 2_000 });
    if (d.status !== 'granted') throw new Error('expected a grant');
    const [s0, s1] = d.slots;
    if (s0 === undefined || s1 === undefined) throw new Error('expected 4 slots');
    expect(s1 - s0).toBeLessThan(2 * a.config.spikeIntervalMs + a.config.spikeMarginMs);
    advance(s0 - now());
    expect(a.admit('t', 'k', s0)).toMatchObject({ ok: true });
    // Another worker's call earned a spike 429: the key's spacing doubles for everyone.
    await b.report429('t', 'k', 'spike');
    // a learns it with its next write (here: a release of nothing, then a read through acquire).
    await a.acquire({ tenant: 't', key: 'k', hold: true, waitBudgetMs: 0 });
    advance(s1 - now());
    const second = a.admit('t', 'k', s1);
    expect(second).toMatchObject({ ok: false, reason: 'cool-down' });
  });
});

describe('quota ledger: send timing for operators', () => {
  it('keeps p99 and max lateness, refusals and hand-over gaps in the item, written with writes made anyway', async () => {
    const { worker, advance, now } = fleet();
    const a = worker(0);
    const b = worker(0);
    const da = await a.acquire({ tenant: 't', key: 'k' });
    if (da.status !== 'granted') throw new Error('expected a grant');
    const sa = da.slots[0] ?? 0;
    const db = await b.acquire({ tenant: 't', key: 'k', waitBudgetMs: 2_000 });
    if (db.status !== 'granted') throw new Error('expected a grant');
    const sb = db.slots[0] ?? 0;
    advance(sa - now() + 20); // a sends 20 ms late
    expect(a.admit('t', 'k', sa)).toMatchObject({ ok: true, lateMs: 20 });
    advance(sb - now() + 5); // b sends 5 ms late: a hand-over from a's slot
    expect(b.admit('t', 'k', sb)).toMatchObject({ ok: true });
    const late = b.takeSendLateness();
    expect(late.handovers).toBe(1);
    expect(late.handoverGapMinMs).toBe(sb - sa + 5);
    // Nothing written yet: timing rides along with the next writes.
    expect((await a.snapshot('t', 'k')).timing).toBeNull();
    await a.acquire({ tenant: 't', key: 'k', waitBudgetMs: 2_000 });
    await b.acquire({ tenant: 't', key: 'k', waitBudgetMs: 2_000 });
    const t = (await a.snapshot('t', 'k')).timing;
    expect(t).not.toBeNull();
    expect(t?.sendLatenessMaxMs).toBe(20);
    expect(t?.handoverGapMinMs).toBe(sb - sa + 5);
    expect(t?.refused).toBe(0);
  });
});
