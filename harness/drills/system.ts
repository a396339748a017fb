// Adapter (drills, soak and fault benchmarks): the whole local system as one object: a Keap stand-in,
// the local stack with cuttable links in front of DynamoDB and SQS, workers (in this process, or worker
// processes of bin/keap-sync.ts that a drill can SIGKILL), the scheduler on a short tick, every log line
// kept, and the comparison of the mirror with the stand-in's records.
import { type ChildProcess, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type AppConfig, parseAppConfig } from '#shared/config/app-config.ts';
import { SYNC_RESOURCES, type SyncResource } from '#shared/jobs/schema.ts';
import { createWorkerHandler, jsonLog, MemoryMetrics } from '#shared/pipeline/index.ts';
import type { LinkStats } from '../local/link.ts';
import type { SqsLambdaPoller } from '../local/poller.ts';
import { type LocalEndpoints, type LocalStack, startLocalStack } from '../local/stack.ts';
import type { ResourceType, SandboxFaults, SandboxOptions } from '../sandbox/index.ts';
import { inProcessKeap, type KeapStandIn, processKeap } from './keap.ts';

/** The drill system was used in a way its state does not allow. */
export class DrillSystemError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DrillSystemError';
  }
}

/** Ledger settings far below a test's gateway limits (the quota is not what a drill exercises). */
const RELAXED_GATEWAY = {
  spikeIntervalMs: 0,
  minuteLimit: 100_000,
  minuteWindowMs: 60_000,
  dayLimit: 1_000_000,
  tenantMinuteLimit: 1_000_000,
  tenantDayLimit: 10_000_000,
} as const;
const RELAXED_LEDGER = {
  ...RELAXED_GATEWAY,
  spikeIntervalMs: 20,
  marginMs: 10,
  lateToleranceMs: 5,
  bucketMs: 1_000,
  holdHorizonMs: 10_000,
  bulkShare: 1,
  spikeCoolDownMs: 200,
  quotaCoolDownMs: 2_000,
} as const;

export const DRILL_ACCOUNT = 'drill';
export const DRILL_TENANT = 'drill.infusionsoft.com';
export const DRILL_SECRET_ID = `keap-sync/${DRILL_ACCOUNT}`;

export interface DrillSystemOptions {
  contacts: number;
  seed?: number;
  /** The key the secret holds (a leak scan plants a recognisable one); more keys the sandbox accepts. */
  key: string;
  spareKeys?: string[];
  resources?: readonly SyncResource[];
  /** "relaxed": limits far above the run (tests); "keap": Keap's real limits, ledger at its defaults. */
  limits: 'relaxed' | 'keap';
  /** "process": the sandbox in its own process (benchmarks); default in this process. */
  sandbox?: 'process' | 'in-process';
  faults?: SandboxFaults;
  latencyMs?: SandboxOptions['latencyMs'];
  pageLatency?: SandboxOptions['pageLatency'];
  /** Worker settings (function timeout, retries, ...). */
  worker?: Record<string, number>;
  keapTimeoutMs?: number;
  visibilityTimeoutSec?: number;
}

export interface SchedulerStats {
  runs: number;
  failures: number;
  lastFailureAt: number | undefined;
  lastSuccessAt: number | undefined;
}

export interface WorkerProcess {
  name: string;
  child: ChildProcess;
  exited: Promise<void>;
}

