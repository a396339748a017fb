// Benchmark: `npm run bench:hooks` (prints figures; not a test). The local system in this process (the
// sandbox with REST hooks, dynalite, fauxqs, the local hook receiver and the worker) measures what
// REST hooks buy over polling alone. Keap's delivery delays (30-60 s first attempt, retries after
// 30-60 s, 5 min, 30 min) and the polling interval are multiplied by the time scale (default 0.05, set
// BENCH_HOOKS_SCALE); each latency is printed as measured and divided by the scale ("Keap time"; the
// worker's own fraction of a second is divided too, so Keap time overstates it).
//   1. Seconds from a change in the sandbox to the mirror, p50/p95: hooks vs polling alone (contacts
//      every 5 minutes, scaled).
//   2. Keap calls per hour for an idle account (the 10 lists of keap-sync.config.json): the calls of one
//      idle incremental sync of each list and of one hook check are measured, then multiplied by the
//      schedules: polling alone vs healthy hooks (relaxed polling, the hook check).
//   3. Deletions: with hooks, seconds to the tombstone per event key; without hooks, every deleted record
//      of every list tombstoned by the next sweep.
//   4. Drill: the receiver down for 10 minutes (scaled) while records of every list change and are
//      deleted; afterwards mirror == sandbox, record for record, deletions included: first with Keap's
//      retries alone, then after the hook check and a sweep.
import { setTimeout as sleep } from 'node:timers/promises';
import { type LocalHookServer, startLocalHookServer } from '#harness/local/hook-server.ts';
import { type LocalStack, startLocalStack } from '#harness/local/stack.ts';
import { type RunningSandbox, type SandboxKey, startSandbox } from '#harness/sandbox/index.ts';
import { type AppConfig, type AppConfigInput, parseAppConfig } from '#shared/config/app-config.ts';
import { hookEventKeysFor, registerHooks, removeHooks, sqsHookJobSink } from '#shared/hooks/index.ts';
import type { SyncResource } from '#shared/jobs/schema.ts';
import { REGISTRY } from '#shared/keap/registry.ts';
import { ClientCache } from '#shared/pipeline/deps.ts';
import { MemoryLog, MemoryMetrics } from '#shared/pipeline/ports.ts';

const SCALE = Number(process.env.BENCH_HOOKS_SCALE ?? 0.05);
if (!(SCALE > 0 && SCALE <= 1)) throw new RangeError('BENCH_HOOKS_SCALE must be in (0, 1].');
const ACCOUNT = 'bench';
const TENANT = 'bench.infusionsoft.com';
const KEY: SandboxKey = { key: 'KeapAK-bench-hooks-0123456789abcdef0123', tenant: TENANT };
const LIMITS = {
  spikeIntervalMs: 0,
  minuteLimit: 100_000,
  minuteWindowMs: 60_000,
  dayLimit: 1_000_000,
  tenantMinuteLimit: 1_000_000,
  tenantDayLimit: 10_000_000,
};
const LEDGER = {
  ...LIMITS,
  // Keap's spacing and the ledger's default margin and lateness tolerance (the sandbox enforces no spike).
  spikeIntervalMs: 100,
  bucketMs: 1_000,
  holdHorizonMs: 10_000,
  bulkShare: 1,
  spikeCoolDownMs: 200,
  quotaCoolDownMs: 2_000,
};
const DEFAULT_INTERVALS: Record<SyncResource, number> = {
  contacts: 5,
  companies: 15,
  orders: 15,
  opportunities: 30,
  tags: 60,
  tagApplications: 60,
  notes: 15,
  tasks: 15,
  products: 60,
  subscriptions: 60,
  users: 60,
};

let lastLog: MemoryLog | undefined;

interface World {
  sandbox: RunningSandbox;
  stack: LocalStack;
  config: AppConfig;
  receiver: LocalHookServer;
  metrics: MemoryMetrics;
  close(): Promise<void>;
}

