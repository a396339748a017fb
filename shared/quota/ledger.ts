// Use case: the quota ledger. Every Keap call of every worker passes through `acquire`; the answer is
// the time slot(s) at which the caller may send, or a deferral. Built on one conditional put per item.
import { randomBytes } from 'node:crypto';
import {
  allocate,
  type Decision,
  type Priority,
  type SlotRequest,
  spacingCells,
  spikeSpacingMs,
} from './allocator.ts';
import { ClockOffsetEstimate } from './clock.ts';
import { type LedgerConfig, MAX_KEY_ID_BYTES, parseLedgerSettings } from './config.ts';
import {
  ClockSkewError,
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
  /** Send timing every writer reported within the last HEALTH_PERIOD_MS (null: none). */
  timing: {
    since: number;
    sendLatenessP99Ms: number;
    sendLatenessMaxMs: number;
    refused: number;
    /** Smallest gap seen between another worker's slot and the next call of the key (null: no hand-over). */
    handoverGapMinMs: number | null;
    toleranceMs: number;
    spikeMarginMs: number;
  } | null;
}

/** The answer of `admit`, the check made at the last moment before a request is written. */
export type Admission =
  | { ok: true; lateMs: number }
  | { ok: false; reason: 'late' | 'early' | 'cool-down' | 'clock'; lateMs: number; detail: string };

/** Send lateness (ms after the slot, at the last check before the request is written), for operators. */
export interface SendLateness {
  count: number;
  refused: number;
  p50: number;
  p99: number;
  max: number;
  /** The most the ledger accepts (lateToleranceMs), and the spike margin it eats into. */
  toleranceMs: number;
  spikeMarginMs: number;
  /** Calls sent right after another worker's slot of the key, and the smallest such gap (ms; null: none). */
  handovers: number;
  handoverGapMinMs: number | null;
}

interface Cached {
  /** performance.now() when this view was read or written. */
  at: number;
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
  /**
   * How old (ms) a view may be for an unchanged answer (a deferral) to stand without a fresh read.
   * Absent: FRESH_VIEW_MS.
   */
  staleOkMs?(): number;
  done(): void;
  fail(err: unknown): void;
}

interface Queue {
  ops: Op[];
  busy: boolean;
  timer: NodeJS.Timeout | undefined;
}

const DEFAULT_WAIT_BUDGET_MS = 2_000;
/** A view read or written this recently is the stored state, for a deferral's purposes. */
const FRESH_VIEW_MS = 20;
/** Key scope: how often a key in use refreshes its entry in the tenant's key set. */
const KEY_REFRESH_MS = 600_000;
/** A worker that failed closed on its clock reads the item again this often to see if it is fixed. */
const CLOCK_REPROBE_MS = 5_000;
/** Clock alignment: the watch's spacing, reads per packed round, such rounds at most, the width aimed for. */
const ALIGN_WATCH_MS = 20;
const ALIGN_PROBES = 8;
const ALIGN_ROUNDS = 2;
const ALIGN_TARGET_MS = 50;
/** Alignment sets the clock only from an estimate at most this wide (error at most half of it). */
const ALIGN_MAX_WIDTH_MS = 100;
/** A wall-clock jump of more than this against the monotonic clock is a step: re-check before writing. */
const CLOCK_STEP_MS = 100;
/** Send timing in the item covers this long; older figures are replaced by the next writer's. */
const HEALTH_PERIOD_MS = 300_000;
/** A call this long or less after another worker's slot of the key is a hand-over (ms). */
const HANDOVER_WINDOW_MS = 2_000;
const TENANT_RE = /^[A-Za-z0-9._:@-]{1,100}$/;

/**
 * DynamoDB's offset from this machine's clock (Date.now), once a ledger on that clock measured it:
 * every later ledger of the process starts aligned (a Lambda has one; a test process has many).
 */
let processAlignment: { lo: number; hi: number } | undefined;

