// Use case policy: the invocation's deadline, shared by every record of a batch. Records page
// concurrently, so each one stops starting new pages once the time left could not hold the slowest
// page any of them has seen (twice over) plus the safety margin, and continues in a new message.
import type { Invocation } from './sync.ts';

export class InvocationDeadline implements Invocation {
  private readonly remaining: () => number;
  private readonly safetyMarginMs: number;
  private slowestMs = 0;

  /** `remaining` is Lambda's context.getRemainingTimeInMillis. */
  constructor(remaining: () => number, safetyMarginMs: number) {
    this.remaining = remaining;
    this.safetyMarginMs = safetyMarginMs;
  }

  remainingMs(): number {
    return this.remaining();
  }

  /** A page and its mirror write and checkpoint took `ms` (any record of the batch). */
  pageTook(ms: number): void {
    if (ms > this.slowestMs) this.slowestMs = ms;
  }

  /** The time a new page must find left: the safety margin plus twice the slowest page seen. */
  reserveMs(): number {
    return this.safetyMarginMs + 2 * this.slowestMs;
  }
}
