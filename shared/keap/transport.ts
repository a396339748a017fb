// Adapter: HTTP to Keap through the quota ledger. Every request takes a ledger slot first, waits for
// it, reports the response's x-keap-* headers (and any 429) back, and maps failures to typed errors.
// The API key lives only in a private field and in the outgoing header; nothing else ever sees it.
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';
import { Agent, type Dispatcher } from 'undici';
import type { Log } from '../log/index.ts';
import {
  type AcquireOptions,
  type Admission,
  type Decision,
  type KeapQuotaReading,
  type Priority,
  parseKeapQuotaHeaders,
} from '../quota/index.ts';
import {
  ConflictError,
  type KeapError,
  type KeapErrorDetail,
  KeyRejectedError,
  NotFoundError,
  PermissionError,
  QuotaDeferredError,
  RateLimitedError,
  type RateLimitKind,
  type RequestContext,
  RetryableError,
  UnexpectedResponseError,
  ValidationError,
} from './errors.ts';
import type { KeapClientSettings } from './settings.ts';

/** The part of the quota ledger the client uses (`QuotaLedger` satisfies it). */
export interface QuotaLedgerPort {
  acquire(options: AcquireOptions): Promise<Decision>;
  /** Waits for the slot; with the item, first reads it if this process's view is old (see the ledger). */
  waitForSlot(slot: number, item?: { tenant: string; key: string }): Promise<boolean>;
  reportResponse(tenant: string, key: string, slot: number, reading: KeapQuotaReading): Promise<void>;
  report429(tenant: string, key: string, kind: 'spike' | 'quota', retryAt?: number): Promise<void>;
  /** Gives back reserved slots that will not be used (optional: a ledger without it just loses them). */
  release?(tenant: string, key: string, slots: readonly number[]): Promise<void>;
  /** The last check before a request is written (optional: without it, only the wake-up check applies). */
  admit?(tenant: string, key: string, slot: number): Admission;
  now(): number;
}

/** The ledger refused a request at the last moment (late, cool-down, clock): it was never written. */
class SendRefused extends Error {
  override name = 'SendRefused';
  readonly admission: Admission;
  constructor(admission: Admission) {
    super(admission.ok ? 'admitted' : admission.detail);
    this.admission = admission;
  }
}

/**
 * Keep-alive connections for every transport of this process. Requests pass through a per-request
 * guard that asks the ledger, when undici is about to write the request on a connected socket (after
 * any connect or TLS handshake), whether it may still go: the last moment JavaScript can decide.
 */
// undici's keep-alive defaults (4 s idle unless the server says more): an idle socket is never kept
// past the server's own timeout, so a request never goes out on a socket the server just closed.
const AGENT = new Agent();

export function guardedDispatcher(check: () => Admission, onAdmit: (a: Admission) => void): Dispatcher {
  return AGENT.compose(
    (dispatch) => (opts, handler) =>
      dispatch(
        opts,
        new Proxy(handler, {
          get(target, prop, receiver) {
            const value = Reflect.get(target, prop, receiver) as unknown;
            if ((prop !== 'onRequestStart' && prop !== 'onConnect') || typeof value !== 'function') {
              return typeof value === 'function' ? value.bind(target) : value;
            }
            return (...args: unknown[]) => {
              const a = check();
              onAdmit(a);
              if (!a.ok) {
                const err = new SendRefused(a);
                if (prop === 'onConnect') return (args[0] as (e: Error) => void)(err);
                return (args[0] as { abort(e: Error): void }).abort(err);
              }
              return (value as (...a: unknown[]) => unknown).apply(target, args);
            };
          },
        }),
      ),
  );
}

/** The client's logger: the project's one log port. No field ever holds a header or the key. */
export type KeapLogger = Log;

const noop = (): void => {};
export const silentLogger: KeapLogger = { debug: noop, info: noop, warn: noop, error: noop };

/**
 * Ledger slots reserved for a run of calls (a paging job): used in order, each one waited for; a slot
 * the caller woke too late for is spent and skipped. When empty, the next acquire reserves `nextCount`
 * slots spaced `minGapMs` apart.
 */
