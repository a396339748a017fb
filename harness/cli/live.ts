// Adapter (CLI): the live view of `keap-sync run`. On a terminal each frame replaces the last in place
// (log-update); to a file or a pipe, each frame is a plain block of lines, less often.
import { createLogUpdate } from 'log-update';

export interface LiveView {
  /** How often the view wants a new frame. */
  readonly everyMs: number;
  show(frame: string): void;
  /** Leaves the last frame where it is; what is written next goes below it. */
  done(): void;
}

export function liveView(io: { out: (text: string) => void; isTty: boolean }): LiveView {
  // A terminal that reports no size (rows 0) would get empty frames from log-update: plain lines there too.
  const sized = (process.stdout.rows ?? 0) > 0 && (process.stdout.columns ?? 0) > 0;
  if (!io.isTty || !sized) return { everyMs: 5_000, show: (frame) => io.out(frame), done: () => {} };
  const update = createLogUpdate(process.stdout, { showCursor: true });
  return { everyMs: 1_000, show: (frame) => update(frame), done: () => update.done() };
}