export class QuotaLedger {
  readonly config: LedgerConfig;
  private readonly store: LedgerStore & Partial<KeyRegistry>;
  private readonly localClock: () => number;
  private correction = 0;
  private readonly cache = new Map<string, Cached>();
  private readonly queues = new Map<string, Queue>();
  /** Key scope: when this process last registered each key (refreshed daily and every 10 minutes). */
  private readonly registeredKeys = new Map<string, number>();
  /** Smoothed latency of a conditional write, ms. */
  private writeLatencyMs = 10;
  private readonly offset = new ClockOffsetEstimate();
  /** The one alignment with DynamoDB's clock (alignClock): running, or done. */
  private aligning: Promise<void> | undefined;
  private alignedAt = Number.NaN;
  private alignBusy = false;
  /** Whether this ledger reads the machine's clock (not an injected one): it shares the alignment. */
  private readonly defaultClock: boolean;
  private lastClockProbe = Number.NEGATIVE_INFINITY;
  /** localClock() - performance.now() at DynamoDB's last answer (NaN before the first). */
  private wallMinusMonotonic = Number.NaN;
  private readonly lateness: number[] = [];
  private latenessCount = 0;
  private refusedCount = 0;
  private handovers = 0;
  private handoverGapMin = Number.POSITIVE_INFINITY;
  /** Send timing not yet written to the item (rides along with this process's next write). */
  private pendingHealth = { late: [] as number[], refused: 0, gapMin: Number.POSITIVE_INFINITY };
  /** This process's latest call per item and key: its slot and when it left (its own clock, uncorrected). */
  private readonly lastSend = new Map<string, { slot: number; local: number }>();
  /** Slots this process gave back lately (not calls, though the cached view may still hold them). */
  private readonly released = new Map<string, number>();
  /** Slots this process sent (admitted), per item and key: not hand-overs. */
  private readonly sentSlots = new Map<string, Set<number>>();
  /** Slots granted to this process and neither admitted (sent) nor released, per item and key. */
  private readonly owned = new Map<string, Set<number>>();
  /** Fresh reads in flight before held slots, per item. */
  private readonly refreshing = new Map<string, Promise<Cached>>();

  constructor(options: QuotaLedgerOptions) {
    this.config = parseLedgerSettings(options.settings);
    this.store = options.store;
    this.localClock = options.clock ?? Date.now;
    this.defaultClock = options.clock === undefined;
    // The store's answers carry DynamoDB's Date: a clock clearly off from it fails closed.
    this.store.onServerDate = (dateMs, sentPerf, receivedPerf) => {
      const ledgerNow = this.now();
      const perfNow = performance.now();
      this.offset.add({
        dateMs,
        sentAt: ledgerNow - (perfNow - sentPerf),
        receivedAt: ledgerNow - (perfNow - receivedPerf),
      });
      this.wallMinusMonotonic = this.localClock() - perfNow;
    };
  }

  /**
   * Whether this process's wall clock stepped (NTP, a VM resumed, a hand-set clock) since DynamoDB's
   * last answer: its evidence about the clock is stale, and no write may go out before a fresh answer.
   */
  private clockStepped(): boolean {
    const d = this.localClock() - performance.now();
    return Number.isFinite(this.wallMinusMonotonic) && Math.abs(d - this.wallMinusMonotonic) > CLOCK_STEP_MS;
  }

  /** Throws ClockSkewError when DynamoDB's Date headers show this clock off by more than maxClockSkewMs. */
  checkClock(): void {
    const excess = this.offset.excess(this.config.maxClockSkewMs);
    if (excess !== 0) throw new ClockSkewError(excess, this.config.maxClockSkewMs);
  }

  /**
   * checkClock, but a worker that failed closed looks again (one read, at most every
   * CLOCK_REPROBE_MS): once its clock is fixed (NTP stepped it, the VM resumed) it works again.
   */
  private async ensureClock(pk: string): Promise<void> {
    await this.alignTo(pk);
    if (this.clockStepped()) {
      this.lastClockProbe = performance.now();
      await this.fetch(pk);
    }
    if (this.offset.excess(this.config.maxClockSkewMs) === 0) return;
    if (performance.now() - this.lastClockProbe >= CLOCK_REPROBE_MS) {
      this.lastClockProbe = performance.now();
      await this.fetch(pk);
    }
    this.checkClock();
  }

  /**
   * Sets this process's clock to DynamoDB's before its first call (once; `alignClock`), so that
   * workers that start apart agree to a few ms without each other's stamps (a stamp is only as fresh
   * as the last write of the fastest clock, which under a shared backlog can be seconds old). The
   * `Date` header has whole seconds, so reads are timed across the server's second tick: one every
   * 20 ms until an answer's second moves on, then, if still wider than 50 ms, 8 packed around where
   * the next tick must fall. About 30 reads and 0.5-2 s, once per process. A clock off by more than
   * maxClockSkewMs is not moved: it fails closed (ClockSkewError). A store whose Date is not a real
   * server's (simulations) is not probed.
   */
  async alignClock(tenant: string, key: string): Promise<void> {
    this.checkIds(tenant, key);
    await this.alignTo(this.itemFor(tenant, key));
  }

  /** Whether this process's clock was aligned with DynamoDB's, and the width of the offset estimate (ms). */
  get clockAlignment(): { aligned: boolean; widthMs: number | undefined } {
    const b = this.offset.bounds();
    return { aligned: Number.isFinite(this.alignedAt), widthMs: b ? b.hi - b.lo : undefined };
  }