export class SlotPool {
  readonly slots: number[];
  nextCount = 1;
  minGapMs = 0;
  constructor(initial: readonly number[] = []) {
    this.slots = [...initial].sort((a, b) => a - b);
  }
}

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface CallSpec {
  method: HttpMethod;
  /** Path below the base URL, ids already encoded. Logged and put in errors; the query never is. */
  path: string;
  /** An array value repeats the parameter (`fields=a&fields=b`, an exploded array in OpenAPI). */
  query?: Record<string, string | number | readonly string[] | undefined>;
  body?: unknown;
  /** `safe`: reads, upserts, tag changes, retried on transient failures. `create`: never blindly retried. */
  retry: 'safe' | 'create';
  priority: Priority;
  waitBudgetMs: number;
  pool?: SlotPool;
}

export interface CallResult {
  status: number;
  json: unknown;
  requestId: string | undefined;
  /** HTTP requests this call sent (including retried ones). */
  attempts: number;
  /** Duration of the last (successful) request, ms. */
  latencyMs: number;
}

/** Counters for operators and the benchmark. */
export interface TransportStats {
  requests: number;
  retries: number;
  rateLimited: number;
  acquires: number;
  slotsGranted: number;
  slotsSpent: number;
  deferred: number;
  /** Requests the ledger's last check refused before they were written (late, cool-down, clock). */
  refused: number;
  /** Lateness (ms after the slot) of admitted requests at that check: the largest seen. */
  maxSendLatenessMs: number;
}

type Outcome =
  | { type: 'ok'; status: number; json: unknown; requestId: string | undefined }
  | { type: 'refused'; admission: Admission }
  | { type: 'limited'; kind: RateLimitKind; retryAt: number | undefined; context: RequestContext }
  | { type: 'failed'; error: KeapError; retryable: boolean };

const MAX_SLOT_TRIES = 50;
const MAX_SLOT_LEAD_MS = 100;

export class Transport {
  readonly #apiKey: string;
  /** Moving average of ledger acquire latency, ms. */
  #acquireLatency = 5;
  readonly keyId: string;
  readonly tenant: string;
  readonly settings: KeapClientSettings;
  readonly ledger: QuotaLedgerPort;
  readonly logger: KeapLogger;
  readonly stats: TransportStats = {
    requests: 0,
    retries: 0,
    rateLimited: 0,
    acquires: 0,
    slotsGranted: 0,
    slotsSpent: 0,
    deferred: 0,
    refused: 0,
    maxSendLatenessMs: 0,
  };

  constructor(o: {
    apiKey: string;
    keyId: string;
    tenant: string;
    settings: KeapClientSettings;
    ledger: QuotaLedgerPort;
    logger: KeapLogger;
  }) {
    this.#apiKey = o.apiKey;
    this.keyId = o.keyId;
    this.tenant = o.tenant;
    this.settings = o.settings;
    this.ledger = o.ledger;
    this.logger = o.logger;
  }

  toJSON(): Record<string, unknown> {
    return { tenant: this.tenant, keyId: this.keyId, baseUrl: this.settings.baseUrl };
  }

  [inspect.custom](): string {
    return `Transport { tenant: '${this.tenant}', keyId: '${this.keyId}' }`;
  }

