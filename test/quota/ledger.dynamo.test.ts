// Integration: the ledger against real DynamoDB semantics (dynalite and DynamoDB Local).
import { GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningDynamo } from '#harness/emulators/dynamo.ts';
import { judgeArrivals } from '#harness/gateway/rules.ts';
import {
  ClockSkewError,
  createLedgerTable,
  DynamoLedgerStore,
  decodeState,
  LedgerStateError,
  LedgerUnavailableError,
  QuotaLedger,
  TooManyKeysError,
} from '#shared/quota/index.ts';
import { emulatorCases, missingEmulatorFailure } from '../support/emulators.ts';

const base = {
  marginMs: 40,
  // These cases reason on a grid of spike interval + 40 ms.
  spikeMarginMs: 40,
  lateToleranceMs: 10,
  minuteLimit: 12,
  minuteWindowMs: 3_000,
  dayLimit: 1_000,
  bucketMs: 100,
  holdHorizonMs: 20_000,
  bulkShare: 1,
};

let tableSeq = 0;

if (missingEmulatorFailure) {
  it('DynamoDB Local integration suite can run', () => {
    throw new Error(missingEmulatorFailure);
  });
}

describe.each(emulatorCases)('quota ledger on $name', (emu) => {
  let db: RunningDynamo;
  beforeAll(async () => {
    db = await emu.start();
  });
  afterAll(async () => {
    await db?.close();
  });

  async function setup(overrides: Record<string, unknown> = {}, workers = 1) {
    const tableName = `ledger${++tableSeq}`;
    await createLedgerTable(db.client, tableName);
    const stores = Array.from({ length: workers }, () => new DynamoLedgerStore(db.client, tableName));
    const ledgers = stores.map(
      (store) => new QuotaLedger({ store, settings: { tableName, ...base, ...overrides } }),
    );
    const [ledger] = ledgers;
    const [store] = stores;
    if (!ledger || !store) throw new Error('no worker');
    return { tableName, stores, ledgers, ledger, store };
  }

  it('grants the next grid slot and spends exactly one write per admitted call', async () => {
    const { ledger, store } = await setup();
    const a = await ledger.acquire({ tenant: 't1', key: 'k1' });
    const b = await ledger.acquire({ tenant: 't1', key: 'k1' });
    expect(a.status).toBe('granted');
    expect(b.status).toBe('granted');
    if (a.status !== 'granted' || b.status !== 'granted') return;
    expect((b.slots[0] ?? 0) - (a.slots[0] ?? 0)).toBeGreaterThanOrEqual(ledger.config.cellMs);
    expect(store.stats.writes).toBe(2);
    expect(store.stats.failedWrites).toBe(0);
  });

  it('reserves k slots in a single write', async () => {
    const { ledger, store } = await setup();
    const d = await ledger.acquire({ tenant: 't1', key: 'k1', count: 5, minGapMs: 300 });
    expect(d.status).toBe('granted');
    if (d.status !== 'granted') return;
    expect(d.slots).toHaveLength(5);
    for (let i = 1; i < d.slots.length; i++) {
      expect((d.slots[i] ?? 0) - (d.slots[i - 1] ?? 0)).toBeGreaterThanOrEqual(300);
    }
    expect(store.stats.writes).toBe(1);
  });

  it(`recovers from a lost conditional write ${emu.returnsItemOnConflict ? 'with the returned item, no read' : 'with one read'}`, async () => {
    const { ledgers, stores } = await setup({}, 2);
    const [w1, w2] = ledgers;
    const [, s2] = stores;
    if (!w1 || !w2 || !s2) throw new Error('workers');
    await w2.acquire({ tenant: 't1', key: 'k1' }); // w2 caches version 1
    await w1.acquire({ tenant: 't1', key: 'k1' }); // w1 moves the item on: w2's view is stale
    const readsBefore = s2.stats.reads;
    const d = await w2.acquire({ tenant: 't1', key: 'k1' });
    expect(d.status).toBe('granted');
    expect(s2.stats.failedWrites).toBe(1);
    expect(s2.stats.reads - readsBefore).toBe(emu.returnsItemOnConflict ? 0 : 1);
  });

  it('answers a rejection from its local view without any DynamoDB request', async () => {
    const { ledger, store } = await setup();
    const d = await ledger.acquire({ tenant: 't1', key: 'k1', count: 12, waitBudgetMs: 60_000 });
    expect(d.status === 'granted' && d.slots.length).toBe(12);
    const before = { ...store.stats };
    const denied = await ledger.acquire({ tenant: 't1', key: 'k1', waitBudgetMs: 100 });
    expect(denied).toMatchObject({ status: 'deferred', reason: 'minute' });
    expect(store.stats).toEqual(before);
  });

  it('holds a future slot for a deferred caller, and nobody else gets it', async () => {
    const { ledgers } = await setup({}, 2);
    const [w1, w2] = ledgers;
    if (!w1 || !w2) throw new Error('workers');
    await w1.acquire({ tenant: 't1', key: 'k1', count: 12, waitBudgetMs: 60_000 });
    const held = await w1.acquire({ tenant: 't1', key: 'k1', waitBudgetMs: 0, hold: true });
    expect(held).toMatchObject({ status: 'held', reason: 'minute' });
    if (held.status !== 'held') return;
    const other = await w2.acquire({ tenant: 't1', key: 'k1', waitBudgetMs: 60_000 });
    expect(other.status).toBe('granted');
    if (other.status !== 'granted') return;
    expect(other.slots[0]).not.toBe(held.slots[0]);
    expect(other.slots[0] ?? 0).toBeGreaterThan(held.slots[0] ?? 0);
  });

  it("aligns a worker's clock with DynamoDB's before its first call: 300 ms ahead is corrected, 3 s fails closed", async () => {
    const tableName = `ledger${++tableSeq}`;
    await createLedgerTable(db.client, tableName);
    const make = (offsetMs: number) =>
      new QuotaLedger({
        store: new DynamoLedgerStore(db.client, tableName),
        settings: { tableName, ...base },
        clock: () => Date.now() + offsetMs,
      });
    const right = make(0);
    const ahead = make(300);
    const far = make(3_000);
    // Workers that never saw each other's stamps (they start apart, as Lambdas do).
    await Promise.all([right.alignClock('t1', 'k1'), ahead.alignClock('t1', 'k1')]);
    expect(ahead.clockAlignment.aligned).toBe(true);
    expect(ahead.clockCorrectionMs).toBeLessThan(-200);
    // Whole milliseconds, as Date.now (job fields and stored times are integers).
    expect(Number.isInteger(ahead.now())).toBe(true);
    // Agree to well within the 300 ms they were apart (the estimate's width bounds the error).
    expect(Math.abs(ahead.now() - right.now())).toBeLessThan(100);
    // Its slots now fall where the others' clocks put them: consecutive grants keep the grid.
    const d1 = await right.acquire({ tenant: 't1', key: 'k1' });
    const d2 = await ahead.acquire({ tenant: 't1', key: 'k1' });
    if (d1.status !== 'granted' || d2.status !== 'granted') throw new Error('expected grants');
    expect((d2.slots[0] ?? 0) - (d1.slots[0] ?? 0)).toBeGreaterThanOrEqual(ahead.config.cellMs);
    // Three seconds off is not moved: it fails closed.
    await expect(far.acquire({ tenant: 't1', key: 'k1' })).rejects.toThrow(ClockSkewError);
    expect(far.clockCorrectionMs).toBe(0);
  });

  it("makes every worker obey another worker's 429 cool-down", async () => {
    const { ledgers } = await setup({ spikeCoolDownMs: 2_000 }, 2);
    const [w1, w2] = ledgers;
    if (!w1 || !w2) throw new Error('workers');
    const own = await w2.acquire({ tenant: 't1', key: 'k1' });
    if (own.status !== 'granted') throw new Error('expected a grant');
    await w2.waitForSlot(own.slots[0] ?? 0); // w2's view is now stale, and its own slot is behind it
    const reportedAt = w1.now();
    await w1.report429('t1', 'k1', 'spike');
    const d = await w2.acquire({ tenant: 't1', key: 'k1', waitBudgetMs: 500 });
    expect(d).toMatchObject({ status: 'deferred', reason: 'cool-down' });
    const later = await w2.acquire({ tenant: 't1', key: 'k1', waitBudgetMs: 5_000 });
    expect(later.status).toBe('granted');
    if (later.status === 'granted') expect(later.slots[0] ?? 0).toBeGreaterThanOrEqual(reportedAt + 2_000);
  });

  it("never believes more is left than Keap's headers say", async () => {
    const { ledger } = await setup();
    const first = await ledger.acquire({ tenant: 't1', key: 'k1' });
    if (first.status !== 'granted') throw new Error('expected a grant');
    // Keap says only 2 calls are left in the minute (someone else used the rest).
    await ledger.reportResponse('t1', 'k1', first.slots[0] ?? 0, {
      productMinute: { limit: 12, available: 2 },
    });
    const d = await ledger.acquire({
      tenant: 't1',
      key: 'k1',
      count: 10,
      waitBudgetMs: 1_000,
      spreadMs: 1_000,
    });
    expect(d.status === 'granted' && d.slots.length).toBe(2);
    const snap = await ledger.snapshot('t1');
    expect(snap.minute.limit).toBe(3);
  });

  it('fails closed with LedgerUnavailableError when the table does not exist', async () => {
    const store = new DynamoLedgerStore(db.client, 'no_such_table');
    const ledger = new QuotaLedger({ store, settings: { tableName: 'no_such_table', ...base } });
    await expect(ledger.acquire({ tenant: 't1', key: 'k1' })).rejects.toBeInstanceOf(LedgerUnavailableError);
  });

  it('fails closed with LedgerStateError when the item was not written by the ledger', async () => {
    const { ledger, tableName } = await setup();
    await db.client.send(
      new PutItemCommand({
        TableName: tableName,
        Item: {
          pk: { S: 'quota#tenant#t1' },
          v: { N: '3' },
          w: { S: 'x' },
          s: { B: new Uint8Array([1, 2, 3, 4, 5, 6]) },
        },
      }),
    );
    await expect(ledger.acquire({ tenant: 't1', key: 'k1' })).rejects.toBeInstanceOf(LedgerStateError);
    await db.client.send(
      new PutItemCommand({ TableName: tableName, Item: { pk: { S: 'quota#tenant#t2' }, count: { N: '3' } } }),
    );
    await expect(ledger.acquire({ tenant: 't2', key: 'k1' })).rejects.toThrow(/did not write/);
  });

  it('coalesces concurrent acquires in one process into few writes, every slot distinct', async () => {
    const { ledger, store } = await setup({ minuteLimit: 200 });
    const decisions = await Promise.all(
      Array.from({ length: 40 }, () => ledger.acquire({ tenant: 't1', key: 'k1', waitBudgetMs: 20_000 })),
    );
    const slots = decisions.flatMap((d) => (d.status === 'granted' ? d.slots : []));
    expect(slots).toHaveLength(40);
    expect(new Set(slots).size).toBe(40);
    expect(store.stats.writes).toBeLessThanOrEqual(4);
  });

  it('keeps many concurrent workers under every bound, losing no reservation', async () => {
    const { ledgers, tableName } = await setup({ minuteLimit: 10, holdHorizonMs: 30_000 }, 8);
    const results = await Promise.all(
      ledgers.flatMap((w, i) =>
        Array.from({ length: 4 }, (_, j) =>
          w.acquire({ tenant: 't1', key: `k${(i + j) % 2}`, waitBudgetMs: 30_000, count: 1 + (j % 3) }),
        ),
      ),
    );
    const granted = results.flatMap((d, n) =>
      d.status === 'granted' ? d.slots.map((at) => ({ at, tenant: 't1', key: `k${n % 2}` })) : [],
    );
    expect(granted.length).toBeGreaterThan(20);
    const judged = judgeArrivals(
      results.flatMap((d, n) =>
        d.status === 'granted'
          ? d.slots.map((at) => ({ at, tenant: 't1', key: `k${(Math.floor(n / 4) + (n % 4)) % 2}` }))
          : [],
      ),
      { spikeIntervalMs: 100, minuteLimit: 10, minuteWindowMs: 3_000, dayLimit: 1_000 },
    );
    expect(judged.violations).toBe(0);
    const raw = await db.client.send(
      new GetItemCommand({
        TableName: tableName,
        Key: { pk: { S: 'quota#tenant#t1' } },
        ConsistentRead: true,
      }),
    );
    const bytes = raw.Item?.s?.B;
    if (!bytes) throw new Error('no ledger item');
    const state = decodeState(bytes);
    const counted = [...state.days.values()].reduce((a, b) => a + b, 0);
    expect(counted).toBe(judged.total);
  });

  it('keeps the stored item under 1 KB when saturated with holds across keys', async () => {
    const { ledger, tableName } = await setup({ minuteLimit: 240, minuteWindowMs: 60_000, bucketMs: 500 });
    for (let k = 0; k < 4; k++) {
      await ledger.acquire({
        tenant: 't1',
        key: `key${k}`,
        count: 60,
        waitBudgetMs: 0,
        hold: true,
        spreadMs: 90_000,
      });
    }
    const raw = await db.client.send(
      new GetItemCommand({
        TableName: tableName,
        Key: { pk: { S: 'quota#tenant#t1' } },
        ConsistentRead: true,
      }),
    );
    const item = raw.Item;
    if (!item) throw new Error('no item');
    const size = Object.entries(item).reduce(
      (n, [name, v]) => n + name.length + (v.S?.length ?? 0) + (v.N?.length ?? 0) + (v.B?.length ?? 0),
      0,
    );
    expect(size).toBeLessThanOrEqual(1024);
    const snap = await ledger.snapshot('t1');
    expect(snap.minute.used + snap.minute.heldAhead).toBe(240);
    expect(snap.minute.left).toBe(0);
  });

  it('reports used and left per window in a snapshot', async () => {
    const { ledger } = await setup();
    await ledger.acquire({ tenant: 't1', key: 'k1', count: 3 });
    const snap = await ledger.snapshot('t1');
    expect(snap.minute.limit).toBe(12);
    expect(snap.minute.used + snap.minute.heldAhead).toBe(3);
    expect(snap.minute.left).toBe(9);
    expect(snap.day).toMatchObject({ limit: 1_000, left: 997 });
    expect(snap.keys).toEqual([expect.objectContaining({ key: 'k1' })]);
  });

  it('key scope: refuses a key beyond maxKeysPerTenant', async () => {
    const { ledger } = await setup({ quotaScope: 'key', maxKeysPerTenant: 2, dayLimit: 1_000 });
    await ledger.acquire({ tenant: 't1', key: 'a' });
    await ledger.acquire({ tenant: 't1', key: 'b' });
    await expect(ledger.acquire({ tenant: 't1', key: 'c' })).rejects.toBeInstanceOf(TooManyKeysError);
    await expect(ledger.acquire({ tenant: 't2', key: 'c' })).resolves.toMatchObject({ status: 'granted' });
  });
});

describe('quota ledger without DynamoDB', () => {
  it('fails closed when DynamoDB cannot be reached', async () => {
    const { localDynamoClient } = await import('#harness/emulators/dynamo.ts');
    const client = localDynamoClient('http://127.0.0.1:9');
    const ledger = new QuotaLedger({
      store: new DynamoLedgerStore(client, 'x'),
      settings: { tableName: 'x' },
    });
    const err = await ledger.acquire({ tenant: 't1', key: 'k1' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LedgerUnavailableError);
    expect(String((err as Error).message)).toMatch(/No Keap call was allowed/);
    client.destroy();
  });
});
