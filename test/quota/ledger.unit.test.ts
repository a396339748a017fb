// The ledger's behaviours on a faithful in-memory store and a controlled clock.
import { describe, expect, it } from 'vitest';
import {
  emptyState,
  encodeState,
  LedgerUnavailableError,
  QuotaLedger,
  QuotaRequestError,
  TooManyKeysError,
} from '#shared/quota/index.ts';
import { MemoryLedgerStore } from '../support/sim.ts';

const settings = {
  tableName: 'mem',
  marginMs: 40,
  // These cases reason on a grid of spike interval + 40 ms.
  spikeMarginMs: 40,
  minuteLimit: 10,
  minuteWindowMs: 3_000,
  dayLimit: 30,
  bucketMs: 100,
  holdHorizonMs: 2_000,
  bulkShare: 0.5,
};

function setup(overrides: Record<string, unknown> = {}) {
  let now = Date.UTC(2026, 10, 26, 12, 0, 0);
  const store = new MemoryLedgerStore();
  const ledger = new QuotaLedger({ store, settings: { ...settings, ...overrides }, clock: () => now });
  return { ledger, store, advance: (ms: number) => (now += ms), now: () => now };
}

describe('quota ledger', () => {
  it('gives a released slot back to the minute and day budgets', async () => {
    const { ledger } = setup({ bulkShare: 1 });
    const all = await ledger.acquire({
      tenant: 't',
      key: 'k',
      count: 10,
      waitBudgetMs: 10_000,
      spreadMs: 2_000,
    });
    expect(all.status === 'granted' && all.slots.length).toBe(10);
    expect(await ledger.acquire({ tenant: 't', key: 'k', waitBudgetMs: 1_000 })).toMatchObject({
      status: 'deferred',
    });
    if (all.status !== 'granted') return;
    await ledger.release('t', 'k', [all.slots[9] ?? 0]);
    const again = await ledger.acquire({ tenant: 't', key: 'k', waitBudgetMs: 2_000 });
    expect(again.status).toBe('granted');
    const snap = await ledger.snapshot('t');
    expect(snap.day.used + snap.day.heldAhead).toBe(10);
  });

  it('names when an exhausted minute frees, even past the hold horizon', async () => {
    const { ledger, now } = setup({ bulkShare: 1 });
    const first = await ledger.acquire({
      tenant: 't',
      key: 'k',
      count: 10,
      waitBudgetMs: 10_000,
      spreadMs: 2_000,
    });
    if (first.status !== 'granted') throw new Error('expected a grant');
    const d = await ledger.acquire({ tenant: 't', key: 'k', waitBudgetMs: 0, hold: true });
    expect(d).toMatchObject({ status: 'deferred', reason: 'minute' });
    if (d.status !== 'deferred') return;
    // Capacity frees one rolling window (plus margin and bucket rounding) after the first slot.
    const firstSlot = first.slots[0] ?? 0;
    expect(d.retryAt).toBeGreaterThanOrEqual(firstSlot + 3_000);
    expect(d.retryAt).toBeLessThanOrEqual(firstSlot + 3_000 + 40 + 2 * 100 + 140);
    expect(d.retryAt).toBeGreaterThan(now() + 2_000);
  });

  it('lets bulk work use only its share, interactive work the rest', async () => {
    const { ledger } = setup();
    const bulk = await ledger.acquire({
      tenant: 't',
      key: 'k',
      count: 10,
      waitBudgetMs: 10_000,
      spreadMs: 2_000,
    });
    expect(bulk.status === 'granted' && bulk.slots.length).toBe(5);
    const interactive = await ledger.acquire({
      tenant: 't',
      key: 'k',
      count: 10,
      priority: 'interactive',
      waitBudgetMs: 10_000,
      spreadMs: 2_000,
    });
    expect(interactive.status === 'granted' && interactive.slots.length).toBe(5);
  });

  it('defers with reason "day" until after the margin past UTC midnight once the day is spent', async () => {
    const { ledger, advance, now } = setup({ dayLimit: 12, minuteLimit: 100, bulkShare: 1 });
    for (let i = 0; i < 2; i++) {
      await ledger.acquire({ tenant: 't', key: 'k', count: 6, waitBudgetMs: 10_000, spreadMs: 2_000 });
      advance(3_000);
    }
    const d = await ledger.acquire({ tenant: 't', key: 'k', waitBudgetMs: 10_000 });
    expect(d).toMatchObject({ status: 'deferred', reason: 'day' });
    const midnight = (Math.floor(now() / 86_400_000) + 1) * 86_400_000;
    if (d.status === 'deferred') expect(d.retryAt).toBeGreaterThanOrEqual(midnight + 40);
  });

  it('never grants a slot inside the margin band around UTC midnight', async () => {
    const { ledger, advance, now } = setup({ bulkShare: 1, marginMs: 60 });
    const midnight = (Math.floor(now() / 86_400_000) + 1) * 86_400_000;
    advance(midnight - now() - 150);
    const d = await ledger.acquire({ tenant: 't', key: 'k', count: 3, waitBudgetMs: 1_000 });
    expect(d.status).toBe('granted');
    if (d.status !== 'granted') return;
    for (const slot of d.slots) expect(slot < midnight - 60 || slot >= midnight + 60).toBe(true);
  });

  it('moves a lagging clock up to the stamps other workers wrote', async () => {
    let t = Date.UTC(2026, 10, 26, 12, 0, 0);
    const store = new MemoryLedgerStore();
    const fast = new QuotaLedger({ store, settings, clock: () => t + 80 });
    const slow = new QuotaLedger({ store, settings, clock: () => t });
    await fast.acquire({ tenant: 't', key: 'k' });
    await slow.acquire({ tenant: 't', key: 'k' });
    expect(slow.clockCorrectionMs).toBe(80);
    t += 10;
    expect(slow.now()).toBe(fast.now());
  });

  it('fails closed on a stored item whose checksum does not match', async () => {
    const { ledger, store } = setup();
    const bytes = encodeState(emptyState());
    bytes[3] = (bytes[3] ?? 0) ^ 0xff;
    store.items.set('quota#tenant#t', { version: 1, writer: 'x', state: bytes });
    await expect(ledger.acquire({ tenant: 't', key: 'k' })).rejects.toThrow(/checksum mismatch/);
  });

  it('settles a write whose answer was lost by the writer token on the item', async () => {
    const store = new MemoryLedgerStore();
    let lose: 'after-write' | 'before-write' | undefined;
    const put = store.put.bind(store);
    store.put = async (pk, next, expected) => {
      if (lose === 'before-write') throw new Error('socket hang up');
      const out = await put(pk, next, expected);
      if (lose === 'after-write') throw new Error('socket hang up');
      return out;
    };
    const ledger = new QuotaLedger({ store, settings });
    lose = 'after-write';
    await expect(ledger.acquire({ tenant: 't', key: 'k' })).resolves.toMatchObject({ status: 'granted' });
    lose = 'before-write';
    await expect(ledger.acquire({ tenant: 't', key: 'k' })).rejects.toBeInstanceOf(LedgerUnavailableError);
  });

  it('rejects a raw-looking key or a bad count before touching the store', async () => {
    const { ledger, store } = setup();
    await expect(ledger.acquire({ tenant: 't', key: 'x'.repeat(40) })).rejects.toBeInstanceOf(
      QuotaRequestError,
    );
    await expect(ledger.acquire({ tenant: 't', key: 'k', count: 0 })).rejects.toThrow(/count/);
    expect(store.stats.reads + store.stats.writes).toBe(0);
  });
});

