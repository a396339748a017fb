// Integration: the (account, resource) lease of the state table on dynalite and DynamoDB Local.
import { describe, expect, it } from 'vitest';
import { openStateStores } from '#shared/store/index.ts';
import { emulatorCases } from '../support/emulators.ts';
import { reportMissingEmulator, unique, useTables } from './support.ts';

reportMissingEmulator();

const T0 = 1_000_000;
const LEASE_MS = 30_000;

describe.each(emulatorCases)('sync state: leases on $name', (emu) => {
  const tables = useTables(emu);
  const state = () => openStateStores(tables().db.client, tables().stateTable);

  describe('leases', () => {
    it('grants a free lease to exactly one of many concurrent acquirers', async () => {
      const account = unique('acct');
      const owners = Array.from({ length: 25 }, (_, i) => `w${i}`);

      const won = await Promise.all(
        owners.map((owner) => state().leases.acquire(account, 'contacts', owner, LEASE_MS, T0)),
      );

      expect(won.filter(Boolean)).toHaveLength(1);
      const winner = owners[won.indexOf(true)];
      expect((await state().leases.get(account, 'contacts'))?.owner).toBe(winner);
    });

    it('grants an expired lease to exactly one of many concurrent acquirers', async () => {
      const account = unique('acct');
      await state().leases.acquire(account, 'contacts', 'dead', 1_000, T0);
      const owners = Array.from({ length: 25 }, (_, i) => `w${i}`);

      const won = await Promise.all(
        owners.map((owner) => state().leases.acquire(account, 'contacts', owner, LEASE_MS, T0 + 1_000)),
      );

      expect(won.filter(Boolean)).toHaveLength(1);
    });

    it('fences an invocation claim by attempt: one of two copies of an attempt, later attempts, and a crashed one after its end', async () => {
      const store = state();
      const account = unique('acct');
      const HOLD = 10_000;
      // The scheduler took the lease for run R; two copies of attempt 0 claim at once.
      await store.leases.acquire(account, 'contacts', 'R', LEASE_MS, T0);
      const copies = await Promise.all(
        [0, 1].map(() =>
          store.leases.claimInvocation(account, 'contacts', 'R', 0, LEASE_MS, T0 + HOLD, T0 + 10),
        ),
      );
      expect(copies.map((c) => c.status).sort()).toEqual(['claimed', 'duplicate']);
      expect(copies.find((c) => c.status === 'duplicate')).toEqual({
        status: 'duplicate',
        heldUntilMs: T0 + HOLD,
      });
      // The continuation (attempt 1) takes over at once; a late copy of attempt 0 is stale.
      expect(
        await store.leases.claimInvocation(account, 'contacts', 'R', 1, LEASE_MS, T0 + 2 * HOLD, T0 + 20),
      ).toEqual({
        status: 'claimed',
      });
      expect(
        await store.leases.claimInvocation(account, 'contacts', 'R', 0, LEASE_MS, T0 + 2 * HOLD, T0 + 30),
      ).toEqual({
        status: 'stale',
        heldAttempt: 1,
      });
      // Attempt 1 crashed: its redelivery after the invocation's end takes over; before it, it waits.
      expect(
        (
          await store.leases.claimInvocation(
            account,
            'contacts',
            'R',
            1,
            LEASE_MS,
            T0 + 3 * HOLD,
            T0 + 2 * HOLD - 1,
          )
        ).status,
      ).toBe('duplicate');
      expect(
        (
          await store.leases.claimInvocation(
            account,
            'contacts',
            'R',
            1,
            LEASE_MS,
            T0 + 3 * HOLD,
            T0 + 2 * HOLD,
          )
        ).status,
      ).toBe('claimed');
      // Another run is busy while R's lease is live, and takes over once it expired.
      expect(
        await store.leases.claimInvocation(
          account,
          'contacts',
          'S',
          0,
          LEASE_MS,
          T0 + 3 * HOLD,
          T0 + 2 * HOLD + 1,
        ),
      ).toEqual({
        status: 'busy',
        owner: 'R',
      });
      const late = T0 + 2 * HOLD + LEASE_MS;
      expect(
        (await store.leases.claimInvocation(account, 'contacts', 'S', 0, LEASE_MS, late + HOLD, late)).status,
      ).toBe('claimed');
      expect(await store.leases.get(account, 'contacts')).toMatchObject({ owner: 'S', heldAttempt: 0 });
    });

    it('keeps a live lease exclusive, re-grants it to its owner, and frees it at expiry', async () => {
      const store = state();
      const account = unique('acct');
      await store.leases.acquire(account, 'contacts', 'A', 1_000, T0);

      const other = await store.leases.acquire(account, 'contacts', 'B', 1_000, T0 + 999);
      const again = await store.leases.acquire(account, 'contacts', 'A', 1_000, T0 + 500);
      const stillHeld = await store.leases.acquire(account, 'contacts', 'B', 1_000, T0 + 1_499);
      const expired = await store.leases.acquire(account, 'contacts', 'B', 1_000, T0 + 1_500);

      expect([other, again, stillHeld, expired]).toEqual([false, true, false, true]);
      expect(await store.leases.get(account, 'contacts')).toMatchObject({
        owner: 'B',
        expiresAtMs: T0 + 2_500,
      });
    });

    it('renews only a live lease of its owner', async () => {
      const store = state();
      const account = unique('acct');
      await store.leases.acquire(account, 'contacts', 'A', 1_000, T0);

      const byOther = await store.leases.renew(account, 'contacts', 'B', 1_000, T0 + 100);
      const byOwner = await store.leases.renew(account, 'contacts', 'A', 1_000, T0 + 900);
      const taken = await store.leases.acquire(account, 'contacts', 'B', 1_000, T0 + 1_500);
      const afterExpiry = await store.leases.renew(account, 'contacts', 'A', 1_000, T0 + 2_000);

      expect([byOther, byOwner, taken, afterExpiry]).toEqual([false, true, false, false]);
      expect((await store.leases.get(account, 'contacts'))?.expiresAtMs).toBe(T0 + 1_900);
    });

    it('releases only for the owner, after which another worker acquires at once', async () => {
      const store = state();
      const account = unique('acct');
      await store.leases.acquire(account, 'contacts', 'A', LEASE_MS, T0);

      const byOther = await store.leases.release(account, 'contacts', 'B');
      const byOwner = await store.leases.release(account, 'contacts', 'A');
      const next = await store.leases.acquire(account, 'contacts', 'B', LEASE_MS, T0 + 1);

      expect([byOther, byOwner, next]).toEqual([false, true, true]);
    });

    it('keeps leases of different resources and accounts independent', async () => {
      const store = state();
      const account = unique('acct');

      const results = await Promise.all([
        store.leases.acquire(account, 'contacts', 'A', LEASE_MS, T0),
        store.leases.acquire(account, 'orders', 'B', LEASE_MS, T0),
        store.leases.acquire(unique('acct'), 'contacts', 'C', LEASE_MS, T0),
      ]);

      expect(results).toEqual([true, true, true]);
    });
  });
});
