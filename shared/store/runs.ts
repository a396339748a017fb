// Adapter: the cursor of each (account, resource) in the state table (`<account>#<resource>`,
// `cursor`), with the checkpoint of the run in progress. A run is named by its run id, which is also
// the token that holds the (account, resource) lease (leases.ts): a run's checkpoint is taken over only
// once that run no longer holds a live lease, and a run that lost it can write nothing more.
import { z } from 'zod';
import { StaleRunError } from './errors.ts';
import {
  checkInput,
  countField,
  epochMsField,
  idField,
  iso,
  MAX_TEXT,
  nullable,
  pageTokenField,
} from './fields.ts';
import type { DynamoLeaseStore } from './leases.ts';
import { itemId, type StateTable } from './table.ts';
import { stateKey } from './tables.ts';

/** Progress of the run in progress for one (account, resource); lives on the cursor item. */
export interface Checkpoint {
  /** The run, and the lease owner that runs it; abandoned once it no longer holds a live lease. */
  runId: string;
  /** Run mode as the sync engine names it (e.g. `full`, `incremental`); a resume keeps it. */
  mode: string;
  /** Token of the next page to read; null: start from the first page. */
  pageToken: string | null;
  /** Highest record update time this run has seen so far (the caller keeps it a running maximum). */
  pageHighWaterMs: number | null;
  pages: number;
  records: number;
  startedAt: string;
  startedAtMs: number;
  updatedAt: string;
  /** Run id this run took the checkpoint over from, or null. */
  resumedFrom: string | null;
  /**
   * A full read split into id ranges read in parallel: the ranges and where each one is, as the sync
   * engine wrote them (shared/pipeline/partitions.ts owns and validates the shape). Absent otherwise.
   */
  partitions?: unknown;
  /**
   * Ids of the records of the page at `pageToken` already in the mirror: a write stopped part-way by
   * the invocation's deadline keeps what it wrote, and the page read again skips them. Absent: none.
   */
  pageDone?: string[];
}

/** Sync position of one (account, resource). */
export interface Cursor {
  account: string;
  resource: string;
  /** Highest record update time fully synced; null until a run finished with one. Never moves back. */
  highWaterMs: number | null;
  lastRunAt: string | null;
  lastRunMode: string | null;
  lastRunId: string | null;
  lastRunDurationMs: number | null;
  lastRunPages: number | null;
  lastRunRecords: number | null;
  /**
   * About how many records the list holds: the records of the last run that read the whole list (a
   * full run, or the first run of any mode), or the ids Keap listed to the last sweep, whichever came
   * later. Incremental runs leave it alone: their records are mostly updates and re-reads of the
   * cursor's overlap, so adding them would grow it without bound and starve the bulk budget; between
   * refreshes it can only fall short by the list's growth (the ledger still holds the quota). The
   * scheduler budgets a full read or a sweep from it instead of counting the mirror (a count reads the
   * whole list). Null for a cursor written before this field, until its next refresh.
   */
  listRecords: number | null;
  /** At the last finish: how far the high-water mark trailed the finish time, in ms. */
  lagMs: number | null;
  lastAbandoned: { runId: string; at: string; reason: string | null } | null;
  /** The run in progress, or null. */
  checkpoint: Checkpoint | null;
}

export type StartRunResult =
  /** A new checkpoint; `discarded` names an abandoned run of another mode whose progress was dropped. */
  | { status: 'started'; checkpoint: Checkpoint; discarded: { runId: string; mode: string } | null }
  /**
   * The checkpoint of an abandoned run of the same mode, now owned by this run: continue from its
   * pageToken. Also returned when this runId already owns the checkpoint (previousRunId equals runId).
   */
  | { status: 'resumed'; checkpoint: Checkpoint; previousRunId: string }
  /** Another run is in progress and still holds a live lease: nothing was written. */
  | { status: 'busy'; activeRunId: string; since: string };

export interface CheckpointProgress {
  /** Token of the next page to read (null: the first page). */
  pageToken: string | null;
  /** Highest update time seen by this run so far. */
  pageHighWaterMs: number | null;
  pagesDelta: number;
  recordsDelta: number;
  /** A partitioned read's ranges (replaces the stored ones; see Checkpoint.partitions). */
  partitions?: unknown;
  /** Records of the page at `pageToken` already written (see Checkpoint.pageDone); absent clears it. */
  pageDone?: readonly string[];
}

