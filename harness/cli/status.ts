// Use case (CLI): what an operator wants to see: per account the key state, per resource the cursor,
// lag and last run, per scope the quota used and left per window, and the queues' depths.
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { SyncResource } from '#shared/jobs/schema.ts';
import type { PipelineDeps } from '#shared/pipeline/index.ts';
import { mapLimit } from '#shared/pipeline/parallel.ts';
import { queueDepth } from '../local/sqs.ts';
import { formatTable } from './table.ts';

export interface ResourceStatus {
  resource: SyncResource;
  state: 'never-synced' | 'syncing' | 'in-sync';
  records: number;
  highWater: string | null;
  /** Time since the last finished run: how old the mirror's view of the list is. */
  lagMs: number | null;
  lastRunAt: string | null;
  lastRunMode: string | null;
  lastRunRecords: number | null;
  pagesThisRun: number | null;
}

export interface StatusReport {
  at: string;
  accounts: Array<{
    id: string;
    tenant: string;
    /** Paused with `keap-sync accounts pause`: not scheduled, and not counted by `inSync`. */
    paused?: boolean;
    key: 'active' | 'key-rejected';
    keyRejectedReason: string | null;
    resources: ResourceStatus[];
    quota: {
      minute: { limit: number; used: number; left: number; heldAhead: number; freesAt: string | null };
      day: { limit: number; used: number; left: number; resetsAt: string };
      coolDownUntil: string | null;
      /** Send timing the workers wrote to the ledger in the last 5 minutes (null: no calls). */
      timing: {
        since: string;
        sendLatenessP99Ms: number;
        sendLatenessMaxMs: number;
        refused: number;
        handoverGapMinMs: number | null;
        toleranceMs: number;
        spikeMarginMs: number;
      } | null;
    };
  }>;
  queue: { visible: number; inFlight: number; delayed: number } | null;
  deadLetters: number | null;
  inSync: boolean;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** What a status report reads: the state and mirror tables, the ledger, and (when running) the queues. */
export type StatusSources = Pick<
  PipelineDeps,
  'config' | 'runs' | 'accounts' | 'mirror' | 'ledger' | 'directory'
> & {
  queues?: { client: SQSClient; queueUrl: string; dlqUrl: string };
};

export interface ListRef {
  account: string;
  resource: SyncResource;
}

/** Counts the mirror's records of each list: a Query per 500 records, so its cost grows with the data. */
export type RecordCounter = (lists: readonly ListRef[]) => Promise<number[]>;

/** Exact counts, read now (16 lists at a time). */
export function countNow(mirror: StatusSources['mirror']): RecordCounter {
  return (lists) => mapLimit(lists, 16, (p) => mirror.count(p.account, p.resource));
}

/**
 * Record counts for a view that refreshes every second or so. A count reads every record of every
 * list (dynalite walks each one), so recounting on every refresh would make the view's cost grow with
 * the mirror until it starves the workers beside it: at 100,000 contacts (about 600,000 records) it
 * took most of a CPU and the run slowed to a call a minute. Here a recount starts only once
 * `idleFactor` times the last count's duration has passed since it ended (so counting takes at most
 * 1 / (idleFactor + 1) of the time), runs in the background, and the view shows the last counts
 * meanwhile; only the very first call waits for a count.
 */
export class PacedRecordCounts {
  private last = new Map<string, number>();
  private nextAt = 0;
  private running: Promise<void> | undefined;
  private first = true;

  private readonly count: RecordCounter;
  private readonly idleFactor: number;
  private readonly now: () => number;

  constructor(count: RecordCounter, idleFactor = 20, now: () => number = Date.now) {
    this.count = count;
    this.idleFactor = idleFactor;
    this.now = now;
  }

  readonly counter: RecordCounter = async (lists) => {
    if (this.running === undefined && this.now() >= this.nextAt) {
      const started = this.now();
      this.running = this.count(lists)
        .then((counts) => {
          this.last = new Map(lists.map((l, i) => [PacedRecordCounts.key(l), counts[i] ?? 0]));
        })
        .finally(() => {
          const ended = this.now();
          this.nextAt = ended + this.idleFactor * (ended - started);
          this.running = undefined;
        });
      // The first view waits for real counts; later ones never wait (a failed recount keeps the last).
      if (this.first) {
        this.first = false;
        await this.running;
      } else this.running.catch(() => {});
    }
    return lists.map((l) => this.last.get(PacedRecordCounts.key(l)) ?? 0);
  };

  /** Resolves once no recount is running (a background one included): before the stores close. */
  async settled(): Promise<void> {
    await this.running?.catch(() => {});
  }

