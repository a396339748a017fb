// Integration: cursors and checkpoints of the state table (the run id holds the lease) on dynalite and DynamoDB Local.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { openStateStores, StaleRunError } from '#shared/store/index.ts';
import { emulatorCases } from '../support/emulators.ts';
import { reportMissingEmulator, unique, useTables } from './support.ts';

reportMissingEmulator();

const T0 = 1_000_000;
const LEASE_MS = 30_000;
const page = (pageToken: string | null, pageHighWaterMs: number | null, recordsDelta = 100) => ({
  pageToken,
  pageHighWaterMs,
  pagesDelta: 1,
  recordsDelta,
});

describe.each(emulatorCases)('sync state: runs on $name', (emu) => {
  const tables = useTables(emu);
  const state = () => openStateStores(tables().db.client, tables().stateTable);

  describe('runs and checkpoints', () => {
    it("keeps the list's size: set by a run that read the whole list and by a sweep, kept by incremental runs", async () => {
      const store = state();
      const account = unique('acct');
      const run = async (runId: string, mode: 'full' | 'incremental', records: number, at: number) => {
        expect(await store.leases.acquire(account, 'orders', runId, LEASE_MS, at)).toBe(true);
        await store.runs.start(account, 'orders', runId, mode, at);
        await store.runs.checkpoint(account, 'orders', runId, page(null, at, records), at + 1);
        const cursor = await store.runs.finish(account, 'orders', runId, at, at + 2);
        await store.leases.release(account, 'orders', runId);
        return cursor;
      };
      // A sweep of a list never synced records nothing (its first run will say).
      expect(await store.runs.recordListSize(account, 'orders', 10)).toBe(false);
      expect((await store.runs.getCursor(account, 'orders')).lastRunAt).toBeNull();
      // The first run reads the whole list, whatever its mode.
      expect((await run('r0', 'incremental', 40, T0)).listRecords).toBe(40);
      expect((await run('r1', 'full', 2_500, T0 + 10)).listRecords).toBe(2_500);
      // Incremental runs' records are mostly updates and overlap re-reads: the size stays.
      expect((await run('r2', 'incremental', 30, T0 + 20)).listRecords).toBe(2_500);
      expect((await run('r3', 'incremental', 0, T0 + 30)).listRecords).toBe(2_500);
      // A sweep says what Keap lists now; the next full run too (deletions included).
      expect(await store.runs.recordListSize(account, 'orders', 2_531)).toBe(true);
      expect((await store.runs.getCursor(account, 'orders')).listRecords).toBe(2_531);
      expect((await run('r4', 'full', 2_400, T0 + 40)).listRecords).toBe(2_400);
      expect((await store.runs.getCursor(account, 'orders')).listRecords).toBe(2_400);
    });

    it('starts, checkpoints and finishes a run, advancing the cursor and clearing the checkpoint', async () => {
      const store = state();
      const account = unique('acct');
      expect(await store.leases.acquire(account, 'contacts', 'r1', LEASE_MS, T0)).toBe(true);

      const start = await store.runs.start(account, 'contacts', 'r1', 'incremental', T0);
      await store.runs.checkpoint(account, 'contacts', 'r1', page('p2', 7_000, 100), T0 + 1_000);
      const cp = await store.runs.checkpoint(account, 'contacts', 'r1', page('p3', 9_000, 50), T0 + 2_000);
      const during = await store.runs.getCursor(account, 'contacts');
      const finished = await store.runs.finish(account, 'contacts', 'r1', 9_000, T0 + 3_000);

      expect(start).toMatchObject({ status: 'started', discarded: null });
      expect(start.status === 'started' && start.checkpoint).toMatchObject({
        pageToken: null,
        pages: 0,
        records: 0,
      });
      expect(cp).toMatchObject({
        runId: 'r1',
        pageToken: 'p3',
        pageHighWaterMs: 9_000,
        pages: 2,
        records: 150,
      });
      expect(during.checkpoint).toEqual(cp);
      expect(during.highWaterMs).toBeNull();
      expect(finished).toMatchObject({
        highWaterMs: 9_000,
        checkpoint: null,
        lastRunId: 'r1',
        lastRunMode: 'incremental',
        lastRunPages: 2,
        lastRunRecords: 150,
        lastRunDurationMs: 3_000,
        lagMs: T0 + 3_000 - 9_000,
      });
      expect(await store.runs.getCursor(account, 'contacts')).toEqual(finished);
    });

    it('keeps the ids a stopped write finished on the page at the token, and clears them with the next page', async () => {
      const store = state();
      const account = unique('acct');
      await store.runs.start(account, 'contacts', 'r1', 'full', T0);
      await store.runs.checkpoint(account, 'contacts', 'r1', page('p2', 7_000, 1_000), T0 + 1_000);
      // The write of page p2 stopped after two records: same token, nothing counted, their ids kept.
      const partial = await store.runs.checkpoint(
        account,
        'contacts',
        'r1',
        { pageToken: 'p2', pageHighWaterMs: 7_500, pagesDelta: 0, recordsDelta: 0, pageDone: ['11', '12'] },
        T0 + 2_000,
      );
      expect(partial).toMatchObject({ pageToken: 'p2', pages: 1, records: 1_000, pageDone: ['11', '12'] });
      // A resumed run (another run id, same mode) takes the ids over with the checkpoint.
      const resumed = await store.runs.start(account, 'contacts', 'r2', 'full', T0 + LEASE_MS + 5_000);
      expect(resumed.status === 'resumed' && resumed.checkpoint.pageDone).toEqual(['11', '12']);
      const next = await store.runs.checkpoint(
        account,
        'contacts',
        'r2',
        page('p3', 8_000, 1_000),
        T0 + LEASE_MS + 6_000,
      );
      expect(next.pageDone).toBeUndefined();
      expect(next).toMatchObject({ pageToken: 'p3', pages: 2, records: 2_000 });
      await expect(
        store.runs.checkpoint(account, 'contacts', 'r2', { ...page('p3', 8_000), pageDone: [''] }),
      ).rejects.toThrow(/pageDone\[0\]/);
    });

    it('returns the finished cursor when finishRun is repeated (a retried call)', async () => {
      const store = state();
      const account = unique('acct');
      await store.runs.start(account, 'tags', 'r1', 'full', T0);
      const first = await store.runs.finish(account, 'tags', 'r1', 500, T0 + 10);

      const again = await store.runs.finish(account, 'tags', 'r1', 500, T0 + 20);

      expect(again).toEqual(first);
    });

    it('treats startRun with the runId that owns the checkpoint as a no-op resume', async () => {
      const store = state();
      const account = unique('acct');
      await store.runs.start(account, 'contacts', 'r1', 'full', T0);
      await store.runs.checkpoint(account, 'contacts', 'r1', page('p2', 10), T0 + 5);

      const again = await store.runs.start(account, 'contacts', 'r1', 'full', T0 + 6);

      expect(again).toMatchObject({ status: 'resumed', previousRunId: 'r1' });
      expect(again.status === 'resumed' && again.checkpoint.pageToken).toBe('p2');
    });

    it('refuses checkpoints and finishes from a stale run, leaving the new run untouched', async () => {
      const store = state();
      const account = unique('acct');
      await store.leases.acquire(account, 'contacts', 'rA', 1_000, T0);
      await store.runs.start(account, 'contacts', 'rA', 'full', T0);
      await store.runs.checkpoint(account, 'contacts', 'rA', page('a2', 100), T0 + 100);
      // A stalls past its lease; B takes the lease and the run over.
      await store.leases.acquire(account, 'contacts', 'rB', LEASE_MS, T0 + 5_000);
      await store.runs.start(account, 'contacts', 'rB', 'full', T0 + 5_000);
      const taken = await store.runs.checkpoint(account, 'contacts', 'rB', page('b3', 200), T0 + 5_100);

      const staleCheckpoint = await store.runs
        .checkpoint(account, 'contacts', 'rA', page('a3', 150), T0 + 5_200)
        .catch((e: unknown) => e);
      const staleFinish = await store.runs
        .finish(account, 'contacts', 'rA', 150, T0 + 5_300)
        .catch((e: unknown) => e);

      expect(staleCheckpoint).toBeInstanceOf(StaleRunError);
      expect(staleCheckpoint).toMatchObject({ runId: 'rA', activeRunId: 'rB' });
      expect(staleFinish).toBeInstanceOf(StaleRunError);
      const cursor = await store.runs.getCursor(account, 'contacts');
      expect(cursor.checkpoint).toEqual(taken);
      expect(cursor.highWaterMs).toBeNull();
      expect(await store.leases.renew(account, 'contacts', 'rA', 1_000, T0 + 5_400)).toBe(false);
    });

    it('refuses checkpoints for a run that never started', async () => {
      const store = state();

      const error = await store.runs
        .checkpoint(unique('acct'), 'contacts', 'ghost', page('x', 1), T0)
        .catch((e: unknown) => e);

      expect(error).toBeInstanceOf(StaleRunError);
      expect(error).toMatchObject({ activeRunId: null });
    });

    it('never moves the cursor backwards (property over finish sequences)', async () => {
      const store = state();
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.option(fc.integer({ min: 0, max: 1_000_000 }), { nil: null }), {
            minLength: 1,
            maxLength: 5,
          }),
          async (marks) => {
            const account = unique('prop');
            let expected: number | null = null;
            for (const [i, mark] of marks.entries()) {
              await store.runs.start(account, 'orders', `r${i}`, 'incremental', T0 + i);
              const cursor = await store.runs.finish(account, 'orders', `r${i}`, mark, T0 + i);
              if (mark !== null) expected = expected === null ? mark : Math.max(expected, mark);
              expect(cursor.highWaterMs).toBe(expected);
            }
          },
        ),
        { numRuns: 12 },
      );
    });

    it('resumes a crashed run from its checkpoint once the dead worker’s lease expires', async () => {
      const store = state();
      const account = unique('acct');
      await store.leases.acquire(account, 'contacts', 'r1', 10_000, T0);
      await store.runs.start(account, 'contacts', 'r1', 'full', T0);
      await store.runs.checkpoint(account, 'contacts', 'r1', page('p4', 4_000, 300), T0 + 1_000);
      // The worker crashes here: no finish, no release.

      const earlyLease = await store.leases.acquire(account, 'contacts', 'r2', 10_000, T0 + 5_000);
      const early = await store.runs.start(account, 'contacts', 'r2', 'full', T0 + 5_000);
      const lateLease = await store.leases.acquire(account, 'contacts', 'r2', 10_000, T0 + 10_000);
      const late = await store.runs.start(account, 'contacts', 'r2', 'full', T0 + 10_000);
      await store.runs.checkpoint(account, 'contacts', 'r2', page('p5', 5_000, 100), T0 + 11_000);
      const finished = await store.runs.finish(account, 'contacts', 'r2', 5_000, T0 + 12_000);

      expect(earlyLease).toBe(false);
      expect(early).toMatchObject({ status: 'busy', activeRunId: 'r1' });
      expect(lateLease).toBe(true);
      expect(late).toMatchObject({ status: 'resumed', previousRunId: 'r1' });
      expect(late.status === 'resumed' && late.checkpoint).toMatchObject({
        runId: 'r2',
        pageToken: 'p4',
        pageHighWaterMs: 4_000,
        pages: 1,
        records: 300,
        resumedFrom: 'r1',
      });
      expect(finished).toMatchObject({ highWaterMs: 5_000, lastRunPages: 2, lastRunRecords: 400 });
    });

    it('starts afresh, naming the dropped run, when an abandoned run had another mode', async () => {
      const store = state();
      const account = unique('acct');
      await store.leases.acquire(account, 'contacts', 'r1', 1_000, T0);
      await store.runs.start(account, 'contacts', 'r1', 'full', T0);
      await store.runs.checkpoint(account, 'contacts', 'r1', page('p9', 9), T0 + 10);
      await store.leases.acquire(account, 'contacts', 'r2', LEASE_MS, T0 + 2_000);

      const result = await store.runs.start(account, 'contacts', 'r2', 'incremental', T0 + 2_000);

      expect(result).toMatchObject({ status: 'started', discarded: { runId: 'r1', mode: 'full' } });
      expect(result.status === 'started' && result.checkpoint).toMatchObject({ pageToken: null, pages: 0 });
    });

    it('abandons a run so the next one starts from the first page', async () => {
      const store = state();
      const account = unique('acct');
      await store.runs.start(account, 'notes', 'r1', 'full', T0);
      await store.runs.checkpoint(account, 'notes', 'r1', page('expired-token', 10), T0 + 1);

      const wrong = await store.runs.abandon(account, 'notes', 'other', 'not mine', T0 + 2);
      const abandoned = await store.runs.abandon(account, 'notes', 'r1', 'page token expired', T0 + 2);
      const next = await store.runs.start(account, 'notes', 'r2', 'full', T0 + 3);

      expect(wrong).toBe(false);
      expect(abandoned).toBe(true);
      expect(next).toMatchObject({ status: 'started', discarded: null });
      expect((await store.runs.getCursor(account, 'notes')).lastAbandoned).toMatchObject({
        runId: 'r1',
        reason: 'page token expired',
      });
    });

    it('lets exactly one of many racing workers start the run when all follow the lease protocol', async () => {
      const account = unique('acct');
      const workers = Array.from({ length: 12 }, (_, i) => ({ runId: `run-w${i}`, store: state() }));

      const outcomes = await Promise.all(
        workers.map(async ({ runId, store }) => {
          if (!(await store.leases.acquire(account, 'contacts', runId, LEASE_MS, T0))) return 'no-lease';
          return (await store.runs.start(account, 'contacts', runId, 'full', T0)).status;
        }),
      );

      expect(outcomes.filter((o) => o === 'started')).toHaveLength(1);
      expect(outcomes.filter((o) => o === 'no-lease')).toHaveLength(11);
    });
  });
});
