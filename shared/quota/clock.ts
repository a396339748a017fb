// Domain: how far this worker's clock is from DynamoDB's, read off the `Date` header of the ledger
// store's answers. A header has whole seconds, so each answer bounds the offset to an interval of
// about a second plus the round trip; intersecting them narrows it (answers timed across the server's
// second tick narrow it to a few ms). Used to align a process's clock with DynamoDB's before its
// first call, and to fail closed when a clock is clearly wrong (off by more than `maxClockSkewMs`).

/** One answer: the server's `Date` (ms, whole seconds) and the ledger-clock times the request left and its answer came. */
export interface ServerDateSample {
  dateMs: number;
  sentAt: number;
  receivedAt: number;
}

export class ClockOffsetEstimate {
  /** Bounds of (server clock - ledger clock), ms. */
  private lo = Number.NEGATIVE_INFINITY;
  private hi = Number.POSITIVE_INFINITY;
  samples = 0;

  add(s: ServerDateSample): void {
    // The server stamped its Date at some instant between our send and our receipt, in [D, D + 1 s).
    const lo = s.dateMs - s.receivedAt;
    const hi = s.dateMs + 1_000 - s.sentAt;
    if (lo > this.hi || hi < this.lo) {
      // The clock stepped (NTP, a VM resumed): start over from this answer.
      this.lo = lo;
      this.hi = hi;
    } else {
      this.lo = Math.max(this.lo, lo);
      this.hi = Math.min(this.hi, hi);
    }
    this.samples++;
  }

  /**
   * How far this clock is certainly off, ms: positive when it is behind the server, negative when it
   * is ahead, 0 when the evidence allows no offset beyond `bound`.
   */
  excess(bound: number): number {
    if (this.lo > bound) return this.lo;
    if (this.hi < -bound) return this.hi;
    return 0;
  }

  /** Starts from bounds measured before (by another ledger of this process on the same clock). */
  seed(lo: number, hi: number): void {
    this.lo = lo;
    this.hi = hi;
    this.samples = 1;
  }

  /** The ledger clock moved forward by `deltaMs` (backward if negative): the server is that much nearer. */
  shift(deltaMs: number): void {
    this.lo -= deltaMs;
    this.hi -= deltaMs;
  }

  /** The interval, for operators (null before the first answer). */
  bounds(): { lo: number; hi: number } | null {
    return this.samples === 0 ? null : { lo: this.lo, hi: this.hi };
  }
}
