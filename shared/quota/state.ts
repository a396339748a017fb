// Domain: the ledger's per-scope state, and its compact binary form (one item, under 1 KB).
import { crc32 } from 'node:zlib';
import { MAX_KEY_ID_BYTES } from './config.ts';

export const DAY_MS = 86_400_000;
const FORMAT = 3;
/** Cells kept below the high-water mark, so a learned spike spacing still sees a key's last calls. */
export const CELLS_KEPT_BEHIND = 4;

export type CoolReason = 'none' | 'spike' | 'quota';
const COOL_CODES: readonly CoolReason[] = ['none', 'spike', 'quota'];

/** The state of one ledger item: everything needed to decide, all at once, whether a slot is free. */
export interface LedgerState {
  /** High-water mark of the writers' clocks. Never moves backwards; no slot is granted before it. */
  clk: number;
  /** No slot is granted before this time (a 429 was reported). */
  coolUntil: number;
  coolReason: CoolReason;
  /** Bucket index (time / bucketMs) of `counts[0]`. */
  bucketBase: number;
  /** Calls reserved per bucket, past and future (holds), across every key of the item. */
  counts: number[];
  /** Calls reserved per UTC day index (time / DAY_MS). */
  days: Map<number, number>;
  /** Keap said less is left in the rolling minute: at most `fbMinCap` of ours per window until `fbMinUntil`. */
  fbMinUntil: number;
  fbMinCap: number;
  fbMinTenant: boolean;
  /** Keap said less is left today: at most `fbDayCap` of ours on day `fbDayIdx`. */
  fbDayIdx: number;
  fbDayCap: number;
  fbDayTenant: boolean;
  /** Per key: the grid cells (time / cellMs) reserved from just below the high-water mark on. */
  keys: Map<string, Set<number>>;
  /** Spacing learned from Keap's spike-arrest 429s and spike header, ms (0: none); set at `spikeAt`. */
  spikeMs: number;
  spikeAt: number;
  /**
   * Send timing the writers saw since `hAt` (piggybacked on writes they make anyway, for operators):
   * the worst p99 and max lateness after a slot, calls refused at the last check, and the smallest
   * hand-over gap (a call's send after another worker's slot of the same key; 0: none seen).
   */
  hAt: number;
  hLateP99: number;
  hLateMax: number;
  hRefused: number;
  hGapMin: number;
}

export function emptyState(): LedgerState {
  return {
    clk: 0,
    coolUntil: 0,
    coolReason: 'none',
    bucketBase: 0,
    counts: [],
    days: new Map(),
    fbMinUntil: 0,
    fbMinCap: 0,
    fbMinTenant: false,
    fbDayIdx: -1,
    fbDayCap: 0,
    fbDayTenant: false,
    keys: new Map(),
    spikeMs: 0,
    spikeAt: 0,
    hAt: 0,
    hLateP99: 0,
    hLateMax: 0,
    hRefused: 0,
    hGapMin: 0,
  };
}

export function cloneState(s: LedgerState): LedgerState {
  const keys = new Map<string, Set<number>>();
  for (const [k, cells] of s.keys) keys.set(k, new Set(cells));
  return { ...s, counts: [...s.counts], days: new Map(s.days), keys };
}

export function bucketCount(s: LedgerState, bucket: number): number {
  return s.counts[bucket - s.bucketBase] ?? 0;
}

export function addToBucket(s: LedgerState, bucket: number, n: number): void {
  if (s.counts.length === 0) s.bucketBase = bucket;
  if (bucket < s.bucketBase) {
    const pad = new Array<number>(s.bucketBase - bucket).fill(0);
    s.counts = [...pad, ...s.counts];
    s.bucketBase = bucket;
  }
  const i = bucket - s.bucketBase;
  while (s.counts.length <= i) s.counts.push(0);
  s.counts[i] = (s.counts[i] ?? 0) + n;
}

