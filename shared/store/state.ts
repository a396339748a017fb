// Adapter: the sync state table: cursors with the checkpoint of the run in progress, leases, account
// status, and idempotency records with write outcomes. Every change is a single-item conditional write
// (no transactions), so it runs unchanged on DynamoDB, DynamoDB Local and dynalite, and a stale or
// duplicated worker can never overwrite what the current one wrote.
import { randomUUID } from 'node:crypto';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  UpdateCommand,
  type UpdateCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import { callDynamo, documentClient, isConditionFailure } from './dynamo.ts';
import {
  IdempotencyConflictError,
  MalformedStoreItemError,
  StaleRunError,
  StoreContentionError,
  StoreInputError,
  WriteNotStartedError,
} from './errors.ts';
import { parseStateSettings, type StateSettings, type StateSettingsInput } from './settings.ts';
import { checkId, checkName, STATE_TABLE, stateKey } from './tables.ts';

// ---------------------------------------------------------------------------------------------------
// Public types

/** Progress of the run in progress for one (account, resource); lives on the cursor item. */
export interface Checkpoint {
  runId: string;
  /** Run mode as the sync engine names it (e.g. `full`, `incremental`); a resume keeps it. */
  mode: string;
  /** Lease owner that runs it; the run is abandoned once that owner no longer holds a live lease. */
  owner: string;
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
  /** Another run is in progress and its owner still holds a live lease: nothing was written. */
  | { status: 'busy'; activeRunId: string; owner: string; since: string };

export interface CheckpointProgress {
  /** Token of the next page to read (null: the first page). */
  pageToken: string | null;
  /** Highest update time seen by this run so far. */
  pageHighWaterMs: number | null;
  pagesDelta: number;
  recordsDelta: number;
}

export interface Lease {
  account: string;
  resource: string;
  owner: string;
  expiresAtMs: number;
  acquiredAt: string;
}

export type AccountStatus =
  | { state: 'active'; since: string | null }
  | { state: 'key-rejected'; reason: string; since: string; secretVersionRejected: string };

/** `create`: not idempotent at Keap (never repeated blindly). `safe`: may be sent again (upserts, tags). */
export type WriteKind = 'create' | 'safe';

export interface WriteRequest {
  kind: WriteKind;
  account: string;
  /** Hash of the whole request; the same key with another hash is a conflict. */
  requestHash: string;
  /** Free text for operators, e.g. `POST /v2/contacts`. */
  operation?: string;
}

/** What a completed write produced (e.g. the Keap id); a small plain object. */
export type WriteOutcome = Record<string, unknown>;

export interface WriteFailure {
  name: string;
  message: string;
}

export type BeginWriteResult =
  /** This caller owns the write: send it, then completeWrite or failWrite. */
  | { state: 'new'; takeover: false; attempt: 1 }
  /** An abandoned or retryably failed attempt was taken over: send it again (idempotent kinds only). */
  | { state: 'new'; takeover: true; attempt: number; previousSince: string }
  /**
   * Another attempt holds it. `unknown`: that attempt is older than writeTakeoverAfterMs and is a create,
   * so whether Keap received it is unknown: check Keap before creating again; never repeat it blindly.
   */
  | { state: 'in-progress'; since: string; unknown: boolean }
  | { state: 'done'; outcome: WriteOutcome; completedAt: string }
  /** Failed for good (failWrite with retryable false). */
  | { state: 'failed'; error: WriteFailure; failedAt: string };

export interface WriteRecord {
  idempotencyKey: string;
  kind: WriteKind;
  account: string;
  requestHash: string;
  operation: string | null;
  state: 'in-progress' | 'done' | 'failed';
  /** Start of the current attempt. */
  since: string;
  attempt: number;
  outcome: WriteOutcome | null;
  error: WriteFailure | null;
  retryable: boolean | null;
  updatedAt: string;
}

export interface StateStoreOptions {
  settings?: StateSettingsInput;
  /** Clock used where a method's `nowMs` is omitted; Date.now by default. */
  now?: () => number;
}

// ---------------------------------------------------------------------------------------------------
// Stored shapes

const nullable = <T extends z.ZodType>(schema: T) => schema.nullish().transform((v) => v ?? null);

const checkpointSchema = z.object({
  runId: z.string(),
  mode: z.string(),
  owner: z.string(),
  pageToken: nullable(z.string()),
  pageHighWaterMs: nullable(z.number()),
  pages: z.number(),
  records: z.number(),
  startedAt: z.string(),
  startedAtMs: z.number(),
  updatedAt: z.string(),
  resumedFrom: nullable(z.string()),
});

const cursorItemSchema = z.object({
  highWaterMs: nullable(z.number()),
  lastRunAt: nullable(z.string()),
  lastRunMode: nullable(z.string()),
  lastRunId: nullable(z.string()),
  lastRunDurationMs: nullable(z.number()),
  lastRunPages: nullable(z.number()),
  lastRunRecords: nullable(z.number()),
  lagMs: nullable(z.number()),
  lastAbandonedRunId: nullable(z.string()),
  lastAbandonedAt: nullable(z.string()),
  lastAbandonReason: nullable(z.string()),
  checkpoint: nullable(checkpointSchema),
});

const leaseItemSchema = z.object({
  account: z.string(),
  resource: z.string(),
  owner: z.string(),
  expiresAtMs: z.number(),
  acquiredAt: z.string(),
});

const accountItemSchema = z.object({
  state: z.enum(['active', 'key-rejected']),
  since: z.string(),
  reason: nullable(z.string()),
  secretVersionRejected: nullable(z.string()),
});

const writeItemSchema = z.object({
  idempotencyKey: z.string(),
  kind: z.enum(['create', 'safe']),
  account: z.string(),
  requestHash: z.string(),
  operation: nullable(z.string()),
  state: z.enum(['in-progress', 'done', 'failed']),
  startedAtMs: z.number(),
  attempt: z.number(),
  token: z.string(),
  outcome: nullable(z.record(z.string(), z.unknown())),
  error: nullable(z.object({ name: z.string(), message: z.string() })),
  retryable: nullable(z.boolean()),
  updatedAt: z.string(),
  completedAt: nullable(z.string()),
});
type WriteItem = z.output<typeof writeItemSchema>;

/** Read-decide-write loops give up after this many lost races (StoreContentionError). */
const MAX_ROUNDS = 8;
const MAX_ERROR_MESSAGE = 2_000;

const iso = (ms: number) => new Date(ms).toISOString();

// ---------------------------------------------------------------------------------------------------

/** The state table (partition key `pk`, sort key `sk`; see STATE_TABLE for the item key formats). */
export class StateStore {
  readonly tableName: string;
  readonly settings: StateSettings;
  private readonly doc: DynamoDBDocumentClient;
  private readonly now: () => number;

