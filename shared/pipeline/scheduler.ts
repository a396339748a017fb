// Use case: the scheduler. For each registered account and resource that is due, takes the
// (account, resource) lease and enqueues one sync job; never two in flight, never bulk work the
// day's quota cannot serve. One tick reads the registry (one Query), every account's key status and
// every list's cursor (BatchGetItem, 100 keys a call), every account's quota item (BatchGetItem),
// the due lists' leases (BatchGetItem: one in flight is skipped without a write), takes the free
// ones' leases with bounded parallelism (conditional writes), and sends their jobs in SendMessageBatch
// calls of 10: its round trips grow with the due lists / 10, never one after another per account.
import { randomUUID } from 'node:crypto';
import { type AccountConfig, bulkJobsPerAccount } from '../config/app-config.ts';
import type { HookEndpoint } from '../hooks/endpoints.ts';
import { hookEventKeysFor } from '../hooks/lifecycle.ts';
import type { JobInput, SyncResource } from '../jobs/schema.ts';
import type { Cursor } from '../store/index.ts';
import { openAccount } from './account-gate.ts';
import type { PipelineDeps } from './deps.ts';
import { mapLimit } from './parallel.ts';
import { sweepCalls } from './sweep.ts';
import { tagApplicationCalls } from './tag-applications.ts';

export type SkipReason =
  | 'not-due'
  | 'in-flight'
  | 'quota'
  | 'key-rejected'
  | 'key-missing'
  | 'paused'
  | 'send-failed'
  /** The account has scheduler.bulkJobsPerAccount full syncs queued or running already. */
  | 'bulk-cap';

export interface SchedulerResult {
  enqueued: Array<{ account: string; resource: SyncResource; runId: string; mode: 'incremental' | 'full' }>;
  skipped: Array<{ account: string; resource: SyncResource; reason: SkipReason }>;
}

/** Conditional writes (leases), mirror counts and secret reads a tick keeps in flight at once. */
export const SCHEDULER_PARALLELISM = 32;

/** Some jobs could not be sent; their leases were released and the next tick tries again. */
export class EnqueueFailedError extends Error {
  readonly jobs: number;
  constructor(jobs: number) {
    super(
      `SQS refused ${jobs} sync job(s) of this scheduler run; their leases were released, so the next ` +
        'run enqueues them again. Check the queue and its policy if this repeats.',
    );
    this.name = 'EnqueueFailedError';
    this.jobs = jobs;
  }
}

type Schedule = { everyMinutes: number; mode: 'incremental' | 'full' };
const listsOf = (a: AccountConfig) => Object.entries(a.resources) as Array<[SyncResource, Schedule]>;

interface Candidate {
  account: AccountConfig;
  resource: SyncResource;
  mode: 'incremental' | 'full';
  needed: number;
  runId: string;
}

/**
 * `tickMs`: how often the scheduler runs (default `scheduler.everyMinutes`). A list is due when its
 * interval has passed since its last run finished, less half a tick: a run finishes a little after
 * the tick that queued it, and without the slack every list would sync one tick late.
 */
