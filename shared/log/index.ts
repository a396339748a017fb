// Port: the one structured log every part writes to (Keap client, pipeline, local poller). A line is
// a message and flat fields. Powertools' Logger satisfies it as it is (the Lambdas pass theirs in);
// the local runtime writes JSON lines, tests keep lines in memory.

/** Fields of a log line. Names are stable; no field ever holds a key or a header set. */
export type LogFields = Record<string, unknown>;

/**
 * A structured logger: a message and its fields per line (usually one object; several are merged).
 * The rest parameter is what lets Powertools' `(message, ...attributes)` methods satisfy it as they are.
 */
export interface Log {
  debug(message: string, ...fields: LogFields[]): void;
  info(message: string, ...fields: LogFields[]): void;
  warn(message: string, ...fields: LogFields[]): void;
  error(message: string, ...fields: LogFields[]): void;
}

export type LogLevel = keyof Log;
const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/**
 * A log that adds `fields` to every line it writes to `log` (job id, account, resource), merged into
 * one fields object (a line's own field of the same name wins). It holds no state of its own, so
 * concurrent jobs sharing one logger never see each other's fields, and what the logger adds itself
 * (Powertools' Lambda context) stays on every line.
 */
export function withFields(log: Log, fields: LogFields): Log {
  return {
    debug: (m, ...f) => log.debug(m, merge([fields, ...f])),
    info: (m, ...f) => log.info(m, merge([fields, ...f])),
    warn: (m, ...f) => log.warn(m, merge([fields, ...f])),
    error: (m, ...f) => log.error(m, merge([fields, ...f])),
  };
}

/** One object of a line's fields; a later object's field wins. */
function merge(fields: readonly LogFields[]): LogFields {
  return Object.assign({}, ...fields);
}

/** JSON lines: {"level","time","message",...fields}. */
export function jsonLog(
  write: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
  base: LogFields = {},
  minLevel: LogLevel = 'info',
): Log {
  const emit = (level: LogLevel, message: string, fields: LogFields[]) => {
    if (LEVELS[level] < LEVELS[minLevel]) return;
    write(JSON.stringify({ level, time: new Date().toISOString(), message, ...base, ...merge(fields) }));
  };
  return {
    debug: (m, ...f) => emit('debug', m, f),
    info: (m, ...f) => emit('info', m, f),
    warn: (m, ...f) => emit('warn', m, f),
    error: (m, ...f) => emit('error', m, f),
  };
}

/** Keeps every line in memory (tests, and the local live view's recent events). */
export class MemoryLog implements Log {
  readonly lines: Array<{ level: LogLevel; message: string } & LogFields>;
  constructor(lines: MemoryLog['lines'] = []) {
    this.lines = lines;
  }
  private push(level: LogLevel, message: string, fields: LogFields[]): void {
    this.lines.push({ level, message, ...merge(fields) });
  }
  debug(m: string, ...f: LogFields[]): void {
    this.push('debug', m, f);
  }
  info(m: string, ...f: LogFields[]): void {
    this.push('info', m, f);
  }
  warn(m: string, ...f: LogFields[]): void {
    this.push('warn', m, f);
  }
  error(m: string, ...f: LogFields[]): void {
    this.push('error', m, f);
  }
}
