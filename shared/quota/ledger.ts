// Use case: the quota ledger. Every Keap call of every worker passes through `acquire`; the answer is
// the time slot(s) at which the caller may send, or a deferral. Built on one conditional put per item.
import { randomBytes } from 'node:crypto';
import { allocate, type Decision, type Priority, type SlotRequest } from './allocator.ts';
import { type LedgerConfig, MAX_KEY_ID_BYTES, parseLedgerSettings } from './config.ts';
import {
  LedgerContentionError,
  LedgerStateError,
  LedgerUnavailableError,
  QuotaLedgerError,
  QuotaRequestError,
  TooManyKeysError,
} from './errors.ts';
import { applyFeedback, type KeapQuotaReading } from './feedback.ts';
import {
  addToBucket,
  bucketCount,
  cloneState,
  DAY_MS,
  decodeState,
  emptyState,
  encodeState,
  type LedgerState,
  StateDecodeError,
  trimState,
} from './state.ts';
import { type KeyRegistry, type LedgerStore, MalformedItemError, type StoredItem } from './store.ts';

export type { Decision, DeferReason, Priority } from './allocator.ts';

export interface AcquireOptions {
  /** Keap tenant (application) the key belongs to. */
  tenant: string;
  /** A key id: a fingerprint or a name of the key, never the key itself (at most 24 bytes). */
  key: string;
  /** Slots wanted in this one write. Default 1. */
  count?: number;
  /** `bulk` (sync) may use only `bulkShare` of the budgets; `interactive` (writes) may use all. Default bulk. */
  priority?: Priority;
  /** Longest wait the caller accepts for its first slot, in ms. Default 2000. */
  waitBudgetMs?: number;
  /** When deferred, reserve the slot(s) anyway (within `holdHorizonMs`). Default false. */
  hold?: boolean;
  /** Spacing between this caller's own slots, in ms. Default 0 (the grid step). */
  minGapMs?: number;
  /** No slot before this ledger time. A request that is not needed soon waits to share a write. */
  notBefore?: number;
  /** Later slots of a multi-slot request lie within this many ms of the first. */
  spreadMs?: number;
}

export interface QuotaLedgerOptions {
  store: LedgerStore & Partial<KeyRegistry>;
  settings: unknown;
  /** This process's clock (tests and the benchmark inject skew here). Default Date.now. */
  clock?: () => number;
}

export interface WindowSnapshot {
  limit: number;
  used: number;
  left: number;
  /** Reservations already made for later in the window (held slots). */
  heldAhead: number;
  /** When the oldest counted call leaves the window (null when nothing is counted). */
  freesAt: number | null;
  /** Whether the binding limit is the tenant's. */
  tenant: boolean;
}

export interface QuotaSnapshot {
  item: string;
  scope: 'tenant' | 'key';
  tenant: string;
  at: number;
  minute: WindowSnapshot;
  day: WindowSnapshot & { resetsAt: number };
  coolDownUntil: number | null;
  coolDownReason: string | null;
  keys: Array<{ key: string; reservedAhead: number; nextSlot: number | null }>;
  clockCorrectionMs: number;
}

interface Cached {
  exists: boolean;
  version: number;
  /** Token of the write that produced this version. */
  writer: string;
  state: LedgerState;
}

interface Op {
  /** performance.now() by which the op must be written; until then it may wait to share a write. */
  flushBy: number;
  /** Applies the op to `s`; returns whether `s` changed. Called again on every retry. */
  run(s: LedgerState, now: number): boolean;
  done(): void;
  fail(err: unknown): void;
}

interface Queue {
  ops: Op[];
  busy: boolean;
  timer: NodeJS.Timeout | undefined;
}

const DEFAULT_WAIT_BUDGET_MS = 2_000;
/** A release waits this long for another write of this process to ride along with. */
const RELEASE_LINGER_MS = 500;
const TENANT_RE = /^[A-Za-z0-9._:@-]{1,100}$/;

export class QuotaLedger {
  readonly config: LedgerConfig;
  private readonly store: LedgerStore & Partial<KeyRegistry>;
  private readonly localClock: () => number;
  private correction = 0;
  private readonly cache = new Map<string, Cached>();
  private readonly queues = new Map<string, Queue>();
  private readonly registeredKeys = new Set<string>();
  /** Smoothed latency of a conditional write, ms. */
  private writeLatencyMs = 10;

