// Use case: the scheduler. For each configured account and resource that is due, takes the
// (account, resource) lease and enqueues one sync job; never two in flight, never bulk work the
// day's quota cannot serve.
import { randomUUID } from 'node:crypto';
import type { HookEndpoint } from '../hooks/endpoints.ts';
import { hookEventKeysFor } from '../hooks/lifecycle.ts';
import type { SyncResource } from '../jobs/schema.ts';
import { openAccount } from './account-gate.ts';
import type { PipelineDeps } from './deps.ts';
import { sweepCalls } from './sweep.ts';

export type SkipReason = 'not-due' | 'in-flight' | 'quota' | 'key-rejected' | 'key-missing';

export interface SchedulerResult {
  enqueued: Array<{ account: string; resource: SyncResource; runId: string; mode: 'incremental' | 'full' }>;
  skipped: Array<{ account: string; resource: SyncResource; reason: SkipReason }>;
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
  const { config, runs, leases, ledger, queue, log, metrics, mirror } = deps;
  const result: SchedulerResult = { enqueued: [], skipped: [] };
  const bulkShare = ledger.config.bulkShare;
  for (const account of config.accounts) {
    const resources = Object.entries(account.resources) as Array<
      [SyncResource, { everyMinutes: number; mode: 'incremental' | 'full' }]
    >;
    const skipAll = (reason: SkipReason) => {
      for (const [resource] of resources) result.skipped.push({ account: account.id, resource, reason });
      metrics.add('JobsSkipped', resources.length, { account: account.id, reason });
    };
    const gate = await openAccount(account, deps);
    if (!gate.open) {
      if (gate.reason === 'key-rejected') {
        log.warn('Account stopped: Keap rejected its key; store a new key to resume', {
          account: account.id,
        });
      }
      skipAll(gate.reason);
      continue;
    }
    const hooks = await scheduleHookCheck(deps, account.id, nowMs);
    const snap = await ledger.snapshot(account.tenant);
    metrics.add('QuotaDayLeft', snap.day.left, { account: account.id });
    metrics.add('QuotaMinuteLeft', snap.minute.left, { account: account.id });
    let bulkLeft = Math.floor(snap.day.limit * bulkShare) - (snap.day.used + snap.day.heldAhead);
    for (const [resource, schedule] of resources) {
      const cursor = await runs.getCursor(account.id, resource);
      const lastRun = cursor.lastRunAt === null ? null : Date.parse(cursor.lastRunAt);
      // Sync lag: how old the mirror's view of this list is (time since its last finished run).
      if (lastRun !== null)
        metrics.add('SyncLagMs', Math.max(0, nowMs - lastRun), { account: account.id, resource });
      const everyMs = pollEveryMs(deps, account, resource, schedule.everyMinutes, hooks, nowMs);
      const slack = Math.min(tickMs, everyMs) / 2;
      const due = lastRun === null || nowMs - lastRun >= everyMs - slack;
      if (!due && cursor.checkpoint === null) {
        result.skipped.push({ account: account.id, resource, reason: 'not-due' });
        continue;
      }
      const mode = cursor.highWaterMs === null ? 'full' : schedule.mode;
      // A full read costs a call per 1,000 records; keep a reserve so incremental syncs still run.
      const needed =
        mode === 'full'
          ? Math.max(1, Math.ceil((await mirror.count(account.id, resource)) / 1000)) +
            config.scheduler.reserveCallsForIncremental
          : 1;
      if (bulkLeft < needed) {
        log.warn('Not enqueued: the day quota left for bulk work cannot serve this sync', {
          account: account.id,
          resource,
          mode,
          bulkCallsLeft: bulkLeft,
          callsNeeded: needed,
        });
        metrics.add('JobsSkipped', 1, { account: account.id, resource, reason: 'quota' });
        result.skipped.push({ account: account.id, resource, reason: 'quota' });
        continue;
      }
      const runId = randomUUID();
      if (!(await leases.acquire(account.id, resource, runId, config.worker.leaseTtlMs, nowMs))) {
        result.skipped.push({ account: account.id, resource, reason: 'in-flight' });
        continue;
      }
      try {
        await queue.send({
          kind: 'sync',
          account: account.id,
          resource,
          mode,
          runId,
          attempt: 0,
          enqueuedAt: new Date(nowMs).toISOString(),
        });
      } catch (err) {
        await leases.release(account.id, resource, runId);
        throw err;
      }
      bulkLeft -= mode === 'full' ? needed - config.scheduler.reserveCallsForIncremental : 1;
      metrics.add('JobsEnqueued', 1, { account: account.id });
      result.enqueued.push({ account: account.id, resource, runId, mode });
    }
    bulkLeft = await scheduleSweeps(
      deps,
      account.id,
      resources.map(([r]) => r),
      bulkLeft,
      nowMs,
      tickMs,
    );
  }
  log.info('Scheduler run', {
    enqueued: result.enqueued.length,
    skipped: result.skipped.filter((s) => s.reason !== 'not-due').length,
  });
  return result;
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
 * bulk share can pay for it (a page of ids per call, sized by the mirror's count) and still keep
 * `scheduler.reserveCallsForIncremental`; otherwise it waits for a later run. Returns the bulk calls left.
 */
async function scheduleSweeps(
  deps: PipelineDeps,
  account: string,
  resources: readonly SyncResource[],
  bulkLeft: number,
  nowMs: number,
  tickMs: number,
): Promise<number> {
  const { config, leases, mirror, queue, metrics, log } = deps;
  const everyMs = config.sweep.everyHours * 3_600_000;
  if (everyMs === 0) return bulkLeft;
  let left = bulkLeft;
  for (const resource of resources) {
    const lease = await leases.get(account, sweepLease(resource));
    const ttl = Math.max(1_000, everyMs - tickMs / 2);
    // The first sweep is due an interval after a list is first scheduled (its first read is a full one).
    if (!lease) {
      await leases.acquire(account, sweepLease(resource), randomUUID(), ttl, nowMs);
      continue;
    }
    if (lease.expiresAtMs > nowMs) continue;
    const calls = sweepCalls(resource, await mirror.count(account, resource));
    if (left < calls + config.scheduler.reserveCallsForIncremental) {
      log.warn('Sweep not enqueued: the day quota left for bulk work cannot serve it', {
        account,
        resource,
        bulkCallsLeft: left,
        callsNeeded: calls,
      });
      metrics.add('JobsSkipped', 1, { account, resource, reason: 'quota' });
      continue;
    }
    const runId = randomUUID();
    if (!(await leases.acquire(account, sweepLease(resource), runId, ttl, nowMs))) continue;
    await queue.send({
      kind: 'sweep',
      account,
      resource,
      runId,
      attempt: 0,
      enqueuedAt: new Date(nowMs).toISOString(),
    });
    left -= calls;
    metrics.add('JobsEnqueued', 1, { account });
  }
  return left;
}