  private alignTo(pk: string): Promise<void> {
    if (!this.config.alignClock || this.store.realTimeDates !== true) return Promise.resolve();
    if (!this.aligning) {
      this.aligning = this.runAlignment(pk).catch((err: unknown) => {
        // Unreachable: the caller's own request fails closed; the next one tries again.
        this.aligning = undefined;
        throw err;
      });
    }
    return this.aligning;
  }

  private async runAlignment(pk: string): Promise<void> {
    this.alignBusy = true;
    try {
      await this.alignOnce(pk);
    } finally {
      this.alignBusy = false;
    }
  }

  private async alignOnce(pk: string): Promise<void> {
    // Another ledger of this process on the machine's own clock has done it: the offset is the same.
    if (this.defaultClock && processAlignment) {
      this.applyAlignment(processAlignment.lo, processAlignment.hi);
      return;
    }
    const probe = () => this.fetch(pk);
    if (this.offset.samples === 0) await probe();
    if (this.offset.samples === 0) return; // no Date header: nothing to align with
    const width = () => {
      const b = this.offset.bounds();
      return b ? b.hi - b.lo : Number.POSITIVE_INFINITY;
    };
    // Watch for the server's second to tick: a read every ALIGN_WATCH_MS until an answer's Date
    // moves on (half a second on average, one at most); the two answers around it bound the offset
    // to that spacing plus a round trip.
    const watchUntil = performance.now() + 1_200;
    while (width() >= 900 && performance.now() < watchUntil) {
      const next = performance.now() + ALIGN_WATCH_MS;
      await probe();
      await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
    }
    const at = (ledgerTime: number) =>
      new Promise<void>((r) => setTimeout(r, Math.max(0, ledgerTime - this.now())));
    for (let round = 0; round < ALIGN_ROUNDS && width() > ALIGN_TARGET_MS && width() < 900; round++) {
      const b = this.offset.bounds();
      if (!b) break;
      const w = b.hi - b.lo;
      const halfTrip = Math.min(50, this.writeLatencyMs / 2);
      // The server's second ticks at ledger times T - offset, offset in [lo, hi], T a whole second:
      // pack the reads over the next such stretch, each arriving mid-way through its share.
      const first = Math.ceil((this.now() + 20 + b.hi) / 1_000) * 1_000 - b.hi;
      const times = Array.from(
        { length: ALIGN_PROBES },
        (_, k) => first + ((k + 0.5) * w) / ALIGN_PROBES - halfTrip,
      );
      await Promise.all(times.map((t) => at(t).then(probe)));
    }
    const b = this.offset.bounds();
    if (!b || b.hi - b.lo > ALIGN_MAX_WIDTH_MS) return;
    if (this.defaultClock) {
      // Relative to the machine's clock (this ledger's own correction taken out).
      processAlignment = { lo: b.lo + this.correction, hi: b.hi + this.correction };
    }
    this.applyAlignment(b.lo + this.correction, b.hi + this.correction);
  }

  /** Sets the correction so this clock reads DynamoDB's: offset [lo, hi] of the uncorrected clock. */
  private applyAlignment(lo: number, hi: number): void {
    // Whole milliseconds, as Date.now: times derived from the ledger clock stay integers.
    const mid = Math.round((lo + hi) / 2);
    if (Math.abs(mid) > this.config.maxClockSkewMs) return; // far off: fails closed instead
    const delta = mid - this.correction;
    this.correction = mid;
    this.offset.shift(delta);
    if (this.offset.samples === 0) this.offset.seed(lo - mid, hi - mid);
    this.alignedAt = this.now();
  }

  /** Bounds of (DynamoDB's clock - this ledger's clock) seen so far, ms; null before the first answer. */
  get serverOffsetBounds(): { lo: number; hi: number } | null {
    return this.offset.bounds();
  }