  constructor(options: QuotaLedgerOptions) {
    this.config = parseLedgerSettings(options.settings);
    this.store = options.store;
    this.localClock = options.clock ?? Date.now;
  }

  /** The ledger clock: this process's clock, moved forward to the latest stamp other workers wrote. */
  now(): number {
    return this.localClock() + this.correction;
  }

  get clockCorrectionMs(): number {
    return this.correction;
  }

  /** The DynamoDB item that holds the bounds for this tenant and key. */
  itemFor(tenant: string, key: string): string {
    return this.config.quotaScope === 'tenant' ? `quota#tenant#${tenant}` : `quota#key#${tenant}#${key}`;
  }

  /**
   * Reserves slot(s) for Keap calls. `granted`: send at each slot (see `waitForSlot`). `held`: the
   * slots are yours but beyond your wait budget; come back at `retryAt`. `deferred`: nothing reserved.
   */
  async acquire(options: AcquireOptions): Promise<Decision> {
    const req = this.toRequest(options);
    const pk = this.itemFor(options.tenant, options.key);
    await this.ensureKeyRegistered(options.tenant, req.key);
    // A rejection costs no request: a cached view is never more restrictive than the stored state,
    // since other writers only add reservations, so a deferral decided on it stands.
    const cached = this.cache.get(pk);
    if (cached && !req.hold) {
      const trial = cloneState(cached.state);
      const now = this.now();
      trial.clk = Math.max(trial.clk, now);
      const c = this.config;
      trimState(trial, c.windowMs, c.bucketMs, c.cellMs);
      const d = allocate(trial, c, now, this.withLead(req, now));
      if (d.status === 'deferred') return d;
    }
    return new Promise<Decision>((resolve, reject) => {
      let decision: Decision | undefined;
      this.enqueue(pk, {
        flushBy: performance.now() + Math.max(0, req.notBefore - this.config.coalesceLeadMs - this.now()),
        run: (s, now) => {
          decision = allocate(s, this.config, now, this.withLead(req, now));
          return decision.status !== 'deferred';
        },
        done: () => (decision ? resolve(decision) : reject(new QuotaLedgerError('no decision was made'))),
        fail: reject,
      });
    });
  }

  /**
   * Tells the ledger what Keap's headers said for the call sent at `slot`, so it never believes more
   * is left than Keap does. Writes only when that lowers a cap.
   */
  async reportResponse(tenant: string, key: string, slot: number, reading: KeapQuotaReading): Promise<void> {
    this.checkIds(tenant, key);
    const pk = this.itemFor(tenant, key);
    const cached = this.cache.get(pk);
    if (cached) {
      const trial = cloneState(cached.state);
      if (!applyFeedback(trial, this.config, slot, reading)) return;
    }
    await this.mutate(pk, (s) => applyFeedback(s, this.config, slot, reading));
  }

  /**
   * Reports a 429 from Keap: writes a cool-down every worker obeys. `kind` is Keap's reason (spike
   * arrest or quota); `retryAt` when Keap's headers say capacity frees, if known.
   */
  async report429(tenant: string, key: string, kind: 'spike' | 'quota', retryAt?: number): Promise<void> {
    this.checkIds(tenant, key);
    const pk = this.itemFor(tenant, key);
    const c = this.config;
    await this.mutate(pk, (s, now) => {
      const until =
        kind === 'spike'
          ? now + c.spikeCoolDownMs
          : Math.max(now + c.spikeCoolDownMs, Math.min(retryAt ?? now + c.quotaCoolDownMs, now + DAY_MS));
      if (until <= s.coolUntil) return false;
      s.coolUntil = until;
      s.coolReason = kind;
      return true;
    });
  }

  /**
   * Aligns this process's clock with the other workers using the item. For `durationMs` it stamps the
   * item with its clock and reads it back at short random intervals, so every process that does the
   * same at the same time sees the others' stamps while they are fresh and moves its clock up to the
   * fastest one. For fleets on unsynchronised hosts (tests, benchmarks, laptops); Lambda hosts are
   * NTP-synchronised, and later reads and failed writes keep clocks aligned anyway. Costs about
   * `durationMs / 25` requests.
   */
  async syncClock(tenant: string, key: string, durationMs = 600): Promise<void> {
    this.checkIds(tenant, key);
    const pk = this.itemFor(tenant, key);
    const deadline = this.localClock() + durationMs;
    while (this.localClock() < deadline) {
      // The batch runner moves the item's clock up to ours; writing it is the point. Losing the race
      // to another prober is fine: we read its stamp on the way.
      await this.mutate(pk, () => true).catch((err: unknown) => {
        if (!(err instanceof LedgerContentionError)) throw err;
      });
      await new Promise((r) => setTimeout(r, 10 + Math.random() * 40));
      await this.fetch(pk);
      await new Promise((r) => setTimeout(r, Math.random() * 40));
    }
  }