  /** Sends one logical call: slot, request, feedback, and the bounded retries its kind allows. */
  async call(spec: CallSpec): Promise<CallResult> {
    const s = this.settings;
    const started = performance.now();
    const pool = spec.pool ?? new SlotPool();
    let attempts = 0;
    let limited = 0;
    let refused = 0;
    for (;;) {
      const slot = await this.#takeSlot(spec, pool);
      attempts++;
      const t0 = performance.now();
      const outcome = await this.#send(spec, slot, attempts);
      const latencyMs = performance.now() - t0;
      if (outcome.type === 'refused') {
        // Never written: the slot goes back to the budget (its time is gone), the call takes the next one.
        attempts--;
        refused++;
        this.stats.refused++;
        this.stats.slotsSpent++;
        this.release([slot]);
        const a = outcome.admission;
        this.logger.warn('The ledger refused a Keap request at the last moment; it was not sent', {
          method: spec.method,
          path: spec.path,
          keyId: this.keyId,
          tenant: this.tenant,
          reason: a.ok ? 'none' : a.reason,
          lateMs: Math.round(a.lateMs),
        });
        if (!a.ok && a.reason === 'cool-down') this.release(pool.slots.splice(0));
        if (refused >= MAX_SLOT_TRIES || (!a.ok && a.reason === 'clock')) {
          throw new QuotaDeferredError(
            { method: spec.method, path: spec.path, keyId: this.keyId, tenant: this.tenant },
            this.ledger.now() + 1_000,
            a.ok || a.reason === 'late' || a.reason === 'early' ? 'spike' : 'cool-down',
          );
        }
        continue;
      }
      if (outcome.type === 'ok') {
        return {
          status: outcome.status,
          json: outcome.json,
          requestId: outcome.requestId,
          attempts,
          latencyMs,
        };
      }
      if (outcome.type === 'limited') {
        this.stats.rateLimited++;
        limited++;
        // Slots reserved before the cool-down would break it: give them back unused.
        this.release(pool.slots.splice(0));
        await this.ledger.report429(this.tenant, this.keyId, outcome.kind, outcome.retryAt);
        this.logger.warn('Keap rate-limited a request; the ledger was told', {
          ...this.#fields(outcome.context),
          kind: outcome.kind,
          rateLimitedTimes: limited,
        });
        if (limited > s.max429Retries) {
          const fallback = this.ledger.now() + (outcome.kind === 'spike' ? 1_000 : 60_000);
          throw new RateLimitedError(outcome.context, outcome.kind, outcome.retryAt ?? fallback);
        }
        continue;
      }
      const err = outcome.error;
      if (!outcome.retryable || spec.retry !== 'safe') throw err;
      const failures = attempts - limited;
      const delay = backoff(failures, s.backoffBaseMs, s.backoffMaxMs);
      const elapsed = performance.now() - started;
      if (failures >= s.maxAttempts || elapsed + delay > s.retryBudgetMs) throw err;
      this.stats.retries++;
      this.logger.warn('Retrying a Keap request after a transient failure', {
        method: spec.method,
        path: spec.path,
        status: err.status,
        attempt: attempts,
        keyId: this.keyId,
        tenant: this.tenant,
        error: err.name,
        delayMs: Math.round(delay),
      });
      await sleep(delay);
    }
  }

  /** Returns unused reserved slots to the ledger, off the caller's path; a failure only costs budget. */
  release(slots: readonly number[]): void {
    if (slots.length === 0 || !this.ledger.release) return;
    this.ledger.release(this.tenant, this.keyId, slots).catch((err: unknown) => {
      this.logger.warn('Could not give unused ledger slots back', {
        keyId: this.keyId,
        tenant: this.tenant,
        slots: slots.length,
        error: err instanceof Error ? err.name : 'unknown',
      });
    });
  }

