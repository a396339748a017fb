// Unit: the account gate over in-memory ports, and JobQueue.requeue (the one way a job is re-sent)
// over a recording SQS client; no emulator.
import type { SQSClient } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { type AccountConfig, parseAppConfig } from '#shared/config/app-config.ts';
import { parseJob } from '#shared/jobs/schema.ts';
import { PARK_MIN_MS, parkDelayMs, parkJob } from '#shared/pipeline/account-gate.ts';
import type { AccountKey } from '#shared/pipeline/index.ts';
import { isKeyRejected, JobQueue, MemoryLog, openAccount } from '#shared/pipeline/index.ts';
import type { AccountStore, KeySource } from '#shared/pipeline/stores.ts';
import type { AccountStatus } from '#shared/store/index.ts';

const account: AccountConfig = parseAppConfig({
  accounts: [
    { id: 'acme', tenant: 'ab103', secretId: 'keap/acme', resources: { contacts: { everyMinutes: 5 } } },
  ],
}).accounts[0] as AccountConfig;

/** An account store holding one status, counting markActive calls. */
function accountsWith(status: AccountStatus): AccountStore & { activations: number } {
  let current = status;
  const store = {
    activations: 0,
    getStatus: async () => current,
    getStatuses: async (ids: readonly string[]) => new Map(ids.map((id) => [id, current])),
    markKeyRejected: async () => current,
    markActive: async () => {
      store.activations += 1;
      current = { state: 'active', since: '2026-01-01T00:00:00.000Z' };
      return current;
    },
  };
  return store;
}

/** A key source whose secret holds `versionId` (or cannot be read), counting fresh reads. */
function keysAt(versionId: string | Error): KeySource & { freshReads: number } {
  const keys = {
    freshReads: 0,
    get: async (_a: AccountConfig, o: { fresh?: boolean } = {}): Promise<AccountKey> => {
      if (o.fresh) keys.freshReads += 1;
      if (versionId instanceof Error) throw versionId;
      return { apiKey: 'k', versionId };
    },
  };
  return keys;
}

const rejected: AccountStatus = {
  state: 'key-rejected',
  reason: 'Keap answered 401',
  since: '2026-01-01T00:00:00.000Z',
  secretVersionRejected: 'v1',
};

describe('account gate', () => {
  it('opens an active account without reading its key', async () => {
    const keys = keysAt('v1');

    const gate = await openAccount(account, {
      accounts: accountsWith({ state: 'active', since: null }),
      keys,
      log: new MemoryLog(),
    });

    expect(gate).toEqual({ open: true, key: undefined });
    expect(keys.freshReads).toBe(0);
  });

  it('keeps the account closed while the secret holds the rejected version, after one fresh read', async () => {
    const keys = keysAt('v1');
    const accounts = accountsWith(rejected);

    const gate = await openAccount(
      account,
      { accounts, keys, log: new MemoryLog() },
      { apiKey: 'k', versionId: 'v1' },
    );

    expect(gate).toEqual({ open: false, reason: 'key-rejected', since: rejected.since });
    expect([keys.freshReads, accounts.activations]).toEqual([1, 0]);
  });

  it('opens the account again, with the new key, once another secret version is stored', async () => {
    const accounts = accountsWith(rejected);

    const gate = await openAccount(account, { accounts, keys: keysAt('v2'), log: new MemoryLog() });

    expect(gate).toEqual({ open: true, key: { apiKey: 'k', versionId: 'v2' } });
    expect(accounts.activations).toBe(1);
  });

  it('says the key is missing when the secret cannot be read', async () => {
    const error = new Error('no such secret');

    const gate = await openAccount(account, {
      accounts: accountsWith(rejected),
      keys: keysAt(error),
      log: new MemoryLog(),
    });

    expect(gate).toEqual({ open: false, reason: 'key-missing', error });
  });

  it('judges a key rejected only for the version Keap rejected', () => {
    expect([isKeyRejected(rejected, 'v1'), isKeyRejected(rejected, 'v2')]).toEqual([true, false]);
    expect(isKeyRejected({ state: 'active', since: null }, 'v1')).toBe(false);
  });
});