  /**
   * Waits until `slot` on the ledger clock. Returns false if this process woke more than
   * `lateToleranceMs` after it: the slot is spent (sending now could crowd the next caller's slot);
   * give it back with `release` and acquire again.
   */
  async waitForSlot(slot: number): Promise<boolean> {
    // Sleep to just before the slot, then yield until it comes: timers alone fire a few ms late.
    for (;;) {
      const wait = slot - this.now();
      if (wait <= 0) break;
      if (wait > 4) await new Promise((r) => setTimeout(r, wait - 3));
      else await new Promise((r) => setImmediate(r));
    }
    return this.now() - slot <= this.config.lateToleranceMs;
  }

  /**
   * Gives back slots that were granted but will not be used (woken too late, job cancelled): they
   * stop counting against the minute and day budgets. Never release a slot whose call was sent.
   * Rides along with this process's next write when one comes within half a second.
   */
  async release(tenant: string, key: string, slots: readonly number[]): Promise<void> {
    this.checkIds(tenant, key);
    if (slots.length === 0) return;
    const pk = this.itemFor(tenant, key);
    const c = this.config;
    return new Promise<void>((resolve, reject) => {
      this.enqueue(pk, {
        flushBy: performance.now() + RELEASE_LINGER_MS,
        run: (s) => {
          let changed = false;
          for (const slot of slots) {
            const cell = Math.round(slot / c.cellMs);
            const cells = s.keys.get(key);
            const bucket = Math.floor(slot / c.bucketMs);
            const day = Math.floor(slot / DAY_MS);
            if (bucketCount(s, bucket) > 0) {
              addToBucket(s, bucket, -1);
              changed = true;
            }
            if ((s.days.get(day) ?? 0) > 0) {
              s.days.set(day, (s.days.get(day) ?? 0) - 1);
              changed = true;
            }
            // A past cell needs no spacing any more; a future one is free again.
            cells?.delete(cell);
          }
          return changed;
        },
        done: resolve,
        fail: reject,
      });
    });
  }

  /** Used and left per window for one tenant (and key, in key scope), read fresh from DynamoDB. */
  async snapshot(tenant: string, key = ''): Promise<QuotaSnapshot> {
    const pk = this.itemFor(tenant, key);
    const cached = await this.fetch(pk);
    const c = this.config;
    const now = this.now();
    const s = cloneState(cached.state);
    s.clk = Math.max(s.clk, now);
    trimState(s, c.windowMs, c.bucketMs, c.cellMs);
    const b = c.bucketMs;
    const nowBucket = Math.floor(now / b);
    let used = 0;
    let freesAt: number | null = null;
    for (let j = Math.floor((now - c.minuteWindowMs) / b); j <= nowBucket; j++) {
      const n = bucketCount(s, j);
      used += n;
      if (n > 0 && freesAt === null) freesAt = (j + 1) * b + c.windowMs;
    }
    let heldAhead = 0;
    for (let j = nowBucket + 1; j < s.bucketBase + s.counts.length; j++) heldAhead += bucketCount(s, j);
    const minuteFb = now < s.fbMinUntil && s.fbMinCap < c.itemMinuteLimit;
    const minuteLimit = minuteFb ? s.fbMinCap : c.itemMinuteLimit;
    const today = Math.floor(now / DAY_MS);
    const dayFb = s.fbDayIdx === today && s.fbDayCap < c.itemDayLimit;
    const dayLimit = dayFb ? s.fbDayCap : c.itemDayLimit;
    const dayAll = s.days.get(today) ?? 0;
    let dayAhead = 0;
    const dayEndBucket = Math.floor(((today + 1) * DAY_MS - 1) / b);
    for (let j = nowBucket + 1; j <= Math.min(dayEndBucket, s.bucketBase + s.counts.length); j++) {
      dayAhead += bucketCount(s, j);
    }
    const keys = [...s.keys.entries()].map(([id, cells]) => {
      const ahead = [...cells].filter((cell) => cell * c.cellMs > now);
      return {
        key: id,
        reservedAhead: ahead.length,
        nextSlot: ahead.length ? Math.min(...ahead) * c.cellMs : null,
      };
    });
    return {
      item: pk,
      scope: c.quotaScope,
      tenant,
      at: now,
      minute: {
        limit: minuteLimit,
        used,
        left: Math.max(0, minuteLimit - used - heldAhead),
        heldAhead,
        freesAt,
        tenant: minuteFb ? s.fbMinTenant : c.itemMinuteIsTenant,
      },
      day: {
        limit: dayLimit,
        used: dayAll - dayAhead,
        left: Math.max(0, dayLimit - dayAll),
        heldAhead: dayAhead,
        freesAt: (today + 1) * DAY_MS + c.marginMs,
        resetsAt: (today + 1) * DAY_MS + c.marginMs,
        tenant: dayFb ? s.fbDayTenant : c.itemDayIsTenant,
      },
      coolDownUntil: s.coolUntil > now ? s.coolUntil : null,
      coolDownReason: s.coolUntil > now ? s.coolReason : null,
      keys,
      clockCorrectionMs: this.correction,
    };
  }