  /** The next usable slot: from the pool, else from a new acquire. Throws QuotaDeferredError. */
  async #takeSlot(spec: CallSpec, pool: SlotPool): Promise<number> {
    for (let i = 0; i < MAX_SLOT_TRIES; i++) {
      const reserved = pool.slots.shift();
      if (reserved !== undefined) {
        if (await this.ledger.waitForSlot(reserved, { tenant: this.tenant, key: this.keyId }))
          return reserved;
        // Woke too late to send safely: the slot goes back to the budget.
        this.stats.slotsSpent++;
        this.release([reserved]);
        continue;
      }
      this.stats.acquires++;
      // A slot at "now" would be past by the time the ledger's write returns (and so spent): ask for
      // one at least the recent acquire latency ahead.
      const lead = Math.min(MAX_SLOT_LEAD_MS, Math.ceil(this.#acquireLatency * 1.5));
      const t0 = performance.now();
      const d = await this.ledger.acquire({
        tenant: this.tenant,
        key: this.keyId,
        count: Math.max(1, Math.min(100, pool.nextCount)),
        priority: spec.priority,
        waitBudgetMs: spec.waitBudgetMs,
        // Slots never leave the ledger's keeping: a deferred call reserves nothing and asks again.
        hold: false,
        minGapMs: pool.minGapMs,
        notBefore: this.ledger.now() + lead,
      });
      this.#acquireLatency = 0.8 * this.#acquireLatency + 0.2 * (performance.now() - t0);
      if (d.status === 'granted') {
        this.stats.slotsGranted += d.slots.length;
        pool.slots.push(...d.slots);
        continue;
      }
      this.stats.deferred++;
      // Callers never ask to hold; should a ledger hold anyway, the slots go straight back.
      if (d.status === 'held') this.release(d.slots);
      this.logger.info('The quota ledger deferred a Keap call', {
        method: spec.method,
        path: spec.path,
        keyId: this.keyId,
        tenant: this.tenant,
        reason: d.reason,
        retryAt: d.retryAt,
      });
      throw new QuotaDeferredError(
        { method: spec.method, path: spec.path, keyId: this.keyId, tenant: this.tenant },
        d.retryAt,
        d.reason,
      );
    }
    // Woke too late for every slot granted in a row (an overloaded event loop): let the job come back.
    throw new QuotaDeferredError(
      { method: spec.method, path: spec.path, keyId: this.keyId, tenant: this.tenant },
      this.ledger.now() + 1_000,
      'spike',
    );
  }

  async #send(spec: CallSpec, slot: number, attempt: number): Promise<Outcome> {
    const s = this.settings;
    const headers: Record<string, string> = {
      'X-Keap-API-Key': this.#apiKey,
      Accept: 'application/json',
      'User-Agent': s.userAgent,
    };
    let body: string | undefined;
    if (spec.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(spec.body);
    }
    const ctx: RequestContext = {
      method: spec.method,
      path: spec.path,
      keyId: this.keyId,
      tenant: this.tenant,
      attempts: attempt,
    };
    const t0 = performance.now();
    const admit = this.ledger.admit?.bind(this.ledger);
    // A request counts once it is written: with the last-moment check, when that check lets it go.
    if (!admit) this.stats.requests++;
    let res: Response | undefined;
    let text: string;
    try {
      res = await fetch(this.#url(spec.path, spec.query), {
        method: spec.method,
        headers,
        body,
        signal: AbortSignal.timeout(s.timeoutMs),
        ...(admit
          ? {
              dispatcher: guardedDispatcher(
                () => admit(this.tenant, this.keyId, slot),
                (a) => {
                  if (!a.ok) return;
                  this.stats.requests++;
                  this.stats.maxSendLatenessMs = Math.max(this.stats.maxSendLatenessMs, a.lateMs);
                },
              ),
            }
          : {}),
      } as RequestInit);
      text = await res.text();
    } catch (err) {
      const refusal = refusedBy(err);
      if (refusal) {
        return { type: 'refused', admission: refusal };
      }
      if (res) {
        ctx.status = res.status;
        ctx.requestId = res.headers.get('x-request-id') ?? undefined;
        await this.#report(slot, res.headers, ctx);
      }
      const timeout = isTimeout(err);
      const code = networkCode(err);
      // A refused connection never reached Keap: even a create may be sent again.
      const notSent = !res && (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN');
      const outcomeUnknown = spec.retry === 'create' && !notSent;
      this.logger.debug('Keap request failed without a readable response', {
        ...this.#fields(ctx),
        durationMs: Math.round(performance.now() - t0),
        error: timeout ? 'timeout' : (code ?? 'network'),
      });
      const detail = timeout ? undefined : this.#redact(code ?? errorText(err));
      return {
        type: 'failed',
        error: new RetryableError(ctx, timeout ? 'timeout' : 'network', outcomeUnknown, detail),
        retryable: true,
      };
    }
    ctx.status = res.status;
    ctx.requestId = res.headers.get('x-request-id') ?? undefined;
    await this.#report(slot, res.headers, ctx);
    this.logger.debug('Keap responded', {
      ...this.#fields(ctx),
      durationMs: Math.round(performance.now() - t0),
    });
    return this.#classify(spec, res, text, ctx);
  }

