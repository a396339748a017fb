// Integration (dynalite and DynamoDB Local): the ids a sweep keeps across messages. Chunks of at most
// 20,000 ids, read back in order, the same chunk written twice changes nothing, each run's partition
// apart from every other's, and cleared when the sweep finished.
import { describe, expect, it } from 'vitest';
import { openStateStores } from '#shared/store/index.ts';
import { SWEEP_CHUNK_IDS } from '#shared/store/sweeps.ts';
import { emulatorCases } from '../support/emulators.ts';
import { reportMissingEmulator, unique, useTables } from './support.ts';

reportMissingEmulator();

describe.each(emulatorCases)('sweep id store on $name', (emu) => {
  const tables = useTables(emu);
  const sweeps = () => openStateStores(tables().db.client, tables().stateTable).sweeps;

  it('keeps ids in chunks of at most 20,000 across calls, and reads them back in order', async () => {
    const store = sweeps();
    const run = unique('run');
    const ids = Array.from({ length: 2 * SWEEP_CHUNK_IDS + 123 }, (_, i) => String(100_000_000 + i));
    const next = await store.save(run, 0, ids.slice(0, SWEEP_CHUNK_IDS + 5));
    expect(next).toBe(2);
    const last = await store.save(run, next, ids.slice(SWEEP_CHUNK_IDS + 5));
    expect(last).toBe(4);
    // A redelivered message saves the same chunk again: nothing changes.
    expect(await store.save(run, next, ids.slice(SWEEP_CHUNK_IDS + 5))).toBe(4);
    expect(await store.load(run)).toEqual(ids);
    expect(await store.load(unique('other'))).toEqual([]);
    await store.clear(run, last);
    expect(await store.load(run)).toEqual([]);
  }, 60_000);

  it('refuses a run id that could reach another partition', async () => {
    await expect(sweeps().save('a#b', 0, ['1'])).rejects.toThrow(/runId/);
  });
});