describe('quota ledger integrity (issue 9)', () => {
  it('does not give back a slot once admit let its call through, nor one released twice', async () => {
    const { ledger, advance } = setup({ bulkShare: 1 });
    const d = await ledger.acquire({
      tenant: 't',
      key: 'k',
      count: 2,
      waitBudgetMs: 10_000,
      spreadMs: 2_000,
    });
    if (d.status !== 'granted') throw new Error('expected a grant');
    const [sent = 0, spare = 0] = d.slots;
    advance(sent - ledger.now());
    expect(ledger.admit('t', 'k', sent)).toMatchObject({ ok: true });
    await ledger.release('t', 'k', [sent, spare]);
    await ledger.release('t', 'k', [spare]);
    const snap = await ledger.snapshot('t');
    // The sent call still counts; the spare came back exactly once.
    expect(snap.day.used + snap.day.heldAhead).toBe(1);
  });

  it('ignores a release of slots this process was never granted (a forged or foreign release)', async () => {
    const store = new MemoryLedgerStore();
    let now = Date.UTC(2026, 10, 26, 12, 0, 0);
    const a = new QuotaLedger({ store, settings: { ...settings, bulkShare: 1 }, clock: () => now });
    const b = new QuotaLedger({ store, settings: { ...settings, bulkShare: 1 }, clock: () => now });
    const d = await a.acquire({ tenant: 't', key: 'k', count: 3, waitBudgetMs: 10_000, spreadMs: 2_000 });
    if (d.status !== 'granted') throw new Error('expected a grant');
    await b.release('t', 'k', d.slots);
    now += 1;
    const snap = await a.snapshot('t');
    expect(snap.day.used + snap.day.heldAhead).toBe(3);
  });

  it('refuses at the last moment a call later than lateToleranceMs, and one inside a known cool-down', async () => {
    const { ledger, advance } = setup({ bulkShare: 1, lateToleranceMs: 10 });
    const d = await ledger.acquire({
      tenant: 't',
      key: 'k',
      count: 2,
      waitBudgetMs: 10_000,
      spreadMs: 2_000,
    });
    if (d.status !== 'granted') throw new Error('expected a grant');
    const [first = 0, second = 0] = d.slots;
    advance(first + 11 - ledger.now());
    expect(ledger.admit('t', 'k', first)).toMatchObject({ ok: false, reason: 'late' });
    await ledger.report429('t', 'k', 'quota');
    advance(second - ledger.now());
    expect(ledger.admit('t', 'k', second)).toMatchObject({ ok: false, reason: 'cool-down' });
    expect(ledger.takeSendLateness()).toMatchObject({ refused: 2 });
  });

  it('counts a write whose condition failed against its own earlier attempt as done (SDK retry after a lost answer)', async () => {
    const { ledger, store } = setup({ bulkShare: 1 });
    const put = store.put.bind(store);
    let first = true;
    // The first put lands, but its answer is "lost": the SDK retries the very same request.
    store.put = async (pk, next, expected) => {
      if (first) {
        first = false;
        await put(pk, next, expected);
        return put(pk, next, expected);
      }
      return put(pk, next, expected);
    };
    const d = await ledger.acquire({
      tenant: 't',
      key: 'k',
      count: 3,
      waitBudgetMs: 10_000,
      spreadMs: 2_000,
    });
    expect(d.status === 'granted' && d.slots.length).toBe(3);
    const snap = await ledger.snapshot('t');
    expect(snap.day.used + snap.day.heldAhead).toBe(3);
  });

  it('lets a stamp far ahead (a bad clock) gate healthy workers by at most maxClockSkewMs', async () => {
    const store = new MemoryLedgerStore();
    let now = Date.UTC(2026, 10, 26, 12, 0, 0);
    const bad = new QuotaLedger({
      store,
      settings: { ...settings, bulkShare: 1 },
      clock: () => now + 600_000,
    });
    const good = new QuotaLedger({ store, settings: { ...settings, bulkShare: 1 }, clock: () => now });
    await bad.acquire({ tenant: 't', key: 'k' });
    now += 5;
    const d = await good.acquire({ tenant: 't', key: 'k', waitBudgetMs: 5_000 });
    expect(d.status).toBe('granted');
    if (d.status === 'granted')
      expect((d.slots[0] ?? 0) - now).toBeLessThanOrEqual(good.config.maxClockSkewMs + 1_000);
    expect(good.clockCorrectionMs).toBe(0);
  });

  it('key scope: forgets keys unused since before today, so rotations never lock the tenant out', async () => {
    const { ledger, advance } = setup({ quotaScope: 'key', maxKeysPerTenant: 2 });
    await ledger.acquire({ tenant: 't', key: 'a' });
    await ledger.acquire({ tenant: 't', key: 'b' });
    await expect(ledger.acquire({ tenant: 't', key: 'c' })).rejects.toBeInstanceOf(TooManyKeysError);
    advance(86_400_000); // a and b idle since yesterday
    await expect(ledger.acquire({ tenant: 't', key: 'c' })).resolves.toMatchObject({ status: 'granted' });
    await expect(ledger.acquire({ tenant: 't', key: 'd' })).resolves.toMatchObject({ status: 'granted' });
    await expect(ledger.acquire({ tenant: 't', key: 'e' })).rejects.toBeInstanceOf(TooManyKeysError);
  });

  it('learns a wider spike spacing from a spike-arrest 429, for every worker, and relaxes it slowly', async () => {
    const store = new MemoryLedgerStore();
    let now = Date.UTC(2026, 10, 26, 12, 0, 0);
    const s = { ...settings, bulkShare: 1, minuteLimit: 1_000, dayLimit: 100_000 };
    const a = new QuotaLedger({ store, settings: s, clock: () => now });
    const b = new QuotaLedger({ store, settings: s, clock: () => now });
    await a.report429('t', 'k', 'spike');
    now += 1_100; // past the spike cool-down
    const d = await b.acquire({ tenant: 't', key: 'k', count: 5, waitBudgetMs: 10_000, spreadMs: 5_000 });
    if (d.status !== 'granted') throw new Error('expected a grant');
    const gaps = d.slots.slice(1).map((t, i) => t - (d.slots[i] ?? 0));
    // 2 x 100 ms learned + the 40 ms spike margin, on the grid.
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(200 + 40);
    now += 11 * 600_000; // many relax periods without another spike 429
    const later = await b.acquire({ tenant: 't', key: 'k', count: 5, waitBudgetMs: 10_000, spreadMs: 5_000 });
    if (later.status !== 'granted') throw new Error('expected a grant');
    const relaxed = later.slots.slice(1).map((t, i) => t - (later.slots[i] ?? 0));
    expect(Math.min(...relaxed)).toBe(b.config.cellMs);
  });

  it('reads an old view before sending a held slot, so a spike 429 another worker got reaches slots granted before it', async () => {
    // Real time: waitForSlot sleeps until each slot.
    const store = new MemoryLedgerStore();
    const s = {
      ...settings,
      bulkShare: 1,
      minuteLimit: 1_000,
      dayLimit: 100_000,
      holdHorizonMs: 5_000,
      spikeCoolDownMs: 1, // the learned spacing alone, not the cool-down, refuses the crowded slots
      sendViewMaxAgeMs: 50,
    };
    const a = new QuotaLedger({ store, settings: s });
    const b = new QuotaLedger({ store, settings: s });
    const d = await b.acquire({
      tenant: 't',
      key: 'k',
      count: 6,
      waitBudgetMs: 10_000,
      spreadMs: 5_000,
      notBefore: Date.now() + 300,
    });
    if (d.status !== 'granted') throw new Error('expected a grant');
    // Granted one cell apart; then another worker is told by Keap that the spacing is too tight.
    expect(d.slots.slice(1).map((t, i) => t - (d.slots[i] ?? 0))).toEqual(Array(5).fill(b.config.cellMs));
    await a.report429('t', 'k', 'spike');
    const readsBefore = store.stats.reads;
    const admitted: number[] = [];
    const reasons: string[] = [];
    for (const slot of d.slots) {
      if (!(await b.waitForSlot(slot, { tenant: 't', key: 'k' }))) continue; // woke late: not sent
      const verdict = b.admit('t', 'k', slot);
      if (verdict.ok) admitted.push(slot);
      else reasons.push(verdict.reason);
    }
    // No two calls b sent are closer than the learned spacing (two cells), and b found out by reading.
    const gaps = admitted.slice(1).map((t, i) => t - (admitted[i] ?? 0));
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(2 * b.config.cellMs);
    expect(reasons).toContain('cool-down');
    expect(store.stats.reads).toBeGreaterThan(readsBefore);
  });
});
