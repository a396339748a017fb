// Use cases (CLI): the operator commands that look inside a deployment: status, enqueue, dlq, export,
// estimate.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import {
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { type AppConfig, findAccount } from '#shared/config/app-config.ts';
import {
  type Job,
  type JobInput,
  PoisonMessageError,
  parseJob,
  SYNC_RESOURCES,
} from '#shared/jobs/schema.ts';
import { REGISTRY, type SyncResource } from '#shared/keap/registry.ts';
import {
  composePipeline,
  composeStores,
  MemoryLog,
  MemoryMetrics,
  type Pipeline,
} from '#shared/pipeline/index.ts';
import { partitionable } from '#shared/pipeline/partitioned-read.ts';
import { sweepCalls } from '#shared/pipeline/sweep.ts';
import { tagApplicationCalls } from '#shared/pipeline/tag-applications.ts';
import { startDynalite } from '../emulators/dynamo.ts';
import { connectLocalStack, LOCAL_TABLES, type LocalEndpoints } from '../local/stack.ts';
import { UsageError } from './commander.ts';
import { type ExportOptions, type ExportResult, type ExportSources, exportMirror } from './export.ts';
import { formatExportProgress } from './progress.ts';
import { runningEndpoints } from './run.ts';
import { collectStatus, formatStatus, type StatusSources } from './status.ts';
import { formatTable } from './table.ts';

export { UsageError };

export interface Connection {
  sources: StatusSources;
  /** The mirror and the custom-field models, for `export`. */
  reader: ExportSources;
  /** Present when the stack is running: the pipeline and its queues. */
  deps: Pipeline | undefined;
  sqs: SQSClient | undefined;
  close(): Promise<void>;
}

/** Where a deployed stack is: the CDK stack's outputs, in the variables the Lambdas use too. */
export const AWS_TARGET_VARIABLES = {
  LEDGER_TABLE: 'LedgerTableName',
  STATE_TABLE: 'StateTableName',
  MIRROR_TABLE: 'MirrorTableName',
  JOB_QUEUE_URL: 'JobQueueUrl',
  DEAD_LETTER_QUEUE_URL: 'DeadLetterQueueUrl',
} as const;

/** Connects to a deployed stack with the AWS SDK's usual credentials, region and endpoints. */
function connectAws(config: AppConfig, env: NodeJS.ProcessEnv): Connection {
  const missing = Object.entries(AWS_TARGET_VARIABLES).filter(([name]) => !env[name]);
  if (missing.length > 0) {
    throw new UsageError(
      `--aws needs ${missing.map(([name, output]) => `${name} (the KeapSyncData output ${output})`).join(', ')}. ` +
        'Set them from "aws cloudformation describe-stacks --stack-name KeapSyncData".',
    );
  }
  const need = (name: keyof typeof AWS_TARGET_VARIABLES) => env[name] ?? '';
  const dynamo = new DynamoDBClient({});
  const sqs = new SQSClient({});
  const secrets = new SecretsManagerClient({});
  const deps = composePipeline({
    config,
    clients: { dynamo, sqs, secrets },
    target: {
      ledgerTable: need('LEDGER_TABLE'),
      stateTable: need('STATE_TABLE'),
      mirrorTable: need('MIRROR_TABLE'),
      queueUrl: need('JOB_QUEUE_URL'),
      dlqUrl: need('DEAD_LETTER_QUEUE_URL'),
    },
    log: new MemoryLog(),
    metrics: new MemoryMetrics(),
  });
  return {
    sources: {
      ...deps,
      queues: { client: sqs, queueUrl: need('JOB_QUEUE_URL'), dlqUrl: need('DEAD_LETTER_QUEUE_URL') },
    },
    reader: { mirror: deps.mirror, models: deps.models },
    deps,
    sqs,
    close: async () => {
      dynamo.destroy();
      sqs.destroy();
      secrets.destroy();
    },
  };
}

/** Where the commands look: a deployed stack (`--aws`), the running local stack, or its data folder. */
export interface Target {
  dataDir: string;
  aws: boolean;
}

