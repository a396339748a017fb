// Domain: the errors the DynamoDB store (mirror and state tables) raises. Callers branch on the class,
// never on the message. No error holds a record's data or an SDK request: only ids and keys.

/** Base class of every error the store raises. */
export class StoreError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A store setting is missing or out of range. Raised at construction; `setting` names it. */
export class StoreConfigError extends StoreError {
  readonly setting: string;
  constructor(setting: string, problem: string) {
    super(`Invalid store setting "${setting}": ${problem} Fix the setting and construct the store again.`);
    this.setting = setting;
  }
}

/** A method was called with an invalid argument (empty id, `#` in an account, bad number). Nothing was written. */
export class StoreInputError extends StoreError {
  readonly field: string;
  constructor(field: string, problem: string) {
    super(`Invalid store argument "${field}": ${problem} Nothing was written; fix the caller and retry.`);
    this.field = field;
  }
}

/**
 * DynamoDB could not be reached or answered with an error that retrying did not fix (throttling and
 * transient errors are retried with backoff first). `retryable` says whether a later retry may succeed.
 */
export class StoreUnavailableError extends StoreError {
  readonly table: string;
  readonly operation: string;
  readonly attempts: number;
  readonly retryable: boolean;
  constructor(table: string, operation: string, attempts: number, retryable: boolean, cause: unknown) {
    const detail = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    super(
      `DynamoDB ${operation} on table "${table}" failed after ${attempts} attempt(s) (${detail}). ` +
        (retryable
          ? 'DynamoDB was throttling or unavailable: retry the job later, or lower worker concurrency.'
          : 'Check that the table exists with the expected key schema and that this process may read and write it.'),
      { cause },
    );
    this.table = table;
    this.operation = operation;
    this.attempts = attempts;
    this.retryable = retryable;
  }
}

/** A stored item lacks the attributes this store writes (another tool or version wrote it). */
export class MalformedStoreItemError extends StoreError {
  readonly table: string;
  readonly key: string;
  constructor(table: string, key: string, problem: string) {
    super(
      `Item "${key}" in table "${table}" is not one this store wrote (${problem}). If another tool or an ` +
        'older keap-sync version wrote it, delete the item; the store recreates it on the next write.',
    );
    this.table = table;
    this.key = key;
  }
}

/** A mirror record is larger than DynamoDB's 400 KB item limit. Nothing of its batch was written. */
export class RecordTooLargeError extends StoreError {
  readonly account: string;
  readonly resource: string;
  readonly recordId: string;
  /** Estimated item size in bytes, or undefined when DynamoDB itself rejected the item. */
  readonly sizeBytes: number | undefined;
  readonly limitBytes: number;
  constructor(
    account: string,
    resource: string,
    recordId: string,
    sizeBytes: number | undefined,
    limit: number,
  ) {
    const size = sizeBytes === undefined ? 'over' : `about ${sizeBytes} bytes, over`;
    super(
      `Record "${recordId}" of ${resource} (account ${account}) is ${size} DynamoDB's ${limit}-byte item limit, ` +
        'so it cannot be mirrored. Nothing of its batch was written: leave the record out of the batch (and ' +
        'report it), or trim its largest fields before mirroring.',
    );
    this.account = account;
    this.resource = resource;
    this.recordId = recordId;
    this.sizeBytes = sizeBytes;
    this.limitBytes = limit;
  }
}

/**
 * The run no longer owns the checkpoint of (account, resource): another run took it over (this one was
 * judged abandoned) or it was finished or abandoned. The caller must stop this run without writing more.
 */
export class StaleRunError extends StoreError {
  readonly account: string;
  readonly resource: string;
  readonly runId: string;
  /** Run that owns the checkpoint now, or null when none does. */
  readonly activeRunId: string | null;
  constructor(account: string, resource: string, runId: string, activeRunId: string | null) {
    const now = activeRunId === null ? 'no run is active' : `run "${activeRunId}" owns it now`;
    super(
      `Run "${runId}" no longer owns the checkpoint of ${resource} (account ${account}): ${now}. Stop this ` +
        'run without further checkpoints; the active run (or the next one) carries on.',
    );
    this.account = account;
    this.resource = resource;
    this.runId = runId;
    this.activeRunId = activeRunId;
  }
}

/** The idempotency key was already used for a different request (hash or account differ). */
export class IdempotencyConflictError extends StoreError {
  readonly idempotencyKey: string;
  readonly field: 'requestHash' | 'account' | 'kind';
  constructor(idempotencyKey: string, field: 'requestHash' | 'account' | 'kind') {
    super(
      `Idempotency key "${idempotencyKey}" was already used for a different request (its ${field} differs). ` +
        'Derive the key from the whole request, or give the new request a new key; nothing was sent.',
    );
    this.idempotencyKey = idempotencyKey;
    this.field = field;
  }
}

/** completeWrite or failWrite named a key that has no record: beginWrite was not called (or it expired). */
export class WriteNotStartedError extends StoreError {
  readonly idempotencyKey: string;
  constructor(idempotencyKey: string) {
    super(
      `No write record exists for idempotency key "${idempotencyKey}". Call beginWrite before sending the ` +
        'write, and record its outcome under the same key.',
    );
    this.idempotencyKey = idempotencyKey;
  }
}

/** Concurrent writers kept changing an item between this store's read and its conditional write. */
export class StoreContentionError extends StoreError {
  readonly key: string;
  readonly attempts: number;
  constructor(key: string, attempts: number) {
    super(
      `Item "${key}" changed under ${attempts} consecutive conditional writes. Nothing was changed by this ` +
        'call; retry later, or lower the number of workers touching the same account and resource.',
    );
    this.key = key;
    this.attempts = attempts;
  }
}

/**
 * A mirror write stopped at its deadline (the invocation's time was running out): some records may be
 * written, the rest not. The caller does not checkpoint the page and reads it again in a new message
 * (writes are newer-wins, so the part written is harmless).
 */
export class MirrorWriteStoppedError extends StoreError {
  readonly done: number;
  readonly total: number;
  /** Ids of the records whose put finished (written, or found newer in the mirror) before the stop. */
  readonly doneIds: readonly string[];
  constructor(done: number, total: number, doneIds: readonly string[] = []) {
    super(
      `The mirror write stopped at its deadline after ${done} of ${total} records; the page is read ` +
        'again in a new message.',
    );
    this.done = done;
    this.total = total;
    this.doneIds = doneIds;
  }
}
