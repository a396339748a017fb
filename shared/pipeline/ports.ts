// Ports: the metrics the pipeline writes, and the project's one log port (shared/log). Lambda uses
// Powertools behind them (shared/lambda/runtime.ts); the local runtime and tests use the small
// implementations here.

export { jsonLog, type Log, type LogFields, MemoryLog, withFields } from '../log/index.ts';

export type MetricName =
  | 'KeapCalls'
  | 'Keap429s'
  | 'Deferrals'
  | 'RecordsWritten'
  | 'RecordsStale'
  | 'RecordsDeleted'
  /** Custom-field models read again from Keap (dimension reason: missing, expired, unknown-id). */
  | 'ModelsRefreshed'
  | 'HookLagMs'
  | 'Pages'
  | 'SyncLagMs'
  | 'DeadLetters'
  | 'KeyRejected'
  | 'JobsEnqueued'
  | 'JobsSkipped'
  | 'WritesDone'
  | 'WritesDuplicate'
  | 'QuotaMinuteLeft'
  | 'QuotaDayLeft'
  /** Send lateness at the ledger's last check before a request is written (ms after its slot). */
  | 'SendLatenessP50Ms'
  | 'SendLatenessP99Ms'
  | 'SendLatenessMaxMs'
  /** Calls the ledger's last check refused (late, cool-down, bad clock): never sent. */
  | 'CallsRefused'
  /** REST hook deliveries the receiver accepted (queued) and refused (dimension reason). */
  | 'HookDeliveries'
  | 'HookDeliveriesRejected'
  /** Deliveries the receiver could not queue (answered 503 so Keap retries). */
  | 'HookEnqueueFailures'
  /** Hooks Keap turned Inactive, found by the scheduled check; and those it re-verified. */
  | 'HooksInactive'
  | 'HooksReverified'
  /** Keap calls of reconciliation sweeps (pages of ids). */
  | 'SweepCalls'
  /** Smallest gap between another worker's slot of a key and this worker's next call of it (ms). */
  | 'HandoverGapMinMs';

/** Metrics for what operators watch. Dimensions: account, resource, reason where they apply. */
export interface Metrics {
  add(name: MetricName, value: number, dimensions?: Record<string, string>): void;
}

/** Sums every metric per name and dimension set (tests, local runtime's live view). */
export class MemoryMetrics implements Metrics {
  readonly totals = new Map<string, number>();
  add(name: MetricName, value: number, dimensions: Record<string, string> = {}): void {
    const dims = Object.entries(dimensions)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    const key = dims ? `${name}|${dims}` : name;
    this.totals.set(key, (this.totals.get(key) ?? 0) + value);
  }
  /** Total of a metric over every dimension set (or those matching `where`). */
  sum(name: MetricName, where: Record<string, string> = {}): number {
    let total = 0;
    for (const [key, v] of this.totals) {
      const [n, dims = ''] = key.split('|');
      if (n !== name) continue;
      const have = new Map(dims ? dims.split(',').map((d) => d.split('=') as [string, string]) : []);
      if (Object.entries(where).every(([k, w]) => have.get(k) === w)) total += v;
    }
    return total;
  }
}
