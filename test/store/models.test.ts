// Integration: custom-field models in the state table, and named custom fields in the mirror, against
// real DynamoDB semantics (dynalite, and DynamoDB Local where Java is installed).
import { describe, expect, it } from 'vitest';
import { type CustomFieldDef, MirrorStore, openStateStores, StoreInputError } from '#shared/store/index.ts';
import { emulatorCases } from '../support/emulators.ts';
import { reportMissingEmulator, unique, useTables } from './support.ts';

reportMissingEmulator();

const T0 = 1_790_000_000_000;

/** A model factory: `n` fields named field1..n with ids 101.. */
function defs(n: number, label = 'Field'): CustomFieldDef[] {
  return Array.from({ length: n }, (_, i) => ({
    id: String(101 + i),
    name: `field${i + 1}`,
    label: `${label} ${i + 1}`,
    type: 'TEXT',
  }));
}

describe.each(emulatorCases)('custom-field models on $name', (emu) => {
  const tables = useTables(emu);
  const models = () => openStateStores(tables().db.client, tables().stateTable).models;

  it('reports no model for a list whose model was never stored', async () => {
    expect(await models().get(unique('acct'), 'contacts')).toBeUndefined();
  });

  it('stores a model with the time it was read and gives it back', async () => {
    const account = unique('acct');

    const written = await models().put(account, 'contacts', defs(3), T0);

    expect(written).toBe(true);
    expect(await models().get(account, 'contacts')).toEqual({
      account,
      resource: 'contacts',
      fields: defs(3),
      fetchedAtMs: T0,
      fetchedAt: new Date(T0).toISOString(),
    });
  });

  it('keeps a model read later when an older read is written after it', async () => {
    const account = unique('acct');
    await models().put(account, 'contacts', defs(4, 'New'), T0 + 1_000);

    const written = await models().put(account, 'contacts', defs(2, 'Old'), T0);

    expect(written).toBe(false);
    expect((await models().get(account, 'contacts'))?.fields).toEqual(defs(4, 'New'));
  });

  it('keeps each list of each account apart', async () => {
    const account = unique('acct');
    await models().put(account, 'contacts', defs(1), T0);
    await models().put(account, 'companies', defs(2), T0);

    expect((await models().get(account, 'contacts'))?.fields).toHaveLength(1);
    expect((await models().get(account, 'companies'))?.fields).toHaveLength(2);
    expect(await models().get(unique('acct'), 'contacts')).toBeUndefined();
  });

  it('refuses a field without a name, naming the argument', async () => {
    const bad = [{ id: '1', name: '', label: 'x', type: null }];

    await expect(models().put(unique('acct'), 'contacts', bad, T0)).rejects.toThrow(StoreInputError);
  });

  it('mirrors a record with its custom fields by name beside the raw form', async () => {
    const mirror = new MirrorStore(tables().db.client, tables().mirrorTable);
    const account = unique('acct');
    const data = { id: '7', custom_fields: [{ id: '101', content: 'gold' }] };

    await mirror.upsertMany(account, 'contacts', [
      {
        id: '7',
        updateTimeMs: T0,
        data,
        customFields: { values: { field1: 'gold' }, info: { field1: { id: '101', label: 'Tier' } } },
      },
    ]);
    const item = await mirror.get(account, 'contacts', '7');

    expect(item?.data).toEqual(data);
    expect(item?.customFields).toEqual({ field1: 'gold' });
    expect(item?.customFieldInfo).toEqual({ field1: { id: '101', label: 'Tier' } });
  });
});
