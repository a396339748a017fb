// Test support for the end-to-end pipeline suites: a Keap sandbox and the whole local stack (dynalite,
// fauxqs, the Secrets Manager stub) wired to one configuration, plus the readers each test compares with.
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  ChangeMessageVisibilityCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
} from '@aws-sdk/client-sqs';
import { expect } from 'vitest';
import { type LocalStack, startLocalStack } from '#harness/local/stack.ts';
import {
  type ArrivalRecord,
  type RunningSandbox,
  type SandboxKey,
  type SandboxOptions,
  startSandbox,
} from '#harness/sandbox/index.ts';
import { type AppConfig, type AppConfigInput, parseAppConfig } from '#shared/config/app-config.ts';
import type { SyncResource } from '#shared/jobs/schema.ts';
import { MemoryLog, MemoryMetrics, type Mirror } from '#shared/pipeline/index.ts';
import { type MirrorItem, MirrorWriteStoppedError } from '#shared/store/index.ts';

/**
 * Gateway limits far above what a small test uses, and no spike arrest: the sandbox stamps arrivals
 * in the test's own busy process, so a tight spike rule would judge that process's pauses. The quota
 * test (quota.test.ts) enforces Keap-shaped limits against a sandbox in its own process instead.
 */
export const RELAXED_LIMITS = {
  spikeIntervalMs: 0,
  minuteLimit: 100_000,
  minuteWindowMs: 60_000,
  dayLimit: 1_000_000,
  tenantMinuteLimit: 1_000_000,
  tenantDayLimit: 10_000_000,
} as const;

/** Ledger settings for RELAXED_LIMITS: the ledger still spaces (20 ms) and counts every call. */
export const RELAXED_LEDGER = {
  ...RELAXED_LIMITS,
  spikeIntervalMs: 20,
  marginMs: 10,
  lateToleranceMs: 5,
  bucketMs: 1_000,
  holdHorizonMs: 10_000,
  bulkShare: 1,
  spikeCoolDownMs: 200,
  quotaCoolDownMs: 2_000,
} as const;

export const TENANT_A = 'tenant-a.infusionsoft.com';
export const TENANT_B = 'tenant-b.infusionsoft.com';

/** A fixed, valid-looking key per (tenant, index): the sandbox accepts exactly the keys it was given. */
export function sandboxKey(tenant: string, index: number): SandboxKey {
  const tag = tenant.replace(/[^a-z0-9]/gi, '').slice(0, 12);
  return { key: `KeapAK-test-${tag}-${index}-0123456789abcdef`, tenant };
}

export interface AccountSpec {
  id: string;
  tenant: string;
  /** Key the secret holds at start. */
  key: string;
  resources: SyncResource[];
}

export interface World {
  sandbox: RunningSandbox;
  stack: LocalStack;
  config: AppConfig;
  log: MemoryLog;
  metrics: MemoryMetrics;
  close(): Promise<void>;
}

export interface WorldOptions {
  contacts: number;
  seed?: number;
  keys: SandboxKey[];
  accounts: AccountSpec[];
  /** Sandbox gateway limits (default RELAXED_LIMITS). */
  gateway?: SandboxOptions['limits'];
  /** Ledger settings (default RELAXED_LEDGER). */
  limits?: AppConfigInput['limits'];
  worker?: AppConfigInput['worker'];
  scheduler?: AppConfigInput['scheduler'];
  visibilityTimeoutSec?: number;
  /** keap.timeoutMs (default 10 s). */
  keapTimeoutMs?: number;
  /** The sandbox's REST hook settings (timeScale: Keap's delivery delays times this). */
  sandboxHooks?: SandboxOptions['hooks'];
  /** The app's hooks settings. */
  hooks?: AppConfigInput['hooks'];
  /** The sandbox's page latency model (default: none, pages answer at once). */
  pageLatency?: SandboxOptions['pageLatency'];
}

export function secretIdOf(account: string): string {
  return `keap-sync/${account}`;
}

/** The app configuration of a test: the accounts, and settings sized for a quick local run. */
export function testConfig(
  o: Omit<WorldOptions, 'contacts' | 'seed' | 'keys' | 'gateway' | 'sandboxHooks' | 'pageLatency'>,
  baseUrl: string,
): AppConfig {
  return parseAppConfig({
    accounts: o.accounts.map((a) => ({
      id: a.id,
      tenant: a.tenant,
      secretId: secretIdOf(a.id),
      resources: Object.fromEntries(a.resources.map((r) => [r, { everyMinutes: 5 }])),
    })),
    limits: o.limits ?? RELAXED_LEDGER,
    keap: { baseUrl, timeoutMs: o.keapTimeoutMs ?? 10_000 },
    worker: {
      batchSize: 5,
      concurrency: 4,
      timeoutSeconds: 60,
      safetyMarginMs: 2_000,
      waitBudgetMs: 2_000,
      secretMaxAgeMs: 60_000,
      leaseTtlMs: 60_000,
      maxReceiveCount: 5,
      ...o.worker,
    },
    scheduler: { everyMinutes: 5, reserveCallsForIncremental: 0, ...o.scheduler },
    ...(o.hooks ? { hooks: o.hooks } : {}),
  });
}

