// Use case (CLI): `keap-sync run` (what `npm start` runs): the whole system on one machine. Embedded
// DynamoDB (on disk, so state survives a restart) and SQS, a Secrets Manager stub, the Keap sandbox
// (or the real Keap with a key), the scheduler on its interval, and workers polling the queue through
// the same handler code the Lambdas run, in one or more OS processes sharing one ledger.
import { fork } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AppConfig } from '#shared/config/app-config.ts';
import { hookEventKeysFor, isOurHook, registerHooks, sqsHookJobSink } from '#shared/hooks/index.ts';
import { DEFAULT_HOOK_MAX_BODY_BYTES } from '#shared/hooks/lambda.ts';
import type { SyncResource } from '#shared/jobs/schema.ts';
import { ClientCache } from '#shared/pipeline/deps.ts';
import { jsonLog, MemoryMetrics } from '#shared/pipeline/index.ts';
import { provisionLocalAccount } from '../local/accounts.ts';
import { type LocalHookServer, startLocalHookServer } from '../local/hook-server.ts';
import { type LocalEndpoints, startLocalStack } from '../local/stack.ts';
import { defaultKeys, type RunningSandbox, startSandbox } from '../sandbox/index.ts';
import type { LiveView } from './live.ts';
import { estimateSync, UsageError } from './operator.ts';
import { BackfillMeter, formatProgress } from './progress.ts';
import { collectStatus, countNow, formatStatus, PacedRecordCounts, type StatusReport } from './status.ts';

export interface RunOptions {
  config: AppConfig;
  dataDir: string;
  untilIdle: boolean;
  processes: number;
  concurrency: number;
  contacts: number;
  scheduleSeconds: number | undefined;
  /** The real Keap key (KEAP_API_KEY or a key file); absent: the sandbox. */
  realKey: string | undefined;
  out: (text: string) => void;
  /** Where the live view goes (redrawn in place on a terminal, plain lines otherwise). */
  view: LiveView;
  /** POST every change event here too (they always go to <dataDir>/events.jsonl). */
  eventsUrl?: string;
  /** The configuration file's name, recorded as the source of the accounts it seeds. */
  configSource?: string;
}

export const ENDPOINTS_FILE = 'endpoints.json';
/** The change events, one JSON line each, in the data folder. */
export const EVENTS_FILE = 'events.jsonl';
const BIN = fileURLToPath(new URL('../../bin/keap-sync.ts', import.meta.url));