/** Connects to the running local stack, or (status only) opens its data folder directly. */
export async function connect(config: AppConfig, target: Target, needQueue: boolean): Promise<Connection> {
  if (target.aws) return connectAws(config, process.env);
  const dataDir = target.dataDir;
  const endpoints: LocalEndpoints | undefined = runningEndpoints(dataDir);
  if (endpoints) {
    const stack = connectLocalStack({ config, endpoints, log: new MemoryLog() });
    const sources: StatusSources = {
      ...stack.deps,
      queues: { client: stack.sqsClient, queueUrl: endpoints.queueUrl, dlqUrl: endpoints.dlqUrl },
    };
    const reader = { mirror: stack.deps.mirror, models: stack.deps.models };
    return { sources, reader, deps: stack.deps, sqs: stack.sqsClient, close: stack.close };
  }
  if (needQueue) {
    throw new UsageError(
      `keap-sync is not running with data folder ${resolve(dataDir)}: start it with "npm start" (or ` +
        '"keap-sync run --data-dir <dir>") and try again.',
    );
  }
  const db = await startDynalite({ path: join(resolve(dataDir), 'dynamo') });
  const stores = composeStores(
    config,
    { dynamo: db.client },
    {
      ledgerTable: LOCAL_TABLES.ledger,
      stateTable: LOCAL_TABLES.state,
      mirrorTable: LOCAL_TABLES.mirror,
    },
  );
  const sources: StatusSources = stores;
  const reader = { mirror: stores.mirror, models: stores.models };
  return { sources, reader, deps: undefined, sqs: undefined, close: () => db.close() };
}

/**
 * `keap-sync export`: streams one list of one account's mirror (running local system, its data
 * folder, or `--aws`) to `out`, with a progress line on `progress` while it reads.
 */
export async function exportCommand(
  config: AppConfig,
  target: Target,
  o: Omit<ExportOptions, 'account' | 'onProgress'> & {
    account: string | undefined;
    progress?: (line: string) => void;
  },
): Promise<ExportResult> {
  const account = o.account ?? (config.accounts.length === 1 ? config.accounts[0]?.id : undefined);
  if (!account) {
    throw new UsageError(
      `export needs --account with ${config.accounts.length} accounts configured (${config.accounts.map((a) => a.id).join(', ')}).`,
    );
  }
  const configured = findAccount(config, account);
  if (!configured) {
    throw new UsageError(
      `The account "${account}" is not configured (configured: ${config.accounts.map((a) => a.id).join(', ')}).`,
    );
  }
  if (!configured.resources[o.list]) {
    throw new UsageError(
      `The account "${account}" does not sync ${o.list} (it syncs ${Object.keys(configured.resources).join(', ')}).`,
    );
  }
  const c = await connect(config, target, false);
  try {
    const started = Date.now();
    let shown = 0;
    return await exportMirror(c.reader, {
      ...o,
      account,
      onProgress: o.progress
        ? (p) => {
            const now = Date.now();
            if (now - shown < 100 && p.read < p.total) return;
            shown = now;
            o.progress?.(formatExportProgress({ list: o.list, ...p, elapsedMs: now - started }));
          }
        : undefined,
    });
  } finally {
    await c.close();
  }
}

export async function statusCommand(config: AppConfig, target: Target, json: boolean): Promise<string> {
  const c = await connect(config, target, false);
  try {
    const report = await collectStatus(c.sources);
    return json ? JSON.stringify(report, null, 2) : formatStatus(report);
  } finally {
    await c.close();
  }
}

/** Validates every job in the input (one job or an array) before sending any. */
export function validateJobs(
  text: string,
  config: AppConfig,
  /** The registered account ids (default: the configuration file's). */
  registered: readonly string[] = config.accounts.map((a) => a.id),
): Job[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new UsageError(
      `The input is not JSON (${(err as Error).message}). Give one job object or an array.`,
    );
  }
  const list = Array.isArray(raw) ? raw : [raw];
  if (list.length === 0) throw new UsageError('The input holds no job.');
  const problems: string[] = [];
  const jobs: Job[] = [];
  list.forEach((item, i) => {
    try {
      const job = parseJob(JSON.stringify(item));
      if (!registered.includes(job.account)) {
        throw new PoisonMessageError(
          'unknown-account',
          `The account "${job.account}" is not registered (registered: ${registered.join(', ') || 'none'}).`,
        );
      }
      jobs.push(job);
    } catch (err) {
      if (!(err instanceof PoisonMessageError)) throw err;
      problems.push(`job ${i + 1}: ${err.message}`);
    }
  });
  if (problems.length) throw new UsageError(`Nothing was sent. ${problems.join(' ')}`);
  return jobs;
}