  constructor(client: DynamoDBClient, tableName: string, options: StateStoreOptions = {}) {
    this.tableName = tableName;
    this.settings = parseStateSettings(options.settings);
    this.doc = documentClient(client);
    this.now = options.now ?? Date.now;
  }

  // ------------------------------------------------------------------ cursor and checkpoint

  /** The cursor of (account, resource); a never-synced pair has highWaterMs null and no checkpoint. */
  async getCursor(account: string, resource: string): Promise<Cursor> {
    const item = await this.read(stateKey.cursor(account, resource));
    return this.toCursor(account, resource, item);
  }

  /**
   * Starts run `runId` (unique per attempt, e.g. a fresh UUID; never a message id) for `owner`, the
   * lease owner running it. Writes a checkpoint when none exists; when another run's checkpoint exists
   * it is taken over only if that run is abandoned: its owner no longer holds a live lease (or is this
   * caller). A same-mode takeover keeps the progress (resume from its pageToken); another mode starts
   * afresh. Otherwise returns `busy` and writes nothing.
   */
  async startRun(
    account: string,
    resource: string,
    runId: string,
    mode: string,
    options: { owner: string; nowMs?: number },
  ): Promise<StartRunResult> {
    const key = stateKey.cursor(account, resource);
    checkId('runId', runId);
    checkId('mode', mode);
    const owner = checkId('owner', options.owner);
    const nowMs = checkTime('nowMs', options.nowMs ?? this.now());
    const fresh: Checkpoint = {
      runId,
      mode,
      owner,
      pageToken: null,
      pageHighWaterMs: null,
      pages: 0,
      records: 0,
      startedAt: iso(nowMs),
      startedAtMs: nowMs,
      updatedAt: iso(nowMs),
      resumedFrom: null,
    };
    for (let round = 1; round <= MAX_ROUNDS; round++) {
      const { checkpoint: current } = this.toCursor(account, resource, await this.read(key));
      if (current?.runId === runId) return { status: 'resumed', checkpoint: current, previousRunId: runId };
      let next = fresh;
      let result: StartRunResult = { status: 'started', checkpoint: fresh, discarded: null };
      if (current) {
        const abandoned =
          current.owner === owner || !(await this.leaseHeldBy(account, resource, current.owner, nowMs));
        if (!abandoned) {
          return {
            status: 'busy',
            activeRunId: current.runId,
            owner: current.owner,
            since: current.startedAt,
          };
        }
        if (current.mode === mode) {
          next = { ...current, runId, owner, updatedAt: iso(nowMs), resumedFrom: current.runId };
          result = { status: 'resumed', checkpoint: next, previousRunId: current.runId };
        } else {
          result = {
            status: 'started',
            checkpoint: fresh,
            discarded: { runId: current.runId, mode: current.mode },
          };
        }
      }
      try {
        await this.update('startRun', {
          Key: key,
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
        return result;
      } catch (err) {
        if (!isConditionFailure(err)) throw err;
      }
    }
    throw new StoreContentionError(describeKey(key), MAX_ROUNDS);
  }

  /**
   * Records progress of run `runId`: the next page token, the run's high-water mark, and page and record
   * counts added. Throws StaleRunError when `runId` no longer owns the checkpoint (nothing is written).
   * The counts are informational: a call retried after a lost answer may add its deltas twice.
   */
  async checkpoint(
    account: string,
    resource: string,
    runId: string,
    progress: CheckpointProgress,
    nowMs: number = this.now(),
  ): Promise<Checkpoint> {
    const key = stateKey.cursor(account, resource);
    checkId('runId', runId);
    checkTime('nowMs', nowMs);
    const token = progress.pageToken;
    if (token !== null && (typeof token !== 'string' || token.length === 0 || token.length > 32_768)) {
      throw new StoreInputError(
        'pageToken',
        'must be null or a non-empty string of at most 32768 characters.',
      );
    }
    if (progress.pageHighWaterMs !== null) checkTime('pageHighWaterMs', progress.pageHighWaterMs);
    checkCount('pagesDelta', progress.pagesDelta);
    checkCount('recordsDelta', progress.recordsDelta);
    try {
      const out = await this.update('checkpoint', {
        Key: key,
        UpdateExpression:
          'SET #cp.#token = :token, #cp.#hw = :hw, #cp.#pages = #cp.#pages + :pages, ' +
          '#cp.#records = #cp.#records + :records, #cp.#updatedAt = :now',
        ConditionExpression: '#cp.#runId = :runId',
        ExpressionAttributeNames: {
          '#cp': 'checkpoint',
          '#runId': 'runId',
          '#token': 'pageToken',
          '#hw': 'pageHighWaterMs',
          '#pages': 'pages',
          '#records': 'records',
          '#updatedAt': 'updatedAt',
        },
        ExpressionAttributeValues: {
          ':runId': runId,
          ':token': progress.pageToken,
          ':hw': progress.pageHighWaterMs,
          ':pages': progress.pagesDelta,
          ':records': progress.recordsDelta,
          ':now': iso(nowMs),
        },
        ReturnValues: 'ALL_NEW',
      });
      const checkpoint = this.toCursor(account, resource, out).checkpoint;
      if (!checkpoint) throw this.malformed(key, 'the checkpoint vanished from the updated cursor');
      return checkpoint;
    } catch (err) {
      if (!isConditionFailure(err)) throw err;
      const { checkpoint: current } = await this.getCursor(account, resource);
      throw new StaleRunError(account, resource, runId, current?.runId ?? null);
    }
  }

  /**
   * Finishes run `runId`: advances the cursor's high-water mark to `newHighWaterMs` (never backwards: a
   * lower or null value keeps the stored one), records the run, and clears the checkpoint. Throws
   * StaleRunError when `runId` no longer owns the checkpoint. A repeated call for a finished run returns
   * the cursor unchanged.
   */
  async finishRun(
    account: string,
    resource: string,
    runId: string,
    newHighWaterMs: number | null,
    nowMs: number = this.now(),
  ): Promise<Cursor> {
    const key = stateKey.cursor(account, resource);
    checkId('runId', runId);
    checkTime('nowMs', nowMs);
    if (newHighWaterMs !== null) checkTime('newHighWaterMs', newHighWaterMs);
    for (let round = 1; round <= MAX_ROUNDS; round++) {
      const cursor = this.toCursor(account, resource, await this.read(key));
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
      };
      if (hw !== null) values[':hw'] = hw;
      if (old !== null) values[':old'] = old;
      try {
        const out = await this.update('finishRun', {
          Key: key,
          UpdateExpression:
            `SET ${hw === null ? '' : '#hw = :hw, '}lastRunAt = :at, lastRunMode = :mode, lastRunId = :runId, ` +
            'lastRunDurationMs = :duration, lastRunPages = :pages, lastRunRecords = :records, lagMs = :lag ' +
            'REMOVE #cp',
          ConditionExpression: `#cp.#runId = :runId AND ${old === null ? 'attribute_not_exists(#hw)' : '#hw = :old'}`,
          ExpressionAttributeNames: { '#cp': 'checkpoint', '#runId': 'runId', '#hw': 'highWaterMs' },
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_NEW',
        });
        return this.toCursor(account, resource, out);
      } catch (err) {
        if (!isConditionFailure(err)) throw err;
      }
    }
    throw new StoreContentionError(describeKey(key), MAX_ROUNDS);
  }

  /**
   * Drops the checkpoint of run `runId` (its progress is lost: the next run starts from the first page),
   * e.g. when its page token expired. The cursor is kept. False when `runId` does not own the checkpoint.
   * To hand a run over to another worker instead, keep the checkpoint and release the lease.
   */
  async abandonRun(
    account: string,
    resource: string,
    runId: string,
    reason: string | null = null,
    nowMs: number = this.now(),
  ): Promise<boolean> {
    const key = stateKey.cursor(account, resource);
    checkId('runId', runId);
    try {
      await this.update('abandonRun', {
        Key: key,
        UpdateExpression:
          'SET lastAbandonedRunId = :runId, lastAbandonedAt = :at, lastAbandonReason = :reason REMOVE #cp',
        ConditionExpression: '#cp.#runId = :runId',
        ExpressionAttributeNames: { '#cp': 'checkpoint', '#runId': 'runId' },
        ExpressionAttributeValues: {
          ':runId': runId,
          ':at': iso(checkTime('nowMs', nowMs)),
          ':reason': reason === null ? null : reason.slice(0, MAX_ERROR_MESSAGE),
        },
      });
      return true;
    } catch (err) {
      if (!isConditionFailure(err)) throw err;
      // A retried call whose first attempt succeeded reads back its own abandonment.
      const cursor = await this.getCursor(account, resource);
      return cursor.checkpoint === null && cursor.lastAbandoned?.runId === runId;
    }
  }

  // ------------------------------------------------------------------ leases

  /**
   * Takes the lease of (account, resource) for `owner` until nowMs + ttlMs, if it is free, expired, or
   * already `owner`'s. True when `owner` holds it now; false when another owner holds a live lease.
   */
  async acquireLease(
    account: string,
    resource: string,
    owner: string,
    ttlMs: number,
    nowMs: number = this.now(),
  ): Promise<boolean> {
    const key = stateKey.lease(account, resource);
    checkId('owner', owner);
    checkDuration('ttlMs', ttlMs);
    checkTime('nowMs', nowMs);
    try {
      await callDynamo(this.tableName, 'PutItem', () =>
        this.doc.send(
          new PutCommand({
            TableName: this.tableName,
            Item: {
              ...key,
              account,
              resource,
              owner,
              expiresAtMs: nowMs + ttlMs,
              acquiredAt: iso(nowMs),
              [STATE_TABLE.ttlAttribute]: epochSeconds(nowMs + ttlMs + this.settings.leaseRetentionMs),
            },
            ConditionExpression: 'attribute_not_exists(#pk) OR #expires <= :now OR #owner = :owner',
            ExpressionAttributeNames: { '#pk': 'pk', '#expires': 'expiresAtMs', '#owner': 'owner' },
            ExpressionAttributeValues: { ':now': nowMs, ':owner': owner },
          }),
        ),
      );
      return true;
    } catch (err) {
      if (isConditionFailure(err)) return false;
      throw err;
    }
  }

  /** Extends `owner`'s live lease to nowMs + ttlMs. False when it expired or another owner holds it. */
  async renewLease(
    account: string,
    resource: string,
    owner: string,
    ttlMs: number,
    nowMs: number = this.now(),
  ): Promise<boolean> {
    const key = stateKey.lease(account, resource);
    checkId('owner', owner);
    checkDuration('ttlMs', ttlMs);
    checkTime('nowMs', nowMs);
    try {
      await this.update('renewLease', {
        Key: key,
        UpdateExpression: 'SET #expires = :expires, #ttl = :ttl',
        ConditionExpression: '#owner = :owner AND #expires > :now',
        ExpressionAttributeNames: {
          '#owner': 'owner',
          '#expires': 'expiresAtMs',
          '#ttl': STATE_TABLE.ttlAttribute,
        },
        ExpressionAttributeValues: {
          ':owner': owner,
          ':now': nowMs,
          ':expires': nowMs + ttlMs,
          ':ttl': epochSeconds(nowMs + ttlMs + this.settings.leaseRetentionMs),
        },
      });
      return true;
    } catch (err) {
      if (isConditionFailure(err)) return false;
      throw err;
    }
  }

  /** Releases the lease if `owner` holds it (live or expired). False when it is absent or another's. */
  async releaseLease(account: string, resource: string, owner: string): Promise<boolean> {
    const key = stateKey.lease(account, resource);
    checkId('owner', owner);
    try {
      await callDynamo(this.tableName, 'DeleteItem', () =>
        this.doc.send(
          new DeleteCommand({
            TableName: this.tableName,
            Key: key,
            ConditionExpression: '#owner = :owner',
            ExpressionAttributeNames: { '#owner': 'owner' },
            ExpressionAttributeValues: { ':owner': owner },
          }),
        ),
      );
      return true;
    } catch (err) {
      if (isConditionFailure(err)) return false;
      throw err;
    }
  }

  /** The stored lease (live or expired; compare expiresAtMs with the clock), or undefined. */
  async getLease(account: string, resource: string): Promise<Lease | undefined> {
    const key = stateKey.lease(account, resource);
    const item = await this.read(key);
    return item === undefined ? undefined : this.parse(leaseItemSchema, item, key);
  }

  private async leaseHeldBy(
    account: string,
    resource: string,
    owner: string,
    nowMs: number,
  ): Promise<boolean> {
    const lease = await this.getLease(account, resource);
    return lease !== undefined && lease.owner === owner && lease.expiresAtMs > nowMs;
  }

  // ------------------------------------------------------------------ account status

  /** The account's key status; an account never marked is active (since null). */
  async getAccountStatus(account: string): Promise<AccountStatus> {
    const key = stateKey.account(account);
    const item = await this.read(key);
    if (item === undefined) return { state: 'active', since: null };
    const s = this.parse(accountItemSchema, item, key);
    if (s.state === 'active') return { state: 'active', since: s.since };
    if (s.reason === null || s.secretVersionRejected === null) {
      throw this.malformed(key, 'a key-rejected status lacks reason or secretVersionRejected');
    }
    return {
      state: 'key-rejected',
      reason: s.reason,
      since: s.since,
      secretVersionRejected: s.secretVersionRejected,
    };
  }

  /**
   * Marks the account's key rejected by Keap for secret version `secretVersionId`. Idempotent: marking
   * the same version again keeps the first reason and time. Returns the stored status.
   */
  async markKeyRejected(
    account: string,
    secretVersionId: string,
    reason: string,
    nowMs: number = this.now(),
  ): Promise<AccountStatus> {
    const key = stateKey.account(account);
    checkId('secretVersionId', secretVersionId);
    if (typeof reason !== 'string' || reason.length === 0) {
      throw new StoreInputError('reason', 'must be a non-empty string saying why Keap rejected the key.');
    }
    checkTime('nowMs', nowMs);
    try {
      await this.update('markKeyRejected', {
        Key: key,
        UpdateExpression:
          'SET #state = :rejected, #reason = :reason, #version = :version, #since = :now, #account = :account, ' +
          '#updatedAt = :now',
        ConditionExpression: 'attribute_not_exists(#state) OR #state <> :rejected OR #version <> :version',
        ExpressionAttributeNames: {
          '#state': 'state',
          '#reason': 'reason',
          '#version': 'secretVersionRejected',
          '#since': 'since',
          '#account': 'account',
          '#updatedAt': 'updatedAt',
        },
        ExpressionAttributeValues: {
          ':rejected': 'key-rejected',
          ':reason': reason.slice(0, MAX_ERROR_MESSAGE),
          ':version': secretVersionId,
          ':now': iso(nowMs),
          ':account': account,
        },
      });
    } catch (err) {
      if (!isConditionFailure(err)) throw err;
    }
    return this.getAccountStatus(account);
  }

  /** Marks the account active (its key works again). Idempotent: an active account keeps its `since`. */
  async markActive(account: string, nowMs: number = this.now()): Promise<AccountStatus> {
    const key = stateKey.account(account);
    checkTime('nowMs', nowMs);
    try {
      await this.update('markActive', {
        Key: key,
        UpdateExpression:
          'SET #state = :active, #since = :now, #account = :account, #updatedAt = :now REMOVE #reason, #version',
        ConditionExpression: 'attribute_not_exists(#state) OR #state <> :active',
        ExpressionAttributeNames: {
          '#state': 'state',
          '#reason': 'reason',
          '#version': 'secretVersionRejected',
          '#since': 'since',
          '#account': 'account',
          '#updatedAt': 'updatedAt',
        },
        ExpressionAttributeValues: { ':active': 'active', ':now': iso(nowMs), ':account': account },
      });
    } catch (err) {
      if (!isConditionFailure(err)) throw err;
    }
    return this.getAccountStatus(account);
  }

  // ------------------------------------------------------------------ idempotency and write outcomes

  /**
   * Claims the write named by `idempotencyKey` (first writer wins). A later or duplicated caller sees
   * the existing record: in progress, done (with its outcome) or failed. An in-progress attempt older
   * than writeTakeoverAfterMs is taken over (state `new`, takeover true) unless it is a create, which
   * reports `in-progress` with `unknown` true instead of repeating it. A retryably failed attempt is
   * taken over whatever its kind. The same key with another request throws IdempotencyConflictError.
   */
  async beginWrite(
    idempotencyKey: string,
    request: WriteRequest,
    nowMs: number = this.now(),
  ): Promise<BeginWriteResult> {
    const key = stateKey.write(idempotencyKey);
    checkName('account', request.account);
    checkId('requestHash', request.requestHash);
    if (request.kind !== 'create' && request.kind !== 'safe') {
      throw new StoreInputError('kind', `must be "create" or "safe", got ${String(request.kind)}.`);
    }
    checkTime('nowMs', nowMs);
    const token = randomUUID();
    for (let round = 1; round <= MAX_ROUNDS; round++) {
      try {
        await callDynamo(this.tableName, 'PutItem', () =>
          this.doc.send(
            new PutCommand({
              TableName: this.tableName,
              Item: {
                ...key,
                idempotencyKey,
                kind: request.kind,
                account: request.account,
                requestHash: request.requestHash,
                operation: request.operation,
                state: 'in-progress',
                startedAtMs: nowMs,
                attempt: 1,
                token,
                updatedAt: iso(nowMs),
                [STATE_TABLE.ttlAttribute]: epochSeconds(nowMs + this.settings.writeRetentionMs),
              },
              ConditionExpression: 'attribute_not_exists(#pk)',
              ExpressionAttributeNames: { '#pk': 'pk' },
            }),
          ),
        );
        return { state: 'new', takeover: false, attempt: 1 };
      } catch (err) {
        if (!isConditionFailure(err)) throw err;
      }
      const current = await this.readWrite(key);
      if (current === undefined) continue; // deleted in between (TTL): claim it afresh
      if (current.token === token) return ownResult(current); // our own put, retried after a lost answer
      if (current.account !== request.account) throw new IdempotencyConflictError(idempotencyKey, 'account');
      if (current.kind !== request.kind) throw new IdempotencyConflictError(idempotencyKey, 'kind');
      if (current.requestHash !== request.requestHash) {
        throw new IdempotencyConflictError(idempotencyKey, 'requestHash');
      }
      const since = iso(current.startedAtMs);
      if (current.state === 'done') {
        return {
          state: 'done',
          outcome: current.outcome ?? {},
          completedAt: current.completedAt ?? current.updatedAt,
        };
      }
      if (current.state === 'failed' && !current.retryable) {
        return {
          state: 'failed',
          error: current.error ?? { name: 'Error', message: '(no message recorded)' },
          failedAt: current.updatedAt,
        };
      }
      if (current.state === 'in-progress') {
        const stale = nowMs - current.startedAtMs >= this.settings.writeTakeoverAfterMs;
        if (!stale) return { state: 'in-progress', since, unknown: false };
        if (current.kind === 'create') return { state: 'in-progress', since, unknown: true };
      }
      const taken = await this.takeOverWrite(key, current, token, nowMs);
      if (taken) return { state: 'new', takeover: true, attempt: current.attempt + 1, previousSince: since };
    }
    throw new StoreContentionError(describeKey(key), MAX_ROUNDS);
  }

  /**
   * Records the outcome of a write. The first recorded outcome wins: completing a done write again keeps
   * it. Returns the stored record. Throws WriteNotStartedError when beginWrite never claimed the key.
   */
  async completeWrite(
    idempotencyKey: string,
    outcome: WriteOutcome,
    nowMs: number = this.now(),
  ): Promise<WriteRecord> {
    const key = stateKey.write(idempotencyKey);
    if (typeof outcome !== 'object' || outcome === null || Array.isArray(outcome)) {
      throw new StoreInputError('outcome', 'must be a plain object (e.g. { keapId }).');
    }
    checkTime('nowMs', nowMs);
    await this.settleWrite(key, idempotencyKey, {
      UpdateExpression:
        'SET #state = :done, #outcome = :outcome, #completedAt = :now, #updatedAt = :now, #ttl = :ttl ' +
        'REMOVE #error, #retryable',
      ExpressionAttributeNames: {
        '#outcome': 'outcome',
        '#completedAt': 'completedAt',
        '#error': 'error',
        '#retryable': 'retryable',
      },
      ExpressionAttributeValues: {
        ':outcome': outcome,
        ':ttl': epochSeconds(nowMs + this.settings.writeRetentionMs),
        ':now': iso(nowMs),
      },
    });
    return this.expectWrite(key, idempotencyKey);
  }

  /**
   * Records that a write failed. `retryable`: it certainly did not take effect (or is safe to repeat), so
   * the next beginWrite takes it over; otherwise later callers get `failed`. A done write is left as is.
   * Only the error's name and message are stored. Throws WriteNotStartedError for an unclaimed key.
   */
  async failWrite(
    idempotencyKey: string,
    error: Error | WriteFailure,
    retryable: boolean,
    nowMs: number = this.now(),
  ): Promise<WriteRecord> {
    const key = stateKey.write(idempotencyKey);
    checkTime('nowMs', nowMs);
    const failure: WriteFailure = {
      name: String(error.name || 'Error').slice(0, 200),
      message: String(error.message).slice(0, MAX_ERROR_MESSAGE),
    };
    await this.settleWrite(key, idempotencyKey, {
      UpdateExpression:
        'SET #state = :failed, #error = :error, #retryable = :retryable, #updatedAt = :now, #ttl = :ttl',
      ExpressionAttributeNames: { '#error': 'error', '#retryable': 'retryable' },
      ExpressionAttributeValues: {
        ':failed': 'failed',
        ':error': failure,
        ':retryable': retryable,
        ':now': iso(nowMs),
        ':ttl': epochSeconds(nowMs + this.settings.writeRetentionMs),
      },
    });
    return this.expectWrite(key, idempotencyKey);
  }

  /** The write record (state, outcome or error) for senders to read the result, or undefined. */
  async getWriteOutcome(idempotencyKey: string): Promise<WriteRecord | undefined> {
    const item = await this.readWrite(stateKey.write(idempotencyKey));
    return item === undefined ? undefined : toWriteRecord(item);
  }

  private async settleWrite(
    key: Key,
    idempotencyKey: string,
    expr: {
      UpdateExpression: string;
      ExpressionAttributeNames: Record<string, string>;
      ExpressionAttributeValues: Record<string, unknown>;
    },
  ): Promise<void> {
    try {
      await this.update('settleWrite', {
        Key: key,
        UpdateExpression: expr.UpdateExpression,
        ConditionExpression: 'attribute_exists(#pk) AND #state <> :done',
        ExpressionAttributeNames: {
          ...expr.ExpressionAttributeNames,
          '#pk': 'pk',
          '#state': 'state',
          '#updatedAt': 'updatedAt',
          '#ttl': STATE_TABLE.ttlAttribute,
        },
        ExpressionAttributeValues: { ...expr.ExpressionAttributeValues, ':done': 'done' },
      });
    } catch (err) {
      if (!isConditionFailure(err)) throw err;
      if ((await this.readWrite(key)) === undefined) throw new WriteNotStartedError(idempotencyKey);
      // Already done: the first outcome stands.
    }
  }

  private async expectWrite(key: Key, idempotencyKey: string): Promise<WriteRecord> {
    const item = await this.readWrite(key);
    if (item === undefined) throw new WriteNotStartedError(idempotencyKey);
    return toWriteRecord(item);
  }

  /** Moves the write to a new attempt owned by `token`, if nobody else did since `current` was read. */
  private async takeOverWrite(key: Key, current: WriteItem, token: string, nowMs: number): Promise<boolean> {
    try {
      await this.update('takeOverWrite', {
        Key: key,
        UpdateExpression:
          'SET #state = :inProgress, #startedAtMs = :now, #attempt = :attempt, #token = :token, ' +
          '#updatedAt = :nowIso REMOVE #error, #retryable',
        ConditionExpression: '#token = :previous',
        ExpressionAttributeNames: {
          '#state': 'state',
          '#startedAtMs': 'startedAtMs',
          '#attempt': 'attempt',
          '#token': 'token',
          '#updatedAt': 'updatedAt',
          '#error': 'error',
          '#retryable': 'retryable',
        },
        ExpressionAttributeValues: {
          ':inProgress': 'in-progress',
          ':now': nowMs,
          ':nowIso': iso(nowMs),
          ':attempt': current.attempt + 1,
          ':token': token,
          ':previous': current.token,
        },
      });
      return true;
    } catch (err) {
      if (!isConditionFailure(err)) throw err;
      // A retried update whose first attempt succeeded finds its own token.
      return (await this.readWrite(key))?.token === token;
    }
  }

  private async readWrite(key: Key): Promise<WriteItem | undefined> {
    const item = await this.read(key);
    return item === undefined ? undefined : this.parse(writeItemSchema, item, key);
  }

  // ------------------------------------------------------------------ plumbing

  private async read(key: Key): Promise<Record<string, unknown> | undefined> {
    const out = await callDynamo(this.tableName, 'GetItem', () =>
      this.doc.send(new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true })),
    );
    return out.Item;
  }