export async function runScheduler(
  deps: PipelineDeps,
  nowMs: number = Date.now(),
  tickMs: number = deps.config.scheduler.everyMinutes * 60_000,
): Promise<SchedulerResult> {
  const { config, runs, leases, ledger, queue, log, metrics, directory } = deps;
  const result: SchedulerResult = { enqueued: [], skipped: [] };
  const skipAll = (account: AccountConfig, reason: SkipReason) => {
    for (const [resource] of listsOf(account)) result.skipped.push({ account: account.id, resource, reason });
    metrics.add('JobsSkipped', listsOf(account).length, { account: account.id, reason });
  };

  // 1. The registry, then every account's key status in one batched read.
  const registered = await directory.list();
  const live = registered.filter((e) => {
    if (e.paused) skipAll(e.account, 'paused');
    return !e.paused;
  });
  const statuses = await deps.accounts.getStatuses(live.map((e) => e.account.id));
  // Only a stopped account needs more: its secret is read to see whether a new key was stored.
  const gates = await mapLimit(live, SCHEDULER_PARALLELISM, async ({ account }) => {
    const status = statuses.get(account.id);
    if (status?.state !== 'key-rejected') return { open: true as const };
    return openAccount(account, deps, undefined, status);
  });
  const open: AccountConfig[] = [];
  live.forEach(({ account }, i) => {
    const gate = gates[i];
    if (!gate || gate.open) {
      open.push(account);
      return;
    }
    if (gate.reason === 'key-rejected') {
      log.warn('Account stopped: Keap rejected its key; store a new key to resume', { account: account.id });
    }
    skipAll(account, gate.reason);
  });

  // 2. Every open account's quota and every list's cursor, in batched reads.
  const snaps = await ledger.snapshots(open.map((a) => a.tenant));
  const pairs = open.flatMap((a) => listsOf(a).map(([resource]) => ({ account: a.id, resource })));
  const cursors = await runs.getCursors(pairs);
  const cursorOf = new Map(cursors.map((c) => [listKey(c.account, c.resource), c]));

  // Each account's hook check (when its hooks are due one) and its hook state, for relaxed polling.
  const hooksOf = new Map<string, HookEndpoint | undefined>();
  const hookStates = await mapLimit(open, SCHEDULER_PARALLELISM, (a) => scheduleHookCheck(deps, a.id, nowMs));
  for (const [i, a] of open.entries()) hooksOf.set(a.id, hookStates[i]);

  // 3. What is due, and what a full read of it costs (the list's size in its cursor, full reads only).
  const due: Array<Omit<Candidate, 'needed' | 'runId'>> = [];
  for (const account of open) {
    const hooks = hooksOf.get(account.id);
    const snap = snaps.get(account.tenant);
    if (snap) {
      metrics.add('QuotaDayLeft', snap.day.left, { account: account.id });
      metrics.add('QuotaMinuteLeft', snap.minute.left, { account: account.id });
    }
    for (const [resource, schedule] of listsOf(account)) {
      const cursor = cursorOf.get(listKey(account.id, resource));
      const lastRun = cursor?.lastRunAt == null ? null : Date.parse(cursor.lastRunAt);
      // Sync lag: how old the mirror's view of this list is (time since its last finished run).
      if (lastRun !== null)
        metrics.add('SyncLagMs', Math.max(0, nowMs - lastRun), { account: account.id, resource });
      const everyMs = pollEveryMs(deps, account, resource, schedule.everyMinutes, hooks, nowMs);
      const slack = Math.min(tickMs, everyMs) / 2;
      const isDue = lastRun === null || nowMs - lastRun >= everyMs - slack;
      if (!isDue && (cursor?.checkpoint ?? null) === null) {
        result.skipped.push({ account: account.id, resource, reason: 'not-due' });
        continue;
      }
      const mode = (cursor?.highWaterMs ?? null) === null ? 'full' : schedule.mode;
      due.push({ account, resource, mode });
    }
  }
  // A list whose lease is live is in flight: skipped here, with no conditional write to find out.
  const held = await leases.getMany(due.map((d) => ({ account: d.account.id, resource: d.resource })));
  // Fairness: full syncs (backfills) in flight per account, from the leases just read.
  const bulkInFlight = new Map<string, number>();
  const free = due.filter((d, i) => {
    const lease = held[i];
    const live = lease !== undefined && lease.expiresAtMs > nowMs;
    if (live) {
      result.skipped.push({ account: d.account.id, resource: d.resource, reason: 'in-flight' });
      if (d.mode === 'full') bulkInFlight.set(d.account.id, (bulkInFlight.get(d.account.id) ?? 0) + 1);
    }
    return !live;
  });
  // A full read's cost is the list's size, from its cursor; a list that never ran has nothing to read
  // again. Tag applications are read tag by tag: every run of them costs a call per tag at least.
  const sizeOf = listSizes(deps, cursorOf);
  const counts = await mapLimit(free, SCHEDULER_PARALLELISM, (d) =>
    d.mode === 'full' && cursorOf.get(listKey(d.account.id, d.resource))?.lastRunAt != null
      ? sizeOf(d.account.id, d.resource)
      : Promise.resolve(0),
  );
  const tagCounts = await mapLimit(free, SCHEDULER_PARALLELISM, (d) =>
    d.resource === 'tagApplications' ? sizeOf(d.account.id, 'tags') : Promise.resolve(0),
  );

  // 4. The day's bulk budget, per account, in the configured order of its lists.
  const bulkShare = ledger.config.bulkShare;
  // Fairness is between accounts: an account alone may use every worker for its backfill.
  const bulkCap = open.length > 1 ? bulkJobsPerAccount(config) : Number.POSITIVE_INFINITY;
  const bulkLeftOf = new Map<string, number>();
  const candidates: Candidate[] = [];
  free.forEach((d, i) => {
    const snap = snaps.get(d.account.tenant);
    let bulkLeft =
      bulkLeftOf.get(d.account.id) ??
      (snap ? Math.floor(snap.day.limit * bulkShare) - (snap.day.used + snap.day.heldAhead) : 0);
    // A full read costs a call per 1,000 records; keep a reserve so incremental syncs still run.
    const reads = runCalls(d.resource, d.mode, counts[i] ?? 0, tagCounts[i] ?? 0);
    const needed = d.mode === 'full' ? reads + config.scheduler.reserveCallsForIncremental : reads;
    const bulkRunning = bulkInFlight.get(d.account.id) ?? 0;
    if (d.mode === 'full' && bulkRunning >= bulkCap) {
      result.skipped.push({ account: d.account.id, resource: d.resource, reason: 'bulk-cap' });
      metrics.add('JobsSkipped', 1, { account: d.account.id, resource: d.resource, reason: 'bulk-cap' });
    } else if (bulkLeft < needed) {
      log.warn('Not enqueued: the day quota left for bulk work cannot serve this sync', {
        account: d.account.id,
        resource: d.resource,
        mode: d.mode,
        bulkCallsLeft: bulkLeft,
        callsNeeded: needed,
      });
      metrics.add('JobsSkipped', 1, { account: d.account.id, resource: d.resource, reason: 'quota' });
      result.skipped.push({ account: d.account.id, resource: d.resource, reason: 'quota' });
    } else {
      bulkLeft -= reads;
      if (d.mode === 'full') bulkInFlight.set(d.account.id, bulkRunning + 1);
      candidates.push({ ...d, needed, runId: randomUUID() });
    }
    bulkLeftOf.set(d.account.id, bulkLeft);
  });

  // 4b. Reconciliation sweeps, from what the syncs left of each account's bulk budget.
  await scheduleSweeps(
    deps,
    open,
    sizeOf,
    (a) => {
      const snap = snaps.get(a.tenant);
      return (
        bulkLeftOf.get(a.id) ??
        (snap ? Math.floor(snap.day.limit * bulkShare) - (snap.day.used + snap.day.heldAhead) : 0)
      );
    },
    nowMs,
    tickMs,
  );

  // 5. Leases (conditional writes, bounded parallelism), then the jobs in batches of 10.
  const acquired = await mapLimit(candidates, SCHEDULER_PARALLELISM, (c) =>
    leases.acquire(c.account.id, c.resource, c.runId, config.worker.leaseTtlMs, nowMs),
  );
  const toSend = candidates.filter((c, i) => {
    if (!acquired[i])
      result.skipped.push({ account: c.account.id, resource: c.resource, reason: 'in-flight' });
    return acquired[i];
  });
  const jobs: JobInput[] = toSend.map((c) => ({
    kind: 'sync',
    account: c.account.id,
    resource: c.resource,
    mode: c.mode,
    runId: c.runId,
    attempt: 0,
    enqueuedAt: new Date(nowMs).toISOString(),
  }));
  let refused: Set<string>;
  try {
    refused = new Set((await queue.sendMany(jobs)).map((j) => (j.kind === 'sync' ? (j.runId ?? '') : '')));
  } catch (err) {
    await mapLimit(toSend, SCHEDULER_PARALLELISM, (c) => leases.release(c.account.id, c.resource, c.runId));
    throw err;
  }
  for (const c of toSend) {
    if (refused.has(c.runId)) {
      await leases.release(c.account.id, c.resource, c.runId);
      result.skipped.push({ account: c.account.id, resource: c.resource, reason: 'send-failed' });
      continue;
    }
    metrics.add('JobsEnqueued', 1, { account: c.account.id });
    result.enqueued.push({ account: c.account.id, resource: c.resource, runId: c.runId, mode: c.mode });
  }
  log.info('Scheduler run', {
    accounts: registered.length,
    enqueued: result.enqueued.length,
    skipped: result.skipped.filter((s) => s.reason !== 'not-due').length,
  });
  if (refused.size > 0) throw new EnqueueFailedError(refused.size);
  return result;
}

