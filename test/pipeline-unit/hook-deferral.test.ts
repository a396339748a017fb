// Unit: a hook event job the quota ledger defers goes back to the queue as its next attempt, with the
// delay the ledger named, and nothing is written to the mirror; over in-memory ports, no emulator.
import { describe, expect, it } from 'vitest';
import { type AccountConfig, parseAppConfig } from '#shared/config/app-config.ts';
import type { HookEventJob } from '#shared/hooks/job.ts';
import { type KeapClient, QuotaDeferredError } from '#shared/keap/index.ts';
import { MemoryLog, MemoryMetrics, type PipelineDeps, runHookEvent } from '#shared/pipeline/index.ts';

const config = parseAppConfig({
  accounts: [
    { id: 'acme', tenant: 'ab103', secretId: 'keap/acme', resources: { contacts: { everyMinutes: 5 } } },
  ],
});
const account = config.accounts[0] as AccountConfig;
const NOW = 1_800_000_000_000;

function job(over: Partial<HookEventJob> = {}): HookEventJob {
  return {
    kind: 'hookEvent',
    account: 'acme',
    resource: 'contacts',
    event: 'edit',
    ids: ['1', '2'],
    receivedAt: new Date(NOW - 60_000).toISOString(),
    attempt: 0,
    ...over,
  };
}

function deps() {
  const requeued: Array<{ job: unknown; delayMs: number | undefined }> = [];
  const writes: string[] = [];
  const fail = async () => {
    throw new Error('not used');
  };
  const d = {
    config,
    ledger: { now: () => NOW },
    mirror: {
      upsertMany: async () => {
        writes.push('upsert');
        return { written: 0, skippedStale: 0 };
      },
      tombstoneMany: async () => {
        writes.push('tombstone');
        return { tombstoned: 0, unchanged: 0 };
      },
      count: fail,
    },
    queue: {
      requeue: async (j: unknown, delayMs?: number) => void requeued.push({ job: j, delayMs }),
      send: fail,
      deadLetter: fail,
    },
    metrics: new MemoryMetrics(),
    log: new MemoryLog(),
  } as unknown as PipelineDeps;
  return { d, requeued, writes };
}

const deferred = new QuotaDeferredError(
  { method: 'GET', path: '/rest/v2/contacts', keyId: 'k1', tenant: 'ab103' },
  NOW + 30_000,
  'minute',
);

describe('hook event jobs under the quota', () => {
  it('defers through the queue and writes nothing when the ledger has no slot', async () => {
    const { d, requeued, writes } = deps();
    const client = {
      getByIds: async () => {
        throw deferred;
      },
    } as unknown as KeapClient;

    const outcome = await runHookEvent(job(), account, client, d, new MemoryLog());

    expect(outcome).toEqual({ status: 'deferred', retryAt: NOW + 30_000, reason: 'minute' });
    expect(requeued).toHaveLength(1);
    expect(requeued[0]?.job).toEqual(job());
    expect(requeued[0]?.delayMs).toBeGreaterThan(20_000);
    expect(requeued[0]?.delayMs).toBeLessThanOrEqual(30_000);
    expect(writes).toEqual([]);
    expect((d.metrics as MemoryMetrics).sum('Deferrals', { reason: 'minute' })).toBe(1);
  });

  it('lets any other failure reach the batch handler (the message is retried by SQS)', async () => {
    const { d, requeued, writes } = deps();
    const client = {
      getByIds: async () => {
        throw new Error('boom');
      },
    } as unknown as KeapClient;

    await expect(runHookEvent(job(), account, client, d, new MemoryLog())).rejects.toThrow('boom');
    expect(requeued).toEqual([]);
    expect(writes).toEqual([]);
  });
});