async function startWorld(
  lists: SyncResource[],
  o: { clock?: () => number; hooks?: AppConfigInput['hooks'] } = {},
): Promise<World> {
  const sandbox = await startSandbox({
    contacts: 500,
    seed: 1,
    keys: [KEY],
    limits: LIMITS,
    hooks: { timeScale: SCALE, responseTimeoutMs: Math.max(1_000, 30_000 * SCALE) },
  });
  const config = parseAppConfig({
    accounts: [
      {
        id: ACCOUNT,
        tenant: TENANT,
        secretId: 'keap-sync/bench',
        resources: Object.fromEntries(lists.map((l) => [l, { everyMinutes: DEFAULT_INTERVALS[l] }])),
      },
    ],
    limits: LEDGER,
    keap: { baseUrl: sandbox.baseUrl, timeoutMs: 10_000 },
    worker: { batchSize: 5, concurrency: 4, timeoutSeconds: 60, safetyMarginMs: 2_000, leaseTtlMs: 60_000 },
    scheduler: { everyMinutes: 5, reserveCallsForIncremental: 0 },
    ...(o.hooks ? { hooks: o.hooks } : {}),
  });
  const metrics = new MemoryMetrics();
  const log = new MemoryLog();
  lastLog = log;
  const stack = await startLocalStack({
    config,
    secrets: { 'keap-sync/bench': KEY.key },
    log,
    metrics,
    ...(o.clock ? { clock: o.clock } : {}),
  });
  const endpoints = stack.deps.hookEndpoints;
  if (!endpoints) throw new Error('no hook endpoints');
  const receiver = await startLocalHookServer({
    endpoints,
    enqueue: sqsHookJobSink(stack.sqs.client, stack.sqs.queue.queueUrl),
    log: new MemoryLog(),
    metrics,
    maxBodyBytes: 1024 * 1024,
  });
  return {
    sandbox,
    stack,
    config,
    receiver,
    metrics,
    close: async () => {
      await receiver.close();
      await stack.close();
      await sandbox.close();
    },
  };
}

const account = (w: World) => {
  const a = w.config.accounts[0];
  if (!a) throw new Error('no account');
  return a;
};
const api = async (w: World) =>
  new ClientCache(w.stack.deps).for(account(w), await w.stack.deps.keys.get(account(w)));
const register = async (w: World) =>
  registerHooks({
    api: await api(w),
    endpoints: w.stack.deps.hookEndpoints ?? (undefined as never),
    account: ACCOUNT,
    baseUrl: w.receiver.url,
    eventKeys: hookEventKeysFor(account(w)),
  });

async function drain(w: World, timeoutMs = 60_000): Promise<void> {
  const poller = w.stack.poller({ concurrency: 4 });
  await poller.start();
  try {
    await poller.whenIdle({ timeoutMs });
  } finally {
    await poller.stop();
  }
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0
    ? Number.NaN
    : (s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? Number.NaN);
};
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '-');
const timeOf = (list: SyncResource, rec: unknown): number => {
  for (const f of REGISTRY[list].timeFields) {
    const v = (rec as Record<string, unknown>)[f];
    if (typeof v === 'string') return Date.parse(v);
  }
  return 0;
};

/** Waits until every watched id is in the mirror at (at least) its sandbox version; returns seconds per id. */
async function watch(
  w: World,
  list: SyncResource,
  items: Array<{ id: string; at: number; gone: boolean; want: number }>,
  timeoutMs: number,
): Promise<number[]> {
  const done = new Map<string, number>();
  const end = Date.now() + timeoutMs;
  while (done.size < items.length && Date.now() < end) {
    for (const it of items) {
      if (done.has(it.id)) continue;
      const m = await w.stack.deps.mirror.get(ACCOUNT, list, it.id);
      const ok = it.gone
        ? m?.deletedAt !== undefined
        : m !== undefined && m.deletedAt === undefined && m.updateTimeMs >= it.want;
      if (ok) done.set(it.id, (Date.now() - it.at) / 1000);
    }
    await sleep(100);
  }
  return [...done.values()];
}

/** Changes `n` contacts one by one, `gapMs` apart; what each should look like in the mirror. */
async function changeContacts(w: World, n: number, gapMs: number) {
  const out: Array<{ id: string; at: number; gone: boolean; want: number }> = [];
  for (let i = 0; i < n; i++) {
    const r = w.sandbox.mutate('contacts', i % 4 === 3 ? { create: 1 } : { update: 1 });
    const id = r.updated[0] ?? r.created[0];
    if (id)
      out.push({
        id,
        at: Date.now(),
        gone: false,
        want: timeOf('contacts', w.sandbox.dataset.table('contacts').get(id)),
      });
    await sleep(gapMs);
  }
  return out;
}

