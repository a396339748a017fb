// Adapter (drills, soak and fault benchmarks): figures read from a run: process memory, percentiles,
// the transient failures the log shows and how many of those jobs finished afterwards.
import { readFileSync } from 'node:fs';

/** Resident memory of a process, MB (from /proc; NaN where there is no /proc). */
export function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** The p-th percentile (0-100) of `values`, nearest rank; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

interface Line {
  message?: string;
  runId?: string;
  idempotencyKey?: string;
  account?: string;
  jobId?: string;
  resource?: string;
  next?: string;
  time?: string;
}

export interface TransientTally {
  /** Requests retried inside the client (the job did not fail). */
  requestRetries: number;
  /** Jobs that failed on a transient error and were re-sent with a backoff (distinct jobs). */
  jobsFailed: number;
  /** Of those, jobs that later finished (a sync run finished, a write performed or dropped as done). */
  jobsRecovered: number;
  /** Jobs dead-lettered after too many transient failures in a row. */
  retriesExhausted: number;
}

function parse(line: string): Line | undefined {
  try {
    return JSON.parse(line) as Line;
  } catch {
    return undefined;
  }
}

/** Reads the transient failures and their recoveries from the JSON log lines of a run. */
export function tallyTransient(lines: readonly string[]): TransientTally {
  const failed = new Set<string>();
  const finished = new Set<string>();
  let requestRetries = 0;
  let retriesExhausted = 0;
  // A write is known by its idempotency key; a sync by its list (a retried run finishes under the
  // same list, and a later run of the list counts: the list was read after all).
  const keyOf = (l: Line) =>
    l.idempotencyKey ?? (l.resource ? `${l.account ?? ''}/${l.resource}` : (l.jobId ?? ''));
  for (const raw of lines) {
    const l = parse(raw);
    if (!l?.message) continue;
    if (l.message === 'Retrying a Keap request after a transient failure') requestRetries++;
    else if (l.message.startsWith('Job failed on a transient error')) {
      if (l.next === 'dead-letter') retriesExhausted++;
      else failed.add(keyOf(l));
    } else if (
      l.message === 'Sync finished' ||
      l.message === 'Write performed' ||
      l.message === 'This sync run already finished; the redelivered message is dropped' ||
      l.message.startsWith('This write was already performed')
    ) {
      finished.add(keyOf(l));
    }
  }
  let jobsRecovered = 0;
  for (const k of failed) if (finished.has(k)) jobsRecovered++;
  return { requestRetries, jobsFailed: failed.size, jobsRecovered, retriesExhausted };
}
