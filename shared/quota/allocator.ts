// Domain: the pure decision logic. Given one item's state and a request, find the slots that keep
// every bound (spike spacing, rolling minute, UTC day, tenant caps, cool-down, Keap's feedback).
import type { LedgerConfig } from './config.ts';
import { addToBucket, bucketCount, DAY_MS, type LedgerState } from './state.ts';

export type Priority = 'bulk' | 'interactive';
export type DeferReason = 'spike' | 'minute' | 'day' | 'tenant' | 'cool-down';

export interface SlotRequest {
  /** Key id (a fingerprint, never the key). Spike spacing is per key. */
  key: string;
  /** Slots wanted (a paging job reserves several in one write). */
  count: number;
  priority: Priority;
  /** Longest the caller will wait for its first slot before it is deferred instead. */
  waitBudgetMs: number;
  /** When deferred, reserve the slot(s) anyway if within the hold horizon. */
  hold: boolean;
  /** Spacing between this caller's own slots (e.g. a page's expected latency). */
  minGapMs: number;
  /** No slot before this time. */
  notBefore: number;
  /** Later slots of a multi-slot request lie within this much of the first. */
  spreadMs: number;
}

export type Decision =
  | { status: 'granted'; slots: number[] }
  | { status: 'held'; slots: number[]; retryAt: number; reason: DeferReason }
  | { status: 'deferred'; retryAt: number; reason: DeferReason };

interface Found {
  cell: number | undefined;
  /** Where the search stopped (first free cell, or past the limit). */
  next: number;
  reason: DeferReason | undefined;
}

/** Minute cap for slots at time `t` (Keap's feedback may lower it). */
function minuteCap(
  s: LedgerState,
  c: LedgerConfig,
  t: number,
  priority: Priority,
): { cap: number; tenant: boolean } {
  let cap = c.itemMinuteLimit;
  let tenant = c.itemMinuteIsTenant;
  if (t < s.fbMinUntil && s.fbMinCap < cap) {
    cap = s.fbMinCap;
    tenant = s.fbMinTenant;
  }
  return { cap: priority === 'bulk' ? Math.floor(cap * c.bulkShare) : cap, tenant };
}

function dayCap(
  s: LedgerState,
  c: LedgerConfig,
  day: number,
  priority: Priority,
): { cap: number; tenant: boolean } {
  let cap = c.itemDayLimit;
  let tenant = c.itemDayIsTenant;
  if (day === s.fbDayIdx && s.fbDayCap < cap) {
    cap = s.fbDayCap;
    tenant = s.fbDayTenant;
  }
  return { cap: priority === 'bulk' ? Math.floor(cap * c.bulkShare) : cap, tenant };
}

/**
 * Spacing of one key's calls at time `t`: Keap's spike interval, or what Keap's spike-arrest 429s
 * and spike header taught the ledger (halving back towards the interval every `spikeRelaxMs`).
 */
export function spikeSpacingMs(s: LedgerState, c: LedgerConfig, t: number): number {
  if (s.spikeMs <= c.spikeIntervalMs) return c.spikeIntervalMs;
  const steps = Math.max(0, Math.floor((t - s.spikeAt) / c.spikeRelaxMs));
  return Math.max(c.spikeIntervalMs, steps > 16 ? 0 : s.spikeMs / 2 ** steps);
}

/** Cells that must separate two calls of one key at time `t` (1 at the configured spacing). */
export function spacingCells(s: LedgerState, c: LedgerConfig, t: number): number {
  return Math.max(1, Math.ceil((spikeSpacingMs(s, c, t) + c.spikeMarginMs) / c.cellMs));
}

/** Whether a reserved cell of this key lies within `m - 1` cells of `cell` (or is it). */
function crowded(cells: Set<number> | undefined, cell: number, m: number): boolean {
  if (!cells) return false;
  for (let d = -(m - 1); d <= m - 1; d++) if (cells.has(cell + d)) return true;
  return false;
}

/**
 * Whether one more call in bucket `j` keeps every run of `windowBuckets` consecutive buckets that
 * contains `j` at or under `cap`. Any window of `windowMs` lies inside such a run, so this holds the
 * rolling bound for windows of any alignment (conservatively, by at most two buckets).
 */
function minuteRoom(s: LedgerState, c: LedgerConfig, j: number, cap: number): boolean {
  if (bucketCount(s, j) >= 255) return false;
  const r = c.windowBuckets;
  let sum = 0;
  for (let b = j - r + 1; b <= j; b++) sum += bucketCount(s, b);
  if (sum + 1 > cap) return false;
  for (let start = j - r + 2; start <= j; start++) {
    sum += bucketCount(s, start + r - 1) - bucketCount(s, start - 1);
    if (sum + 1 > cap) return false;
  }
  return true;
}

/** The first bound that rules out `cell`, checked in the order an operator would want named. */
function blockerAt(s: LedgerState, c: LedgerConfig, req: SlotRequest, cell: number): DeferReason | undefined {
  const t = cell * c.cellMs;
  if (t < s.coolUntil) return 'cool-down';
  const day = Math.floor(t / DAY_MS);
  const into = t - day * DAY_MS;
  if (into < c.marginMs || into >= DAY_MS - c.marginMs) return 'day';
  const dc = dayCap(s, c, day, req.priority);
  if ((s.days.get(day) ?? 0) + 1 > dc.cap) return dc.tenant ? 'tenant' : 'day';
  const mc = minuteCap(s, c, t, req.priority);
  if (!minuteRoom(s, c, Math.floor(t / c.bucketMs), mc.cap)) return mc.tenant ? 'tenant' : 'minute';
  if (crowded(s.keys.get(req.key), cell, spacingCells(s, c, t))) return 'spike';
  return undefined;
}