/** The local stack (dynalite, fauxqs, secrets holding each account's key) for `config`. */
export async function startTestStack(
  config: AppConfig,
  accounts: readonly AccountSpec[],
  visibilityTimeoutSec?: number,
): Promise<{ stack: LocalStack; log: MemoryLog; metrics: MemoryMetrics }> {
  const log = new MemoryLog();
  const metrics = new MemoryMetrics();
  const stack = await startLocalStack({
    config,
    secrets: Object.fromEntries(accounts.map((a) => [secretIdOf(a.id), a.key])),
    log,
    metrics,
    visibilityTimeoutSec,
  });
  return { stack, log, metrics };
}

/** Starts the sandbox (in this process) and the local stack around it. Close it in afterAll. */
export async function startWorld(o: WorldOptions): Promise<World> {
  const sandbox = await startSandbox({
    contacts: o.contacts,
    seed: o.seed ?? 7,
    keys: o.keys,
    limits: o.gateway ?? RELAXED_LIMITS,
    ...(o.sandboxHooks ? { hooks: o.sandboxHooks } : {}),
    ...(o.pageLatency ? { pageLatency: o.pageLatency } : {}),
  });
  try {
    const config = testConfig(o, sandbox.baseUrl);
    const { stack, log, metrics } = await startTestStack(config, o.accounts, o.visibilityTimeoutSec);
    return {
      sandbox,
      stack,
      config,
      log,
      metrics,
      close: async () => {
        keepLog(log);
        await stack.close();
        await sandbox.close();
      },
    };
  } catch (err) {
    await sandbox.close();
    throw err;
  }
}

export { type SandboxProcess, startSandboxProcess } from '#harness/sandbox/process.ts';

/** The mirror of (account, resource) as a map by id. */
export async function mirrorOf(stack: LocalStack, account: string, resource: string) {
  const out = new Map<string, MirrorItem>();
  for await (const item of stack.deps.mirror.iterate(account, resource)) out.set(item.id, item);
  return out;
}

/** Sends job bodies (raw strings, so poison can be sent too), ten per SendMessageBatch. */
export async function sendRaw(stack: LocalStack, bodies: string[]): Promise<void> {
  for (let i = 0; i < bodies.length; i += 10) {
    const chunk = bodies.slice(i, i + 10);
    const out = await stack.sqs.client.send(
      new SendMessageBatchCommand({
        QueueUrl: stack.sqs.queue.queueUrl,
        Entries: chunk.map((body, j) => ({ Id: `m${j}`, MessageBody: body })),
      }),
    );
    if ((out.Failed ?? []).length > 0)
      throw new Error(`SendMessageBatch failed: ${JSON.stringify(out.Failed)}`);
  }
}

export interface QueuedMessage {
  body: string;
  attributes: Record<string, string>;
}

/**
 * Receives everything visible in a queue now, with string attributes. `putBack`: make them visible
 * again afterwards (a peek); otherwise they stay in flight for ten minutes.
 */
export async function receiveAll(
  stack: LocalStack,
  queueUrl: string,
  options: { putBack?: boolean } = {},
): Promise<QueuedMessage[]> {
  const out: QueuedMessage[] = [];
  const handles: string[] = [];
  for (let empty = 0; empty < 2; ) {
    const r = await stack.sqs.client.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
        VisibilityTimeout: 600,
        MessageAttributeNames: ['All'],
      }),
    );
    const got = r.Messages ?? [];
    if (got.length === 0) {
      empty++;
      continue;
    }
    for (const m of got) {
      const attributes: Record<string, string> = {};
      for (const [k, v] of Object.entries(m.MessageAttributes ?? {}))
        if (v.StringValue !== undefined) attributes[k] = v.StringValue;
      out.push({ body: m.Body ?? '', attributes });
      if (m.ReceiptHandle) handles.push(m.ReceiptHandle);
    }
  }
  if (options.putBack) {
    for (const ReceiptHandle of handles)
      await stack.sqs.client.send(
        new ChangeMessageVisibilityCommand({ QueueUrl: queueUrl, ReceiptHandle, VisibilityTimeout: 0 }),
      );
  }
  return out;
}

/** Arrivals from index `from` on (the sandbox's log only grows). */
export function arrivalsSince(sandbox: RunningSandbox, from: number): ArrivalRecord[] {
  return sandbox.arrivals.slice(from);
}

/** Runs `fn` until it returns true or `timeoutMs` passes; returns whether it did. */
export async function eventually(fn: () => Promise<boolean> | boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
}

