// Adapter: write idempotency in the state table (`write#<idempotencyKey>`, `write`): the first caller
// of a key claims the write, a redelivered or duplicated one sees its record, and the outcome (or the
// failure) is kept for the sender to read. A create whose answer was lost is never repeated blindly.
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { IdempotencyConflictError, WriteNotStartedError } from './errors.ts';
import {
  checkInput,
  epochMsField,
  epochSeconds,
  idField,
  iso,
  MAX_TEXT,
  nameField,
  nullable,
} from './fields.ts';
import type { Key, StateTable, Update } from './table.ts';
import { STATE_TABLE, stateKey } from './tables.ts';

/** `create`: not idempotent at Keap (never repeated blindly). `safe`: may be sent again (upserts, tags). */
export type WriteKind = 'create' | 'safe';

export interface WriteRequest {
  kind: WriteKind;
  account: string;
  /** Hash of the whole request; the same key with another hash is a conflict. */
  requestHash: string;
  /** Free text for operators, e.g. `POST /v2/contacts`. */
  operation?: string;
  /**
   * The attempt whose claim certainly never reached Keap (its release could not be recorded): an
   * in-progress claim of exactly that attempt is taken over at once instead of waiting it out.
   */
  unsentAttempt?: number;
}

/** What a completed write produced (e.g. the Keap id); a small plain object. */
export type WriteOutcome = Record<string, unknown>;

export interface WriteFailure {
  name: string;
  message: string;
}

export type BeginWriteResult =
  /** This caller owns the write: send it, then complete or fail it. */
  | { state: 'new'; takeover: false; attempt: 1 }
  /** An abandoned or retryably failed attempt was taken over: send it again (idempotent kinds only). */
  | { state: 'new'; takeover: true; attempt: number; previousSince: string }
  /**
   * Another attempt holds it. `unknown`: that attempt is older than the takeover time and is a create,
   * so whether Keap received it is unknown: check Keap before creating again; never repeat it blindly.
   */
  | { state: 'in-progress'; since: string; unknown: boolean }
  | { state: 'done'; outcome: WriteOutcome; completedAt: string }
  /** Failed for good (fail with retryable false). */
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

const kindField = z.enum(['create', 'safe'], {
  error: (issue) => `must be "create" or "safe", got ${String(issue.input)}.`,
});
const outcomeField = z.custom<WriteOutcome>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), {
  error: 'must be a plain object (e.g. { keapId }).',
});

export interface WriteStoreSettings {
  /** An in-progress record older than this is judged abandoned (see begin). */
  writeTakeoverAfterMs: number;
  /** Records carry a TTL attribute this far in the future. */
  writeRetentionMs: number;
}

export class DynamoWriteStore {
  private readonly table: StateTable;
  private readonly settings: WriteStoreSettings;
  private readonly now: () => number;

  constructor(table: StateTable, settings: WriteStoreSettings, now: () => number) {
    this.table = table;
    this.settings = settings;
    this.now = now;
  }

  /**
   * Claims the write named by `idempotencyKey` (first writer wins). A later or duplicated caller sees
   * the existing record: in progress, done (with its outcome) or failed. An in-progress attempt older
   * than writeTakeoverAfterMs is taken over (state `new`, takeover true) unless it is a create, which
   * reports `in-progress` with `unknown` true instead of repeating it. A retryably failed attempt is
   * taken over whatever its kind. The same key with another request throws IdempotencyConflictError.
   */
  async begin(
    idempotencyKey: string,
    request: WriteRequest,
    nowMs: number = this.now(),
  ): Promise<BeginWriteResult> {
    const key = stateKey.write(idempotencyKey);
    checkInput(nameField, 'account', request.account);
    checkInput(idField, 'requestHash', request.requestHash);
    checkInput(kindField, 'kind', request.kind);
    checkInput(epochMsField, 'nowMs', nowMs);
    const token = randomUUID();
    const item = {
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
    };
    return this.table.rounds(key, async (): Promise<BeginWriteResult | undefined> => {
      const claimed = await this.table.put('beginWrite', key, item, {
        ConditionExpression: 'attribute_not_exists(#pk)',
        ExpressionAttributeNames: { '#pk': 'pk' },
      });
      if (claimed) return { state: 'new', takeover: false, attempt: 1 };
      const current = await this.read(key);
      if (current === undefined) return undefined; // deleted in between (TTL): claim it afresh
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
      const released = request.unsentAttempt !== undefined && current.attempt === request.unsentAttempt;
      if (current.state === 'in-progress' && !released) {
        const stale = nowMs - current.startedAtMs >= this.settings.writeTakeoverAfterMs;
        if (!stale) return { state: 'in-progress', since, unknown: false };
        if (current.kind === 'create') return { state: 'in-progress', since, unknown: true };
      }
      const taken = await this.takeOver(key, current, token, nowMs);
      return taken
        ? { state: 'new', takeover: true, attempt: current.attempt + 1, previousSince: since }
        : undefined;
    });
  }