// Items written before the lease and the checkpoint shared one token carry `owner` (always the run
// id); it is no longer read.
const checkpointSchema = z.object({
  runId: z.string(),
  mode: z.string(),
  pageToken: nullable(z.string()),
  pageHighWaterMs: nullable(z.number()),
  pages: z.number(),
  records: z.number(),
  startedAt: z.string(),
  startedAtMs: z.number(),
  updatedAt: z.string(),
  resumedFrom: nullable(z.string()),
  partitions: z.unknown().optional(),
  pageDone: z.array(z.string()).optional(),
});

const cursorItemSchema = z.object({
  highWaterMs: nullable(z.number()),
  lastRunAt: nullable(z.string()),
  lastRunMode: nullable(z.string()),
  lastRunId: nullable(z.string()),
  lastRunDurationMs: nullable(z.number()),
  lastRunPages: nullable(z.number()),
  lastRunRecords: nullable(z.number()),
  listRecords: nullable(z.number()),
  lagMs: nullable(z.number()),
  lastAbandonedRunId: nullable(z.string()),
  lastAbandonedAt: nullable(z.string()),
  lastAbandonReason: nullable(z.string()),
  checkpoint: nullable(checkpointSchema),
});
type CursorItem = z.output<typeof cursorItemSchema>;

export class DynamoRunStore {
  private readonly table: StateTable;
  private readonly leases: DynamoLeaseStore;
  private readonly now: () => number;

  constructor(table: StateTable, leases: DynamoLeaseStore, now: () => number) {
    this.table = table;
    this.leases = leases;
    this.now = now;
  }

  /** The cursor of (account, resource); a never-synced pair has highWaterMs null and no checkpoint. */
  async getCursor(account: string, resource: string): Promise<Cursor> {
    return toCursor(account, resource, await this.read(account, resource));
  }

  /** The cursors of many (account, resource) pairs in BatchGetItem calls of 100 (the scheduler's read). */
  async getCursors(pairs: ReadonlyArray<{ account: string; resource: string }>): Promise<Cursor[]> {
    const items = await this.table.getMany(
      pairs.map((p) => stateKey.cursor(p.account, p.resource)),
      cursorItemSchema,
    );
    return pairs.map((p) =>
      toCursor(p.account, p.resource, items.get(itemId(stateKey.cursor(p.account, p.resource)))),
    );
  }

  /**
   * Starts run `runId` (unique per attempt, e.g. a fresh UUID; never a message id; the lease owner).
   * Writes a checkpoint when none exists; another run's checkpoint is taken over only if that run is
   * abandoned: it no longer holds a live lease. A same-mode takeover keeps the progress (resume from
   * its pageToken); another mode starts afresh. Otherwise returns `busy` and writes nothing.
   */
  async start(
    account: string,
    resource: string,
    runId: string,
    mode: string,
    nowMs: number = this.now(),
  ): Promise<StartRunResult> {
    const key = stateKey.cursor(account, resource);
    checkInput(idField, 'runId', runId);
    checkInput(idField, 'mode', mode);
    checkInput(epochMsField, 'nowMs', nowMs);
    const fresh: Checkpoint = {
      runId,
      mode,
      pageToken: null,
      pageHighWaterMs: null,
      pages: 0,
      records: 0,
      startedAt: iso(nowMs),
      startedAtMs: nowMs,
      updatedAt: iso(nowMs),
      resumedFrom: null,
    };
    return this.table.rounds(key, async () => {
      const current = (await this.read(account, resource))?.checkpoint ?? null;
      if (current?.runId === runId) {
        return { status: 'resumed', checkpoint: current, previousRunId: runId } satisfies StartRunResult;
      }
      let next = fresh;
      let result: StartRunResult = { status: 'started', checkpoint: fresh, discarded: null };
      if (current) {
        if (await this.leases.isHeldBy(account, resource, current.runId, nowMs)) {
          return {
            status: 'busy',
            activeRunId: current.runId,
            since: current.startedAt,
          } satisfies StartRunResult;
        }
        if (current.mode === mode) {
          next = { ...current, runId, updatedAt: iso(nowMs), resumedFrom: current.runId };
          result = { status: 'resumed', checkpoint: next, previousRunId: current.runId };
        } else {
          result = {
            status: 'started',
            checkpoint: fresh,
            discarded: { runId: current.runId, mode: current.mode },
          };
        }
      }
      const written = await this.table.update('startRun', key, {
        UpdateExpression: 'SET #cp = :cp, #account = :account, #resource = :resource',
        ConditionExpression: current ? '#cp.#runId = :previous' : 'attribute_not_exists(#cp)',
        ExpressionAttributeNames: {
          '#cp': 'checkpoint',
          '#account': 'account',
          '#resource': 'resource',
          ...(current ? { '#runId': 'runId' } : {}),
        },
        ExpressionAttributeValues: {
          ':cp': next,
          ':account': account,
          ':resource': resource,
          ...(current ? { ':previous': current.runId } : {}),
        },
      });
      return written ? result : undefined;
    });
  }