/** Per list: live ids and update times that differ between the mirror and the sandbox, deleted ones not tombstoned. */
async function mirrorVsSandbox(w: World, lists: SyncResource[]) {
  let records = 0;
  let tombstones = 0;
  const problems: string[] = [];
  for (const list of lists) {
    const mirror = new Map<string, { t: number; dead: boolean }>();
    // A tag application from a hook is versioned by its receipt time; its applied time is its data's.
    for await (const item of w.stack.deps.mirror.iterate(ACCOUNT, list))
      mirror.set(item.id, {
        t: list === 'tagApplications' ? timeOf(list, item.data) : item.updateTimeMs,
        dead: item.deletedAt !== undefined,
      });
    const table = w.sandbox.dataset.table(list);
    for (const id of table.ids()) {
      records++;
      const m = mirror.get(String(id));
      const want = timeOf(list, table.get(id));
      if (!m || m.dead) problems.push(`${list} ${id}: missing`);
      else if (m.t !== want) problems.push(`${list} ${id}: stale`);
    }
    for (const [id, m] of mirror) {
      if (table.get(id) !== undefined) continue;
      if (m.dead) tombstones++;
      else problems.push(`${list} ${id}: deleted in Keap, live in the mirror`);
    }
  }
  return { records, tombstones, problems };
}

async function latency(): Promise<string[]> {
  const w = await startWorld(['contacts']);
  try {
    await w.stack.scheduler();
    await drain(w);
    // Hooks: the worker runs all the time; no polling.
    await register(w);
    const poller = w.stack.poller({ concurrency: 4 });
    await poller.start();
    const hooked = await changeContacts(w, 24, 250);
    const withHooks = await watch(w, 'contacts', hooked, 120_000);
    await poller.stop();
    await removeHooks({
      api: await api(w),
      endpoints: w.stack.deps.hookEndpoints ?? (undefined as never),
      account: ACCOUNT,
    });
    // Polling alone: an incremental sync every 5 minutes (scaled), as the scheduler queues a due list.
    const everyMs = 5 * 60_000 * SCALE;
    const poller2 = w.stack.poller({ concurrency: 4 });
    await poller2.start();
    let polling = true;
    const polls = (async () => {
      while (polling) {
        await w.stack.deps.queue.send({
          kind: 'sync',
          account: ACCOUNT,
          resource: 'contacts',
          mode: 'incremental',
          attempt: 0,
        });
        await sleep(everyMs);
      }
    })();
    await sleep(everyMs / 3);
    const polled = await changeContacts(w, 24, (2 * everyMs) / 24);
    const byPolling = await watch(w, 'contacts', polled, 4 * everyMs + 30_000);
    polling = false;
    await polls;
    await poller2.stop();
    const row = (name: string, xs: number[], n: number) =>
      `  ${name.padEnd(22)} ${String(xs.length).padStart(2)}/${n}   p50 ${f1(pct(xs, 50)).padStart(6)} s  p95 ${f1(pct(xs, 95)).padStart(6)} s   (Keap time p50 ${f1(pct(xs, 50) / SCALE).padStart(6)} s, p95 ${f1(pct(xs, 95) / SCALE).padStart(6)} s)`;
    return [
      '1. Change in the sandbox to the mirror (contacts: 24 edits and creates)',
      row('hooks', withHooks, hooked.length),
      row('polling alone (5 min)', byPolling, polled.length),
    ];
  } finally {
    await w.close();
  }
}

