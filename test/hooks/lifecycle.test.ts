// End to end (sandbox, dynalite, fauxqs, the local hook receiver): the REST hook lifecycle. Hooks are
// registered through the ledger-guarded client on the account's tokenised URL; the sandbox's
// deliveries reach the mirror with no polling; a hook Keap turned Inactive while the receiver was
// down is found by the scheduled check, re-verified, and its list caught up; healthy hooks relax polling.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type LocalHookServer, startLocalHookServer } from '#harness/local/hook-server.ts';
import {
  hookEventKeysFor,
  listHooks,
  registerHooks,
  removeHooks,
  sqsHookJobSink,
  verifyHooks,
} from '#shared/hooks/index.ts';
import { ClientCache } from '#shared/pipeline/deps.ts';
import { MemoryLog, MemoryMetrics } from '#shared/pipeline/ports.ts';
import { runScheduler } from '#shared/pipeline/scheduler.ts';
import type { MirrorItem } from '#shared/store/index.ts';
import {
  diffRecords,
  eventually,
  mirrorOf,
  sandboxKey,
  startWorld,
  TENANT_A,
  type World,
} from '../pipeline/support.ts';

const ACCOUNT = 'acme';
const KEY = sandboxKey(TENANT_A, 0);
type SandboxRecord = Record<string, unknown> & { id: string };