  /**
   * The last check before a request is written (call it from the HTTP layer, as late as possible):
   * refuses a call more than lateToleranceMs late for its slot (a stall after the wait would crowd the
   * next caller's slot), one inside a cool-down this process knows of, and any call while this clock
   * is known to be wrong. A refused slot is spent: do not send, take the next one.
   */
  admit(tenant: string, key: string, slot: number): Admission {
    const now = this.now();
    const lateMs = Math.max(0, now - slot);
    const refuse = (reason: 'late' | 'early' | 'cool-down' | 'clock', detail: string): Admission => {
      this.refusedCount++;
      this.pendingHealth.refused++;
      return { ok: false, reason, lateMs, detail };
    };
    if (this.offset.excess(this.config.maxClockSkewMs) !== 0) {
      return refuse('clock', "this worker's clock is off from DynamoDB's");
    }
    if (this.alignBusy) return refuse('clock', "this worker's clock is being aligned with DynamoDB's");
    const ownedId = `${this.itemFor(tenant, key)}\u0000${key}`;
    const owned = this.owned.get(ownedId);
    if (lateMs > this.config.lateToleranceMs) {
      this.recordLateness(lateMs);
      return refuse(
        'late',
        `${Math.round(lateMs)} ms after its slot (tolerance ${this.config.lateToleranceMs} ms)`,
      );
    }
    const cached = this.cache.get(this.itemFor(tenant, key));
    // This process's own consecutive calls of a key never come closer, on its own clock, than
    // their slots say less the tolerance: a forward clock correction (stamps of a faster worker) or a
    // late previous call would otherwise compress them at arrival.
    const last = this.lastSend.get(ownedId);
    if (last && slot > last.slot) {
      const actual = this.localClock() - last.local;
      const planned = slot - last.slot;
      if (actual < planned - this.config.lateToleranceMs) {
        return refuse(
          'early',
          `${Math.round(actual)} ms after this process's previous call of the key, whose slot was ${planned} ms earlier (the ledger clock moved forward)`,
        );
      }
    }
    if (cached && cached.state.coolUntil > now && cached.state.coolUntil > slot) {
      return refuse(
        'cool-down',
        `a ${cached.state.coolReason} cool-down runs until ${new Date(cached.state.coolUntil).toISOString()}`,
      );
    }
    // Keap taught a wider spacing after this slot was granted (a spike-arrest 429, a spike header):
    // a slot too close behind an earlier call of the key (another worker's, or one this process sent)
    // is not sent. Slots this process still owns (upcoming or refused) are not calls.
    if (cached && cached.state.spikeMs > this.config.spikeIntervalMs) {
      const cells = cached.state.keys.get(key);
      const m = spacingCells(cached.state, this.config, slot);
      const cell = Math.round(slot / this.config.cellMs);
      for (let d = 1; d < m && cells; d++) {
        const before = cell - d;
        const beforeSlot = before * this.config.cellMs;
        if (cells.has(before) && !owned?.has(beforeSlot) && !this.released.has(`${ownedId}|${beforeSlot}`)) {
          return refuse(
            'cool-down',
            `${d * this.config.cellMs} ms after an earlier call of the key; Keap's spike arrest now needs ${Math.round(spikeSpacingMs(cached.state, this.config, slot))} ms`,
          );
        }
      }
    }
    this.recordLateness(lateMs);
    if (cached) this.recordHandover(cached.state, key, slot, now, owned);
    if (!last || slot > last.slot) this.lastSend.set(ownedId, { slot, local: this.localClock() });
    // Sent: no longer this process's to give back.
    owned?.delete(slot);
    const sentId = `${this.itemFor(tenant, key)}\u0000${key}`;
    let sent = this.sentSlots.get(sentId);
    if (!sent) {
      sent = new Set();
      this.sentSlots.set(sentId, sent);
    }
    sent.add(slot);
    if (sent.size > 256) for (const x of sent) if (x < now - HANDOVER_WINDOW_MS) sent.delete(x);
    return { ok: true, lateMs };
  }

  private own(pk: string, key: string, slots: readonly number[]): void {
    const id = `${pk}\u0000${key}`;
    let set = this.owned.get(id);
    if (!set) {
      set = new Set();
      this.owned.set(id, set);
    }
    for (const slot of slots) set.add(slot);
    // What left every window cannot matter any more.
    const horizon = this.now() - this.config.windowMs - this.config.holdHorizonMs;
    if (set.size > 256) for (const slot of set) if (slot < horizon) set.delete(slot);
  }

  /** Send lateness since the last call (then reset): p50, p99 and max over the checks made. */
  takeSendLateness(): SendLateness {
    const sorted = [...this.lateness].sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? 0;
    const out: SendLateness = {
      count: this.latenessCount,
      refused: this.refusedCount,
      p50: at(0.5),
      p99: at(0.99),
      max: sorted[sorted.length - 1] ?? 0,
      toleranceMs: this.config.lateToleranceMs,
      spikeMarginMs: this.config.spikeMarginMs,
      handovers: this.handovers,
      handoverGapMinMs: Number.isFinite(this.handoverGapMin) ? this.handoverGapMin : null,
    };
    this.lateness.length = 0;
    this.latenessCount = 0;
    this.refusedCount = 0;
    this.handovers = 0;
    this.handoverGapMin = Number.POSITIVE_INFINITY;
    return out;
  }