  /**
   * Records progress of run `runId`: the next page token, the run's high-water mark, and page and record
   * counts added. Throws StaleRunError when `runId` no longer owns the checkpoint (nothing is written).
   * The counts are reports and the list's size estimate (Cursor.listRecords), never a guard: a call
   * retried after a lost answer may add its deltas twice (the estimate then errs high by a page).
   */
  async checkpoint(
    account: string,
    resource: string,
    runId: string,
    progress: CheckpointProgress,
    nowMs: number = this.now(),
  ): Promise<Checkpoint> {
    const key = stateKey.cursor(account, resource);
    checkInput(idField, 'runId', runId);
    checkInput(epochMsField, 'nowMs', nowMs);
    checkInput(pageTokenField, 'pageToken', progress.pageToken);
    if (progress.pageHighWaterMs !== null)
      checkInput(epochMsField, 'pageHighWaterMs', progress.pageHighWaterMs);
    checkInput(countField, 'pagesDelta', progress.pagesDelta);
    checkInput(countField, 'recordsDelta', progress.recordsDelta);
    const parts = progress.partitions !== undefined;
    const done = progress.pageDone !== undefined && progress.pageDone.length > 0;
    if (progress.pageDone !== undefined)
      for (const [i, id] of progress.pageDone.entries()) checkInput(idField, `pageDone[${i}]`, id);
    const out = await this.table.update(
      'checkpoint',
      key,
      {
        UpdateExpression:
          'SET #cp.#token = :token, #cp.#hw = :hw, #cp.#pages = #cp.#pages + :pages, ' +
          `#cp.#records = #cp.#records + :records, #cp.#updatedAt = :now${parts ? ', #cp.#parts = :parts' : ''}` +
          (done ? ', #cp.#done = :done' : ' REMOVE #cp.#done'),
        ConditionExpression: '#cp.#runId = :runId',
        ExpressionAttributeNames: {
          '#cp': 'checkpoint',
          '#runId': 'runId',
          '#token': 'pageToken',
          '#hw': 'pageHighWaterMs',
          '#pages': 'pages',
          '#records': 'records',
          '#updatedAt': 'updatedAt',
          ...(parts ? { '#parts': 'partitions' } : {}),
          '#done': 'pageDone',
        },
        ExpressionAttributeValues: {
          ...(parts ? { ':parts': progress.partitions } : {}),
          ...(done ? { ':done': [...(progress.pageDone ?? [])] } : {}),
          ':runId': runId,
          ':token': progress.pageToken,
          ':hw': progress.pageHighWaterMs,
          ':pages': progress.pagesDelta,
          ':records': progress.recordsDelta,
          ':now': iso(nowMs),
        },
      },
      cursorItemSchema,
    );
    if (out === false) {
      const { checkpoint: current } = await this.getCursor(account, resource);
      throw new StaleRunError(account, resource, runId, current?.runId ?? null);
    }
    if (!out.checkpoint) throw this.table.malformed(key, 'the checkpoint vanished from the updated cursor');
    return out.checkpoint;
  }

