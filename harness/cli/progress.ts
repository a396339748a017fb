// Use case (CLI): progress lines. A backfill's in the live view: the lists that had never finished a
// sync when `keap-sync run` started, their pages and records done of the estimated total, and an ETA
// from the rate seen so far. An export's (`keap-sync export`): records read of the mirror's total.
import { RESOURCES } from '#shared/keap/resources.ts';
import type { StatusReport } from './status.ts';

export interface BackfillProgress {
  pages: { done: number; total: number };
  records: { done: number; total: number };
  /** Share done, 0..1. */
  fraction: number;
  /** Time left at the rate seen so far; null until there is a rate. */
  etaMs: number | null;
  finished: boolean;
}

export class BackfillMeter {
  /** `account#resource` of the lists in the backfill (fixed by the first report). */
  private lists: Set<string> | undefined;
  private first: { at: number; records: number } | undefined;
  private readonly expected: Readonly<Record<string, number>>;

  /** @param expected records per resource the account is expected to hold (the estimate, or the sandbox's dataset). */
  constructor(expected: Readonly<Record<string, number>>) {
    this.expected = expected;
  }

  /** The progress in `report`; undefined when nothing was left to backfill at start. */
  sample(report: StatusReport, now: number = Date.now()): BackfillProgress | undefined {
    this.lists ??= new Set(
      report.accounts.flatMap((a) =>
        a.resources.filter((r) => r.lastRunAt === null).map((r) => `${a.id}#${r.resource}`),
      ),
    );
    if (this.lists.size === 0) return undefined;
    const p: BackfillProgress = {
      pages: { done: 0, total: 0 },
      records: { done: 0, total: 0 },
      fraction: 0,
      etaMs: null,
      finished: true,
    };
    for (const a of report.accounts) {
      for (const r of a.resources) {
        if (!this.lists.has(`${a.id}#${r.resource}`)) continue;
        const done = r.state === 'in-sync';
        // Once a list is in sync its total is what it holds; until then the estimate (or more, if passed).
        const total = done ? r.records : Math.max(this.expected[r.resource] ?? 0, r.records);
        const pageSize = RESOURCES[r.resource].maxPageSize;
        const pages = Math.max(1, Math.ceil(total / pageSize));
        p.records.done += r.records;
        p.records.total += total;
        p.pages.total += pages;
        p.pages.done += done ? pages : Math.min(pages, r.pagesThisRun ?? Math.floor(r.records / pageSize));
        if (!done) p.finished = false;
      }
    }
    p.fraction = p.finished ? 1 : p.records.total === 0 ? 0 : Math.min(1, p.records.done / p.records.total);
    this.first ??= { at: now, records: p.records.done };
    const rate = (p.records.done - this.first.records) / Math.max(1, now - this.first.at);
    if (p.finished) p.etaMs = 0;
    else if (rate > 0) p.etaMs = Math.max(0, p.records.total - p.records.done) / rate;
    return p;
  }
}

/** A bar of `width` cells, `fraction` (0..1) of them filled. */
export function progressBar(fraction: number, width = 24): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
}

/** One line: a bar, the share, pages and records of the total, and the ETA. */
export function formatProgress(p: BackfillProgress, width = 24): string {
  const bar = progressBar(p.fraction, width);
  const n = (x: number) => x.toLocaleString('en-US');
  const eta = p.finished ? 'done' : p.etaMs === null ? 'ETA -' : `ETA ${duration(p.etaMs)}`;
  return (
    `backfill ${bar} ${String(Math.floor(p.fraction * 100)).padStart(3)}%  ` +
    `pages ${n(p.pages.done)}/${n(p.pages.total)}  records ${n(p.records.done)}/${n(p.records.total)}  ${eta}`
  );
}

function duration(ms: number): string {
  const s = Math.ceil(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** An export's progress line: records read of the mirror's total, records written, rate and ETA. */
export function formatExportProgress(
  p: { list: string; read: number; total: number; written: number; elapsedMs: number },
  width = 24,
): string {
  const fraction = p.total === 0 ? 1 : Math.min(1, p.read / p.total);
  const n = (x: number) => x.toLocaleString('en-US');
  const rate = p.elapsedMs > 0 ? p.read / p.elapsedMs : 0;
  const eta = fraction >= 1 ? 'done' : rate > 0 ? `ETA ${duration((p.total - p.read) / rate)}` : 'ETA -';
  return (
    `export ${p.list} ${progressBar(fraction, width)} ${String(Math.floor(fraction * 100)).padStart(3)}%  ` +
    `read ${n(p.read)}/${n(p.total)}  written ${n(p.written)}  ${eta}`
  );
}