export async function enqueueCommand(config: AppConfig, target: Target, text: string): Promise<string> {
  const c = await connect(config, target, true);
  try {
    const deps = c.deps;
    if (!deps) throw new UsageError('The job queue is not reachable.');
    const queue = deps.queue;
    const registered = (await deps.directory.list()).map((e) => e.account.id);
    const jobs = validateJobs(text, config, registered);
    for (const job of jobs) await queue.send(job as JobInput);
    return `Sent ${jobs.length} job(s): ${jobs.map((j) => (j.kind === 'sync' ? `sync ${j.account}/${j.resource}` : j.kind === 'hookEvent' ? `hookEvent ${j.account}/${j.resource} ${j.event}` : 'idempotencyKey' in j ? `${j.kind} ${j.account} ${j.idempotencyKey}` : `${j.kind} ${j.account}`)).join(', ')}`;
  } finally {
    await c.close();
  }
}

export async function dlqCommand(
  config: AppConfig,
  target: Target,
  action: 'list' | 'redrive',
  json: boolean,
): Promise<string> {
  const c = await connect(config, target, true);
  const sqs = c.sqs;
  const queue = c.deps?.queue;
  if (!sqs || !queue) throw new UsageError('The queue is not reachable.');
  try {
    const messages: Array<{ id: string; reason: string; error: string; body: string; receipt: string }> = [];
    for (let i = 0; i < 100; i++) {
      const out = await sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queue.dlqUrl,
          MaxNumberOfMessages: 10,
          MessageAttributeNames: ['All'],
          VisibilityTimeout: action === 'list' ? 1 : 30,
          WaitTimeSeconds: 0,
        }),
      );
      const batch = out.Messages ?? [];
      if (batch.length === 0) break;
      for (const m of batch) {
        messages.push({
          id: m.MessageId ?? '',
          reason: m.MessageAttributes?.reason?.StringValue ?? 'failed repeatedly',
          error: m.MessageAttributes?.error?.StringValue ?? '',
          body: m.Body ?? '',
          receipt: m.ReceiptHandle ?? '',
        });
      }
      if (action === 'list' && messages.length >= 100) break;
    }
    if (action === 'list') {
      if (json)
        return JSON.stringify(
          messages.map(({ receipt: _r, ...m }) => m),
          null,
          2,
        );
      if (messages.length === 0) return 'The dead-letter queue is empty.';
      return messages.map((m) => `${m.id}  ${m.reason}  ${m.error}\n  ${m.body.slice(0, 200)}`).join('\n');
    }
    for (const m of messages) {
      await sqs.send(new SendMessageCommand({ QueueUrl: queue.queueUrl, MessageBody: m.body }));
      await sqs.send(new DeleteMessageCommand({ QueueUrl: queue.dlqUrl, ReceiptHandle: m.receipt }));
    }
    return `Moved ${messages.length} message(s) back to the job queue.`;
  } finally {
    await c.close();
  }
}

export interface Estimate {
  resource: string;
  records: number;
  calls: number;
}