/** Drops what can no longer matter to any decision made at or after `s.clk`. */
export function trimState(s: LedgerState, windowMs: number, bucketMs: number, cellMs: number): void {
  const firstBucket = Math.floor((s.clk - windowMs) / bucketMs) - 1;
  if (s.counts.length > 0 && s.bucketBase < firstBucket) {
    s.counts = s.counts.slice(firstBucket - s.bucketBase);
    s.bucketBase = firstBucket;
  }
  let lead = 0;
  while (lead < s.counts.length && s.counts[lead] === 0) lead++;
  if (lead > 0) {
    s.counts = s.counts.slice(lead);
    s.bucketBase += lead;
  }
  while (s.counts.length > 0 && s.counts[s.counts.length - 1] === 0) s.counts.pop();
  if (s.counts.length === 0) s.bucketBase = 0;
  const today = Math.floor(s.clk / DAY_MS);
  for (const day of [...s.days.keys()]) if (day < today) s.days.delete(day);
  if (s.fbDayIdx < today) {
    s.fbDayIdx = -1;
    s.fbDayCap = 0;
    s.fbDayTenant = false;
  }
  if (s.fbMinUntil <= s.clk) {
    s.fbMinUntil = 0;
    s.fbMinCap = 0;
    s.fbMinTenant = false;
  }
  if (s.coolUntil <= s.clk) {
    s.coolUntil = 0;
    s.coolReason = 'none';
  }
  const firstCell = Math.floor(s.clk / cellMs) - CELLS_KEPT_BEHIND;
  for (const [key, cells] of s.keys) {
    for (const c of cells) if (c < firstCell) cells.delete(c);
    if (cells.size === 0) s.keys.delete(key);
  }
}

/** Thrown by `decodeState` when bytes are not a state this code wrote. */
export class StateDecodeError extends Error {
  override name = 'StateDecodeError';
}

export function encodeState(s: LedgerState): Uint8Array {
  const keyParts: Array<{ id: Buffer; base: number; bits: Uint8Array }> = [];
  for (const [id, cells] of s.keys) {
    if (cells.size === 0) continue;
    const idBytes = Buffer.from(id, 'utf8');
    if (idBytes.length > MAX_KEY_ID_BYTES)
      throw new Error(`key id "${id}" is longer than ${MAX_KEY_ID_BYTES} bytes`);
    let base = Number.POSITIVE_INFINITY;
    let top = 0;
    for (const c of cells) {
      if (c < base) base = c;
      if (c > top) top = c;
    }
    const bits = new Uint8Array(Math.floor((top - base) / 8) + 1);
    for (const c of cells) {
      const i = c - base;
      bits[i >> 3] = (bits[i >> 3] ?? 0) | (1 << (i & 7));
    }
    keyParts.push({ id: idBytes, base, bits });
  }
  const days = [...s.days.entries()].filter(([, n]) => n > 0);
  let size = 1 + 8 + 8 + 1 + 8 + 2 + s.counts.length + 1 + days.length * 8;
  size += 8 + 4 + 1 + 4 + 4 + 1 + 2 + 8 + 8 + 2 + 2 + 2 + 2 + 1;
  for (const k of keyParts) size += 1 + k.id.length + 8 + 2 + k.bits.length;
  size += 4;
  const buf = Buffer.alloc(size);
  let o = 0;
  o = buf.writeUInt8(FORMAT, o);
  o = buf.writeDoubleBE(s.clk, o);
  o = buf.writeDoubleBE(s.coolUntil, o);
  o = buf.writeUInt8(COOL_CODES.indexOf(s.coolReason), o);
  o = buf.writeDoubleBE(s.bucketBase, o);
  o = buf.writeUInt16BE(s.counts.length, o);
  for (const n of s.counts) o = buf.writeUInt8(Math.min(255, n), o);
  o = buf.writeUInt8(days.length, o);
  for (const [day, n] of days) {
    o = buf.writeUInt32BE(day, o);
    o = buf.writeUInt32BE(n, o);
  }
  o = buf.writeDoubleBE(s.fbMinUntil, o);
  o = buf.writeUInt32BE(s.fbMinCap, o);
  o = buf.writeUInt8(s.fbMinTenant ? 1 : 0, o);
  o = buf.writeInt32BE(s.fbDayIdx, o);
  o = buf.writeUInt32BE(s.fbDayCap, o);
  o = buf.writeUInt8(s.fbDayTenant ? 1 : 0, o);
  o = buf.writeUInt16BE(Math.min(65_535, Math.max(0, Math.round(s.spikeMs))), o);
  o = buf.writeDoubleBE(s.spikeAt, o);
  const u16 = (n: number) => Math.min(65_535, Math.max(0, Math.round(n)));
  o = buf.writeDoubleBE(s.hAt, o);
  o = buf.writeUInt16BE(u16(s.hLateP99), o);
  o = buf.writeUInt16BE(u16(s.hLateMax), o);
  o = buf.writeUInt16BE(u16(s.hRefused), o);
  o = buf.writeUInt16BE(u16(s.hGapMin), o);
  o = buf.writeUInt8(keyParts.length, o);
  for (const k of keyParts) {
    o = buf.writeUInt8(k.id.length, o);
    o += k.id.copy(buf, o);
    o = buf.writeDoubleBE(k.base, o);
    o = buf.writeUInt16BE(k.bits.length, o);
    buf.set(k.bits, o);
    o += k.bits.length;
  }
  buf.writeUInt32BE(crc32(buf.subarray(0, o)), o);
  return buf;
}