async function idleCalls(): Promise<string[]> {
  const lists = Object.keys(DEFAULT_INTERVALS) as SyncResource[];
  const w = await startWorld(lists, { hooks: { checkEveryMinutes: 15, healthyPollMinutes: 60 } });
  try {
    await w.stack.scheduler();
    await drain(w);
    // Measured: what one idle incremental sync of each list, and one hook check, cost in Keap calls.
    const perSync = new Map<SyncResource, number>();
    for (const list of lists) {
      const from = w.sandbox.arrivals.length;
      await w.stack.deps.queue.send({
        kind: 'sync',
        account: ACCOUNT,
        resource: list,
        mode: 'incremental',
        attempt: 0,
      });
      await drain(w);
      perSync.set(list, w.sandbox.arrivals.length - from);
    }
    await register(w);
    let from = w.sandbox.arrivals.length;
    await w.stack.deps.queue.send({ kind: 'hookCheck', account: ACCOUNT, attempt: 0 });
    await drain(w);
    const perCheck = w.sandbox.arrivals.length - from;
    const healthy = (await w.stack.deps.hookEndpoints?.get(ACCOUNT))?.check?.healthy === true;
    from = w.sandbox.arrivals.length;
    for (const list of lists)
      await w.stack.deps.queue.send({ kind: 'sweep', account: ACCOUNT, resource: list, attempt: 0 });
    await drain(w);
    const sweepAll = w.sandbox.arrivals.length - from;
    // Per hour at the schedules: each list every everyMinutes (polling alone), or every
    // max(everyMinutes, hooks.healthyPollMinutes) plus a hook check every hooks.checkEveryMinutes.
    const { healthyPollMinutes, checkEveryMinutes } = w.config.hooks;
    let polling = 0;
    let hooked = (60 / checkEveryMinutes) * perCheck;
    for (const list of lists) {
      const calls = perSync.get(list) ?? 0;
      polling += (60 / DEFAULT_INTERVALS[list]) * calls;
      hooked += (60 / Math.max(DEFAULT_INTERVALS[list], healthyPollMinutes)) * calls;
    }
    return [
      `2. Keap calls per hour, idle account (${lists.length} lists at keap-sync.config.json intervals, 500 contacts, ${w.sandbox.dataset.table('tags').size} tags)`,
      `  measured                 ${[...perSync.values()].reduce((a, b) => a + b, 0)} calls for one idle incremental sync of each of the ${lists.length} lists (tag applications ${perSync.get('tagApplications') ?? 0}: the walk over every tag); ${perCheck} per hook check (hooks ${healthy ? 'healthy' : 'NOT healthy'}); ${sweepAll} per sweep of every list`,
      `  polling alone            ${f1(polling)} calls/hour`,
      `  hooks healthy            ${f1(hooked)} calls/hour (relaxed polling every ${healthyPollMinutes} min, a hook check every ${checkEveryMinutes} min)`,
      `  the daily sweep adds     ${f1(sweepAll / w.config.sweep.everyHours)} calls/hour averaged (${sweepAll} calls every ${w.config.sweep.everyHours} h), either way`,
    ];
  } finally {
    await w.close();
  }
}

async function deletions(): Promise<string[]> {
  const lists = Object.keys(DEFAULT_INTERVALS) as SyncResource[];
  const w = await startWorld(lists);
  try {
    await w.stack.scheduler();
    await drain(w);
    // Without hooks: delete in every list, then the next sweep of each.
    const deleted: Array<[SyncResource, string]> = [];
    for (const list of lists) {
      const size = w.sandbox.dataset.table(list).size;
      for (const id of w.sandbox.mutate(list, { delete: Math.max(1, Math.floor(size / 20)) }).deleted)
        deleted.push([list, id]);
    }
    for (const list of lists)
      await w.stack.deps.queue.send({ kind: 'sweep', account: ACCOUNT, resource: list, attempt: 0 });
    await drain(w);
    let swept = 0;
    for (const [list, id] of deleted)
      if ((await w.stack.deps.mirror.get(ACCOUNT, list, id))?.deletedAt) swept++;
    // With hooks: contact.delete and contactGroup.delete (Keap delays the latter 5-10 minutes).
    await register(w);
    const poller = w.stack.poller({ concurrency: 4 });
    await poller.start();
    const rows: string[] = [];
    for (const list of ['contacts', 'tagApplications', 'tags'] as const) {
      const at = Date.now();
      const gone = w.sandbox
        .mutate(list, { delete: 5 })
        .deleted.filter((id) => list !== 'tags' || !id.includes(':'))
        .map((id) => ({ id, at, gone: true, want: 0 }));
      const xs = await watch(w, list, gone, (list === 'tags' ? 700_000 : 130_000) * SCALE + 20_000);
      const key = `${REGISTRY[list].hook?.object}.${list === 'tagApplications' ? 'removed' : 'delete'}`;
      rows.push(
        `  hooks, ${key.padEnd(20)} ${xs.length}/${gone.length} tombstoned, p95 ${f1(pct(xs, 95))} s (Keap time ${f1(pct(xs, 95) / SCALE)} s)`,
      );
    }
    await poller.stop();
    return [
      '3. Deletions',
      `  no hooks, next sweep     ${swept}/${deleted.length} deleted records of ${lists.length} lists tombstoned by one sweep of each list`,
      ...rows,
    ];
  } finally {
    await w.close();
  }
}

