// End to end: accounts are data. An account added to the registry while the system runs is synced at
// the scheduler's next run with no restart or deploy; a paused account is not scheduled; a removed
// account's queued job is dead-lettered as unknown-account; the configuration file's accounts still
// work without being seeded, and a seeded registry entry wins over the file.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseAccountConfig } from '#shared/config/app-config.ts';
import type { SyncResource } from '#shared/jobs/schema.ts';
import { runScheduler } from '#shared/pipeline/index.ts';
import {
  eventually,
  receiveAll,
  sandboxKey,
  secretIdOf,
  sendRaw,
  startWorld,
  TENANT_A,
  TENANT_B,
  type World,
} from './support.ts';

const KEY_A = sandboxKey(TENANT_A, 0);
const KEY_B = sandboxKey(TENANT_B, 0);
const LISTS: SyncResource[] = ['contacts', 'tags'];

const globex = parseAccountConfig(
  {
    id: 'globex',
    tenant: TENANT_B,
    secretId: secretIdOf('globex'),
    resources: { contacts: { everyMinutes: 5 }, tags: { everyMinutes: 60 } },
  },
  'keap-sync/',
);

describe('the account registry', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({
      contacts: 120,
      keys: [KEY_A],
      accounts: [{ id: 'acme', tenant: TENANT_A, key: KEY_A.key, resources: LISTS }],
    });
  });
  afterAll(async () => {
    await w?.close();
  });

  const inSync = async (account: string) => {
    const cursors = await w.stack.deps.runs.getCursors(LISTS.map((resource) => ({ account, resource })));
    return cursors.every((c) => c.lastRunAt !== null && c.checkpoint === null);
  };

  test("the configuration file's account is scheduled without being seeded", async () => {
    const tick = await runScheduler(w.stack.deps, Date.now());
    expect(tick.enqueued.map((e) => `${e.account}/${e.resource}`).sort()).toEqual([
      'acme/contacts',
      'acme/tags',
    ]);
    const poller = w.stack.poller({ concurrency: 4 });
    await poller.start();
    try {
      expect(await eventually(() => inSync('acme'), 30_000)).toBe(true);
    } finally {
      await poller.stop();
    }
  }, 60_000);

  test("an account added to the registry is synced at the scheduler's next run, nothing restarted", async () => {
    // What `keap-sync accounts add` does locally: a key for the tenant, the secret, the registry entry.
    w.sandbox.addKey(KEY_B);
    w.stack.secrets.put(secretIdOf('globex'), KEY_B.key);
    await w.stack.deps.registry.add(globex, { source: 'test' });

    const tick = await runScheduler(w.stack.deps, Date.now());
    expect(tick.enqueued.map((e) => `${e.account}/${e.resource}`).sort()).toEqual([
      'globex/contacts',
      'globex/tags',
    ]);
    const poller = w.stack.poller({ concurrency: 4 });
    await poller.start();
    try {
      expect(await eventually(() => inSync('globex'), 30_000)).toBe(true);
    } finally {
      await poller.stop();
    }
    expect(await w.stack.deps.mirror.count('globex', 'contacts')).toBe(
      w.sandbox.dataset.contacts.values().length,
    );
    // Its calls went out with its own key, on its own tenant's quota.
    const fromB = w.sandbox.arrivals.filter((a) => a.tenant === TENANT_B);
    expect(fromB.length).toBeGreaterThan(0);
    expect(fromB.every((a) => a.status === 200)).toBe(true);
    expect((await w.stack.deps.ledger.snapshot(TENANT_B)).day.used).toBe(fromB.length);
  }, 60_000);

  test('a paused account is not scheduled, and resumes from where it was', async () => {
    await w.stack.deps.registry.setPaused('globex', true);
    // Far enough ahead that every list is due.
    const later = Date.now() + 61 * 60_000;
    const tick = await runScheduler(w.stack.deps, later);
    expect(tick.enqueued.filter((e) => e.account === 'globex')).toEqual([]);
    expect(tick.skipped.filter((s) => s.account === 'globex').map((s) => s.reason)).toEqual([
      'paused',
      'paused',
    ]);
    await w.stack.deps.registry.setPaused('globex', false);
    const resumed = await runScheduler(w.stack.deps, later);
    expect(
      resumed.enqueued.filter((e) => e.account === 'globex').every((e) => e.mode === 'incremental'),
    ).toBe(true);
    expect(resumed.enqueued.filter((e) => e.account === 'globex')).toHaveLength(2);
    // acme's jobs of the first tick still hold their leases: it was not enqueued twice.
    expect(resumed.enqueued.filter((e) => e.account === 'acme')).toEqual([]);
    // The resumed jobs run (incremental, nothing changed) and leave the queue empty.
    const poller = w.stack.poller({ concurrency: 4 });
    await poller.start();
    try {
      await poller.whenIdle({ timeoutMs: 30_000 });
    } finally {
      await poller.stop();
    }
  }, 60_000);

  test("a removed account's queued job is dead-lettered as unknown-account and calls Keap not at all", async () => {
    const other = parseAccountConfig({ ...globex, id: 'initech' }, 'keap-sync/');
    await w.stack.deps.registry.add(other, { source: 'test' });
    await w.stack.deps.registry.remove('initech');
    const before = w.sandbox.arrivals.length;
    await sendRaw(w.stack, [JSON.stringify({ kind: 'sync', account: 'initech', resource: 'contacts' })]);
    const poller = w.stack.poller({ concurrency: 1 });
    await poller.start();
    try {
      await poller.whenIdle({ timeoutMs: 20_000 });
    } finally {
      await poller.stop();
    }
    expect(w.sandbox.arrivals.length).toBe(before);
    const dead = await receiveAll(w.stack, w.stack.sqs.queue.dlqUrl);
    expect(dead.map((m) => m.attributes.reason)).toContain('unknown-account');
  }, 60_000);
});
