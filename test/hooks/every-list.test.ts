// End to end (sandbox, dynalite, fauxqs, the local hook receiver), with hooks and no polling: after
// random creates, updates and deletes in every list Keap has hooks for, the sandbox's deliveries alone
// bring the mirror back to the sandbox, record for record (ids and update times), deletions
// tombstoned. (Without hooks the same holds through syncs and the sweep: test/pipeline/sweep.test.ts.)
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type LocalHookServer, startLocalHookServer } from '#harness/local/hook-server.ts';
import { hookEventKeysFor, registerHooks, sqsHookJobSink } from '#shared/hooks/index.ts';
import { SYNC_RESOURCES, type SyncResource } from '#shared/jobs/schema.ts';
import { type ListEntry, REGISTRY } from '#shared/keap/registry.ts';
import { ClientCache } from '#shared/pipeline/deps.ts';
import { MemoryLog, MemoryMetrics } from '#shared/pipeline/ports.ts';
import { eventually, sandboxKey, startWorld, TENANT_A, type World } from '../pipeline/support.ts';

const ACCOUNT = 'acme';
const KEY = sandboxKey(TENANT_A, 0);
const LISTS: SyncResource[] = [...SYNC_RESOURCES];
const HOOKED = LISTS.filter((l) => (REGISTRY[l] as ListEntry).hook !== undefined);

const timeOf = (list: SyncResource, rec: unknown): number => {
  for (const f of REGISTRY[list].timeFields) {
    const v = (rec as Record<string, unknown>)[f];
    if (typeof v === 'string') return Date.parse(v);
  }
  return 0;
};

describe('every hooked list, hooks alone', () => {
  let w: World;
  let receiver: LocalHookServer;

  async function differences(): Promise<string[]> {
    const problems: string[] = [];
    for (const list of LISTS) {
      const mirror = new Map<string, { t: number; dead: boolean }>();
      // A tag application from a hook carries its receipt time as its version (so a later removal
      // wins whichever is handled first): its applied time is in its data.
      for await (const item of w.stack.deps.mirror.iterate(ACCOUNT, list))
        mirror.set(item.id, {
          t: list === 'tagApplications' ? timeOf(list, item.data) : item.updateTimeMs,
          dead: item.deletedAt !== undefined,
        });
      const table = w.sandbox.dataset.table(list);
      for (const id of table.ids()) {
        const m = mirror.get(String(id));
        if (!m || m.dead) problems.push(`${list} ${id}: missing`);
        else if (m.t !== timeOf(list, table.get(id))) problems.push(`${list} ${id}: stale`);
      }
      for (const [id, m] of mirror)
        if (table.get(id) === undefined && !m.dead) problems.push(`${list} ${id}: live, deleted in Keap`);
    }
    return problems;
  }

  beforeAll(async () => {
    w = await startWorld({
      contacts: 200,
      keys: [KEY],
      accounts: [{ id: ACCOUNT, tenant: TENANT_A, key: KEY.key, resources: LISTS }],
      sandboxHooks: { timeScale: 0.002, responseTimeoutMs: 2_000 },
    });
    receiver = await startLocalHookServer({
      endpoints: w.stack.deps.hookEndpoints ?? (undefined as never),
      enqueue: sqsHookJobSink(w.stack.sqs.client, w.stack.sqs.queue.queueUrl),
      log: new MemoryLog(),
      metrics: new MemoryMetrics(),
      maxBodyBytes: 1024 * 1024,
    });
    await w.stack.scheduler();
    const poller = w.stack.poller({ concurrency: 4 });
    await poller.start();
    await poller.whenIdle({ timeoutMs: 30_000 });
    await poller.stop();
    const account = w.config.accounts[0];
    if (!account) throw new Error('no account');
    await registerHooks({
      api: new ClientCache(w.stack.deps).for(account, await w.stack.deps.keys.get(account)),
      endpoints: w.stack.deps.hookEndpoints ?? (undefined as never),
      account: ACCOUNT,
      baseUrl: receiver.url,
      eventKeys: hookEventKeysFor(account),
    });
  }, 60_000);
  afterAll(async () => {
    await receiver?.close();
    await w?.close();
  });

  test('random creates, updates and deletes in every hooked list: mirror == sandbox by hooks alone', async () => {
    expect(await differences()).toEqual([]);
    for (const list of HOOKED) {
      const size = w.sandbox.dataset.table(list).size;
      const n = Math.max(1, Math.floor(size / 10));
      w.sandbox.mutate(list, { update: n, create: n, delete: Math.min(n, Math.max(0, size - 2 * n)) });
    }
    expect((await differences()).length).toBeGreaterThan(0);
    const poller = w.stack.poller({ concurrency: 4 });
    await poller.start();
    let problems: string[] = [];
    try {
      // contactGroup.delete waits 5-10 min in Keap: 0.6-1.2 s at this scale.
      await eventually(async () => {
        problems = await differences();
        return problems.length === 0;
      }, 30_000);
    } finally {
      await poller.stop();
    }
    expect(problems.slice(0, 10)).toEqual([]);
  }, 60_000);
});