export async function run(o: RunOptions): Promise<number> {
  // Ctrl-C / SIGTERM are caught from the start: one that arrives while the system is starting up stops it
  // cleanly as soon as it is up (a second one ends the process at once).
  if (o.eventsUrl !== undefined && !/^https?:\/\//.test(o.eventsUrl)) {
    throw new UsageError(`--events-url must be an http:// or https:// URL; got "${o.eventsUrl}".`);
  }
  let signalled = false;
  let onStopSignal = () => {
    signalled = true;
  };
  const onSignal = () => onStopSignal();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const dataDir = resolve(o.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const logFile = join(dataDir, 'keap-sync.log');
  const log = jsonLog((line) => appendFileSync(logFile, `${line}\n`), { process: 'main' });
  const metrics = new MemoryMetrics();
  let sandbox: RunningSandbox | undefined;
  const config: AppConfig = structuredClone(o.config);
  const secrets: Record<string, string> = {};
  if (o.realKey) {
    for (const a of config.accounts) secrets[a.secretId] = o.realKey;
  } else {
    // One sandbox key per configured account, on that account's tenant.
    const keys = config.accounts.map((a, i) => ({
      key: defaultKeys(i + 1, 1, a.tenant)[0]?.key ?? '',
      tenant: a.tenant,
    }));
    sandbox = await startSandbox({ contacts: o.contacts, seed: 1, keys });
    config.keap.baseUrl = sandbox.baseUrl;
    config.accounts.forEach((a, i) => {
      secrets[a.secretId] = keys[i]?.key ?? '';
    });
  }
  const events = { file: join(dataDir, EVENTS_FILE), ...(o.eventsUrl ? { url: o.eventsUrl } : {}) };
  const stack = await startLocalStack({
    config,
    secrets,
    log,
    metrics,
    events,
    dataPath: join(dataDir, 'dynamo'),
    dynamoEndpoint: process.env.AWS_ENDPOINT_URL_DYNAMODB,
    sqsEndpoint: process.env.AWS_ENDPOINT_URL_SQS,
    secretsEndpoint: process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER,
  });
  const { deps } = stack;
  // The configuration file seeds the account registry (an account registered already keeps its
  // registered version); accounts registered with `keap-sync accounts add` get a sandbox key here.
  const seeded = await deps.registry.seed(config.accounts, o.configSource ?? 'config file');
  if (seeded.length > 0) log.info('Accounts of the configuration file registered', { accounts: seeded });
  const registered = (await deps.directory.list()).map((e) => e.account);
  const inFile = new Set(config.accounts.map((a) => a.id));
  for (const a of registered) {
    if (inFile.has(a.id)) continue;
    await provisionLocalAccount(a, {
      keapBaseUrl: config.keap.baseUrl,
      secrets: stack.secrets.client,
      ...(o.realKey ? { apiKey: o.realKey } : {}),
    });
  }
  // This is a fresh start: no worker of an earlier run is alive, and the queue (in memory) is new.
  // Leases of the dead run are released so resources are enqueued again; checkpoints resume.
  for (const a of registered) {
    for (const r of Object.keys(a.resources)) {
      const lease = await deps.leases.get(a.id, r);
      if (lease) await deps.leases.release(a.id, r, lease.owner);
    }
  }
  // The REST hook receiver, on the same use case as the Lambda: jobs onto the local queue.
  const hookServer: LocalHookServer | undefined = deps.hookEndpoints
    ? await startLocalHookServer({
        endpoints: deps.hookEndpoints,
        enqueue: sqsHookJobSink(stack.sqs.client, stack.sqs.queue.queueUrl),
        log,
        metrics,
        maxBodyBytes: DEFAULT_HOOK_MAX_BODY_BYTES,
      })
    : undefined;
  const endpoints: LocalEndpoints = {
    pid: process.pid,
    dynamo: stack.dynamo.endpoint,
    sqs: stack.sqs.endpoint,
    queueUrl: stack.sqs.queue.queueUrl,
    dlqUrl: stack.sqs.queue.dlqUrl,
    queueArn: stack.sqs.queue.queueArn,
    secrets: stack.secrets.endpoint,
    keapBaseUrl: config.keap.baseUrl,
    startedAt: new Date().toISOString(),
    ...(hookServer ? { hookReceiverUrl: hookServer.url } : {}),
  };
  const endpointsPath = join(dataDir, ENDPOINTS_FILE);
  writeFileSync(endpointsPath, JSON.stringify(endpoints, null, 2));

  const children = Array.from({ length: Math.max(0, o.processes - 1) }, (_, i) =>
    fork(BIN, ['worker-process'], {
      env: {
        ...process.env,
        KEAP_SYNC_ENDPOINTS: JSON.stringify(endpoints),
        KEAP_SYNC_RESOLVED_CONFIG: JSON.stringify(config),
        KEAP_SYNC_CONCURRENCY: String(o.concurrency),
        KEAP_SYNC_LOG_FILE: logFile,
        KEAP_SYNC_PROCESS: `worker-${i + 1}`,
        KEAP_SYNC_EVENTS: JSON.stringify(events),
      },
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    }),
  );
  const childMetrics = new Map<number, Array<[string, number]>>();
  children.forEach((c, i) => {
    c.on('message', (m: unknown) => {
      const entries = (m as { metrics?: Array<[string, number]> }).metrics;
      if (entries) childMetrics.set(i, entries);
    });
  });
  const total = (name: string) => {
    let n = metrics.sum(name as never);
    for (const entries of childMetrics.values()) {
      for (const [k, v] of entries) if (k === name || k.startsWith(`${name}|`)) n += v;
    }
    return n;
  };

  const sources = {
    ...deps,
    queues: { client: stack.sqs.client, queueUrl: stack.sqs.queue.queueUrl, dlqUrl: stack.sqs.queue.dlqUrl },
  };
  // Keap calls of this run. With the sandbox: what it received. With a real key: what the shared ledger
  // counted since start-up over the configured tenants: every process's calls go through it, while the
  // worker processes' metrics arrive once a second and not at all once they are stopped. A new UTC day
  // restarts the ledger's count.
  const tenants = [...new Set(registered.map((a) => a.tenant))];
  const ledgerDayUsed = async () => {
    let n = 0;
    for (const t of tenants) n += (await deps.ledger.snapshot(t)).day.used;
    return n;
  };
  let ledgerSeen = sandbox ? 0 : await ledgerDayUsed();
  let ledgerCalls = 0;
  const poller = stack.poller({ concurrency: o.concurrency });
  await poller.start();
  const scheduleMs = (o.scheduleSeconds ?? config.scheduler.everyMinutes * 60) * 1000;
  let schedulerRuns = 0;
  const schedule = async () => {
    try {
      await stack.scheduler(scheduleMs);
      schedulerRuns++;
    } catch (err) {
      log.error('Scheduler run failed', { error: (err as Error).name, message: (err as Error).message });
    }
  };
  await schedule();
  // With the sandbox, its hooks are registered on the local receiver (the real Keap cannot reach it:
  // register a deployed receiver with "keap-sync hooks register --aws").
  if (sandbox && hookServer) {
    const clients = new ClientCache(deps);
    for (const account of config.accounts) {
      try {
        const api = clients.for(account, await deps.keys.get(account));
        await registerHooks({
          api,
          endpoints: deps.hookEndpoints ?? (undefined as never),
          account: account.id,
          baseUrl: hookServer.url,
          eventKeys: hookEventKeysFor(account),
        });
      } catch (err) {
        log.error('Hook registration failed', { account: account.id, error: (err as Error).name });
      }
    }
  }
  const hooksLine = (): string[] => {
    if (!sandbox) return [];
    return config.accounts.map((a) => {
      const mine = sandbox.hooks.list().filter((h) => isOurHook(h, a.id));
      if (mine.length === 0) return `hooks ${a.id}: none`;
      const by = new Map<string, string[]>();
      for (const h of mine) by.set(h.status, [...(by.get(h.status) ?? []), h.eventKey]);
      return `hooks ${a.id}: ${[...by].map(([st, keys]) => `${st} ${keys.length} (${keys.sort().join(', ')})`).join('; ')}`;
    });
  };
  const schedulerTimer = setInterval(() => void schedule(), scheduleMs);

  const started = Date.now();
  let counting = Promise.resolve(0);
  const keapCalls = async (): Promise<number> => {
    if (sandbox) return sandbox.arrivals.filter((a) => a.status !== 401).length;
    // One count at a time, so an older reading never looks like the start of a new day.
    counting = counting.then(async () => {
      try {
        const used = await ledgerDayUsed();
        ledgerCalls += used >= ledgerSeen ? used - ledgerSeen : used;
        ledgerSeen = used;
      } catch {
        // the ledger is unreachable for a moment: show the last count
      }
      return ledgerCalls;
    });
    return counting;
  };
  o.out(
    `keap-sync: ${sandbox ? `Keap sandbox at ${sandbox.baseUrl} (${o.contacts} contacts)` : `Keap at ${config.keap.baseUrl}`}, ` +
      `${o.processes} process(es) x ${o.concurrency} workers, data in ${dataDir}, logs in ${logFile}, ` +
      `change events in ${events.file}${o.eventsUrl ? ` and to ${o.eventsUrl}` : ''}`,
  );
  let stopping = false;
  const stop = new Promise<'signal' | 'idle'>((resolveStop) => {
    onStopSignal = () => resolveStop('signal');
    if (signalled) resolveStop('signal');
    if (o.untilIdle) {
      const check = async () => {
        if (stopping) return;
        try {
          const report = await collectStatus(sources, Date.now(), { countRecords: false });
          if (report.inSync && schedulerRuns > 0 && poller.stats.inFlight === 0) resolveStop('idle');
          else setTimeout(() => void check(), 500);
        } catch {
          setTimeout(() => void check(), 1000);
        }
      };
      setTimeout(() => void check(), 500);
    }
  });
  let last: StatusReport | undefined;
  // The backfill's total: the sandbox's own dataset, or the estimate for --contacts (keap-sync estimate).
  const expected: Record<string, number> = sandbox
    ? Object.fromEntries(
        registered
          .flatMap((a) => Object.keys(a.resources) as SyncResource[])
          .map((r) => [r, sandbox.dataset.table(r).size]),
      )
    : Object.fromEntries(estimateSync(config, o.contacts, 0).perResource.map((r) => [r.resource, r.records]));
  const backfill = new BackfillMeter(expected);
  // The view's record counts are paced (a count reads the whole mirror); the closing report's are exact.
  const viewCounts = new PacedRecordCounts(countNow(sources.mirror));
  const view = async () => {
    try {
      last = await collectStatus(sources, Date.now(), { counts: viewCounts.counter });
      const progress = backfill.sample(last);
      const text = formatStatus(last, { deferrals: total('Deferrals') });
      const head = `keap-sync running ${Math.round((Date.now() - started) / 1000)}s   Keap calls: ${await keapCalls()}`;
      if (!stopping)
        o.view.show([head, ...(progress ? [formatProgress(progress)] : []), ...hooksLine(), text].join('\n'));
    } catch (err) {
      if (!stopping) o.view.show(`(status unavailable: ${(err as Error).message})`);
    }
  };
  // One refresh at a time: a tick that finds the last one still running (a busy machine) is skipped.
  let viewing: Promise<void> | undefined;
  const viewTimer = setInterval(() => {
    viewing ??= view().finally(() => {
      viewing = undefined;
    });
  }, o.view.everyMs);
  const reason = await stop;
  stopping = true;
  clearInterval(viewTimer);
  // A refresh or a background recount still reading the mirror would meet closed stores below.
  await viewing;
  await viewCounts.settled();
  o.view.done();
  clearInterval(schedulerTimer);
  await poller.stop();
  for (const c of children) c.kill('SIGTERM');
  last = await collectStatus(sources).catch(() => last);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  o.out(
    `\nkeap-sync stopped (${reason === 'idle' ? 'queue drained, every resource in sync' : 'signal'}) after ${seconds}s` +
      `   Keap calls: ${await keapCalls()}   deferrals: ${total('Deferrals')}   dead letters: ${last?.deadLetters ?? '-'}`,
  );
  if (last) o.out(formatStatus(last));
  rmSync(endpointsPath, { force: true });
  await hookServer?.close();
  await stack.close();
  await sandbox?.close();
  return 0;
}

/** A worker process of `run --processes P`: pollers against the main process's services. */
export async function workerProcess(): Promise<void> {
  const { connectLocalStack } = await import('../local/stack.ts');
  const endpoints = JSON.parse(process.env.KEAP_SYNC_ENDPOINTS ?? '{}') as LocalEndpoints;
  const config = JSON.parse(process.env.KEAP_SYNC_RESOLVED_CONFIG ?? '{}') as AppConfig;
  const logFile = process.env.KEAP_SYNC_LOG_FILE ?? 'keap-sync.log';
  const log = jsonLog((line) => appendFileSync(logFile, `${line}\n`), {
    process: process.env.KEAP_SYNC_PROCESS,
  });
  const metrics = new MemoryMetrics();
  const events = process.env.KEAP_SYNC_EVENTS
    ? (JSON.parse(process.env.KEAP_SYNC_EVENTS) as { file: string; url?: string })
    : undefined;
  const stack = connectLocalStack({ config, endpoints, log, metrics, events });
  const poller = stack.poller({
    concurrency: Number(process.env.KEAP_SYNC_CONCURRENCY ?? config.worker.concurrency),
  });
  await poller.start();
  const report = setInterval(() => process.send?.({ metrics: [...metrics.totals.entries()] }), 1_000);
  const stop = async () => {
    clearInterval(report);
    await poller.stop();
    await stack.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
  process.once('disconnect', () => void stop());
}

/** The endpoints of a running `keap-sync run` in `dataDir`, if its process is alive. */
export function runningEndpoints(dataDir: string): LocalEndpoints | undefined {
  try {
    const e = JSON.parse(readFileSync(join(resolve(dataDir), ENDPOINTS_FILE), 'utf8')) as LocalEndpoints;
    process.kill(e.pid, 0);
    return e;
  } catch {
    return undefined;
  }
}