/** The key of an (account, list) pair in the tick's maps. */
const listKey = (account: string, resource: string): string => `${account}\u0000${resource}`;

/**
 * A list's size for budgeting: its cursor's `listRecords` (set by the runs that read the whole list
 * and by sweeps; no read), or, for a cursor written before that field, a count of the mirror, at most
 * once per list in a tick, until the list's next full run or sweep sets it.
 */
function listSizes(
  deps: PipelineDeps,
  cursorOf: ReadonlyMap<string, Cursor>,
): (account: string, resource: string) => Promise<number> {
  const counted = new Map<string, Promise<number>>();
  return (account, resource) => {
    const key = listKey(account, resource);
    const known = cursorOf.get(key)?.listRecords;
    if (known != null) return Promise.resolve(known);
    let count = counted.get(key);
    if (!count) {
      count = deps.mirror.count(account, resource);
      counted.set(key, count);
    }
    return count;
  };
}

/**
 * Calls a run of a list is budgeted: a full read a call per 1,000 records of the list, an incremental
 * one a call; tag applications a walk over every tag (a call per tag at least, either way).
 */
export function runCalls(
  resource: SyncResource,
  mode: 'incremental' | 'full',
  records: number,
  tags: number,
): number {
  if (resource === 'tagApplications')
    return tagApplicationCalls(tags, records, mode === 'full' ? records : 0);
  return mode === 'full' ? Math.max(1, Math.ceil(records / 1000)) : 1;
}