  /** The gap from the key's previous slot, when another worker held it (as far as this process knows). */
  private recordHandover(
    s: LedgerState,
    key: string,
    slot: number,
    now: number,
    owned: Set<number> | undefined,
  ): void {
    const cells = s.keys.get(key);
    if (!cells) return;
    const cell = Math.round(slot / this.config.cellMs);
    let prev = Number.NEGATIVE_INFINITY;
    for (const c of cells) if (c < cell && c > prev) prev = c;
    if (!Number.isFinite(prev)) return;
    const prevSlot = prev * this.config.cellMs;
    if (owned?.has(prevSlot)) return;
    for (const set of this.sentSlots.values()) if (set.has(prevSlot)) return;
    const gap = now - prevSlot;
    if (gap > HANDOVER_WINDOW_MS) return;
    this.handovers++;
    this.handoverGapMin = Math.min(this.handoverGapMin, gap);
    this.pendingHealth.gapMin = Math.min(this.pendingHealth.gapMin, gap);
  }

  private recordLateness(ms: number): void {
    if (this.pendingHealth.late.length < 256) this.pendingHealth.late.push(ms);
    else this.pendingHealth.late[Math.floor(Math.random() * 256)] = ms;
    this.latenessCount++;
    // A bounded reservoir: enough for p99 between two metric flushes.
    if (this.lateness.length < 2_000) this.lateness.push(ms);
    else this.lateness[Math.floor(Math.random() * 2_000)] = ms;
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
    await this.ensureClock(pk);
    await this.ensureKeyRegistered(options.tenant, req.key);
    // A rejection costs no request: a young cached view is no more permissive than the stored state
    // (other writers mostly add reservations), so a short deferral decided on it stands. A long one
    // (a spent minute or day) is checked against the stored item: another worker may have released.
    const cached = this.cache.get(pk);
    const c = this.config;
    if (cached && !req.hold && performance.now() - cached.at <= c.cacheTtlMs) {
      const trial = cloneState(cached.state);
      const now = this.now();
      this.settle(trial, now);
      const d = allocate(trial, c, now, this.withLead(req, now));
      if (d.status === 'deferred' && d.retryAt - now <= c.cacheTtlMs) return d;
    }
    return new Promise<Decision>((resolve, reject) => {
      let decision: Decision | undefined;
      this.enqueue(pk, {
        flushBy: performance.now() + Math.max(0, req.notBefore - this.config.coalesceLeadMs - this.now()),
        run: (s, now) => {
          decision = allocate(s, this.config, now, this.withLead(req, now));
          return decision.status !== 'deferred';
        },
        // A deferral decided on a view under cacheTtlMs old stands, as one from the cache does: one
        // read per item per cacheTtlMs at most, however many callers ask and however often (a slot
        // another worker released in the meantime is found by the next ask, never sent twice).
        staleOkMs: () => (decision?.status === 'deferred' ? this.config.cacheTtlMs : FRESH_VIEW_MS),
        done: () => {
          if (!decision) return reject(new QuotaLedgerError('no decision was made'));
          if (decision.status !== 'deferred') this.own(pk, req.key, decision.slots);
          resolve(decision);
        },
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
    const c = this.config;
    const apply = (s: LedgerState, now: number): boolean => {
      let changed = applyFeedback(s, c, slot, reading);
      // Keap's spike header (e.g. "5ps") names a spacing wider than ours: learn it.
      const spike = reading.spikeIntervalMs;
      if (spike !== undefined && spike > spikeSpacingMs(s, c, now) && spike <= 60_000) {
        s.spikeMs = Math.min(60_000, spike);
        s.spikeAt = now;
        changed = true;
      }
      return changed;
    };
    const cached = this.cache.get(pk);
    if (cached) {
      const trial = cloneState(cached.state);
      if (!apply(trial, this.now())) return;
    }
    await this.mutate(pk, apply);
  }

  /**
   * Reports a 429 from Keap: writes a cool-down every worker obeys. `kind` is Keap's reason (spike
   * arrest or quota); `retryAt` when Keap's headers say capacity frees, if known.
   */
  async report429(tenant: string, key: string, kind: 'spike' | 'quota', retryAt?: number): Promise<void> {
    this.checkIds(tenant, key);
    const pk = this.itemFor(tenant, key);
    const c = this.config;
    await this.ensureClock(pk);
    await this.mutate(pk, (s, now) => {
      let changed = false;
      if (kind === 'spike') {
        // Keap's spike arrest is stricter than we were told (a Keap engineer described 5 per second
        // for Service Account Keys): double this item's spacing for every worker; it relaxes slowly.
        const current = spikeSpacingMs(s, c, now);
        s.spikeMs = Math.min(1_000, current * 2);
        s.spikeAt = now;
        changed = true;
      }
      const until =
        kind === 'spike'
          ? now + c.spikeCoolDownMs
          : Math.max(now + c.spikeCoolDownMs, Math.min(retryAt ?? now + c.quotaCoolDownMs, now + DAY_MS));
      if (until > s.coolUntil) {
        s.coolUntil = until;
        s.coolReason = kind;
        changed = true;
      }
      return changed;
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
    await this.alignTo(pk);
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
  async waitForSlot(slot: number, item?: { tenant: string; key: string }): Promise<boolean> {
    if (item) {
      // A slot held long ago was granted on a view that may not know what another worker learned
      // since (a spike-arrest 429 that widened the key's spacing, a cool-down): just before the slot,
      // read the item if this process's view is older than sendViewMaxAgeMs, so the last check
      // (`admit`) decides on it. One read per item however many callers wait; none while writes
      // keep the view young. Unreachable: fail closed (the slot is not sent).
      this.checkIds(item.tenant, item.key);
      const pk = this.itemFor(item.tenant, item.key);
      try {
        await this.alignTo(pk);
      } catch {
        return false;
      }
      const lead = Math.min(100, Math.max(20, Math.ceil(3 * this.writeLatencyMs)));
      await this.sleepUntil(slot - lead);
      const cached = this.cache.get(pk);
      if (!cached || performance.now() - cached.at > this.config.sendViewMaxAgeMs) {
        try {
          await this.refresh(pk);
        } catch {
          return false;
        }
      }
    }
    await this.sleepUntil(slot);
    return this.now() - slot <= this.config.lateToleranceMs;
  }

  /** One fresh read of the item for every caller asking while it is in flight. */
  private refresh(pk: string): Promise<Cached> {
    let p = this.refreshing.get(pk);
    if (!p) {
      p = this.fetch(pk).finally(() => this.refreshing.delete(pk));
      this.refreshing.set(pk, p);
    }
    return p;
  }

  private async sleepUntil(t: number): Promise<void> {
    // Sleep to just before the slot, then yield until it comes: timers alone fire a few ms late.
    for (;;) {
      const wait = t - this.now();
      if (wait <= 0) break;
      if (wait > 4) await new Promise((r) => setTimeout(r, wait - 3));
      else await new Promise((r) => setImmediate(r));
    }
  }

  /**
   * Gives back slots that were granted but will not be used (woken too late, job cancelled, reserved
   * ahead and not needed): they stop counting against the minute and day budgets. Only slots this
   * process was granted and has not sent (a slot `admit` let through counts as sent) are given
   * back, each once: releasing twice, a slot
   * another process holds or one never granted changes nothing. Rides along with this process's next
   * write when one comes within half a second, but never lingers past the slots themselves.
   */
  async release(tenant: string, key: string, slots: readonly number[]): Promise<void> {
    this.checkIds(tenant, key);
    if (slots.length === 0) return;
    const pk = this.itemFor(tenant, key);
    const c = this.config;
    const calledAt = this.now();
    const owned = this.owned.get(`${pk}\u0000${key}`);
    const mine = [...new Set(slots)].filter((slot) => owned?.delete(slot) === true);
    if (mine.length === 0) return;
    for (const slot of mine) this.released.set(`${pk}\u0000${key}|${slot}`, slot);
    if (this.released.size > 512) {
      for (const [id, slot] of this.released) if (slot < calledAt - c.windowMs) this.released.delete(id);
    }
    // Linger for a write to share, but not past the slots themselves: a future slot freed in time is
    // one another caller can take. A slot already passed only gives back its minute and day count,
    // which can wait the whole linger for a write to ride along with (a refused call costs no write).
    const future = mine.filter((slot) => slot > calledAt);
    const soonest =
      future.length === 0
        ? c.releaseLingerMs
        : Math.min(...future) - calledAt - c.lateToleranceMs - 2 * this.writeLatencyMs;
    return new Promise<void>((resolve, reject) => {
      this.enqueue(pk, {
        flushBy: performance.now() + Math.max(0, Math.min(c.releaseLingerMs, soonest)),
        run: (s) => {
          let changed = false;
          const cells = s.keys.get(key);
          for (const slot of mine) {
            const cell = Math.round(slot / c.cellMs);
            // A passed cell needs no spacing any more (and may be trimmed); a future one is free again.
            cells?.delete(cell);
            const bucket = Math.floor(slot / c.bucketMs);
            const day = Math.floor(slot / DAY_MS);
            if (bucketCount(s, bucket) > 0) addToBucket(s, bucket, -1);
            if ((s.days.get(day) ?? 0) > 0) s.days.set(day, (s.days.get(day) ?? 0) - 1);
            changed = true;
          }
          return changed;
        },
        done: resolve,
        fail: reject,
      });
    });
  }

  /** Used and left per window for one tenant (and key, in key scope), read fresh from DynamoDB. */
  /**
   * Snapshots of many tenants' items (key ''), read in batches where the store can (BatchGetItem):
   * the scheduler's one read of every account's quota.
   */
  async snapshots(tenants: readonly string[]): Promise<Map<string, QuotaSnapshot>> {
    const unique = [...new Set(tenants)];
    const pks = unique.map((t) => this.itemFor(t, ''));
    const read = this.store.readMany;
    let items: Map<string, StoredItem> | undefined;
    if (read) {
      try {
        items = await read.call(this.store, pks);
      } catch (err) {
        if (err instanceof MalformedItemError) throw new LedgerStateError(pks.join(', '), err.message);
        throw new LedgerUnavailableError(pks[0] ?? '', err);
      }
    }
    const out = new Map<string, QuotaSnapshot>();
    for (const tenant of unique) {
      const pk = this.itemFor(tenant, '');
      const item = items?.get(pk);
      const prefetched = items === undefined ? undefined : item ? this.adopt(pk, item) : this.empty(pk);
      out.set(tenant, await this.snapshot(tenant, '', prefetched));
    }
    return out;
  }

  /** `prefetched`: the item as a batched read just found it (snapshots); otherwise it is read. */
  async snapshot(tenant: string, key = '', prefetched?: Cached): Promise<QuotaSnapshot> {
    const pk = this.itemFor(tenant, key);
    const cached = prefetched ?? (await this.fetch(pk));
    const c = this.config;
    const now = this.now();
    const s = cloneState(cached.state);
    this.settle(s, now);
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
      timing:
        s.hAt > 0 && now - s.hAt <= HEALTH_PERIOD_MS
          ? {
              since: s.hAt,
              sendLatenessP99Ms: s.hLateP99,
              sendLatenessMaxMs: s.hLateMax,
              refused: s.hRefused,
              handoverGapMinMs: s.hGapMin > 0 ? s.hGapMin : null,
              toleranceMs: c.lateToleranceMs,
              spikeMarginMs: c.spikeMarginMs,
            }
          : null,
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
    const now = this.now();
    const at = this.registeredKeys.get(id);
    if (
      at !== undefined &&
      Math.floor(at / DAY_MS) === Math.floor(now / DAY_MS) &&
      now - at < KEY_REFRESH_MS
    ) {
      return;
    }
    const pk = `quota#keys#${tenant}`;
    if (!this.store.registerKey)
      throw new LedgerUnavailableError(pk, new Error('store cannot register keys'));
    let ok: boolean;
    try {
      const c = this.config;
      // A key can be forgotten once it cannot have spent any of today's quota nor the window's.
      const stale = (last: number) =>
        Math.floor(last / DAY_MS) < Math.floor(now / DAY_MS) && now - last > c.windowMs + c.maxClockSkewMs;
      ok = await this.store.registerKey(pk, key, c.maxKeysPerTenant, now, stale);
    } catch (err) {
      throw new LedgerUnavailableError(pk, err);
    }
    if (!ok) throw new TooManyKeysError(tenant, this.config.maxKeysPerTenant);
    this.registeredKeys.set(id, now);
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
    let fresh = false;
    for (let attempt = 1; attempt <= c.maxContentionRetries; attempt++) {
      const now = this.now();
      const work = cloneState(base.state);
      this.settle(work, now);
      let changed = false;
      for (const op of batch) if (op.run(work, now)) changed = true;
      if (!changed) {
        // Nothing to write: the answer (a deferral) stands only on a view just read or written;
        // otherwise read once, since another worker may have released slots.
        let staleOk = Number.POSITIVE_INFINITY;
        for (const op of batch) staleOk = Math.min(staleOk, op.staleOkMs?.() ?? FRESH_VIEW_MS);
        if (fresh || performance.now() - base.at <= staleOk) return;
        base = await this.fetch(pk);
        fresh = true;
        continue;
      }
      // Never write from a clock DynamoDB's answers show to be wrong (its stamps would mislead others),
      // nor from one that stepped since the last answer: read first, so that answer judges the clock.
      if (this.clockStepped()) {
        base = await this.fetch(pk);
        fresh = true;
        this.checkClock();
        continue;
      }
      this.checkClock();
      const health = this.mergeHealth(work, now);
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
        if (health) this.pendingHealth = { late: [], refused: 0, gapMin: Number.POSITIVE_INFINITY };
        this.cache.set(pk, {
          at: performance.now(),
          exists: true,
          version: next.version,
          writer: token,
          state: work,
        });
        return;
      }
      base = outcome.current ? this.adopt(pk, outcome.current) : await this.fetch(pk);
      // The condition failed against our own write: an earlier attempt of this very request landed
      // (the SDK retried after a lost answer). It counts as ours.
      if (base.writer === token && base.version === next.version) return;
      // First retry at once on the state we just learned; then jittered exponential backoff.
      if (attempt > 1)
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(250, 10 * 2 ** attempt)));
    }
    throw new LedgerContentionError(pk, c.maxContentionRetries);
  }

  /**
   * Folds this process's send timing since its last write into the state about to be written (a write
   * made anyway: timing never causes one). Returns whether there was any.
   */
  private mergeHealth(s: LedgerState, now: number): boolean {
    const h = this.pendingHealth;
    if (h.late.length === 0 && h.refused === 0 && !Number.isFinite(h.gapMin)) return false;
    if (!(s.hAt > 0 && now - s.hAt <= HEALTH_PERIOD_MS && s.hAt <= now + this.config.maxClockSkewMs)) {
      s.hAt = now;
      s.hLateP99 = 0;
      s.hLateMax = 0;
      s.hRefused = 0;
      s.hGapMin = 0;
    }
    const sorted = [...h.late].sort((a, b) => a - b);
    const p99 = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? 0;
    s.hLateP99 = Math.max(s.hLateP99, Math.ceil(p99));
    s.hLateMax = Math.max(s.hLateMax, Math.ceil(sorted[sorted.length - 1] ?? 0));
    s.hRefused = Math.min(65_535, s.hRefused + h.refused);
    if (Number.isFinite(h.gapMin)) {
      const gap = Math.max(1, Math.floor(h.gapMin));
      s.hGapMin = s.hGapMin > 0 ? Math.min(s.hGapMin, gap) : gap;
    }
    return true;
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
    if (!item) return this.empty(pk);
    return this.adopt(pk, item);
  }

  private empty(pk: string): Cached {
    const empty: Cached = {
      at: performance.now(),
      exists: false,
      version: 0,
      writer: '',
      state: emptyState(),
    };
    this.cache.set(pk, empty);
    return empty;
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
    const cached: Cached = {
      at: performance.now(),
      exists: true,
      version: item.version,
      writer: item.writer,
      state,
    };
    this.cache.set(pk, cached);
    return cached;
  }

  /**
   * Another worker stamped `stamp` before we read it: our clock is at least that far along. A stamp
   * further ahead than maxClockSkewMs is a bad clock's, not news about ours: it moves us by at most
   * maxClockCorrectionMs in all.
   */
  private observeClock(stamp: number): void {
    const ahead = stamp - this.now();
    if (ahead > 0 && ahead <= this.config.maxClockSkewMs) {
      const before = this.correction;
      this.correction = Math.min(this.config.maxClockCorrectionMs, this.correction + ahead);
      this.offset.shift(this.correction - before);
    }
  }

  /**
   * Brings a state read from the item to `now`: the high-water clock moves up to ours, but a stamp or
   * a cool-down written by a clock far ahead gates nobody beyond maxClockSkewMs (stamp) or the longest
   * cool-down the ledger writes; then what can no longer matter is dropped.
   */
  private settle(s: LedgerState, now: number): void {
    const c = this.config;
    s.clk = Math.min(Math.max(s.clk, now), now + c.maxClockSkewMs);
    const longestCool = s.coolReason === 'spike' ? c.spikeCoolDownMs : DAY_MS;
    if (s.coolUntil > now + longestCool + c.maxClockSkewMs) s.coolUntil = now + longestCool;
    if (s.spikeAt > now + c.maxClockSkewMs) s.spikeAt = now;
    if (s.hAt > now + c.maxClockSkewMs) s.hAt = 0;
    // Reservations no writer with a sane clock could have made (beyond the hold horizon, the skew
    // bound and a window of slack) came from a clock far ahead: they bind nobody.
    const latest = now + c.holdHorizonMs + c.maxClockSkewMs + c.windowMs;
    dropAfter(s, latest, c.bucketMs, c.cellMs);
    trimState(s, c.windowMs, c.bucketMs, c.cellMs);
  }
}

/** Drops bucket counts, day counts and key cells after `t` (a far-ahead clock's reservations). */
function dropAfter(s: LedgerState, t: number, bucketMs: number, cellMs: number): void {
  const lastBucket = Math.floor(t / bucketMs);
  const keep = lastBucket - s.bucketBase + 1;
  if (s.counts.length > keep) s.counts = keep > 0 ? s.counts.slice(0, keep) : [];
  const lastDay = Math.floor(t / DAY_MS);
  for (const day of [...s.days.keys()]) if (day > lastDay) s.days.delete(day);
  const lastCell = Math.floor(t / cellMs);
  for (const [key, cells] of s.keys) {
    for (const cell of cells) if (cell > lastCell) cells.delete(cell);
    if (cells.size === 0) s.keys.delete(key);
  }
}
