// Integration: account status of the state table on dynalite and DynamoDB Local, and the account
// gate's key-rejected rule over it.
import { describe, expect, it } from 'vitest';
import { isKeyRejected } from '#shared/pipeline/account-gate.ts';
import { openStateStores } from '#shared/store/index.ts';
import { emulatorCases } from '../support/emulators.ts';
import { reportMissingEmulator, unique, useTables } from './support.ts';

reportMissingEmulator();

const T0 = 2_000_000;

describe.each(emulatorCases)('sync state: accounts on $name', (emu) => {
  const tables = useTables(emu);
  const state = () => openStateStores(tables().db.client, tables().stateTable);

  describe('account status', () => {
    it('reports an unknown account as active', async () => {
      expect(await state().accounts.getStatus(unique('acct'))).toEqual({ state: 'active', since: null });
    });

    it('moves between active and key-rejected, remembering the rejected secret version', async () => {
      const store = state();
      const account = unique('acct');

      const rejected = await store.accounts.markKeyRejected(account, 'v1', 'Keap answered 401', T0);
      const repeated = await store.accounts.markKeyRejected(
        account,
        'v1',
        'Keap answered 401 again',
        T0 + 10,
      );
      const newVersion = await store.accounts.markKeyRejected(
        account,
        'v2',
        'still 401 after rotation',
        T0 + 20,
      );
      const active = await store.accounts.markActive(account, T0 + 30);
      const activeAgain = await store.accounts.markActive(account, T0 + 40);

      expect(rejected).toEqual({
        state: 'key-rejected',
        reason: 'Keap answered 401',
        since: new Date(T0).toISOString(),
        secretVersionRejected: 'v1',
      });
      expect(repeated).toEqual(rejected);
      expect(newVersion).toMatchObject({
        secretVersionRejected: 'v2',
        since: new Date(T0 + 20).toISOString(),
      });
      expect([isKeyRejected(newVersion, 'v2'), isKeyRejected(newVersion, 'v3')]).toEqual([true, false]);
      expect(active).toEqual({ state: 'active', since: new Date(T0 + 30).toISOString() });
      expect(activeAgain).toEqual(active);
      expect(await store.accounts.getStatus(account)).toEqual(active);
    });
  });
});