export function decodeState(bytes: Uint8Array): LedgerState {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 5) throw new StateDecodeError('item too short');
  const body = buf.subarray(0, buf.length - 4);
  if (crc32(body) !== buf.readUInt32BE(buf.length - 4)) throw new StateDecodeError('checksum mismatch');
  try {
    let o = 0;
    const fmt = buf.readUInt8(o);
    o += 1;
    // Format 1 (before learned spike spacing) and 2 (before send timing) are read without them.
    if (fmt !== FORMAT && fmt !== 1 && fmt !== 2) throw new StateDecodeError(`unknown format ${fmt}`);
    const s = emptyState();
    s.clk = buf.readDoubleBE(o);
    o += 8;
    s.coolUntil = buf.readDoubleBE(o);
    o += 8;
    const cool = COOL_CODES[buf.readUInt8(o)];
    o += 1;
    if (cool === undefined) throw new StateDecodeError('unknown cool-down reason');
    s.coolReason = cool;
    s.bucketBase = buf.readDoubleBE(o);
    o += 8;
    const n = buf.readUInt16BE(o);
    o += 2;
    for (let i = 0; i < n; i++) s.counts.push(buf.readUInt8(o + i));
    o += n;
    const nDays = buf.readUInt8(o);
    o += 1;
    for (let i = 0; i < nDays; i++) {
      s.days.set(buf.readUInt32BE(o), buf.readUInt32BE(o + 4));
      o += 8;
    }
    s.fbMinUntil = buf.readDoubleBE(o);
    s.fbMinCap = buf.readUInt32BE(o + 8);
    s.fbMinTenant = buf.readUInt8(o + 12) === 1;
    s.fbDayIdx = buf.readInt32BE(o + 13);
    s.fbDayCap = buf.readUInt32BE(o + 17);
    s.fbDayTenant = buf.readUInt8(o + 21) === 1;
    o += 22;
    if (fmt >= 2) {
      s.spikeMs = buf.readUInt16BE(o);
      s.spikeAt = buf.readDoubleBE(o + 2);
      o += 10;
    }
    if (fmt >= 3) {
      s.hAt = buf.readDoubleBE(o);
      s.hLateP99 = buf.readUInt16BE(o + 8);
      s.hLateMax = buf.readUInt16BE(o + 10);
      s.hRefused = buf.readUInt16BE(o + 12);
      s.hGapMin = buf.readUInt16BE(o + 14);
      o += 16;
    }
    const nKeys = buf.readUInt8(o);
    o += 1;
    for (let i = 0; i < nKeys; i++) {
      const idLen = buf.readUInt8(o);
      o += 1;
      const id = buf.toString('utf8', o, o + idLen);
      o += idLen;
      const base = buf.readDoubleBE(o);
      o += 8;
      const len = buf.readUInt16BE(o);
      o += 2;
      const cells = new Set<number>();
      for (let b = 0; b < len; b++) {
        const byte = buf.readUInt8(o + b);
        for (let bit = 0; bit < 8; bit++) if (byte & (1 << bit)) cells.add(base + b * 8 + bit);
      }
      o += len;
      s.keys.set(id, cells);
    }
    if (o !== body.length) throw new StateDecodeError('trailing bytes');
    if (!Number.isFinite(s.clk) || !Number.isFinite(s.bucketBase)) throw new StateDecodeError('bad numbers');
    return s;
  } catch (err) {
    if (err instanceof StateDecodeError) throw err;
    throw new StateDecodeError(`truncated item (${(err as Error).message})`);
  }
}
