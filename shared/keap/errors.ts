// Domain: the errors the Keap client raises. Callers branch on the class, never on the message.
// No error holds the API key, a request header or a request object: only the key id.
import type { DeferReason } from '../quota/index.ts';

/** What is known about the request an error belongs to (never its headers or query string). */
export interface RequestContext {
  method: string;
  /** Path below the base URL, without the query string (e.g. `/rest/v2/contacts`). */
  path: string;
  /** Key id (fingerprint) of the API key used; never the key. */
  keyId: string;
  tenant: string;
  /** Attempts made, counting the one that failed. */
  attempts: number;
  status?: number | undefined;
  /** Keap's `x-request-id`, to quote to Keap support. */
  requestId?: string | undefined;
}

/** Base class of every error the Keap client raises. */
export class KeapError extends Error {
  readonly method: string | undefined;
  readonly path: string | undefined;
  readonly keyId: string | undefined;
  readonly tenant: string | undefined;
  readonly attempts: number | undefined;
  readonly status: number | undefined;
  readonly requestId: string | undefined;
  constructor(message: string, context?: Partial<RequestContext>) {
    super(message);
    this.name = new.target.name;
    this.method = context?.method;
    this.path = context?.path;
    this.keyId = context?.keyId;
    this.tenant = context?.tenant;
    this.attempts = context?.attempts;
    this.status = context?.status;
    this.requestId = context?.requestId;
  }
}

function where(c: RequestContext): string {
  const id = c.requestId ? `, request id ${c.requestId}` : '';
  return `${c.method} ${c.path} (key ${c.keyId}${id})`;
}

function said(keapMessage: string | undefined): string {
  return keapMessage ? ` Keap said: "${keapMessage}".` : '';
}

/** A client setting or constructor option is missing or invalid; `setting` names it. */
export class KeapConfigError extends KeapError {
  readonly setting: string;
  constructor(setting: string, problem: string) {
    super(
      `Invalid Keap client setting "${setting}": ${problem} Fix the setting and construct the client again.`,
    );
    this.setting = setting;
  }
}

/** A method was called with an argument it cannot use; `argument` names it. Nothing was sent. */
export class KeapArgumentError extends KeapError {
  readonly argument: string;
  constructor(argument: string, problem: string) {
    super(`Invalid argument "${argument}": ${problem} Nothing was sent to Keap.`);
    this.argument = argument;
  }
}

/** 401: the key is invalid, revoked, or a legacy API key (disabled since 2024-10-31). */
export class KeyRejectedError extends KeapError {
  constructor(context: RequestContext, keapMessage?: string) {
    super(
      `Keap rejected the API key ${context.keyId} for ${where(context)}: it is invalid, revoked, or a legacy ` +
        'API key.' +
        said(keapMessage) +
        ' Create a new Personal Access Token or Service Account Key in Keap under Settings > API Settings ' +
        'and store it in place of this one.',
      context,
    );
  }
}

/** 403: the key may not see or change this data (a Personal Access Token acts with its user's rights). */
export class PermissionError extends KeapError {
  constructor(context: RequestContext, keapMessage?: string) {
    super(
      `Keap refused ${where(context)}: the key lacks permission for it.` +
        said(keapMessage) +
        " A Personal Access Token has only its creating user's rights: give that user access to this data, " +
        'or use a Service Account Key.',
      context,
    );
  }
}

/** 404: the record or endpoint does not exist (or was deleted). */
export class NotFoundError extends KeapError {
  constructor(context: RequestContext, keapMessage?: string) {
    super(
      `Keap found nothing at ${where(context)}.` +
        said(keapMessage) +
        ' Check the id (it may have been deleted in Keap) and the base URL setting.',
      context,
    );
  }
}

/** One item of Keap's `details` array on a 400. */
export interface KeapErrorDetail {
  domain?: string | undefined;
  resource?: string | undefined;
}

/** 400: Keap rejected the request's parameters or body; `details` holds Keap's own explanation. */
export class ValidationError extends KeapError {
  readonly keapMessage: string | undefined;
  readonly details: readonly KeapErrorDetail[];
  constructor(context: RequestContext, keapMessage: string | undefined, details: readonly KeapErrorDetail[]) {
    const listed = details
      .map((d) => [d.domain, d.resource].filter(Boolean).join(': '))
      .filter(Boolean)
      .join('; ');
    super(
      `Keap rejected ${where(context)} as invalid.` +
        said(keapMessage) +
        (listed ? ` Details: ${listed}.` : '') +
        ' Correct the request (fields, filter or body) before sending it again; retrying it unchanged will fail again.',
      context,
    );
    this.keapMessage = keapMessage;
    this.details = details;
  }
}