/** The lease name that spaces an account's hook checks (it expires; it is never released). */
export const HOOK_CHECK_LEASE = 'hook-check';

/**
 * Queues the account's hook check when its hooks are registered and the last one is
 * `hooks.checkEveryMinutes` old: the check's lease lasts that long, so it runs once per interval
 * whichever scheduler run gets there first. Returns the account's endpoint (for relaxed polling).
 */
async function scheduleHookCheck(
  deps: PipelineDeps,
  account: string,
  nowMs: number,
): Promise<HookEndpoint | undefined> {
  const endpoint = await deps.hookEndpoints?.get(account);
  const everyMs = deps.config.hooks.checkEveryMinutes * 60_000;
  if (!endpoint || endpoint.eventKeys.length === 0 || everyMs === 0) return endpoint;
  const owner = randomUUID();
  // Half a tick of slack, as for the lists: a check queued a little late is not skipped a whole tick.
  const ttl = Math.max(1_000, everyMs - (deps.config.scheduler.everyMinutes * 60_000) / 2);
  if (!(await deps.leases.acquire(account, HOOK_CHECK_LEASE, owner, ttl, nowMs))) return endpoint;
  await deps.queue.send({
    kind: 'hookCheck',
    account,
    attempt: 0,
    enqueuedAt: new Date(nowMs).toISOString(),
  });
  deps.metrics.add('JobsEnqueued', 1, { account });
  return endpoint;
}