describe('a write of a stopped account', () => {
  /** A queue recording what is re-sent, and the metrics and leases parkJob touches. */
  function parkDeps() {
    const requeued: Array<{ kind: string; delayMs: number | undefined }> = [];
    const released: string[] = [];
    return {
      requeued,
      released,
      deps: {
        queue: {
          requeue: async (job: { kind: string }, delayMs?: number) =>
            void requeued.push({ kind: job.kind, delayMs }),
        },
        leases: {
          release: async (_a: string, resource: string) => {
            released.push(resource);
            return true;
          },
        },
        metrics: { add: () => undefined },
      } as unknown as Parameters<typeof parkJob>[3],
    };
  }
  const write = parseJob(
    JSON.stringify({
      kind: 'createNote',
      account: 'acme',
      idempotencyKey: 'note-0001',
      contactId: '1',
      note: { title: 't', user_id: 1 },
    }),
  );

  it('waits PARK_MIN_MS when the account was just stopped, so a key replaced at once resumes writes soon', async () => {
    const { deps, requeued } = parkDeps();
    const now = Date.parse('2026-01-01T00:00:05.000Z');

    await parkJob(write, account, '2026-01-01T00:00:00.000Z', deps, new MemoryLog(), now);

    expect(requeued).toEqual([{ kind: 'createNote', delayMs: PARK_MIN_MS }]);
  });

  it('waits longer the longer the account stays stopped, up to the longest SQS delay', () => {
    expect(parkDelayMs(0)).toBe(PARK_MIN_MS);
    expect(parkDelayMs(10 * 60_000)).toBe(150_000);
    expect(parkDelayMs(24 * 3600_000)).toBe(900_000);
    expect(parkDelayMs(-5_000)).toBe(PARK_MIN_MS);
  });

  it('drops a sync and frees its lease instead (the scheduler enqueues it again once open)', async () => {
    const { deps, requeued, released } = parkDeps();
    const sync = parseJob(
      JSON.stringify({ kind: 'sync', account: 'acme', resource: 'contacts', runId: 'r1' }),
    );

    await parkJob(sync, account, '2026-01-01T00:00:00.000Z', deps, new MemoryLog());

    expect([requeued, released]).toEqual([[], ['contacts']]);
  });
});

describe('JobQueue.requeue', () => {
  it('re-sends the job as its next attempt, without held slots, with the delay in whole seconds', async () => {
    const sent: Array<{ MessageBody?: string; DelaySeconds?: number }> = [];
    const sqs = { send: async (command: { input: (typeof sent)[number] }) => void sent.push(command.input) };
    const queue = new JobQueue(
      sqs as unknown as SQSClient,
      'https://sqs.local/jobs',
      'https://sqs.local/dlq',
    );
    const job = parseJob(
      JSON.stringify({
        kind: 'sync',
        account: 'acme',
        resource: 'contacts',
        runId: 'r1',
        attempt: 2,
        heldSlots: [5],
      }),
    );

    await queue.requeue(job, 2_500);

    expect(sent).toHaveLength(1);
    expect(sent[0]?.DelaySeconds).toBe(3);
    const body = JSON.parse(sent[0]?.MessageBody ?? '{}') as Record<string, unknown>;
    expect(body).toMatchObject({ kind: 'sync', runId: 'r1', attempt: 3 });
    expect(body.heldSlots).toBeUndefined();
  });

  it('re-sends a hook event job as a message its strict schema still accepts', async () => {
    const sent: Array<{ MessageBody?: string }> = [];
    const sqs = { send: async (command: { input: (typeof sent)[number] }) => void sent.push(command.input) };
    const queue = new JobQueue(
      sqs as unknown as SQSClient,
      'https://sqs.local/jobs',
      'https://sqs.local/dlq',
    );
    const job = parseJob(
      JSON.stringify({
        kind: 'hookEvent',
        account: 'acme',
        resource: 'contacts',
        event: 'edit',
        ids: ['1', '2'],
        receivedAt: '2026-01-01T00:00:00.000Z',
      }),
    );

    await queue.requeue(job);

    expect(parseJob(sent[0]?.MessageBody ?? '')).toEqual({ ...job, attempt: 1 });
  });
});