/** Calls and time a full (or incremental) sync needs under the quota, from the dataset's size. */
export function estimateSync(
  config: AppConfig,
  contacts: number,
  changedPerResource: number,
  /** How long Keap takes to build a page (0: the quota alone bounds the time). */
  pageMs = 0,
) {
  const limits = { minute: config.limits.minuteLimit ?? 240, bulkShare: config.limits.bulkShare ?? 0.8 };
  const spacingMs = (config.limits.spikeIntervalMs ?? 100) + (config.limits.marginMs ?? 90);
  const windowMs = (config.limits.minuteWindowMs ?? 60_000) + (config.limits.marginMs ?? 90);
  const perMinute = Math.floor(limits.minute * limits.bulkShare);
  const rows: Array<Estimate & { incrementalCalls: number; sweepCalls: number }> = [];
  // The file's lists, or (accounts live in the registry) every synced list.
  const fromFile = [...new Set(config.accounts.flatMap((a) => Object.keys(a.resources) as SyncResource[]))];
  const resources = fromFile.length > 0 ? fromFile : SYNC_RESOURCES;
  for (const r of resources) {
    const { sync, maxPageSize: page } = REGISTRY[r];
    const records = Math.round(contacts * sync.estimateShare);
    // Tag applications are read tag by tag: a call per tag at least, however little changed.
    const tags = Math.round(contacts * REGISTRY.tags.sync.estimateShare);
    const tagWalk = r === 'tagApplications';
    const pages = Math.max(1, Math.ceil(records / page));
    // A list read in id ranges asks for its highest id once, after its first page.
    const probe = partitionable(r) && config.worker.partitions > 1 && pages > 1 ? 1 : 0;
    rows.push({
      resource: r,
      records,
      calls: tagWalk ? tagApplicationCalls(tags, records) : pages + probe,
      incrementalCalls: tagWalk
        ? tagApplicationCalls(tags, records, changedPerResource)
        : Math.max(1, Math.ceil(Math.min(records, changedPerResource) / page)),
      // A reconciliation sweep reads every id, a page of the list's largest size per call.
      sweepCalls: sweepCalls(r, records, tags),
    });
  }
  const time = (calls: number) => {
    if (calls <= 1) return 0;
    const blocks = Math.floor((calls - 1) / perMinute);
    return blocks * windowMs + ((calls - 1) % perMinute) * spacingMs;
  };
  const full = rows.reduce((n, r) => n + r.calls, 0);
  const incremental = rows.reduce((n, r) => n + r.incrementalCalls, 0);
  const sweepTotal = rows.reduce((n, r) => n + r.sweepCalls, 0);
  const sweepPerDay =
    config.sweep.everyHours === 0 ? 0 : Math.ceil((sweepTotal * 24) / config.sweep.everyHours);
  // Latency: a list with an id filter is read in worker.partitions id ranges at once after its first
  // page (and the probe of its highest id); the others one page after another. An account alone reads
  // its lists worker.concurrency at a time (scheduler.bulkJobsPerAccount while others are active). The
  // slower of the quota's bound and the latency's wins.
  const parallel = Math.min(rows.length, Math.max(1, config.worker.concurrency));
  const listMs = (r: (typeof rows)[number]) => {
    const width = partitionable(r.resource as SyncResource) ? Math.max(1, config.worker.partitions) : 1;
    if (width === 1 || r.calls <= 1) return r.calls * pageMs;
    return 2 * pageMs + Math.ceil((r.calls - 2) / width) * pageMs;
  };
  const latencyMs =
    pageMs <= 0
      ? 0
      : Math.max(
          Math.max(0, ...rows.map(listMs)),
          rows.reduce((n, r) => n + listMs(r), 0) / Math.max(1, parallel),
        );
  const quotaMs = time(full);
  // Polling at the configured intervals (the first account that schedules the list; 60 min else):
  // each run costs its incremental calls. Tag applications cost a call per tag every run.
  const everyOf = (r: string) => {
    for (const a of config.accounts) {
      const sched = (a.resources as Record<string, { everyMinutes: number } | undefined>)[r];
      if (sched) return sched.everyMinutes;
    }
    return 60;
  };
  const dayBulk = (config.limits.dayLimit ?? 30_000) * limits.bulkShare;
  const pollingRows = rows.map((r) => ({
    resource: r.resource,
    callsPerDay: Math.ceil((r.incrementalCalls * 1440) / Math.max(1, everyOf(r.resource))),
  }));
  const pollingPerDay = pollingRows.reduce((n, r) => n + r.callsPerDay, 0);
  const heaviest = [...pollingRows].sort((a, b) => b.callsPerDay - a.callsPerDay)[0];
  const result = {
    contacts,
    perMinuteForBulk: perMinute,
    fullSync: {
      calls: full,
      seconds: Math.round(Math.max(quotaMs, latencyMs) / 100) / 10,
      quotaSeconds: Math.round(quotaMs / 100) / 10,
      latencySeconds: Math.round(latencyMs / 100) / 10,
      boundBy: latencyMs > quotaMs ? 'latency' : 'quota',
      pageMs,
      partitions: config.worker.partitions,
    },
    incrementalSync: {
      changedPerResource,
      calls: incremental,
      seconds: Math.round(time(incremental) / 100) / 10,
    },
    perResource: rows,
    dayBudgetShareOfFullSync:
      Math.round((full / ((config.limits.dayLimit ?? 30_000) * limits.bulkShare)) * 1000) / 1000,
    polling: {
      callsPerDay: pollingPerDay,
      dayBudgetShare: Math.round((pollingPerDay / dayBulk) * 1000) / 1000,
      heaviest: heaviest ? { resource: heaviest.resource, callsPerDay: heaviest.callsPerDay } : null,
    },
    sweep: {
      everyHours: config.sweep.everyHours,
      callsPerSweep: sweepTotal,
      callsPerDay: sweepPerDay,
      dayBudgetShare:
        Math.round((sweepPerDay / ((config.limits.dayLimit ?? 30_000) * limits.bulkShare)) * 1000) / 1000,
    },
  };
  return result;
}