async function drill(): Promise<string[]> {
  const lists: SyncResource[] = [
    'contacts',
    'companies',
    'tags',
    'tagApplications',
    'notes',
    'tasks',
    'orders',
  ];
  const w = await startWorld(lists);
  try {
    await w.stack.scheduler();
    await drain(w);
    await register(w);
    const poller = w.stack.poller({ concurrency: 4 });
    await poller.start();
    // Down for 10 minutes (scaled): changes and deletions in every list meanwhile.
    const downMs = 10 * 60_000 * SCALE;
    w.receiver.up = false;
    const end = Date.now() + downMs;
    let changes = 0;
    while (Date.now() < end) {
      for (const list of lists) {
        const r = w.sandbox.mutate(list, { update: 2, create: 1, delete: 1 });
        changes += r.updated.length + r.created.length + r.deleted.length;
      }
      await sleep(downMs / 6);
    }
    w.receiver.up = true;
    const refused = w.receiver.answered.get(503) ?? 0;
    // Keap's retries alone: wait until the sandbox has nothing left to deliver (30-60 s, 5 min, 30 min, scaled).
    const retriesEnd = Date.now() + 40 * 60_000 * SCALE + 30_000;
    while (Date.now() < retriesEnd) {
      const pending = w.sandbox.hooks
        .snapshot()
        .deliveries.some((d) => d.state === 'waiting' || d.state === 'sending');
      if (!pending && w.sandbox.hooks.snapshot().hooks.every((h) => h.pending === 0)) break;
      await sleep(500);
    }
    await sleep(2_000);
    await poller.stop();
    await drain(w);
    const afterRetries = await mirrorVsSandbox(w, lists);
    const inactive = w.sandbox.hooks.list().filter((h) => h.status === 'Inactive').length;
    // Then the safety net: the hook check, a poll and a sweep of each list.
    await w.stack.deps.queue.send({ kind: 'hookCheck', account: ACCOUNT, attempt: 0 });
    for (const list of lists) {
      await w.stack.deps.queue.send({
        kind: 'sync',
        account: ACCOUNT,
        resource: list,
        mode: 'incremental',
        attempt: 0,
      });
      await w.stack.deps.queue.send({ kind: 'sweep', account: ACCOUNT, resource: list, attempt: 0 });
    }
    await drain(w);
    const afterNet = await mirrorVsSandbox(w, lists);
    const line = (name: string, r: Awaited<ReturnType<typeof mirrorVsSandbox>>) =>
      `  ${name.padEnd(34)} ${r.problems.length === 0 ? 'mirror == sandbox' : `${r.problems.length} differences (${r.problems.slice(0, 3).join('; ')})`}: ${r.records} records, ${r.tombstones} tombstones`;
    return [
      `4. Drill: receiver down 10 min (${(downMs / 1000).toFixed(0)} s at scale ${SCALE}), ${changes} changes in ${lists.length} lists meanwhile, ${refused} deliveries refused, ${inactive} hooks Inactive after`,
      line("after Keap's retries alone", afterRetries),
      line('after the hook check, a poll, a sweep', afterNet),
    ];
  } finally {
    await w.close();
  }
}

const started = Date.now();
const out: string[] = [
  `bench:hooks (time scale ${SCALE}: Keap's hook delays and the polling interval x ${SCALE})`,
];
const only = process.env.BENCH_HOOKS_ONLY?.split(',');
for (const part of [latency, idleCalls, deletions, drill]) {
  if (only && !only.includes(part.name)) continue;
  const lines = await part().catch((err: unknown) => {
    const errors = (lastLog?.lines ?? []).filter((l) => l.level === 'error' || l.level === 'warn').slice(-5);
    console.error(JSON.stringify(errors, null, 1));
    throw err;
  });
  out.push(...lines);
  console.log(lines.join('\n'));
}
console.log(`(${((Date.now() - started) / 1000).toFixed(0)} s)`);