  private static key(l: ListRef): string {
    return `${l.account}\u0000${l.resource}`;
  }
}

/**
 * `countRecords: false` skips counting the mirror (a Query per 500 records of every list; `records` is
 * then 0), for callers that only want `inSync`, such as `run --until-idle`'s check twice a second;
 * `counts` replaces the exact count read now (the default), e.g. with a `PacedRecordCounts`.
 */
export async function collectStatus(
  deps: StatusSources,
  now: number = Date.now(),
  options: { countRecords?: boolean; counts?: RecordCounter } = {},
): Promise<StatusReport> {
  const countRecords = options.countRecords ?? true;
  const accounts: StatusReport['accounts'] = [];
  let inSync = true;
  // Batched reads, as the scheduler's: the registry, every key status, every cursor, every quota item.
  const registered = await deps.directory.list();
  const ids = registered.map((e) => e.account.id);
  const statuses = await deps.accounts.getStatuses(ids);
  const pairs = registered.flatMap((e) =>
    (Object.keys(e.account.resources) as SyncResource[]).map((resource) => ({
      account: e.account.id,
      resource,
    })),
  );
  const cursors = await deps.runs.getCursors(pairs);
  const counts = countRecords ? await (options.counts ?? countNow(deps.mirror))(pairs) : pairs.map(() => 0);
  const snaps = await deps.ledger.snapshots(registered.map((e) => e.account.tenant));
  let next = 0;
  for (const { account, paused } of registered) {
    const status = statuses.get(account.id) ?? { state: 'active' as const, since: null };
    const resources: ResourceStatus[] = [];
    for (const resource of Object.keys(account.resources) as SyncResource[]) {
      const i = next++;
      const cursor = cursors[i];
      if (!cursor) continue;
      const state = cursor.checkpoint ? 'syncing' : cursor.lastRunAt ? 'in-sync' : 'never-synced';
      if (state !== 'in-sync' && !paused) inSync = false;
      resources.push({
        resource,
        state,
        records: counts[i] ?? 0,
        highWater: iso(cursor.highWaterMs),
        lagMs: cursor.lastRunAt === null ? null : Math.max(0, now - Date.parse(cursor.lastRunAt)),
        lastRunAt: cursor.lastRunAt,
        lastRunMode: cursor.lastRunMode,
        lastRunRecords: cursor.lastRunRecords,
        pagesThisRun: cursor.checkpoint?.pages ?? null,
      });
    }
    const snap = snaps.get(account.tenant) ?? (await deps.ledger.snapshot(account.tenant));
    accounts.push({
      id: account.id,
      tenant: account.tenant,
      paused,
      key: status.state,
      keyRejectedReason: status.state === 'key-rejected' ? status.reason : null,
      resources,
      quota: {
        minute: {
          limit: snap.minute.limit,
          used: snap.minute.used,
          left: snap.minute.left,
          heldAhead: snap.minute.heldAhead,
          freesAt: iso(snap.minute.freesAt),
        },
        day: {
          limit: snap.day.limit,
          used: snap.day.used,
          left: snap.day.left,
          resetsAt: iso(snap.day.resetsAt) ?? '',
        },
        coolDownUntil: iso(snap.coolDownUntil),
        timing: snap.timing ? { ...snap.timing, since: iso(snap.timing.since) ?? '' } : null,
      },
    });
  }
  let queue: StatusReport['queue'] = null;
  let deadLetters: number | null = null;
  if (deps.queues) {
    const { client, queueUrl, dlqUrl } = deps.queues;
    const q = await queueDepth(client, queueUrl);
    queue = { visible: q.visible, inFlight: q.notVisible, delayed: q.delayed };
    const d = await queueDepth(client, dlqUrl);
    deadLetters = d.visible + d.notVisible + d.delayed;
    if (q.visible + q.notVisible + q.delayed > 0) inSync = false;
  }
  return { at: new Date(now).toISOString(), accounts, queue, deadLetters, inSync };
}

/** The report as a table for a terminal or a log. */
export function formatStatus(r: StatusReport, extra: { deferrals?: number } = {}): string {
  const lines: string[] = [];
  for (const a of r.accounts) {
    const q = a.quota;
    lines.push(
      `account ${a.id} (tenant ${a.tenant})${a.paused ? '  PAUSED' : ''}  key: ${a.key}${a.keyRejectedReason ? ` (${a.keyRejectedReason.slice(0, 80)})` : ''}`,
    );
    lines.push(
      `  quota  minute: ${q.minute.used} used, ${q.minute.left} left of ${q.minute.limit}` +
        `${q.minute.heldAhead ? `, ${q.minute.heldAhead} held` : ''}${q.minute.freesAt ? `, frees ${q.minute.freesAt.slice(11, 19)}` : ''}` +
        `   day: ${q.day.used} used, ${q.day.left} left of ${q.day.limit}, resets ${q.day.resetsAt.slice(0, 16)}` +
        `${q.coolDownUntil ? `   cool-down until ${q.coolDownUntil.slice(11, 19)}` : ''}`,
    );
    if (q.timing) {
      const t = q.timing;
      lines.push(
        `  sends  lateness p99 ${t.sendLatenessP99Ms} ms, max ${t.sendLatenessMaxMs} ms (tolerance ${t.toleranceMs}, spike margin ${t.spikeMarginMs})` +
          `   refused ${t.refused}   hand-over gap min ${t.handoverGapMinMs === null ? '-' : `${t.handoverGapMinMs} ms`}   since ${t.since.slice(11, 19)}`,
      );
    }
    const rows = a.resources.map((res) => [
      res.resource,
      res.state === 'syncing' ? `syncing p${res.pagesThisRun ?? 0}` : res.state,
      String(res.records),
      (res.lastRunAt ?? '-').slice(0, 19),
      res.lagMs === null ? '-' : humanMs(res.lagMs),
    ]);
    lines.push(
      formatTable(['resource', 'state', 'records', 'last run', 'lag'], rows, {
        indent: '  ',
        rule: false,
        align: ['left', 'left', 'right', 'left', 'right'],
      }),
    );
  }
  const queue = r.queue
    ? `${r.queue.visible} waiting, ${r.queue.inFlight} in flight, ${r.queue.delayed} delayed`
    : 'not reachable';
  lines.push(
    `queue: ${queue}   dead letters: ${r.deadLetters ?? '-'}${extra.deferrals !== undefined ? `   deferrals: ${extra.deferrals}` : ''}   ${r.inSync ? 'IN SYNC' : ''}`,
  );
  return lines.join('\n');
}

function humanMs(ms: number): string {
  if (ms < 60_000) return `${Math.round(ms / 1000)}s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)}m`;
  if (ms < 86_400_000 * 2) return `${Math.round(ms / 3_600_000)}h`;
  return `${Math.round(ms / 86_400_000)}d`;
}