  /**
   * Records the outcome of a write. The first recorded outcome wins: completing a done write again keeps
   * it. Returns the stored record. Throws WriteNotStartedError when begin never claimed the key.
   */
  async complete(
    idempotencyKey: string,
    outcome: WriteOutcome,
    nowMs: number = this.now(),
  ): Promise<WriteRecord> {
    const key = stateKey.write(idempotencyKey);
    checkInput(outcomeField, 'outcome', outcome);
    checkInput(epochMsField, 'nowMs', nowMs);
    await this.settle(key, idempotencyKey, {
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
    return this.expect(key, idempotencyKey);
  }

  /**
   * Records that a write failed. `retryable`: it certainly did not take effect (or is safe to repeat), so
   * the next begin takes it over; otherwise later callers get `failed`. A done write is left as is.
   * Only the error's name and message are stored. Throws WriteNotStartedError for an unclaimed key.
   */
  async fail(
    idempotencyKey: string,
    error: Error | WriteFailure,
    retryable: boolean,
    nowMs: number = this.now(),
  ): Promise<WriteRecord> {
    const key = stateKey.write(idempotencyKey);
    checkInput(epochMsField, 'nowMs', nowMs);
    const failure: WriteFailure = {
      name: String(error.name || 'Error').slice(0, 200),
      message: String(error.message).slice(0, MAX_TEXT),
    };
    await this.settle(key, idempotencyKey, {
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
    return this.expect(key, idempotencyKey);
  }

  /** The write record (state, outcome or error) for senders to read the result, or undefined. */
  async getOutcome(idempotencyKey: string): Promise<WriteRecord | undefined> {
    const item = await this.read(stateKey.write(idempotencyKey));
    return item === undefined ? undefined : toWriteRecord(item);
  }

  /** Applies a final state unless the write is done already (the first outcome stands). */
  private async settle(
    key: Key,
    idempotencyKey: string,
    expr: Required<
      Pick<Update, 'UpdateExpression' | 'ExpressionAttributeNames' | 'ExpressionAttributeValues'>
    >,
  ): Promise<void> {
    const settled = await this.table.update('settleWrite', key, {
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
    if (!settled && (await this.read(key)) === undefined) throw new WriteNotStartedError(idempotencyKey);
  }

  private async expect(key: Key, idempotencyKey: string): Promise<WriteRecord> {
    const item = await this.read(key);
    if (item === undefined) throw new WriteNotStartedError(idempotencyKey);
    return toWriteRecord(item);
  }

  /** Moves the write to a new attempt owned by `token`, if nobody else did since `current` was read. */
  private async takeOver(key: Key, current: WriteItem, token: string, nowMs: number): Promise<boolean> {
    const taken = await this.table.update('takeOverWrite', key, {
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
    // A retried update whose first attempt succeeded finds its own token.
    return taken || (await this.read(key))?.token === token;
  }

  private read(key: Key): Promise<WriteItem | undefined> {
    return this.table.get(key, writeItemSchema);
  }
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