/**
 * A list's polling interval: its own, or `hooks.healthyPollMinutes` if longer while the account's
 * last hook check (no older than two check intervals) found every hook Verified and the list's hook
 * event keys are all registered. Polling stays the safety net; healthy hooks only make it rarer.
 */
function pollEveryMs(
  deps: PipelineDeps,
  account: Parameters<typeof hookEventKeysFor>[0],
  resource: SyncResource,
  everyMinutes: number,
  endpoint: HookEndpoint | undefined,
  nowMs: number,
): number {
  const own = everyMinutes * 60_000;
  const { healthyPollMinutes, checkEveryMinutes } = deps.config.hooks;
  const check = endpoint?.check;
  if (!check?.healthy || healthyPollMinutes === 0 || checkEveryMinutes === 0) return own;
  if (nowMs - Date.parse(check.checkedAt) > 2 * checkEveryMinutes * 60_000) return own;
  const needed = hookEventKeysFor({
    ...account,
    resources: { [resource]: { everyMinutes, mode: 'incremental' } },
  });
  if (needed.length === 0 || !needed.every((k) => endpoint?.eventKeys.includes(k))) return own;
  return Math.max(own, healthyPollMinutes * 60_000);
}

/** The lease name that spaces a list's reconciliation sweeps (it expires; it is never released). */
export const sweepLease = (resource: SyncResource) => `sweep-${resource}`;

/**
 * Queues a reconciliation sweep of each list whose last one is `sweep.everyHours` old, if the day's
 * bulk share can pay for it (a page of ids per call, sized by the list's size) and still keep
 * `scheduler.reserveCallsForIncremental`; otherwise it waits for a later run. The sweep leases of
 * every account are read in one batched read; only a due sweep costs more requests.
 */
async function scheduleSweeps(
  deps: PipelineDeps,
  accounts: readonly AccountConfig[],
  sizeOf: (account: string, resource: string) => Promise<number>,
  bulkLeftOf: (account: AccountConfig) => number,
  nowMs: number,
  tickMs: number,
): Promise<void> {
  const { config, leases, queue, metrics, log } = deps;
  const everyMs = config.sweep.everyHours * 3_600_000;
  if (everyMs === 0 || accounts.length === 0) return;
  const ttl = Math.max(1_000, everyMs - tickMs / 2);
  const pairs = accounts.flatMap((a) =>
    listsOf(a).map(([resource]) => ({ account: a, resource, lease: sweepLease(resource) })),
  );
  const held = await leases.getMany(pairs.map((p) => ({ account: p.account.id, resource: p.lease })));
  const leftOf = new Map<string, number>();
  for (const [i, p] of pairs.entries()) {
    const account = p.account.id;
    const lease = held[i];
    // The first sweep is due an interval after a list is first scheduled (its first read is a full one).
    if (!lease) {
      await leases.acquire(account, p.lease, randomUUID(), ttl, nowMs);
      continue;
    }
    if (lease.expiresAtMs > nowMs) continue;
    const left = leftOf.get(account) ?? bulkLeftOf(p.account);
    const calls = sweepCalls(
      p.resource,
      await sizeOf(account, p.resource),
      p.resource === 'tagApplications' ? await sizeOf(account, 'tags') : 0,
    );
    if (left < calls + config.scheduler.reserveCallsForIncremental) {
      log.warn('Sweep not enqueued: the day quota left for bulk work cannot serve it', {
        account,
        resource: p.resource,
        bulkCallsLeft: left,
        callsNeeded: calls,
      });
      metrics.add('JobsSkipped', 1, { account, resource: p.resource, reason: 'quota' });
      leftOf.set(account, left);
      continue;
    }
    const runId = randomUUID();
    if (!(await leases.acquire(account, p.lease, runId, ttl, nowMs))) continue;
    await queue.send({
      kind: 'sweep',
      account,
      resource: p.resource,
      runId,
      attempt: 0,
      enqueuedAt: new Date(nowMs).toISOString(),
    });
    leftOf.set(account, left - calls);
    metrics.add('JobsEnqueued', 1, { account });
  }
}
