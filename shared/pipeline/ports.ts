// Ports: the structured log and the metrics the pipeline writes. Lambda uses Powertools behind them
// (functions/); the local runtime and tests use the small implementations here.

/** A structured logger. Field names are stable; no field ever holds a key or a header set. */
export interface Log {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  /** A logger that adds `keys` to every line (job id, account, resource). */
  child(keys: Record<string, unknown>): Log;
}

export type MetricName =
  | 'KeapCalls'
  | 'Keap429s'
  | 'Deferrals'
  | 'RecordsWritten'
  | 'RecordsStale'
  | 'Pages'
  | 'SyncLagMs'
  | 'DeadLetters'
  | 'KeyRejected'
  | 'JobsEnqueued'
  | 'JobsSkipped'
  | 'WritesDone'
  | 'WritesDuplicate'
  | 'QuotaMinuteLeft'
  | 'QuotaDayLeft';

/** Metrics for what operators watch. Dimensions: account, resource, reason where they apply. */
export interface Metrics {
  add(name: MetricName, value: number, dimensions?: Record<string, string>): void;
}

type Level = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** JSON lines: {"level","time","message",...fields}. */
export function jsonLog(
  write: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
  base: Record<string, unknown> = {},
  minLevel: Level = 'info',
): Log {
  const emit = (level: Level, message: string, fields?: Record<string, unknown>) => {
    if (LEVELS[level] < LEVELS[minLevel]) return;
    write(JSON.stringify({ level, time: new Date().toISOString(), message, ...base, ...fields }));
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (keys) => jsonLog(write, { ...base, ...keys }, minLevel),
  };
}

/** Keeps every line in memory (tests, and the local live view's recent events). */
export class MemoryLog implements Log {
  readonly lines: Array<{ level: Level; message: string } & Record<string, unknown>>;
  private readonly base: Record<string, unknown>;
  constructor(lines: MemoryLog['lines'] = [], base: Record<string, unknown> = {}) {
    this.lines = lines;
    this.base = base;
  }
  private push(level: Level, message: string, fields?: Record<string, unknown>): void {
    this.lines.push({ level, message, ...this.base, ...fields });
  }
  debug(m: string, f?: Record<string, unknown>): void {
    this.push('debug', m, f);
  }
  info(m: string, f?: Record<string, unknown>): void {
    this.push('info', m, f);
  }
  warn(m: string, f?: Record<string, unknown>): void {
    this.push('warn', m, f);
  }
  error(m: string, f?: Record<string, unknown>): void {
    this.push('error', m, f);
  }
  child(keys: Record<string, unknown>): Log {
    return new MemoryLog(this.lines, { ...this.base, ...keys });
  }
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