  #classify(spec: CallSpec, res: Response, text: string, ctx: RequestContext): Outcome {
    const status = res.status;
    const body = readBody(text, res.headers.get('content-type'));
    if (status >= 200 && status < 300) {
      if (body.kind === 'json' || body.kind === 'empty') {
        return { type: 'ok', status, json: body.json, requestId: ctx.requestId };
      }
      return {
        type: 'failed',
        error: new UnexpectedResponseError(ctx, describeBody(body.kind, status)),
        retryable: spec.retry === 'safe',
      };
    }
    const info = errorInfo(body.json);
    const message = info.message === undefined ? undefined : this.#redact(info.message);
    if (status === 429) {
      const kind = rateLimitKind(info, res.headers);
      return { type: 'limited', kind, retryAt: quotaRetryAt(kind, res.headers), context: ctx };
    }
    if (status === 401)
      return { type: 'failed', error: new KeyRejectedError(ctx, message), retryable: false };
    if (status === 403) return { type: 'failed', error: new PermissionError(ctx, message), retryable: false };
    if (status === 404) return { type: 'failed', error: new NotFoundError(ctx, message), retryable: false };
    if (status === 409) return { type: 'failed', error: new ConflictError(ctx, message), retryable: false };
    if (status === 400 || status === 422) {
      const details = info.details.map((d) => ({
        domain: d.domain === undefined ? undefined : this.#redact(d.domain),
        resource: d.resource === undefined ? undefined : this.#redact(d.resource),
      }));
      return { type: 'failed', error: new ValidationError(ctx, message, details), retryable: false };
    }
    if (status >= 500) {
      const detail = message ?? (body.kind === 'html' ? 'an HTML error page' : undefined);
      return {
        type: 'failed',
        error: new RetryableError(ctx, 'server', spec.retry === 'create', detail),
        retryable: true,
      };
    }
    return {
      type: 'failed',
      error: new UnexpectedResponseError(ctx, `HTTP ${status}${message ? ` ("${message}")` : ''}`),
      retryable: false,
    };
  }

  async #report(slot: number, headers: Headers, ctx: RequestContext): Promise<void> {
    try {
      await this.ledger.reportResponse(this.tenant, this.keyId, slot, parseKeapQuotaHeaders(headers));
    } catch (err) {
      // The response is already here; the ledger fails closed on the next acquire if it is down.
      this.logger.warn('Could not report Keap quota headers to the ledger', {
        ...this.#fields(ctx),
        error: err instanceof Error ? err.name : 'unknown',
      });
    }
  }

  #fields(ctx: RequestContext): Record<string, unknown> {
    return {
      method: ctx.method,
      path: ctx.path,
      status: ctx.status,
      attempt: ctx.attempts,
      keyId: ctx.keyId,
      tenant: ctx.tenant,
      requestId: ctx.requestId,
    };
  }

  #url(path: string, query: CallSpec['query']): string {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const item of v) params.append(k, String(item));
      else params.set(k, String(v));
    }
    const qs = params.toString();
    return `${this.settings.baseUrl}${path}${qs ? `?${qs}` : ''}`;
  }

  /** Removes the key from text that came from elsewhere (a server's message, a socket error). */
  #redact(text: string): string {
    const clean = text.split(this.#apiKey).join('[redacted]').replace(/\s+/g, ' ').trim();
    return clean.length > 300 ? `${clean.slice(0, 297)}...` : clean;
  }
}

/** Equal-jitter exponential backoff: half fixed, half random. */
function backoff(failures: number, baseMs: number, maxMs: number): number {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.max(0, failures - 1));
  return cap / 2 + Math.random() * (cap / 2);
}