export interface DrillSystem {
  keap: KeapStandIn;
  stack: LocalStack;
  config: AppConfig;
  key: string;
  resources: readonly SyncResource[];
  dataDir: string;
  /** Every log line of this process (JSON), as written. */
  logLines: string[];
  /** Every log line of this process and the worker processes, read from the shared log file. */
  allLogLines(): string[];
  metrics: MemoryMetrics;
  links: {
    dynamo: { stats: LinkStats; cut(): void; restore(): void };
    sqs: { stats: LinkStats; cut(): void; restore(): void };
  };
  /** `n` pollers in this process, each its own handler (a Lambda instance), `concurrency` batches each. */
  startWorkers(n: number, concurrency?: number): Promise<SqsLambdaPoller[]>;
  stopWorkers(): Promise<void>;
  /** A worker process (`bin/keap-sync.ts worker-process`) against this system's services. */
  spawnWorker(concurrency?: number): WorkerProcess;
  workerProcesses(): WorkerProcess[];
  startScheduler(tickMs: number): void;
  stopScheduler(): void;
  scheduler: SchedulerStats;
  /** Differences between the mirror and the stand-in's records (empty: in sync record for record). */
  differences(): Promise<string[]>;
  /** Waits until `differences()` is empty (polling every `everyMs`); false after `timeoutMs`. */
  waitInSync(timeoutMs: number, everyMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

const BIN = fileURLToPath(new URL('../../bin/keap-sync.ts', import.meta.url));

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function startDrillSystem(o: DrillSystemOptions): Promise<DrillSystem> {
  const resources = o.resources ?? SYNC_RESOURCES;
  const keys = [o.key, ...(o.spareKeys ?? [])].map((key) => ({ key, tenant: DRILL_TENANT }));
  const sandboxOptions: SandboxOptions = {
    contacts: o.contacts,
    seed: o.seed ?? 11,
    keys,
    ...(o.limits === 'relaxed' ? { limits: RELAXED_GATEWAY } : {}),
    ...(o.faults ? { faults: o.faults } : {}),
    ...(o.latencyMs ? { latencyMs: o.latencyMs } : {}),
    ...(o.pageLatency ? { pageLatency: o.pageLatency } : {}),
  };
  const keap =
    o.sandbox === 'process' ? await processKeap(sandboxOptions) : await inProcessKeap(sandboxOptions);
  const dataDir = mkdtempSync(join(tmpdir(), 'keap-sync-drill-'));
  const logFile = join(dataDir, 'keap-sync.log');
  const logLines: string[] = [];
  let closed = false;
  const log = jsonLog(
    (line) => {
      logLines.push(line);
      // A line logged while the system closes (a request that ends late) must not throw.
      if (!closed) {
        try {
          appendFileSync(logFile, `${line}\n`);
        } catch {
          // the data folder is gone (removed from outside): the line stays in memory
        }
      }
    },
    { process: 'main' },
  );
  const metrics = new MemoryMetrics();
  const config = parseAppConfig({
    accounts: [
      {
        id: DRILL_ACCOUNT,
        tenant: DRILL_TENANT,
        secretId: DRILL_SECRET_ID,
        resources: Object.fromEntries(resources.map((r) => [r, { everyMinutes: 1 }])),
      },
    ],
    limits: o.limits === 'relaxed' ? RELAXED_LEDGER : {},
    keap: { baseUrl: keap.baseUrl, timeoutMs: o.keapTimeoutMs ?? 10_000 },
    worker: {
      batchSize: 5,
      concurrency: 4,
      timeoutSeconds: 30,
      safetyMarginMs: 3_000,
      waitBudgetMs: 2_000,
      secretMaxAgeMs: 5_000,
      leaseTtlMs: 30_000,
      maxReceiveCount: 20,
      ...o.worker,
    },
    scheduler: { everyMinutes: 1, reserveCallsForIncremental: 0 },
  });
  let stack: LocalStack;
  try {
    stack = await startLocalStack({
      config,
      secrets: { [DRILL_SECRET_ID]: o.key },
      log,
      metrics,
      cuttableLinks: true,
      visibilityTimeoutSec: o.visibilityTimeoutSec ?? 2 * config.worker.timeoutSeconds,
    });
  } catch (err) {
    await keap.close();
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  const links = stack.links;
  if (!links) throw new DrillSystemError('The local stack started without its cuttable links.');
  const endpoints: LocalEndpoints = {
    pid: process.pid,
    dynamo: stack.dynamo.endpoint,
    sqs: stack.sqs.endpoint,
    queueUrl: stack.sqs.queue.queueUrl,
    dlqUrl: stack.sqs.queue.dlqUrl,
    queueArn: stack.sqs.queue.queueArn,
    secrets: stack.secrets.endpoint,
    keapBaseUrl: keap.baseUrl,
    startedAt: new Date().toISOString(),
  };

  const pollers: SqsLambdaPoller[] = [];
  const children: WorkerProcess[] = [];
  let spawned = 0;
  const scheduler: SchedulerStats = {
    runs: 0,
    failures: 0,
    lastFailureAt: undefined,
    lastSuccessAt: undefined,
  };
  let schedulerTimer: NodeJS.Timeout | undefined;
  let ticking = false;

  const differences = async (): Promise<string[]> => {
    const problems: string[] = [];
    for (const resource of resources) {
      const want = new Map(await keap.records(resource as ResourceType));
      const have = new Map<string, number>();
      for await (const item of stack.deps.mirror.iterate(DRILL_ACCOUNT, resource)) {
        if (item.deletedAtMs === undefined) have.set(item.id, item.updateTimeMs);
      }
      let missing = 0;
      let stale = 0;
      let extra = 0;
      for (const [id, t] of want) {
        const h = have.get(id);
        if (h === undefined) missing++;
        else if (h !== t) stale++;
      }
      for (const id of have.keys()) if (!want.has(id)) extra++;
      if (missing + stale + extra > 0)
        problems.push(
          `${resource}: ${missing} missing, ${stale} stale, ${extra} not in Keap (of ${want.size})`,
        );
    }
    return problems;
  };

  return {
    keap,
    stack,
    config,
    key: o.key,
    resources,
    dataDir,
    logLines,
    allLogLines: () =>
      readFileSync(logFile, 'utf8')
        .split('\n')
        .filter((l) => l !== ''),
    metrics,
    links,
    startWorkers: async (n, concurrency = 1) => {
      const started = Array.from({ length: n }, () =>
        stack.poller({ concurrency, handler: createWorkerHandler(stack.deps) }),
      );
      for (const p of started) await p.start();
      pollers.push(...started);
      return started;
    },
    stopWorkers: async () => {
      for (const p of pollers.splice(0)) if (p.running) await p.stop();
    },
    spawnWorker: (concurrency = config.worker.concurrency) => {
      const name = `worker-${++spawned}`;
      const child = fork(BIN, ['worker-process'], {
        env: {
          ...process.env,
          KEAP_SYNC_ENDPOINTS: JSON.stringify(endpoints),
          KEAP_SYNC_RESOLVED_CONFIG: JSON.stringify(config),
          KEAP_SYNC_CONCURRENCY: String(concurrency),
          KEAP_SYNC_LOG_FILE: logFile,
          KEAP_SYNC_PROCESS: name,
          // A worker never needs the run's Keap key from the environment: it reads the secret.
          KEAP_API_KEY: '',
        },
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      });
      // Standard error is kept in the log folder (scanned for leaks with the rest).
      child.stderr?.on('data', (d: Buffer) => appendFileSync(join(dataDir, `${name}.stderr`), d));
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      const w = { name, child, exited };
      children.push(w);
      return w;
    },
    workerProcesses: () => children.filter((c) => c.child.exitCode === null && c.child.signalCode === null),
    startScheduler: (tickMs) => {
      if (schedulerTimer) throw new DrillSystemError('The scheduler is already running.');
      const tick = async () => {
        if (ticking) return;
        ticking = true;
        try {
          await stack.scheduler(tickMs);
          scheduler.runs++;
          scheduler.lastSuccessAt = Date.now();
        } catch (err) {
          scheduler.failures++;
          scheduler.lastFailureAt = Date.now();
          log.warn('Scheduler run failed; the next tick tries again', {
            error: err instanceof Error ? err.name : 'unknown',
            message: err instanceof Error ? err.message : String(err),
          });
        } finally {
          ticking = false;
        }
      };
      void tick();
      schedulerTimer = setInterval(() => void tick(), tickMs);
    },
    stopScheduler: () => {
      clearInterval(schedulerTimer);
      schedulerTimer = undefined;
    },
    scheduler,
    differences,
    waitInSync: async (timeoutMs, everyMs = 1_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const d = await differences().catch(() => ['the mirror could not be read']);
        if (d.length === 0) return true;
        if (Date.now() >= deadline) return false;
        await sleep(everyMs);
      }
    },
    close: async () => {
      clearInterval(schedulerTimer);
      while (ticking) await sleep(20);
      for (const p of pollers.splice(0)) if (p.running) await p.stop();
      for (const c of children) {
        if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGTERM');
      }
      await Promise.race([Promise.all(children.map((c) => c.exited)), sleep(10_000)]);
      for (const c of children) if (c.child.exitCode === null) c.child.kill('SIGKILL');
      // Requests already inside dynalite finish before its database closes (one that ends after the
      // close throws from dynalite's callback, uncaught, and ends the process).
      links.dynamo.cut();
      links.sqs.cut();
      await sleep(1_000);
      await stack.close();
      await keap.close();
      closed = true;
      if (process.env.KEAP_SYNC_DRILL_KEEP) process.stderr.write(`drill data kept in ${dataDir}\n`);
      else rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A key the sandbox accepts, recognisable anywhere it could leak to (a scan looks for it). */
export function plantedKey(tag = 'drill'): string {
  return `KeapAK-PLANTED-${tag}-${randomUUID().replaceAll('-', '')}`;
}
