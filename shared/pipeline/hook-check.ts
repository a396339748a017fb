// Use case: the scheduled REST hook check of one account, run by the worker: the lifecycle's check
// (GET /hooks through the ledger-guarded client, a verify of each hook Keap turned Inactive), its
// metrics (the HookInactive alarm reads HooksInactive), and an incremental catch-up sync of each list
// whose hook was not delivering, so nothing changed while it was Inactive is lost.
import { randomUUID } from 'node:crypto';
import type { AccountConfig } from '../config/app-config.ts';
import { checkHooks, type HooksApi } from '../hooks/lifecycle.ts';
import type { HookCheckJob } from '../jobs/schema.ts';
import type { PipelineDeps } from './deps.ts';
import type { Log } from './ports.ts';

export interface HookCheckOutcome {
  inactive: string[];
  reverified: string[];
  missing: string[];
  catchUps: Array<{ resource: string; runId: string }>;
}

export async function runHookCheck(
  job: HookCheckJob,
  account: AccountConfig,
  api: HooksApi,
  deps: PipelineDeps,
  log: Log,
  now: () => number = Date.now,
): Promise<HookCheckOutcome | undefined> {
  if (!deps.hookEndpoints) return undefined;
  const result = await checkHooks({ api, endpoints: deps.hookEndpoints, account, now });
  if (!result) {
    log.info('Hook check: no hooks registered for the account', {});
    return undefined;
  }
  const dims = { account: account.id };
  deps.metrics.add('HooksInactive', result.inactive.length + result.missing.length, dims);
  deps.metrics.add('HooksReverified', result.reverified.length, dims);
  const catchUps: HookCheckOutcome['catchUps'] = [];
  for (const resource of result.catchUp) {
    const runId = randomUUID();
    if (!(await deps.leases.acquire(account.id, resource, runId, deps.config.worker.leaseTtlMs))) continue;
    try {
      await deps.queue.send({
        kind: 'sync',
        account: account.id,
        resource,
        mode: 'incremental',
        runId,
        attempt: 0,
        enqueuedAt: new Date(now()).toISOString(),
      });
    } catch (err) {
      await deps.leases.release(account.id, resource, runId);
      throw err;
    }
    catchUps.push({ resource, runId });
  }
  const outcome = {
    inactive: result.inactive,
    reverified: result.reverified,
    missing: result.missing,
    catchUps,
  };
  if (result.inactive.length + result.missing.length > 0)
    log.warn('Hook check: hooks were not delivering; re-verified and catching up', {
      ...outcome,
      catchUps: catchUps.map((c) => c.resource),
      attempt: job.attempt,
    });
  else log.info('Hook check: every hook Verified', { hooks: result.hooks.length });
  return outcome;
}