  private toRequest(o: AcquireOptions): SlotRequest {
    this.checkIds(o.tenant, o.key);
    const count = o.count ?? 1;
    if (!Number.isInteger(count) || count < 1 || count > 100) {
      throw new QuotaRequestError('count', `must be an integer from 1 to 100; got ${String(o.count)}.`);
    }
    const waitBudgetMs = o.waitBudgetMs ?? DEFAULT_WAIT_BUDGET_MS;
    if (!(waitBudgetMs >= 0)) throw new QuotaRequestError('waitBudgetMs', 'must be zero or more.');
    const minGapMs = o.minGapMs ?? 0;
    if (!(minGapMs >= 0)) throw new QuotaRequestError('minGapMs', 'must be zero or more.');
    const priority = o.priority ?? 'bulk';
    if (priority !== 'bulk' && priority !== 'interactive') {
      throw new QuotaRequestError('priority', 'must be "bulk" or "interactive".');
    }
    return {
      key: o.key,
      count,
      priority,
      waitBudgetMs,
      hold: o.hold ?? false,
      minGapMs,
      notBefore: o.notBefore ?? 0,
      spreadMs: o.spreadMs ?? waitBudgetMs + count * Math.max(minGapMs, this.config.cellMs),
    };
  }

  /**
   * A slot is no use if it has passed by the time the write that reserves it returns: ask for none
   * earlier than about one write from now (bounded, so a slow store cannot push slots far out).
   */
  private withLead(req: SlotRequest, now: number): SlotRequest {
    const lead = Math.min(100, Math.ceil(1.5 * this.writeLatencyMs));
    return req.notBefore >= now + lead ? req : { ...req, notBefore: now + lead };
  }

  private checkIds(tenant: string, key: string): void {
    if (!TENANT_RE.test(tenant)) {
      throw new QuotaRequestError('tenant', 'must be 1-100 characters of letters, digits and . _ : @ -');
    }
    if (key.length === 0 || Buffer.byteLength(key) > MAX_KEY_ID_BYTES || !TENANT_RE.test(key)) {
      throw new QuotaRequestError(
        'key',
        `must be a key id of 1-${MAX_KEY_ID_BYTES} bytes (a fingerprint or name, never the key itself).`,
      );
    }
  }

  private async ensureKeyRegistered(tenant: string, key: string): Promise<void> {
    if (this.config.quotaScope !== 'key') return;
    const id = `${tenant}\u0000${key}`;
    if (this.registeredKeys.has(id)) return;
    const pk = `quota#keys#${tenant}`;
    if (!this.store.registerKey)
      throw new LedgerUnavailableError(pk, new Error('store cannot register keys'));
    let ok: boolean;
    try {
      ok = await this.store.registerKey(pk, key, this.config.maxKeysPerTenant);
    } catch (err) {
      throw new LedgerUnavailableError(pk, err);
    }
    if (!ok) throw new TooManyKeysError(tenant, this.config.maxKeysPerTenant);
    this.registeredKeys.add(id);
  }

