// End to end: Keap rejecting an account's key stops that account after at most one call per worker,
// while the other accounts go on; storing a new key resumes it.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { queueDepth } from '#harness/local/index.ts';
import { keyFingerprint } from '#harness/sandbox/index.ts';
import type { SyncResource } from '#shared/jobs/schema.ts';
import { createWorkerHandler, runScheduler } from '#shared/pipeline/index.ts';
import {
  eventually,
  mirrorOf,
  sandboxKey,
  secretIdOf,
  startWorld,
  TENANT_A,
  TENANT_B,
  type World,
} from './support.ts';

const RESOURCES: SyncResource[] = ['contacts', 'companies', 'tags', 'notes', 'orders', 'tasks'];
const A_REVOKED = sandboxKey(TENANT_A, 0);
const A_SPARE = sandboxKey(TENANT_A, 1);
const A_NEW = sandboxKey(TENANT_A, 2);
const B_KEY = sandboxKey(TENANT_B, 0);
const WORKERS = 4;
const LEASE_TTL_MS = 10_000;

describe('a revoked key', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({
      contacts: 400,
      keys: [A_REVOKED, A_SPARE, A_NEW, B_KEY],
      accounts: [
        { id: 'acme', tenant: TENANT_A, key: A_REVOKED.key, resources: RESOURCES },
        { id: 'beta', tenant: TENANT_B, key: B_KEY.key, resources: RESOURCES },
      ],
      // Every list of both accounts at the first tick (this suite is about the key, not fairness):
      // the cap on backfills per account above the lists (it must stay below worker.concurrency,
      // which here only sizes the cap; the suite's pollers run WORKERS invocations).
      worker: { concurrency: RESOURCES.length + 1, batchSize: 5, leaseTtlMs: LEASE_TTL_MS },
      scheduler: { bulkJobsPerAccount: RESOURCES.length },
    });
    w.sandbox.setFaults({ revokedKeys: [{ key: A_REVOKED.key, from: 0 }] });
  });
  afterAll(async () => {
    await w?.close();
  });

  async function complete(account: string): Promise<boolean> {
    for (const resource of RESOURCES) {
      const mirror = await mirrorOf(w.stack, account, resource);
      if (mirror.size !== w.sandbox.dataset.table(resource).size) return false;
    }
    return true;
  }

  test('stops its account after at most one call per worker; the other account is synced', async () => {
    const scheduled = await w.stack.scheduler();
    expect(scheduled.enqueued).toHaveLength(2 * RESOURCES.length);
    // WORKERS Lambda instances: each its own handler (own clients and memory), one batch at a time.
    const pollers = Array.from({ length: WORKERS }, () =>
      w.stack.poller({ concurrency: 1, handler: createWorkerHandler(w.stack.deps) }),
    );
    for (const p of pollers) await p.start();
    try {
      // The rejected account's jobs wait in the queue (delayed) for a new key; nothing else is left.
      const settled = await eventually(async () => {
        const depth = await queueDepth(w.stack.sqs.client, w.stack.sqs.queue.queueUrl);
        const running = pollers.some((p) => p.stats.inFlight > 0);
        return depth.visible === 0 && depth.notVisible === 0 && !running && (await complete('beta'));
      }, 30_000);
      expect(settled).toBe(true);
    } finally {
      for (const p of pollers) await p.stop();
    }
    expect(pollers.reduce((n, p) => n + p.stats.handlerErrors + p.stats.failedItems, 0)).toBe(0);

    const rejected = w.sandbox.arrivals.filter((a) => a.keyId === keyFingerprint(A_REVOKED.key));
    expect(rejected.length).toBeGreaterThan(0);
    expect(rejected.every((a) => a.status === 401)).toBe(true);
    expect(rejected.length).toBeLessThanOrEqual(WORKERS);

    const status = await w.stack.deps.accounts.getStatus('acme');
    expect(status.state).toBe('key-rejected');
    expect(await w.stack.deps.accounts.getStatus('beta')).toEqual(
      expect.objectContaining({ state: 'active' }),
    );
    expect(await complete('beta')).toBe(true);
    for (const resource of RESOURCES) expect((await mirrorOf(w.stack, 'acme', resource)).size).toBe(0);
    // The account's syncs are dropped with their leases freed (the scheduler re-creates them).
    const depth = await queueDepth(w.stack.sqs.client, w.stack.sqs.queue.queueUrl);
    expect(depth.delayed + depth.visible + depth.notVisible).toBe(0);
    for (const resource of RESOURCES) expect(await w.stack.deps.leases.get('acme', resource)).toBeUndefined();

    // Nothing more is sent with the rejected key: the scheduler skips the account.
    const again = await runScheduler(w.stack.deps, Date.now() + 6 * 60_000);
    expect(again.skipped.filter((s) => s.account === 'acme').map((s) => s.reason)).toEqual(
      RESOURCES.map(() => 'key-rejected'),
    );
  }, 60_000);

  test('resumes once a new key is stored', async () => {
    const before401 = w.sandbox.arrivals.filter((a) => a.status === 401).length;
    w.stack.secrets.put(secretIdOf('acme'), A_NEW.key);
    // The next scheduler tick sees the new secret version and enqueues the account again at once.
    const tick = await runScheduler(w.stack.deps, Date.now());
    expect(
      tick.enqueued
        .filter((e) => e.account === 'acme')
        .map((e) => e.resource)
        .sort(),
    ).toEqual([...RESOURCES].sort());
    const poller = w.stack.poller({ concurrency: WORKERS });
    await poller.start();
    try {
      expect(await eventually(() => complete('acme'), 30_000)).toBe(true);
    } finally {
      await poller.stop();
    }
    expect((await w.stack.deps.accounts.getStatus('acme')).state).toBe('active');
    expect(w.sandbox.arrivals.filter((a) => a.status === 401).length).toBe(before401);
    const fresh = w.sandbox.arrivals.filter((a) => a.keyId === keyFingerprint(A_NEW.key));
    expect(fresh.length).toBeGreaterThan(0);
    expect(fresh.every((a) => a.status === 200)).toBe(true);
  }, 60_000);
});