/**
 * The first cell at or after `fromCell` (and at most `lastCell`) where every bound holds, or where
 * the search stopped. Skips whole buckets, days and cool-downs at once.
 */
function findCell(
  s: LedgerState,
  c: LedgerConfig,
  req: SlotRequest,
  fromCell: number,
  lastCell: number,
): Found {
  const cells = s.keys.get(req.key);
  let cell = fromCell;
  while (cell <= lastCell) {
    const t = cell * c.cellMs;
    if (t < s.coolUntil) {
      cell = Math.max(cell + 1, Math.ceil(s.coolUntil / c.cellMs));
      continue;
    }
    const day = Math.floor(t / DAY_MS);
    const into = t - day * DAY_MS;
    if (into < c.marginMs) {
      cell = Math.max(cell + 1, Math.ceil((day * DAY_MS + c.marginMs) / c.cellMs));
      continue;
    }
    if (into >= DAY_MS - c.marginMs || (s.days.get(day) ?? 0) + 1 > dayCap(s, c, day, req.priority).cap) {
      cell = Math.max(cell + 1, Math.ceil(((day + 1) * DAY_MS + c.marginMs) / c.cellMs));
      continue;
    }
    if (crowded(cells, cell, spacingCells(s, c, t))) {
      cell++;
      continue;
    }
    const j = Math.floor(t / c.bucketMs);
    if (!minuteRoom(s, c, j, minuteCap(s, c, t, req.priority).cap)) {
      cell = Math.max(cell + 1, Math.ceil(((j + 1) * c.bucketMs) / c.cellMs));
      continue;
    }
    return { cell, next: cell, reason: cell > fromCell ? blockerAt(s, c, req, cell - 1) : undefined };
  }
  return { cell: undefined, next: cell, reason: blockerAt(s, c, req, Math.min(cell, lastCell + 1) - 1) };
}

function reserve(s: LedgerState, c: LedgerConfig, key: string, cell: number): void {
  const t = cell * c.cellMs;
  let cells = s.keys.get(key);
  if (!cells) {
    cells = new Set();
    s.keys.set(key, cells);
  }
  cells.add(cell);
  addToBucket(s, Math.floor(t / c.bucketMs), 1);
  const day = Math.floor(t / DAY_MS);
  s.days.set(day, (s.days.get(day) ?? 0) + 1);
}

/**
 * Decides one request against `s` at time `now` (the ledger clock). Reserves into `s` (mutating it)
 * only when the answer is `granted` or `held`.
 */
export function allocate(s: LedgerState, c: LedgerConfig, now: number, req: SlotRequest): Decision {
  const t0 = Math.max(now, s.clk, req.notBefore);
  const fromCell = Math.ceil(t0 / c.cellMs);
  const budgetCell = Math.floor((now + req.waitBudgetMs) / c.cellMs);
  const lastCell = Math.floor((now + c.holdHorizonMs) / c.cellMs);
  const newKey = !s.keys.has(req.key);
  if (newKey && c.quotaScope === 'tenant' && s.keys.size >= c.maxKeysPerItem) {
    // The item has no room to track another key's spacing until one of the others goes idle.
    let earliestIdle = Number.POSITIVE_INFINITY;
    for (const cells of s.keys.values()) earliestIdle = Math.min(earliestIdle, Math.max(...cells) + 1);
    return { status: 'deferred', retryAt: earliestIdle * c.cellMs, reason: 'spike' };
  }
  const first = findCell(s, c, req, fromCell, lastCell);
  if (first.cell === undefined) {
    // Nothing within the hold horizon: look further (without reserving) to say when capacity frees.
    const farCell = Math.floor((now + c.holdHorizonMs + 2 * c.windowMs) / c.cellMs);
    const later = findCell(s, c, req, first.next, farCell);
    const retryCell = later.cell ?? later.next;
    return { status: 'deferred', retryAt: retryCell * c.cellMs, reason: first.reason ?? 'minute' };
  }
  const withinBudget = first.cell <= budgetCell;
  if (!withinBudget && !req.hold) {
    return { status: 'deferred', retryAt: first.cell * c.cellMs, reason: first.reason ?? 'spike' };
  }
  const slots: number[] = [first.cell * c.cellMs];
  reserve(s, c, req.key, first.cell);
  const gapCells = Math.max(1, Math.ceil(req.minGapMs / c.cellMs));
  const spreadCell = Math.min(lastCell, Math.floor((first.cell * c.cellMs + req.spreadMs) / c.cellMs));
  let from = first.cell + gapCells;
  while (slots.length < req.count) {
    const next = findCell(s, c, req, from, spreadCell);
    if (next.cell === undefined) break;
    reserve(s, c, req.key, next.cell);
    slots.push(next.cell * c.cellMs);
    from = next.cell + gapCells;
  }
  if (withinBudget) return { status: 'granted', slots };
  return {
    status: 'held',
    slots,
    retryAt: slots[0] ?? first.cell * c.cellMs,
    reason: first.reason ?? 'spike',
  };
}