  private mutate(pk: string, run: (s: LedgerState, now: number) => boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.enqueue(pk, { flushBy: 0, run, done: resolve, fail: reject });
    });
  }

  private enqueue(pk: string, op: Op): void {
    let q = this.queues.get(pk);
    if (!q) {
      q = { ops: [], busy: false, timer: undefined };
      this.queues.set(pk, q);
    }
    q.ops.push(op);
    this.pump(pk, q);
  }

  /** One write in flight per item per process; ops that arrive meanwhile share the next write. */
  private pump(pk: string, q: Queue): void {
    if (q.busy || q.ops.length === 0) return;
    const now = performance.now();
    let earliest = Number.POSITIVE_INFINITY;
    for (const op of q.ops) earliest = Math.min(earliest, op.flushBy);
    if (earliest > now) {
      if (q.timer) clearTimeout(q.timer);
      q.timer = setTimeout(
        () => {
          q.timer = undefined;
          this.pump(pk, q);
        },
        Math.ceil(earliest - now),
      );
      return;
    }
    if (q.timer) {
      clearTimeout(q.timer);
      q.timer = undefined;
    }
    const batch = q.ops;
    q.ops = [];
    q.busy = true;
    this.runBatch(pk, batch)
      .then(
        () => {
          for (const op of batch) op.done();
        },
        (err: unknown) => {
          for (const op of batch) op.fail(err);
        },
      )
      .finally(() => {
        q.busy = false;
        this.pump(pk, q);
      });
  }

  private async runBatch(pk: string, batch: Op[]): Promise<void> {
    const c = this.config;
    let base = this.cache.get(pk) ?? (await this.fetch(pk));
    for (let attempt = 1; attempt <= c.maxContentionRetries; attempt++) {
      const now = this.now();
      const work = cloneState(base.state);
      work.clk = Math.max(work.clk, now);
      trimState(work, c.windowMs, c.bucketMs, c.cellMs);
      let changed = false;
      for (const op of batch) if (op.run(work, now)) changed = true;
      if (!changed) return;
      const token = randomBytes(6).toString('base64url');
      const next: StoredItem = { version: base.version + 1, writer: token, state: encodeState(work) };
      let outcome: Awaited<ReturnType<LedgerStore['put']>>;
      const started = performance.now();
      try {
        outcome = await this.store.put(pk, next, base.exists ? base.version : undefined);
        this.writeLatencyMs = 0.8 * this.writeLatencyMs + 0.2 * (performance.now() - started);
      } catch (err) {
        // The write may or may not have happened: our token on the stored item says which.
        const current = await this.fetch(pk);
        if (current.exists && current.writer === token) return;
        throw new LedgerUnavailableError(pk, err);
      }
      if (outcome.ok) {
        this.cache.set(pk, { exists: true, version: next.version, writer: token, state: work });
        return;
      }
      base = outcome.current ? this.adopt(pk, outcome.current) : await this.fetch(pk);
      // First retry at once on the state we just learned; then jittered exponential backoff.
      if (attempt > 1)
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(250, 10 * 2 ** attempt)));
    }
    throw new LedgerContentionError(pk, c.maxContentionRetries);
  }

  /** Reads the item fresh (consistent read) and caches it. */
  private async fetch(pk: string): Promise<Cached> {
    let item: StoredItem | undefined;
    try {
      item = await this.store.read(pk);
    } catch (err) {
      if (err instanceof MalformedItemError) throw new LedgerStateError(pk, err.message);
      throw new LedgerUnavailableError(pk, err);
    }
    if (!item) {
      const empty: Cached = { exists: false, version: 0, writer: '', state: emptyState() };
      this.cache.set(pk, empty);
      return empty;
    }
    return this.adopt(pk, item);
  }

  private adopt(pk: string, item: StoredItem): Cached {
    let state: LedgerState;
    try {
      state = decodeState(item.state);
    } catch (err) {
      if (err instanceof StateDecodeError) throw new LedgerStateError(pk, err.message);
      throw err;
    }
    this.observeClock(state.clk);
    const cached: Cached = { exists: true, version: item.version, writer: item.writer, state };
    this.cache.set(pk, cached);
    return cached;
  }

  /** Another worker stamped `stamp` before we read it: our clock is at least that far along. */
  private observeClock(stamp: number): void {
    const ahead = stamp - this.now();
    if (ahead > 0) this.correction = Math.min(this.config.maxClockCorrectionMs, this.correction + ahead);
  }
}
