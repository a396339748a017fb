// End to end: 16 concurrent workers with a saturating backlog get zero 429s from Keap and use the
// quota: the ledger (in DynamoDB, shared by every worker) spaces and counts every call. Keap's limits
// are scaled down in the sandbox and in the ledger alike (10 s "minute", 100-call "day"). The sandbox
// runs in its own process, as Keap is remote: the arrival times it judges are not this process's.
// The ledger margin is Keap's default, 90 ms: with 60 ms, a machine loaded far beyond its two cores
// delayed a request past its slot by more than the margin and Keap's spike rule answered 429.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { queueDepth } from '#harness/local/index.ts';
import type { LocalStack } from '#harness/local/stack.ts';
import type { AppConfig } from '#shared/config/app-config.ts';
import type { MemoryMetrics } from '#shared/pipeline/index.ts';
import { deferralDelayMs, RETURN_EARLY_MS } from '#shared/pipeline/queue.ts';
import {
  type AccountSpec,
  eventually,
  type SandboxProcess,
  sendRaw,
  startSandboxProcess,
  startTestStack,
  testConfig,
} from './support.ts';

const ACCOUNT = 'acme';
const TENANT = 'quota.infusionsoft.com';
const GATEWAY = { spikeIntervalMs: 100, minuteLimit: 60, minuteWindowMs: 10_000, dayLimit: 100 };
const CONTACTS = 300;
const WORKERS = 16;
const BACKLOG = 150;
const DAY_MS = 86_400_000;

describe('a deferred job comes back before the slot the ledger holds for it', () => {
  test('whole seconds of SQS delay, never past retryAt less the start-up allowance', () => {
    const now = 1_800_000_000_123;
    for (let waitMs = -500; waitMs <= 20_000; waitMs += 37) {
      const delay = deferralDelayMs(now + waitMs, now);
      expect(delay % 1000).toBe(0);
      expect(delay).toBeGreaterThanOrEqual(0);
      // Visible at now + delay: at least RETURN_EARLY_MS before the held slot (or at once).
      if (delay > 0) expect(now + delay).toBeLessThanOrEqual(now + waitMs - RETURN_EARLY_MS);
      // Not needlessly early: within a second of that.
      expect(now + delay).toBeGreaterThan(now + waitMs - RETURN_EARLY_MS - 1000);
    }
  });
});

describe('16 workers against the quota', () => {
  let sandbox: SandboxProcess;
  let stack: LocalStack;
  let metrics: MemoryMetrics;
  let config: AppConfig;
  beforeAll(async () => {
    sandbox = await startSandboxProcess([
      ...['--contacts', String(CONTACTS), '--seed', '7', '--keys', '1', '--tenant', TENANT],
      ...[
        '--spike-interval-ms',
        String(GATEWAY.spikeIntervalMs),
        '--minute-limit',
        String(GATEWAY.minuteLimit),
      ],
      ...['--minute-window-ms', String(GATEWAY.minuteWindowMs), '--day-limit', String(GATEWAY.dayLimit)],
    ]);
    const key = sandbox.keys[0]?.key ?? '';
    const accounts: AccountSpec[] = [{ id: ACCOUNT, tenant: TENANT, key, resources: ['contacts'] }];
    config = testConfig(
      {
        accounts,
        limits: { ...GATEWAY, marginMs: 90, lateToleranceMs: 15, bucketMs: 250, bulkShare: 1 },
        worker: { concurrency: WORKERS, batchSize: 5, waitBudgetMs: 2_000 },
      },
      sandbox.baseUrl,
    );
    ({ stack, metrics } = await startTestStack(config, accounts));
  });
  afterAll(async () => {
    await stack?.close();
    await sandbox?.stop();
  });

  test('a saturating backlog gets no 429, uses the day quota, and loses no message', async () => {
    const keys = Array.from({ length: BACKLOG }, (_, i) => `quota-${i}-${randomUUID()}`);
    await sendRaw(
      stack,
      keys.map((idempotencyKey, i) =>
        JSON.stringify({
          kind: 'upsertContact',
          account: ACCOUNT,
          idempotencyKey,
          contact: {
            given_name: `Q${i}`,
            email_addresses: [{ email: `q${i}.${idempotencyKey.slice(-8)}@example.com`, field: 'EMAIL1' }],
          },
        }),
      ),
    );
    const poller = stack.poller({ concurrency: WORKERS });
    await poller.start();
    try {
      // Settled when every message was performed or deferred to the next day (those wait in the
      // queue, delayed), with nothing visible, in flight or running.
      const settled = await eventually(async () => {
        const done = metrics.sum('WritesDone');
        const dayDeferred = metrics.sum('Deferrals', { reason: 'day' });
        if (done + dayDeferred < BACKLOG || poller.stats.inFlight > 0) return false;
        const depth = await queueDepth(stack.sqs.client, stack.sqs.queue.queueUrl);
        return depth.visible === 0 && depth.notVisible === 0;
        // Generous for a busy machine: the quota, not the CPU, bounds it on a quiet one (~20 s).
      }, 200_000);
      expect(settled).toBe(true);
    } finally {
      await poller.stop();
    }
    expect(poller.stats.peakConcurrency).toBe(WORKERS);
    const counts = await sandbox.counts();
    const arrivals = await sandbox.stop();

    // Zero 429s. On failure, say how far each one came after the previous call Keap accepted.
    const limited = arrivals.flatMap((a, i) => {
      if (a.status !== 429) return [];
      const before = arrivals.slice(0, i).findLast((x) => x.status !== 429);
      return [`${a.rule ?? '?'} 429, ${before ? a.t - before.t : '-'} ms after the previous accepted call`];
    });
    expect(limited).toEqual([]);
    const accepted = arrivals.filter((a) => a.status >= 200 && a.status < 300);
    const perDay = new Map<number, number>();
    for (const a of accepted)
      perDay.set(Math.floor(a.t / DAY_MS), (perDay.get(Math.floor(a.t / DAY_MS)) ?? 0) + 1);
    for (const n of perDay.values()) expect(n).toBeLessThanOrEqual(GATEWAY.dayLimit);
    // The quota is used, not left idle: close to the day limit.
    expect(accepted.length).toBeGreaterThanOrEqual(95);
    expect(metrics.sum('KeapCalls')).toBe(arrivals.length);

    // None lost: every write is done (once, in Keap) or waits in the queue for the next day.
    const outcomes = await Promise.all(keys.map((k) => stack.deps.writes.getOutcome(k)));
    const done = outcomes.filter((o) => o?.state === 'done');
    const waiting = outcomes.filter((o) => o?.state !== 'done');
    expect(done.length).toBe(accepted.length);
    expect(waiting.every((o) => o === undefined || (o.state === 'failed' && o.retryable === true))).toBe(
      true,
    );
    const depth = await queueDepth(stack.sqs.client, stack.sqs.queue.queueUrl);
    expect(depth.delayed).toBe(waiting.length);
    expect(done.length + depth.delayed).toBe(BACKLOG);
    expect(counts.contacts).toBe(CONTACTS + done.length);
  }, 240_000);
});