type BodyKind = 'json' | 'empty' | 'html' | 'malformed';

function readBody(text: string, contentType: string | null): { kind: BodyKind; json: unknown } {
  const trimmed = text.trim();
  if (trimmed === '') return { kind: 'empty', json: undefined };
  if (trimmed.startsWith('<') || (contentType ?? '').toLowerCase().includes('html')) {
    return { kind: 'html', json: undefined };
  }
  try {
    return { kind: 'json', json: JSON.parse(trimmed) as unknown };
  } catch {
    return { kind: 'malformed', json: undefined };
  }
}

function describeBody(kind: BodyKind, status: number): string {
  return kind === 'html'
    ? `an HTML page instead of JSON (HTTP ${status})`
    : `malformed JSON (HTTP ${status})`;
}

interface ErrorInfo {
  message: string | undefined;
  details: KeapErrorDetail[];
  faultCode: string | undefined;
  code: string | undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : undefined;
}

/** Reads Keap's error bodies: v2 `{code,message,status,details}`, v1 `{message}`, Apigee `{fault}`. */
function errorInfo(json: unknown): ErrorInfo {
  const root = obj(json);
  const fault = obj(root?.fault);
  const details: KeapErrorDetail[] = [];
  if (Array.isArray(root?.details)) {
    for (const d of root.details) {
      const o = obj(d);
      if (o) details.push({ domain: str(o.domain), resource: str(o.resource) });
      else if (typeof d === 'string') details.push({ resource: d });
    }
  }
  return {
    message: str(root?.message) ?? str(fault?.faultstring),
    details,
    faultCode: str(obj(fault?.detail)?.errorcode),
    code: str(root?.code),
  };
}

function headerNumber(h: Headers, name: string): number | undefined {
  const raw = h.get(name);
  if (raw === null || raw.trim() === '') return undefined;
  const n = Number(raw);
  return Number.isFinite(n) ? n : undefined;
}

/** Spike arrest or quota, from either body shape; failing that, from the headers (quota when unsure). */
function rateLimitKind(info: ErrorInfo, h: Headers): RateLimitKind {
  const fault = info.faultCode ?? '';
  if (/SpikeArrest/i.test(fault)) return 'spike';
  if (/Quota/i.test(fault)) return 'quota';
  if (/quota/i.test(info.message ?? '')) return 'quota';
  if (/spike/i.test(info.message ?? '')) return 'spike';
  const available = [
    'x-keap-product-throttle-available',
    'x-keap-product-quota-available',
    'x-keap-tenant-throttle-available',
    'x-keap-tenant-quota-available',
  ].map((n) => headerNumber(h, n));
  if (available.some((a) => a === 0)) return 'quota';
  if (available.some((a) => a !== undefined && a > 0)) return 'spike';
  return 'quota';
}

/** When a quota 429 frees: the day's expiry when a day quota is spent; otherwise unknown (the ledger decides). */
function quotaRetryAt(kind: RateLimitKind, h: Headers): number | undefined {
  if (kind !== 'quota') return undefined;
  for (const prefix of ['x-keap-product-quota', 'x-keap-tenant-quota']) {
    const available = headerNumber(h, `${prefix}-available`);
    const expiry = headerNumber(h, `${prefix}-expiry-time`);
    if (available === 0 && expiry !== undefined && expiry > 0) return expiry < 1e12 ? expiry * 1000 : expiry;
  }
  return undefined;
}

function refusedBy(err: unknown): Admission | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e instanceof Error; i++) {
    if (e instanceof SendRefused) return e.admission;
    e = e.cause;
  }
  return undefined;
}

function isTimeout(err: unknown): boolean {
  return err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
}

function networkCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e instanceof Error; i++) {
    const code = (e as Error & { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = e.cause;
  }
  return undefined;
}

function errorText(err: unknown): string {
  if (!(err instanceof Error)) return 'unknown error';
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `${err.message}${cause}`;
}