/** The estimate as a table, or as JSON. */
export function estimateCommand(
  config: AppConfig,
  contacts: number,
  changedPerResource: number,
  json: boolean,
  pageMs = 0,
): string {
  const e = estimateSync(config, contacts, changedPerResource, pageMs);
  if (json) return JSON.stringify(e, null, 2);
  const lines = [
    `Estimate for ${contacts} contacts (other lists scaled like the sandbox's dataset), ${e.perMinuteForBulk} bulk calls per minute:`,
    formatTable(
      ['resource', 'records', 'calls full', 'calls incremental', 'calls sweep'],
      e.perResource.map((r) => [
        r.resource,
        String(r.records),
        String(r.calls),
        String(r.incrementalCalls),
        String(r.sweepCalls),
      ]),
      { indent: '  ' },
    ),
    e.fullSync.pageMs > 0
      ? `full sync:        ${e.fullSync.calls} calls, about ${e.fullSync.seconds} s, bound by ${e.fullSync.boundBy} ` +
        `(the quota alone: ${e.fullSync.quotaSeconds} s; at ${e.fullSync.pageMs} ms a page, ${e.fullSync.partitions} id ranges at once ` +
        `for lists with an id filter: ${e.fullSync.latencySeconds} s; ${(e.dayBudgetShareOfFullSync * 100).toFixed(1)}% of the day's bulk budget)`
      : `full sync:        ${e.fullSync.calls} calls, about ${e.fullSync.seconds} s under the quota (${(e.dayBudgetShareOfFullSync * 100).toFixed(1)}% of the day's bulk budget; --page-ms adds Keap's page latency)`,
    `incremental sync: ${e.incrementalSync.calls} calls (${changedPerResource} changes per list), about ${e.incrementalSync.seconds} s`,
    `polling:          ${e.polling.callsPerDay} calls a day at the configured intervals (${(e.polling.dayBudgetShare * 100).toFixed(1)}% of the day's bulk budget` +
      (e.polling.heaviest
        ? `; most: ${e.polling.heaviest.resource}, ${e.polling.heaviest.callsPerDay} a day)`
        : ')'),
    ...(e.polling.dayBudgetShare > 0.5 && e.polling.heaviest
      ? [
          `warning:          polling alone would take over half the day's bulk budget: lengthen ${e.polling.heaviest.resource}'s ` +
            'everyMinutes, or register hooks and relax polling (hooks.healthyPollMinutes); the scheduler skips runs the budget cannot serve',
        ]
      : []),
    e.sweep.everyHours === 0
      ? 'sweep:            off (sweep.everyHours 0): deletions are found by hooks only'
      : `sweep:            ${e.sweep.callsPerSweep} calls per sweep of every list, every ${e.sweep.everyHours} h: ${e.sweep.callsPerDay} calls a day (${(e.sweep.dayBudgetShare * 100).toFixed(1)}% of the day's bulk budget; scheduled only inside it)`,
  ];
  return lines.join('\n');
}

/** Reads a job file, or standard input for "-". */
export function readInput(file: string): string {
  try {
    return readFileSync(file === '-' ? 0 : resolve(file), 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new UsageError(
      `Cannot read the job file ${file === '-' ? '(standard input)' : resolve(file)} (${why}).`,
    );
  }
}
