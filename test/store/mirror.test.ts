// Integration: the Keap mirror against real DynamoDB semantics (dynalite and DynamoDB Local).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type MirrorRecord,
  MirrorStore,
  MirrorWriteStoppedError,
  RecordTooLargeError,
  StoreInputError,
  StoreUnavailableError,
} from '#shared/store/index.ts';
import { emulatorCases } from '../support/emulators.ts';
import { faultyClient, reportMissingEmulator, unique, useTables } from './support.ts';

reportMissingEmulator();

/** A record factory: contacts with a version stamp in their data. */
function contact(id: string, updateTimeMs: number, extra: Record<string, unknown> = {}): MirrorRecord {
  return { id, updateTimeMs, data: { id, given_name: `n${id}`, version: updateTimeMs, ...extra } };
}

describe.each(emulatorCases)('mirror on $name', (emu) => {
  const tables = useTables(emu);
  const mirror = (options: ConstructorParameters<typeof MirrorStore>[2] = {}) => {
    const { db, mirrorTable } = tables();
    return new MirrorStore(db.client, mirrorTable, options);
  };

  it('writes a batch and counts every record as written', async () => {
    const store = mirror();
    const account = unique('acct');
    const records = Array.from({ length: 40 }, (_, i) => contact(`c${i}`, 1_000 + i));

    const result = await store.upsertMany(account, 'contacts', records);

    expect(result).toEqual({ written: 40, skippedStale: 0 });
    expect(await store.count(account, 'contacts')).toBe(40);
  });

  it('skips older versions, rewrites equal ones and counts each', async () => {
    const store = mirror();
    const account = unique('acct');
    await store.upsertMany(
      account,
      'contacts',
      Array.from({ length: 30 }, (_, i) => contact(`c${i}`, 5_000)),
    );

    const result = await store.upsertMany(account, 'contacts', [
      ...Array.from({ length: 10 }, (_, i) => contact(`c${i}`, 4_999, { stale: true })),
      ...Array.from({ length: 10 }, (_, i) => contact(`c${10 + i}`, 5_000, { rewritten: true })),
      ...Array.from({ length: 10 }, (_, i) => contact(`c${20 + i}`, 6_000)),
    ]);

    expect(result).toEqual({ written: 20, skippedStale: 10 });
    expect((await store.get(account, 'contacts', 'c3'))?.data).not.toHaveProperty('stale');
    expect((await store.get(account, 'contacts', 'c3'))?.updateTimeMs).toBe(5_000);
    expect((await store.get(account, 'contacts', 'c13'))?.data).toHaveProperty('rewritten', true);
    expect((await store.get(account, 'contacts', 'c23'))?.updateTimeMs).toBe(6_000);
  });

  it('keeps the newest version whatever order concurrent writers use (property)', async () => {
    const ids = ['a', 'b', 'c'];
    const writer = fc.record({
      ops: fc.array(fc.record({ id: fc.constantFrom(...ids), ut: fc.integer({ min: 0, max: 6 }) }), {
        minLength: 1,
        maxLength: 8,
      }),
      chunk: fc.integer({ min: 1, max: 4 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(writer, { minLength: 2, maxLength: 4 }), async (writers) => {
        const account = unique('prop');
        const results = await Promise.all(
          writers.map(async ({ ops, chunk }, w) => {
            const store = mirror({ settings: { writeConcurrency: 3 } });
            const totals = { written: 0, skippedStale: 0 };
            for (let i = 0; i < ops.length; i += chunk) {
              const batch = ops.slice(i, i + chunk).map((op) => contact(op.id, op.ut, { writer: w }));
              const r = await store.upsertMany(account, 'contacts', batch);
              totals.written += r.written;
              totals.skippedStale += r.skippedStale;
            }
            return totals;
          }),
        );

        const all = writers.flatMap((w) => w.ops);
        const store = mirror();
        for (const id of ids) {
          const versions = all.filter((op) => op.id === id).map((op) => op.ut);
          const item = await store.get(account, 'contacts', id);
          if (versions.length === 0) {
            expect(item).toBeUndefined();
            continue;
          }
          expect(item?.updateTimeMs).toBe(Math.max(...versions));
          expect(item?.data.version).toBe(Math.max(...versions));
        }
        const written = results.reduce((n, r) => n + r.written, 0);
        const skipped = results.reduce((n, r) => n + r.skippedStale, 0);
        expect(written + skipped).toBe(all.length);
        expect(written).toBeGreaterThanOrEqual(new Set(all.map((op) => op.id)).size);
      }),
      { numRuns: 25 },
    );
  });

  it('iterates over exactly what was written, page by page, without other partitions', async () => {
    const store = mirror({ settings: { pageSize: 25 } });
    const account = unique('acct');
    const records = Array.from({ length: 130 }, (_, i) =>
      contact(`id${String(i).padStart(4, '0')}`, 10_000 + i, {
        tags: [i, `t${i}`],
        nested: { ok: i % 2 === 0 },
      }),
    );
    await store.upsertMany(account, 'contacts', records);
    await store.upsertMany(account, 'companies', [contact('id0001', 1)]);
    await store.upsertMany(unique('other'), 'contacts', [contact('id0002', 1)]);

    const seen = [];
    for await (const item of store.iterate(account, 'contacts')) seen.push(item);

    expect(seen.map((item) => item.id)).toEqual(records.map((r) => r.id));
    expect(seen.map((item) => item.data)).toEqual(records.map((r) => r.data));
    expect(seen.every((item) => item.account === account && item.resource === 'contacts')).toBe(true);
    expect(await store.count(account, 'contacts')).toBe(130);
  });

  it('iterates only the ids that begin with a prefix (a key condition), page by page', async () => {
    const store = mirror({ settings: { pageSize: 7 } });
    const account = unique('acct');
    const records = ['1', '12', '2', '21'].flatMap((tag) =>
      Array.from({ length: 15 }, (_, i) => contact(`${tag}:${100 + i}`, 10_000 + i)),
    );
    await store.upsertMany(account, 'tagApplications', records);

    const of = async (prefix: string) => {
      const ids: string[] = [];
      for await (const item of store.iterate(account, 'tagApplications', { prefix })) ids.push(item.id);
      return ids;
    };
    expect(await of('1:')).toEqual(records.filter((r) => r.id.startsWith('1:')).map((r) => r.id));
    expect(await of('21:')).toHaveLength(15);
    expect(await of('3:')).toEqual([]);
    expect(await of('')).toHaveLength(60);
  });

  it('stops starting puts once its signal fires, with MirrorWriteStoppedError saying how far it got', async () => {
    const store = mirror({ settings: { writeConcurrency: 2 } });
    const account = unique('acct');
    const records = Array.from({ length: 40 }, (_, i) =>
      contact(`s${String(i).padStart(3, '0')}`, 1_000 + i),
    );
    const fired = AbortSignal.abort();
    await expect(store.upsertMany(account, 'contacts', records, { signal: fired })).rejects.toMatchObject({
      name: 'MirrorWriteStoppedError',
      done: 0,
      total: 40,
    });
    expect(await store.count(account, 'contacts')).toBe(0);
    // Fired part-way: what was written stays (newer-wins makes writing it again harmless).
    let asked = 0;
    const partWay = {
      get aborted() {
        asked++;
        return asked > 10;
      },
    } as AbortSignal;
    const err = await store
      .upsertMany(account, 'contacts', records, { signal: partWay })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MirrorWriteStoppedError);
    expect((err as MirrorWriteStoppedError).done).toBe(10);
    expect(await store.count(account, 'contacts')).toBe(10);
    // Without a signal, or one that never fires, every record is written.
    const ok = await store.upsertMany(account, 'contacts', records, { signal: new AbortController().signal });
    expect(ok.written + ok.skippedStale).toBe(40);
    expect(await store.count(account, 'contacts')).toBe(40);
  });

  it('stores data as a native map and drops undefined values', async () => {
    let clock = 50_000;
    const store = mirror({ now: () => clock });
    const account = unique('acct');
    const data = { id: 'x1', nested: { list: [1, 'two', null, { deep: true }] }, gone: undefined, empty: '' };

    await store.upsertMany(account, 'contacts', [{ id: 'x1', updateTimeMs: 42_000, data }]);
    const first = await store.get(account, 'contacts', 'x1');
    clock += 1_000;
    await store.upsertMany(account, 'contacts', [{ id: 'x1', updateTimeMs: 42_000, data }]);
    const second = await store.get(account, 'contacts', 'x1');

    expect(first?.data).toEqual({ id: 'x1', nested: { list: [1, 'two', null, { deep: true }] }, empty: '' });
    expect(first?.data).not.toHaveProperty('gone');
    expect(first?.updateTime).toBe(new Date(42_000).toISOString());
    expect(Date.parse(second?.syncedAt ?? '') - Date.parse(first?.syncedAt ?? '')).toBe(1_000);
    expect(await store.get(account, 'contacts', 'missing')).toBeUndefined();
  });

  it('refuses a record over 400 KB, naming it, and writes nothing of its batch', async () => {
    const store = mirror();
    const account = unique('acct');
    const batch = [contact('ok1', 1), contact('huge', 1, { notes: 'x'.repeat(410_000) }), contact('ok2', 1)];

    const error = await store.upsertMany(account, 'contacts', batch).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(RecordTooLargeError);
    expect(error).toMatchObject({ recordId: 'huge', resource: 'contacts', account });
    expect((error as Error).message).toContain('"huge"');
    expect(await store.count(account, 'contacts')).toBe(0);
  });

  it('accepts a record just under the limit', async () => {
    const store = mirror();
    const account = unique('acct');

    const result = await store.upsertMany(account, 'contacts', [
      contact('big', 1, { notes: 'y'.repeat(390_000) }),
    ]);

    expect(result.written).toBe(1);
    expect((await store.get(account, 'contacts', 'big'))?.data.notes).toHaveLength(390_000);
  });

  it('rejects bad input before writing anything', async () => {
    const store = mirror();
    const account = unique('acct');

    await expect(store.upsertMany('a#b', 'contacts', [contact('c1', 1)])).rejects.toBeInstanceOf(
      StoreInputError,
    );
    await expect(
      store.upsertMany(account, 'contacts', [
        contact('c1', 1),
        { id: 'c2', updateTimeMs: Number.NaN, data: {} },
      ]),
    ).rejects.toMatchObject({ name: 'StoreInputError', field: 'records[1].updateTimeMs' });
    await expect(
      store.upsertMany(account, 'contacts', [contact('c3', 1, { when: new Date() })]),
    ).rejects.toMatchObject({ name: 'StoreInputError', field: 'data.when' });
    expect(await store.count(account, 'contacts')).toBe(0);
  });

  it('keeps at most writeConcurrency conditional puts in flight', async () => {
    const faulty = faultyClient(tables().db);
    const store = new MirrorStore(faulty.client, tables().mirrorTable, { settings: { writeConcurrency: 4 } });

    const result = await store.upsertMany(
      unique('acct'),
      'contacts',
      Array.from({ length: 60 }, (_, i) => contact(`c${i}`, i)),
    );

    expect(result.written).toBe(60);
    expect(faulty.maxInFlight).toBeLessThanOrEqual(4);
    expect(faulty.maxInFlight).toBeGreaterThan(1);
    faulty.client.destroy();
  });

  it('retries throttled writes with backoff and reports exhaustion as retryable', async () => {
    const faulty = faultyClient(tables().db, { maxAttempts: 4, backoffBaseMs: 1, backoffMaxMs: 5 });
    const store = new MirrorStore(faulty.client, tables().mirrorTable, { settings: { writeConcurrency: 1 } });
    const account = unique('acct');

    faulty.throttleNext(3);
    const ok = await store.upsertMany(account, 'contacts', [contact('c1', 1)]);
    faulty.throttleNext(10);
    const error = await store.upsertMany(account, 'contacts', [contact('c2', 1)]).catch((e: unknown) => e);

    expect(ok.written).toBe(1);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(error).toMatchObject({ retryable: true, attempts: 4 });
    faulty.throttleNext(0);
    expect(await store.count(account, 'contacts')).toBe(1);
    faulty.client.destroy();
  });

  it('sends a write the condition refused once: the SDK does not retry it', async () => {
    const faulty = faultyClient(tables().db, { backoffBaseMs: 1, backoffMaxMs: 5 });
    const store = new MirrorStore(faulty.client, tables().mirrorTable, { settings: { writeConcurrency: 1 } });
    const account = unique('acct');
    await store.upsertMany(account, 'contacts', [contact('c1', 9)]);

    const result = await store.upsertMany(account, 'contacts', [contact('c1', 8)]);

    expect(result).toEqual({ written: 0, skippedStale: 1 });
    expect(faulty.sent.get('PutItemCommand')).toBe(2);
    faulty.client.destroy();
  });

  it('counts a rewrite whose first answer was lost as written, not stale', async () => {
    const faulty = faultyClient(tables().db, { backoffBaseMs: 1, backoffMaxMs: 5 });
    const store = new MirrorStore(faulty.client, tables().mirrorTable, { settings: { writeConcurrency: 1 } });
    const account = unique('acct');

    faulty.loseNextAnswers(1);
    const result = await store.upsertMany(account, 'contacts', [contact('c1', 7)]);

    expect(result).toEqual({ written: 1, skippedStale: 0 });
    expect(faulty.sent.get('PutItemCommand')).toBe(2);
    faulty.client.destroy();
  });
});

describe.each(emulatorCases)('mirror tombstones on $name', (emu) => {
  const tables = useTables(emu);
  const mirror = (options: ConstructorParameters<typeof MirrorStore>[2] = {}) => {
    const { db, mirrorTable } = tables();
    return new MirrorStore(db.client, mirrorTable, options);
  };
  const DAY_S = 86_400;

  it('marks a record deleted, keeping its data, update time and syncedAt, with a TTL', async () => {
    const store = mirror({ settings: { tombstoneDays: 7 } });
    const account = unique('acct');
    await store.upsertMany(account, 'contacts', [contact('c1', 5_000), contact('c2', 5_000)]);
    const before = await store.get(account, 'contacts', 'c1');

    const result = await store.tombstoneMany(account, 'contacts', [
      { id: 'c1', deletedAtMs: 1_700_000_000_123 },
    ]);

    expect(result).toEqual({ tombstoned: 1, unchanged: 0 });
    const after = await store.get(account, 'contacts', 'c1');
    expect(after).toEqual({
      ...before,
      deletedAt: new Date(1_700_000_000_123).toISOString(),
      deletedAtMs: 1_700_000_000_123,
      expiresAt: 1_700_000_000 + 7 * DAY_S,
    });
    expect(await store.get(account, 'contacts', 'c2')).not.toHaveProperty('deletedAt');
  });

  it('keeps the first deletion when a delete is redelivered', async () => {
    const store = mirror();
    const account = unique('acct');
    await store.upsertMany(account, 'contacts', [contact('c1', 5_000)]);
    await store.tombstoneMany(account, 'contacts', [{ id: 'c1', deletedAtMs: 6_000 }]);
    const first = await store.get(account, 'contacts', 'c1');

    const again = await store.tombstoneMany(account, 'contacts', [
      { id: 'c1', deletedAtMs: 6_000 },
      { id: 'c1', deletedAtMs: 9_000 },
    ]);

    expect(again).toEqual({ tombstoned: 0, unchanged: 2 });
    expect(await store.get(account, 'contacts', 'c1')).toEqual(first);
    expect(first?.expiresAt).toBe(6 + 30 * DAY_S);
  });

  it('leaves a record alone when the mirror holds a version updated after the deletion', async () => {
    const store = mirror();
    const account = unique('acct');
    await store.upsertMany(account, 'contacts', [contact('c1', 8_000)]);

    const result = await store.tombstoneMany(account, 'contacts', [{ id: 'c1', deletedAtMs: 7_999 }]);

    expect(result).toEqual({ tombstoned: 0, unchanged: 1 });
    expect(await store.get(account, 'contacts', 'c1')).not.toHaveProperty('deletedAt');
  });

  it('never lets a version from before the deletion resurrect a tombstone', async () => {
    const store = mirror();
    const account = unique('acct');
    await store.upsertMany(account, 'contacts', [contact('c1', 5_000)]);
    await store.tombstoneMany(account, 'contacts', [{ id: 'c1', deletedAtMs: 6_000 }]);

    const result = await store.upsertMany(account, 'contacts', [
      contact('c1', 5_500, { late: true }),
      contact('c1', 6_000, { late: true }),
    ]);

    expect(result).toEqual({ written: 0, skippedStale: 2 });
    const item = await store.get(account, 'contacts', 'c1');
    expect(item?.deletedAtMs).toBe(6_000);
    expect(item?.data).not.toHaveProperty('late');
  });

  it('replaces a tombstone with a record re-created after the deletion', async () => {
    const store = mirror();
    const account = unique('acct');
    await store.upsertMany(account, 'contacts', [contact('c1', 5_000)]);
    await store.tombstoneMany(account, 'contacts', [{ id: 'c1', deletedAtMs: 6_000 }]);

    const result = await store.upsertMany(account, 'contacts', [contact('c1', 6_001, { again: true })]);

    expect(result).toEqual({ written: 1, skippedStale: 0 });
    const item = await store.get(account, 'contacts', 'c1');
    expect(item?.updateTimeMs).toBe(6_001);
    expect(item?.data).toHaveProperty('again', true);
    expect(item).not.toHaveProperty('deletedAt');
    expect(item).not.toHaveProperty('expiresAt');
  });

  it('writes a stub tombstone for a record it never held, which a late old version cannot undo', async () => {
    const store = mirror();
    const account = unique('acct');

    const result = await store.tombstoneMany(account, 'contacts', [{ id: 'c9', deletedAtMs: 6_000 }]);
    const late = await store.upsertMany(account, 'contacts', [contact('c9', 5_000)]);

    expect(result).toEqual({ tombstoned: 1, unchanged: 0 });
    expect(late).toEqual({ written: 0, skippedStale: 1 });
    expect(await store.get(account, 'contacts', 'c9')).toMatchObject({
      account,
      resource: 'contacts',
      id: 'c9',
      data: {},
      updateTimeMs: 0,
      deletedAtMs: 6_000,
    });
  });

  it('rejects a tombstone without a valid deletion time before writing anything', async () => {
    const store = mirror();
    const account = unique('acct');

    await expect(
      store.tombstoneMany(account, 'contacts', [
        { id: 'c1', deletedAtMs: 1 },
        { id: 'c2', deletedAtMs: Number.NaN },
      ]),
    ).rejects.toThrow(StoreInputError);
    expect(await store.count(account, 'contacts')).toBe(0);
  });
});