/** Compares mirrored records with the sandbox's: ids, update times and the named data fields. */
export function diffRecords(
  expected: ReadonlyArray<Record<string, unknown> & { id: string }>,
  mirror: ReadonlyMap<string, MirrorItem>,
  timeField: string,
  fields: readonly string[],
): string[] {
  const problems: string[] = [];
  const ids = new Set(expected.map((r) => r.id));
  for (const id of mirror.keys()) if (!ids.has(id)) problems.push(`${id}: in the mirror, not in Keap`);
  for (const rec of expected) {
    const item = mirror.get(rec.id);
    if (!item) {
      problems.push(`${rec.id}: missing from the mirror`);
      continue;
    }
    const t = rec[timeField];
    if (typeof t !== 'string' || item.updateTimeMs !== Date.parse(t))
      problems.push(`${rec.id}: update time ${item.updateTime} in the mirror, ${String(t)} in Keap`);
    for (const f of fields) {
      const want = stableJson(rec[f] ?? null);
      const have = stableJson(item.data[f] ?? null);
      if (want !== have) problems.push(`${rec.id}.${f}: mirror ${have}, Keap ${want}`);
    }
  }
  return problems;
}

/** JSON with object keys sorted (DynamoDB maps do not keep key order). */
export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/**
 * Runs the workers on the world's queue until it is idle (the poller's options pass through); fails on
 * a handler error unless `allowHandlerErrors`. Returns the poller's stats.
 */
export async function drain(
  w: World,
  options: Parameters<LocalStack['poller']>[0] & { timeoutMs?: number; allowHandlerErrors?: boolean } = {},
) {
  const { timeoutMs = 40_000, allowHandlerErrors = false, ...pollerOptions } = options;
  const poller = w.stack.poller({ concurrency: 4, ...pollerOptions });
  await poller.start();
  try {
    await poller.whenIdle({ timeoutMs });
  } finally {
    await poller.stop();
  }
  if (!allowHandlerErrors && poller.stats.handlerErrors !== 0)
    throw new Error(`${poller.stats.handlerErrors} handler error(s)`);
  return poller.stats;
}

const never = new Promise<never>(() => {});

/**
 * `target` whose async methods never settle once `signal` aborted: a killed worker's process is gone,
 * so it writes nothing more (the poller's abandon() only stops waiting for the handler).
 */
export function frozenWhenKilled<T extends object>(target: T, signal: AbortSignal): T {
  return new Proxy(target, {
    get(t, prop) {
      const value: unknown = Reflect.get(t, prop, t);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (signal.aborted) return never;
        const out: unknown = value.apply(t, args);
        if (!(out instanceof Promise)) return out;
        return out.then((v: unknown) => (signal.aborted ? never : v));
      };
    },
  });
}

/**
 * `mirror` whose every write stops after `perCall` records, as the invocation's deadline stops a write
 * on a slow store (MirrorWriteStoppedError naming the ones it finished); `writtenIds` lists every
 * record each call put, in order.
 */
/** A mirror that counts its `count` calls (each a Query of the whole list on DynamoDB). */
export function countingMirror(mirror: Mirror): { mirror: Mirror; counts: () => number } {
  let counts = 0;
  const counting = new Proxy(mirror, {
    get(t, prop) {
      if (prop !== 'count') return Reflect.get(t, prop, t);
      return (...args: Parameters<Mirror['count']>) => {
        counts++;
        return t.count(...args);
      };
    },
  });
  return { mirror: counting, counts: () => counts };
}

export function cappedWrites(mirror: Mirror, perCall: number): { mirror: Mirror; writtenIds: string[] } {
  const writtenIds: string[] = [];
  const capped = new Proxy(mirror, {
    get(t, prop) {
      if (prop !== 'upsertMany') return Reflect.get(t, prop, t);
      return async (...[account, resource, rows, options]: Parameters<Mirror['upsertMany']>) => {
        const part = rows.slice(0, perCall);
        let out: Awaited<ReturnType<Mirror['upsertMany']>>;
        try {
          out = await t.upsertMany(account, resource, part, options);
        } catch (err) {
          // The invocation's own deadline stopped the write first (a slow machine): what it did write
          // is written, and the next message writes the rest.
          if (err instanceof MirrorWriteStoppedError) writtenIds.push(...err.doneIds);
          throw err;
        }
        writtenIds.push(...part.map((r) => r.id));
        if (rows.length > perCall)
          throw new MirrorWriteStoppedError(
            part.length,
            rows.length,
            part.map((r) => r.id),
          );
        return out;
      };
    },
  });
  return { mirror: capped, writtenIds };
}

/**
 * With KEAP_SYNC_TEST_LOG_DIR set (`.ci/run` sets it), a world's log lines go to a file named after
 * the test file when it closes, so a failure on a loaded CI machine leaves something to read.
 */
function keepLog(log: MemoryLog): void {
  const dir = process.env.KEAP_SYNC_TEST_LOG_DIR;
  if (!dir) return;
  const testPath = expect.getState().testPath ?? 'unknown';
  const name = `${basename(testPath).replace(/\.test\.ts$/, '')}-${process.pid}-${Date.now()}.jsonl`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, name), log.lines.map((l) => JSON.stringify(l)).join('\n'));
}