  private async update(
    operation: string,
    input: Omit<UpdateCommandInput, 'TableName'>,
  ): Promise<Record<string, unknown> | undefined> {
    const out = await callDynamo(this.tableName, `UpdateItem (${operation})`, () =>
      this.doc.send(new UpdateCommand({ TableName: this.tableName, ...input })),
    );
    return out.Attributes;
  }

  private toCursor(account: string, resource: string, item: Record<string, unknown> | undefined): Cursor {
    const s = this.parse(cursorItemSchema, item ?? {}, stateKey.cursor(account, resource));
    return {
      account,
      resource,
      highWaterMs: s.highWaterMs,
      lastRunAt: s.lastRunAt,
      lastRunMode: s.lastRunMode,
      lastRunId: s.lastRunId,
      lastRunDurationMs: s.lastRunDurationMs,
      lastRunPages: s.lastRunPages,
      lastRunRecords: s.lastRunRecords,
      lagMs: s.lagMs,
      lastAbandoned:
        s.lastAbandonedRunId === null
          ? null
          : { runId: s.lastAbandonedRunId, at: s.lastAbandonedAt ?? '', reason: s.lastAbandonReason },
      checkpoint: s.checkpoint,
    };
  }

  private parse<S extends z.ZodType>(schema: S, item: unknown, key: Key): z.output<S> {
    const parsed = schema.safeParse(item);
    if (parsed.success) return parsed.data;
    const issue = parsed.error.issues[0];
    throw this.malformed(key, `${issue?.path.join('.') || '(item)'}: ${issue?.message ?? 'invalid'}`);
  }

