// Integration: idempotency records and write outcomes of the state table on dynalite and DynamoDB Local.
import { describe, expect, it } from 'vitest';
import {
  IdempotencyConflictError,
  openStateStores,
  WriteNotStartedError,
  type WriteRequest,
} from '#shared/store/index.ts';
import { emulatorCases } from '../support/emulators.ts';
import { faultyClient, reportMissingEmulator, unique, useTables } from './support.ts';

reportMissingEmulator();

const T0 = 2_000_000;
const TAKEOVER_MS = 60_000;

/** A write request factory. */
function request(overrides: Partial<WriteRequest> = {}): WriteRequest {
  return {
    kind: 'safe',
    account: 'acct1',
    requestHash: 'h1',
    operation: 'PATCH /v2/contacts/1',
    ...overrides,
  };
}

describe.each(emulatorCases)('sync state: writes on $name', (emu) => {
  const tables = useTables(emu);
  const state = () =>
    openStateStores(tables().db.client, tables().stateTable, {
      settings: { writeTakeoverAfterMs: TAKEOVER_MS },
    });

  describe('idempotency and write outcomes', () => {
    it('lets exactly one of many concurrent callers with the same key send the write', async () => {
      const key = unique('key');

      const results = await Promise.all(
        Array.from({ length: 20 }, () => state().writes.begin(key, request({ kind: 'create' }), T0)),
      );

      expect(results.filter((r) => r.state === 'new')).toHaveLength(1);
      expect(results.filter((r) => r.state === 'in-progress')).toHaveLength(19);
      expect(results.every((r) => r.state !== 'in-progress' || !r.unknown)).toBe(true);
    });

    it('returns the completed outcome to later callers and to senders', async () => {
      const store = state();
      const key = unique('key');
      await store.writes.begin(key, request({ kind: 'create' }), T0);

      await store.writes.complete(key, { keapId: '42' }, T0 + 100);
      const later = await store.writes.begin(key, request({ kind: 'create' }), T0 + 200);
      const stored = await store.writes.getOutcome(key);

      expect(later).toMatchObject({ state: 'done', outcome: { keapId: '42' } });
      expect(stored).toMatchObject({ state: 'done', outcome: { keapId: '42' }, attempt: 1, kind: 'create' });
    });

    it('takes over at once a create claim its retry names as unsent, and only that attempt', async () => {
      const store = state();
      const key = unique('key');
      await store.writes.begin(key, request({ kind: 'create' }), T0);

      const otherAttempt = await store.writes.begin(
        key,
        { ...request({ kind: 'create' }), unsentAttempt: 2 },
        T0 + 100,
      );
      const named = await store.writes.begin(
        key,
        { ...request({ kind: 'create' }), unsentAttempt: 1 },
        T0 + 200,
      );

      expect(otherAttempt).toEqual({ state: 'in-progress', since: expect.any(String), unknown: false });
      expect(named).toMatchObject({ state: 'new', takeover: true, attempt: 2 });
    });

    it('keeps the first outcome when a write is completed twice', async () => {
      const store = state();
      const key = unique('key');
      await store.writes.begin(key, request(), T0);
      await store.writes.complete(key, { keapId: 'first' }, T0 + 1);

      const second = await store.writes.complete(key, { keapId: 'second' }, T0 + 2);
      const failedAfter = await store.writes.fail(key, new Error('late failure'), false, T0 + 3);

      expect(second.outcome).toEqual({ keapId: 'first' });
      expect(failedAfter).toMatchObject({ state: 'done', outcome: { keapId: 'first' }, error: null });
    });

    it('never takes over an abandoned create: its outcome is reported unknown', async () => {
      const store = state();
      const key = unique('key');
      await store.writes.begin(key, request({ kind: 'create' }), T0);

      const fresh = await store.writes.begin(key, request({ kind: 'create' }), T0 + TAKEOVER_MS - 1);
      const stale = await store.writes.begin(key, request({ kind: 'create' }), T0 + TAKEOVER_MS);
      const muchLater = await store.writes.begin(key, request({ kind: 'create' }), T0 + 10 * TAKEOVER_MS);

      expect(fresh).toMatchObject({ state: 'in-progress', unknown: false });
      expect(stale).toMatchObject({ state: 'in-progress', unknown: true });
      expect(muchLater).toMatchObject({ state: 'in-progress', unknown: true });
      expect(await store.writes.getOutcome(key)).toMatchObject({ state: 'in-progress', attempt: 1 });
    });

    it('lets exactly one of many concurrent callers take over an abandoned idempotent write', async () => {
      const key = unique('key');
      await state().writes.begin(key, request(), T0);

      const results = await Promise.all(
        Array.from({ length: 15 }, () => state().writes.begin(key, request(), T0 + TAKEOVER_MS + 5)),
      );

      const taken = results.filter((r) => r.state === 'new');
      expect(taken).toHaveLength(1);
      expect(taken[0]).toMatchObject({
        takeover: true,
        attempt: 2,
        previousSince: new Date(T0).toISOString(),
      });
      expect(results.filter((r) => r.state === 'in-progress' && !r.unknown)).toHaveLength(14);
      expect(await state().writes.getOutcome(key)).toMatchObject({ state: 'in-progress', attempt: 2 });
    });

    it('lets a retryable failure be retried, even for a create, and reports a final one', async () => {
      const store = state();
      const retryKey = unique('key');
      const finalKey = unique('key');
      await store.writes.begin(retryKey, request({ kind: 'create' }), T0);
      await store.writes.begin(finalKey, request({ kind: 'create' }), T0);

      await store.writes.fail(retryKey, new Error('connection refused before sending'), true, T0 + 1);
      await store.writes.fail(
        finalKey,
        { name: 'KeapValidationError', message: 'email is invalid' },
        false,
        T0 + 1,
      );
      const retry = await store.writes.begin(retryKey, request({ kind: 'create' }), T0 + 2);
      const final = await store.writes.begin(finalKey, request({ kind: 'create' }), T0 + 2);

      expect(retry).toMatchObject({ state: 'new', takeover: true, attempt: 2 });
      expect(final).toMatchObject({
        state: 'failed',
        error: { name: 'KeapValidationError', message: 'email is invalid' },
      });
      expect(await store.writes.getOutcome(retryKey)).toMatchObject({ state: 'in-progress', error: null });
    });

    it('rejects the same key for a different request with a conflict error', async () => {
      const store = state();
      const key = unique('key');
      await store.writes.begin(key, request(), T0);

      const hash = await store.writes
        .begin(key, request({ requestHash: 'h2' }), T0 + 1)
        .catch((e: unknown) => e);
      const account = await store.writes
        .begin(key, request({ account: 'acct2' }), T0 + 1)
        .catch((e: unknown) => e);

      expect(hash).toBeInstanceOf(IdempotencyConflictError);
      expect(hash).toMatchObject({ idempotencyKey: key, field: 'requestHash' });
      expect(account).toMatchObject({ name: 'IdempotencyConflictError', field: 'account' });
    });

    it('refuses to record an outcome for a key nobody claimed', async () => {
      const store = state();

      await expect(store.writes.complete(unique('key'), { keapId: '1' })).rejects.toBeInstanceOf(
        WriteNotStartedError,
      );
      await expect(store.writes.fail(unique('key'), new Error('x'), true)).rejects.toBeInstanceOf(
        WriteNotStartedError,
      );
      expect(await store.writes.getOutcome(unique('key'))).toBeUndefined();
    });

    it('still claims a write whose first answer was lost (its retry sees its own record)', async () => {
      const faulty = faultyClient(tables().db, { backoffBaseMs: 1, backoffMaxMs: 5 });
      const store = openStateStores(faulty.client, tables().stateTable);
      const key = unique('key');

      faulty.loseNextAnswers(1);
      const claimed = await store.writes.begin(key, request({ kind: 'create' }), T0);
      const other = await state().writes.begin(key, request({ kind: 'create' }), T0 + 1);

      expect(claimed).toEqual({ state: 'new', takeover: false, attempt: 1 });
      expect(other).toMatchObject({ state: 'in-progress' });
      faulty.client.destroy();
    });
  });
});
