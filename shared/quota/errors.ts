// Domain: the errors the quota ledger raises. Callers branch on the class, never on the message.

/** Base class of every error the quota ledger raises. */
export class QuotaLedgerError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A ledger setting is missing or out of range. Raised at construction; `setting` names it. */
export class LedgerConfigError extends QuotaLedgerError {
  readonly setting: string;
  constructor(setting: string, message: string) {
    super(`Invalid quota ledger setting "${setting}": ${message}`);
    this.setting = setting;
  }
}

/** DynamoDB could not be reached or answered with an error. The ledger fails closed: no slot was granted. */
export class LedgerUnavailableError extends QuotaLedgerError {
  readonly item: string;
  constructor(item: string, cause: unknown) {
    const detail = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    super(
      `The quota ledger could not read or write item "${item}" (${detail}). No Keap call was allowed; ` +
        'check that the ledger table exists and that this process may read and write it, then retry.',
      { cause },
    );
    this.item = item;
  }
}

/** The stored ledger item is not one this ledger wrote (bad format, checksum or shape). Fails closed. */
export class LedgerStateError extends QuotaLedgerError {
  readonly item: string;
  constructor(item: string, problem: string) {
    super(
      `The quota ledger item "${item}" holds state this ledger did not write (${problem}). No Keap call ` +
        'was allowed. If another tool or an older keap-sync version wrote it, delete that item: the ledger ' +
        'starts it afresh, conservatively, on the next call.',
    );
    this.item = item;
  }
}

/** Concurrent writers kept winning the conditional write; the bounded retries ran out. Fails closed. */
export class LedgerContentionError extends QuotaLedgerError {
  readonly item: string;
  readonly attempts: number;
  constructor(item: string, attempts: number) {
    super(
      `The quota ledger item "${item}" changed under ${attempts} consecutive conditional writes. No slot was ` +
        'granted; retry later, or lower worker concurrency if this repeats.',
    );
    this.item = item;
    this.attempts = attempts;
  }
}

/** An acquire or report named an invalid tenant, key id or count. Nothing was reserved. */
export class QuotaRequestError extends QuotaLedgerError {
  readonly field: string;
  constructor(field: string, message: string) {
    super(`Invalid quota request field "${field}": ${message}`);
    this.field = field;
  }
}

/** key scope: the tenant already uses `maxKeysPerTenant` keys, so another would risk the tenant caps. */
export class TooManyKeysError extends QuotaLedgerError {
  constructor(tenant: string, max: number) {
    super(
      `Tenant "${tenant}" already uses ${max} keys under quotaScope "key" (maxKeysPerTenant). Another key ` +
        'could break the tenant caps: retire a key, or switch to quotaScope "tenant".',
    );
  }
}

/**
 * This worker's clock is off from DynamoDB's by more than `maxClockSkewMs` (read off the Date header
 * of the ledger's answers), so the slots it computes would not be the times its calls reach Keap.
 * Fails closed: no slot is granted and no call is sent until the clock is fixed.
 */
export class ClockSkewError extends QuotaLedgerError {
  readonly offsetMs: number;
  constructor(offsetMs: number, boundMs: number) {
    const dir = offsetMs > 0 ? 'behind' : 'ahead of';
    super(
      `This worker's clock is at least ${Math.round(Math.abs(offsetMs))} ms ${dir} DynamoDB's (the bound is ` +
        `${boundMs} ms, maxClockSkewMs), so no Keap call was allowed. Fix the host's time synchronisation ` +
        '(NTP / chrony); the ledger resumes on its own once the clock agrees.',
    );
    this.offsetMs = offsetMs;
  }
}