  private malformed(key: Key, problem: string): MalformedStoreItemError {
    return new MalformedStoreItemError(this.tableName, describeKey(key), problem);
  }
}

type Key = { pk: string; sk: string };

function describeKey(key: Key): string {
  return `${key.pk} / ${key.sk}`;
}

function ownResult(item: WriteItem): BeginWriteResult {
  return item.attempt === 1
    ? { state: 'new', takeover: false, attempt: 1 }
    : { state: 'new', takeover: true, attempt: item.attempt, previousSince: iso(item.startedAtMs) };
}

function toWriteRecord(item: WriteItem): WriteRecord {
  return {
    idempotencyKey: item.idempotencyKey,
    kind: item.kind,
    account: item.account,
    requestHash: item.requestHash,
    operation: item.operation,
    state: item.state,
    since: iso(item.startedAtMs),
    attempt: item.attempt,
    outcome: item.outcome,
    error: item.error,
    retryable: item.retryable,
    updatedAt: item.updatedAt,
  };
}

function epochSeconds(ms: number): number {
  return Math.ceil(ms / 1000);
}

function checkTime(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new StoreInputError(
      field,
      `must be epoch milliseconds (a non-negative integer), got ${String(value)}.`,
    );
  }
  return value;
}

function checkDuration(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new StoreInputError(field, `must be a positive number of milliseconds, got ${String(value)}.`);
  }
  return value;
}

function checkCount(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new StoreInputError(field, `must be a non-negative integer, got ${String(value)}.`);
  }
  return value;
}

/** Whether `status` says Keap rejected secret version `secretVersionId` (a newer version may be tried). */
export function isKeyRejected(status: AccountStatus, secretVersionId: string): boolean {
  return status.state === 'key-rejected' && status.secretVersionRejected === secretVersionId;
}