/** 409: the change conflicts with the record's current state (e.g. a duplicate). */
export class ConflictError extends KeapError {
  constructor(context: RequestContext, keapMessage?: string) {
    super(
      `Keap reported a conflict for ${where(context)}.` +
        said(keapMessage) +
        ' Read the record again, resolve the conflict, then send the change again.',
      context,
    );
  }
}

export type RateLimitKind = 'spike' | 'quota';

/**
 * 429 from Keap's gateway, after the ledger was told and the bounded re-acquires ran out. `kind` says
 * whether the spike arrest (per second) or a quota (minute or day) rejected it; `retryAt` (epoch ms)
 * is the earliest sensible retry.
 */
export class RateLimitedError extends KeapError {
  readonly kind: RateLimitKind;
  readonly retryAt: number;
  constructor(context: RequestContext, kind: RateLimitKind, retryAt: number) {
    super(
      `Keap rate-limited ${where(context)} (${kind === 'spike' ? 'spike arrest, more than 10 calls per second' : 'quota exhausted'}) ` +
        `${context.attempts} time(s). The quota ledger has been told, so every worker slows down. ` +
        `Defer this job and retry after ${new Date(retryAt).toISOString()}; if this repeats, another ` +
        "integration is using the same Keap tenant's quota.",
      context,
    );
    this.kind = kind;
    this.retryAt = retryAt;
  }
}

export type RetryReason = 'server' | 'network' | 'timeout';

/**
 * 5xx, a network failure or a timeout: the call may succeed later. `outcomeUnknown` is true when the
 * request may have reached Keap and changed data (a creating POST): check before sending it again.
 */
export class RetryableError extends KeapError {
  readonly reason: RetryReason;
  readonly outcomeUnknown: boolean;
  constructor(context: RequestContext, reason: RetryReason, outcomeUnknown: boolean, detail?: string) {
    const what =
      reason === 'timeout'
        ? 'timed out'
        : reason === 'network'
          ? `failed on the network${detail ? ` (${detail})` : ''}`
          : `failed with a server error (HTTP ${context.status ?? '5xx'})${detail ? `: "${detail}"` : ''}`;
    const advice = outcomeUnknown
      ? ' The request may have reached Keap: it was not retried automatically, because sending it again could ' +
        'create a duplicate. Check in Keap whether the record exists before sending it again.'
      : " Retry later (defer the job); if it keeps failing, check Keap's status page and the base URL setting.";
    super(`${where(context)} ${what} after ${context.attempts} attempt(s).${advice}`, context);
    this.reason = reason;
    this.outcomeUnknown = outcomeUnknown;
  }
}

/** Keap answered with something this client cannot read (HTML, malformed JSON, an unexpected shape or status). */
export class UnexpectedResponseError extends KeapError {
  /** A short description of what was wrong (never the body in full). */
  readonly problem: string;
  constructor(context: RequestContext, problem: string) {
    super(
      `Keap answered ${where(context)} with a response this client cannot read: ${problem}. This is usually ` +
        'a transient gateway fault; retry later. If it persists, Keap may have changed the endpoint: report it ' +
        'with the request id.',
      context,
    );
    this.problem = problem;
  }
}

/**
 * The quota ledger has no slot for this call within the wait budget. Defer the job through the queue
 * until `retryAt` (ledger clock, epoch ms) instead of sleeping. Nothing was reserved for it: slots
 * never leave the ledger's keeping, so a resumed (or duplicated) job acquires afresh.
 */
export class QuotaDeferredError extends KeapError {
  readonly retryAt: number;
  readonly reason: DeferReason;
  constructor(
    context: Pick<RequestContext, 'method' | 'path' | 'keyId' | 'tenant'>,
    retryAt: number,
    reason: DeferReason,
  ) {
    super(
      `No Keap quota is free for ${context.method} ${context.path} (tenant ${context.tenant}, key ${context.keyId}) ` +
        `within the wait budget (limit reached: ${reason}). Defer the job and run it again at ` +
        `${new Date(retryAt).toISOString()}.`,
      { ...context, attempts: 0 },
    );
    this.retryAt = retryAt;
    this.reason = reason;
  }
}

/** Keap handed back a page token this run already used: paging would loop forever, so it stopped. */
export class PagingLoopError extends KeapError {
  readonly pages: number;
  constructor(context: RequestContext, pages: number) {
    super(
      `Keap returned a page token for ${where(context)} that this run already used, after ${pages} page(s); ` +
        'paging stopped instead of looping forever. The records read so far were delivered; run a full ' +
        'read later, and report the endpoint if it repeats.',
      context,
    );
    this.pages = pages;
  }
}