  /**
   * Finishes run `runId`: advances the cursor's high-water mark to `newHighWaterMs` (never backwards: a
   * lower or null value keeps the stored one), records the run, and clears the checkpoint. Throws
   * StaleRunError when `runId` no longer owns the checkpoint. A repeated call for a finished run returns
   * the cursor unchanged.
   */
  async finish(
    account: string,
    resource: string,
    runId: string,
    newHighWaterMs: number | null,
    nowMs: number = this.now(),
  ): Promise<Cursor> {
    const key = stateKey.cursor(account, resource);
    checkInput(idField, 'runId', runId);
    checkInput(epochMsField, 'nowMs', nowMs);
    if (newHighWaterMs !== null) checkInput(epochMsField, 'newHighWaterMs', newHighWaterMs);
    return this.table.rounds(key, async () => {
      const cursor = await this.getCursor(account, resource);
      const cp = cursor.checkpoint;
      if (cp?.runId !== runId) {
        if (cp === null && cursor.lastRunId === runId) return cursor;
        throw new StaleRunError(account, resource, runId, cp?.runId ?? null);
      }
      const old = cursor.highWaterMs;
      const hw =
        old === null ? newHighWaterMs : newHighWaterMs === null ? old : Math.max(old, newHighWaterMs);
      const values: Record<string, unknown> = {
        ':runId': runId,
        ':at': iso(nowMs),
        ':mode': cp.mode,
        ':duration': Math.max(0, nowMs - cp.startedAtMs),
        ':pages': cp.pages,
        ':records': cp.records,
        ':lag': hw === null ? null : nowMs - hw,
        // A run that read the whole list says how long it is (see Cursor.listRecords).
        ':size': cp.mode === 'full' || old === null ? cp.records : cursor.listRecords,
      };
      if (hw !== null) values[':hw'] = hw;
      if (old !== null) values[':old'] = old;
      const out = await this.table.update(
        'finishRun',
        key,
        {
          UpdateExpression:
            `SET ${hw === null ? '' : '#hw = :hw, '}lastRunAt = :at, lastRunMode = :mode, lastRunId = :runId, ` +
            'lastRunDurationMs = :duration, lastRunPages = :pages, lastRunRecords = :records, lagMs = :lag, ' +
            'listRecords = :size ' +
            'REMOVE #cp',
          ConditionExpression: `#cp.#runId = :runId AND ${old === null ? 'attribute_not_exists(#hw)' : '#hw = :old'}`,
          ExpressionAttributeNames: { '#cp': 'checkpoint', '#runId': 'runId', '#hw': 'highWaterMs' },
          ExpressionAttributeValues: values,
        },
        cursorItemSchema,
      );
      return out === false ? undefined : toCursor(account, resource, out);
    });
  }

  /**
   * Sets the list's size (Cursor.listRecords) to what a finished sweep found Keap listing. False, and
   * nothing written, for a list no run has finished yet (its first run will say).
   */
  async recordListSize(account: string, resource: string, records: number): Promise<boolean> {
    const key = stateKey.cursor(account, resource);
    checkInput(z.number().int().nonnegative(), 'records', records);
    return this.table.update('recordListSize', key, {
      UpdateExpression: 'SET listRecords = :records',
      ConditionExpression: 'attribute_exists(lastRunAt)',
      ExpressionAttributeValues: { ':records': records },
    });
  }

  /**
   * Drops the checkpoint of run `runId` (its progress is lost: the next run starts from the first page),
   * e.g. when its page token expired. The cursor is kept. False when `runId` does not own the checkpoint.
   * To hand a run over to another worker instead, keep the checkpoint and release the lease.
   */
  async abandon(
    account: string,
    resource: string,
    runId: string,
    reason: string | null = null,
    nowMs: number = this.now(),
  ): Promise<boolean> {
    const key = stateKey.cursor(account, resource);
    checkInput(idField, 'runId', runId);
    const done = await this.table.update('abandonRun', key, {
      UpdateExpression:
        'SET lastAbandonedRunId = :runId, lastAbandonedAt = :at, lastAbandonReason = :reason REMOVE #cp',
      ConditionExpression: '#cp.#runId = :runId',
      ExpressionAttributeNames: { '#cp': 'checkpoint', '#runId': 'runId' },
      ExpressionAttributeValues: {
        ':runId': runId,
        ':at': iso(checkInput(epochMsField, 'nowMs', nowMs)),
        ':reason': reason === null ? null : reason.slice(0, MAX_TEXT),
      },
    });
    if (done) return true;
    // A retried call whose first attempt succeeded reads back its own abandonment.
    const cursor = await this.getCursor(account, resource);
    return cursor.checkpoint === null && cursor.lastAbandoned?.runId === runId;
  }

  private read(account: string, resource: string): Promise<CursorItem | undefined> {
    return this.table.get(stateKey.cursor(account, resource), cursorItemSchema);
  }
}

function toCursor(account: string, resource: string, s: CursorItem | undefined): Cursor {
  return {
    account,
    resource,
    highWaterMs: s?.highWaterMs ?? null,
    lastRunAt: s?.lastRunAt ?? null,
    lastRunMode: s?.lastRunMode ?? null,
    lastRunId: s?.lastRunId ?? null,
    lastRunDurationMs: s?.lastRunDurationMs ?? null,
    lastRunPages: s?.lastRunPages ?? null,
    lastRunRecords: s?.lastRunRecords ?? null,
    listRecords: s?.listRecords ?? null,
    lagMs: s?.lagMs ?? null,
    lastAbandoned:
      !s || s.lastAbandonedRunId === null
        ? null
        : { runId: s.lastAbandonedRunId, at: s.lastAbandonedAt ?? '', reason: s.lastAbandonReason },
    checkpoint: s?.checkpoint ?? null,
  };
}