describe('REST hook lifecycle', () => {
  let w: World;
  let receiver: LocalHookServer;
  const receiverLog = new MemoryLog();
  const receiverMetrics = new MemoryMetrics();

  const api = async () => {
    const account = w.config.accounts[0];
    if (!account) throw new Error('no account');
    return new ClientCache(w.stack.deps).for(account, await w.stack.deps.keys.get(account));
  };

  async function drain(): Promise<void> {
    const poller = w.stack.poller({ concurrency: 4 });
    await poller.start();
    try {
      await poller.whenIdle({ timeoutMs: 30_000 });
    } finally {
      await poller.stop();
    }
    expect(poller.stats.handlerErrors).toBe(0);
  }

  /** Mirror == sandbox for contacts: every live record equal, every record the mirror holds beyond Keap's a tombstone. */
  async function mirrorProblems(): Promise<string[]> {
    const all = await mirrorOf(w.stack, ACCOUNT, 'contacts');
    const live = new Map<string, MirrorItem>([...all].filter(([, i]) => i.deletedAt === undefined));
    const expected = w.sandbox.dataset.table('contacts').values() as unknown as SandboxRecord[];
    return diffRecords(expected, live, 'update_time', ['given_name', 'family_name', 'email_addresses']);
  }

  /** Runs the worker until the mirror equals the sandbox (hook deliveries keep arriving meanwhile). */
  async function untilMirrorEqual(): Promise<string[]> {
    const poller = w.stack.poller({ concurrency: 4 });
    await poller.start();
    let problems: string[] = [];
    try {
      await eventually(async () => {
        problems = await mirrorProblems();
        return problems.length === 0;
      }, 20_000);
    } finally {
      await poller.stop();
    }
    return problems;
  }

  beforeAll(async () => {
    w = await startWorld({
      contacts: 200,
      keys: [KEY],
      accounts: [{ id: ACCOUNT, tenant: TENANT_A, key: KEY.key, resources: ['contacts'] }],
      // Keap's delays times 0.002: first attempt 60-120 ms, Inactive about 4.4 s after a change.
      sandboxHooks: { timeScale: 0.002, responseTimeoutMs: 2_000 },
      hooks: { checkEveryMinutes: 15, healthyPollMinutes: 60 },
    });
    const endpoints = w.stack.deps.hookEndpoints;
    if (!endpoints) throw new Error('the pipeline has no hook endpoints');
    receiver = await startLocalHookServer({
      endpoints,
      enqueue: sqsHookJobSink(w.stack.sqs.client, w.stack.sqs.queue.queueUrl),
      log: receiverLog,
      metrics: receiverMetrics,
      maxBodyBytes: 1024 * 1024,
    });
    await w.stack.scheduler();
    await drain();
  }, 60_000);
  afterAll(async () => {
    await receiver?.close();
    await w?.close();
  });

  test('registers one verified hook per event key of the synced lists, once, through the ledger', async () => {
    const account = w.config.accounts[0];
    if (!account) throw new Error('no account');
    const keys = hookEventKeysFor(account);
    expect(keys).toEqual(['contact.add', 'contact.delete', 'contact.edit']);
    const first = await registerHooks({
      api: await api(),
      endpoints: w.stack.deps.hookEndpoints ?? (undefined as never),
      account: ACCOUNT,
      baseUrl: receiver.url,
      eventKeys: keys,
    });
    expect(first.created.map((h) => [h.eventKey, h.status]).sort()).toEqual(keys.map((k) => [k, 'Verified']));
    const again = await registerHooks({
      api: await api(),
      endpoints: w.stack.deps.hookEndpoints ?? (undefined as never),
      account: ACCOUNT,
      baseUrl: receiver.url,
      eventKeys: keys,
    });
    expect(again.created).toEqual([]);
    expect(again.kept).toHaveLength(3);
    const token = (await w.stack.deps.hookEndpoints?.get(ACCOUNT))?.token ?? '';
    for (const hook of await listHooks(await api(), ACCOUNT))
      expect(hook.hookUrl).toBe(`${receiver.url}/hooks/${ACCOUNT}/${token}`);
    // The token is a secret: in no log line of the receiver.
    expect(JSON.stringify(receiverLog.lines)).not.toContain(token);
  });

  test('creates, updates and deletes reach the mirror through hooks alone, deletions as tombstones', async () => {
    const change = w.sandbox.mutate('contacts', { update: 20, create: 10, delete: 5 });
    expect(await untilMirrorEqual()).toEqual([]);
    const all = await mirrorOf(w.stack, ACCOUNT, 'contacts');
    for (const id of change.deleted) expect(all.get(id)?.deletedAt, id).toBeDefined();
    expect(receiverMetrics.sum('HookDeliveries', { account: ACCOUNT })).toBeGreaterThanOrEqual(3);
  }, 40_000);

  test('a hook gone Inactive while the receiver was down is re-verified by the check and its list caught up', async () => {
    receiver.up = false;
    w.sandbox.mutate('contacts', { update: 15, create: 5 });
    const inactive = await eventually(
      () => w.sandbox.hooks.list().some((h) => h.status === 'Inactive'),
      20_000,
    );
    expect(inactive).toBe(true);
    receiver.up = true;
    const before = w.metrics.sum('HooksReverified', { account: ACCOUNT });

    // The scheduler queues the check (its lease spaces checks by hooks.checkEveryMinutes) ...
    const now = Date.now();
    await runScheduler(w.stack.deps, now);
    // ... the worker runs it: re-verify, then an incremental catch-up of contacts.
    expect(await untilMirrorEqual()).toEqual([]);
    expect(w.metrics.sum('HooksInactive', { account: ACCOUNT })).toBeGreaterThan(0);
    expect(w.metrics.sum('HooksReverified', { account: ACCOUNT })).toBeGreaterThan(before);
    expect((await listHooks(await api(), ACCOUNT)).map((h) => h.status)).toEqual([
      'Verified',
      'Verified',
      'Verified',
    ]);
    const endpoint = await w.stack.deps.hookEndpoints?.get(ACCOUNT);
    expect(endpoint?.check?.healthy).toBe(true);
  }, 50_000);

  test('with healthy hooks the scheduler polls a hooked list at most every hooks.healthyPollMinutes', async () => {
    const account = w.config.accounts[0];
    if (!account) throw new Error('no account');
    const cursor = await w.stack.deps.runs.getCursor(ACCOUNT, 'contacts');
    const lastRun = Date.parse(cursor.lastRunAt ?? '');
    // Ten minutes after the last run: contacts (every 5 minutes) would be due, but hooks are healthy.
    const checkedAt = Date.parse((await w.stack.deps.hookEndpoints?.get(ACCOUNT))?.check?.checkedAt ?? '');
    const at = Math.max(lastRun, checkedAt) + 10 * 60_000;
    const relaxed = await runScheduler(w.stack.deps, at);
    expect(relaxed.skipped).toContainEqual({ account: ACCOUNT, resource: 'contacts', reason: 'not-due' });
    expect(relaxed.enqueued).toEqual([]);
  });

  test('verify asks Keap again, and remove deletes our hooks and stops the receiver accepting them', async () => {
    expect((await verifyHooks(await api(), ACCOUNT, true)).map((h) => h.status)).toEqual([
      'Verified',
      'Verified',
      'Verified',
    ]);
    const removed = await removeHooks({
      api: await api(),
      endpoints: w.stack.deps.hookEndpoints ?? (undefined as never),
      account: ACCOUNT,
    });
    expect(removed.sort()).toEqual(['contact.add', 'contact.delete', 'contact.edit']);
    expect(await listHooks(await api(), ACCOUNT)).toEqual([]);
    expect((await w.stack.deps.hookEndpoints?.get(ACCOUNT))?.eventKeys).toEqual([]);
  });
});
