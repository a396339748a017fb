// Benchmark: `npm run bench:accounts` (prints a table; not a test). Many accounts, each a tenant of its
// own with a small dataset, registered in the account registry (none in the configuration), synced
// end to end on the local stack (dynalite, fauxqs, the Secrets Manager stub, the Keap sandbox serving
// one key per tenant). Measures the scheduler's tick: duration and the DynamoDB and SQS requests it
// makes (counted on its own SDK clients), on the first tick (every list full), a tick with every list
// due (incremental), and a tick with nothing due; then Keap calls per account per hour at the
// configuration's schedules, and checks every account's every list is in sync with the sandbox.
import { parseArgs } from 'node:util';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type {
  HandlerExecutionContext,
  InitializeHandler,
  InitializeHandlerArguments,
  MiddlewareStack,
} from '@smithy/types';
import { formatTable } from '#harness/cli/table.ts';
import { localDynamoClient } from '#harness/emulators/dynamo.ts';
import { localSecretsClient } from '#harness/local/secrets.ts';
import { localSqsClient } from '#harness/local/sqs.ts';
import { LOCAL_TABLES, startLocalStack } from '#harness/local/stack.ts';
import { startSandbox } from '#harness/sandbox/index.ts';
import { bulkJobsPerAccount, parseAccountConfig, parseAppConfig } from '#shared/config/app-config.ts';
import { SYNC_RESOURCES, type SyncResource } from '#shared/jobs/schema.ts';
import { composePipeline, MemoryLog, MemoryMetrics, runScheduler } from '#shared/pipeline/index.ts';
import { mapLimit } from '#shared/pipeline/parallel.ts';

const HELP = `Usage: npm run bench:accounts -- [options]

Registers --accounts accounts (one Keap tenant and key each, the 10 lists of keap-sync.config.json on
its schedules) in the account registry of a fresh local stack, with a Keap sandbox of --contacts
contacts (the other lists scaled from it) that every tenant reads. Runs the scheduler and the workers
until every list of every account is in sync, and prints per tick: its duration and the DynamoDB and
SQS requests the scheduler made (by operation); then Keap calls per account per hour at the
configuration's schedules, and whether every account is in sync. Tick figures on the emulators, in
one busy process: DynamoDB and SQS answer in single-digit milliseconds, so AWS is not slower.

Options
  --accounts <n>      accounts (default 500)
  --contacts <n>      sandbox contacts (default 10)
  --concurrency <n>   worker invocations in parallel (default 16)
  --verbose           also the commonest log lines
  --tick-only         the scheduler alone: the first tick (every list due, full) and a second one at
                      once (every list in flight or over the bulk cap), no worker
  --help              this text

Example
  npm run bench:accounts -- --accounts 100
`;

/** keap-sync.config.json's schedules (minutes between syncs per list). */
const SCHEDULE: Record<SyncResource, number> = {
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

/** Counts a client's requests by operation (middleware at the start of the stack). */
function counted<C extends DynamoDBClient | SQSClient>(
  client: C,
): { client: C; counts: Map<string, number>; reset(): void } {
  const counts = new Map<string, number>();
  const stack = client.middlewareStack as unknown as MiddlewareStack<object, object>;
  stack.add(
    (next: InitializeHandler<object, object>, context: HandlerExecutionContext) =>
      async (args: InitializeHandlerArguments<object>) => {
        const name = String(context.commandName ?? 'unknown').replace(/Command$/, '');
        counts.set(name, (counts.get(name) ?? 0) + 1);
        return next(args);
      },
    { step: 'initialize', name: 'benchRequestCounter' },
  );
  return { client, counts, reset: () => counts.clear() };
}

const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
const describe = (m: Map<string, number>) =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      accounts: { type: 'string' },
      contacts: { type: 'string' },
      concurrency: { type: 'string' },
      verbose: { type: 'boolean' },
      'tick-only': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const n = Number(values.accounts ?? 500);
  const contacts = Number(values.contacts ?? 10);
  const concurrency = Number(values.concurrency ?? 16);
  if (![n, contacts, concurrency].every((v) => Number.isInteger(v) && v >= 1))
    throw new Error('--accounts, --contacts and --concurrency: whole numbers of 1 or more.');

  const accounts = Array.from({ length: n }, (_, i) => {
    const id = `acct-${String(i).padStart(4, '0')}`;
    return parseAccountConfig(
      {
        id,
        tenant: `${id}.infusionsoft.com`,
        secretId: `keap-sync/${id}`,
        resources: Object.fromEntries(SYNC_RESOURCES.map((r) => [r, { everyMinutes: SCHEDULE[r] }])),
      },
      'keap-sync/',
    );
  });
  const keys = accounts.map((a, i) => ({
    key: `KeapAK-bench-${String(i).padStart(4, '0')}-0123456789abcdef`,
    tenant: a.tenant,
  }));
  const sandbox = await startSandbox({
    contacts,
    seed: 1,
    keys,
    // Keap's per-tenant limits are the ledger's; the sandbox's gateway is relaxed because it stamps
    // arrivals in this same busy process (see test/pipeline/support.ts RELAXED_LIMITS).
    limits: {
      spikeIntervalMs: 0,
      minuteLimit: 100_000,
      dayLimit: 1_000_000,
      tenantMinuteLimit: 1_000_000,
      tenantDayLimit: 10_000_000,
    },
  });
  // The Lambdas' configuration: global settings only, no account.
  const config = parseAppConfig({
    keap: { baseUrl: sandbox.baseUrl },
    worker: { batchSize: 10, concurrency, timeoutSeconds: 60, safetyMarginMs: 5_000 },
    // Two backfill jobs per account at a time: the first sync of 10 lists takes 5 ticks.
    scheduler: { everyMinutes: 5, reserveCallsForIncremental: 0, bulkJobsPerAccount: 2 },
  });
  const log = new MemoryLog();
  const stack = await startLocalStack({
    config,
    secrets: Object.fromEntries(accounts.map((a, i) => [a.secretId, keys[i]?.key ?? ''])),
    log,
    metrics: new MemoryMetrics(),
  });
  // The scheduler's own clients, so its requests alone are counted.
  const ddb = counted(localDynamoClient(stack.dynamo.endpoint));
  const sqs = counted(localSqsClient(stack.sqs.endpoint));
  const secrets = localSecretsClient(stack.secrets.endpoint);
  const scheduler = composePipeline({
    config,
    clients: { dynamo: ddb.client, sqs: sqs.client, secrets },
    target: {
      ledgerTable: LOCAL_TABLES.ledger,
      stateTable: LOCAL_TABLES.state,
      mirrorTable: LOCAL_TABLES.mirror,
      queueUrl: stack.sqs.queue.queueUrl,
      dlqUrl: stack.sqs.queue.dlqUrl,
    },
    log,
    metrics: new MemoryMetrics(),
  });
  const rows: string[][] = [];
  const tick = async (label: string, nowMs: number) => {
    ddb.reset();
    sqs.reset();
    const started = performance.now();
    const result = await runScheduler(scheduler, nowMs);
    const ms = performance.now() - started;
    rows.push([
      label,
      String(result.enqueued.length),
      `${Math.round(ms)} ms`,
      String(total(ddb.counts)),
      String(total(sqs.counts)),
      `${describe(ddb.counts)}; ${describe(sqs.counts)}`,
    ]);
    return result;
  };
  const drain = async () => {
    const poller = stack.poller({ concurrency, batchSize: 10 });
    await poller.start();
    const started = performance.now();
    try {
      await poller.whenIdle({ timeoutMs: 1_800_000 });
    } finally {
      await poller.stop();
    }
    return performance.now() - started;
  };

  try {
    await stack.deps.registry.seed(accounts, 'bench');
    const callsAt = () => sandbox.arrivals.length;

    await tick('1: first sync (every list due, full)', Date.now());
    if (values['tick-only']) {
      await tick('2: at once again (in flight or bulk-cap)', Date.now());
      process.stdout.write(
        `bench:accounts --tick-only: ${n} accounts x ${SYNC_RESOURCES.length} lists, scheduler alone\n\n` +
          `${formatTable(
            ['scheduler tick', 'enqueued', 'duration', 'DynamoDB requests', 'SQS requests', 'by operation'],
            rows,
            {
              align: ['left', 'right', 'right', 'right', 'right', 'left'],
            },
          )}\n`,
      );
      return;
    }
    // The first sync: scheduler.bulkJobsPerAccount full syncs per account at a time, tick after tick.
    let fullMs = await drain();
    let ticks = 1;
    for (;;) {
      const next = await tick(`${++ticks}: first sync continues`, Date.now());
      if (next.enqueued.length === 0) {
        rows.pop();
        ticks--;
        break;
      }
      fullMs += await drain();
    }
    const afterFull = callsAt();
    const firstSyncTicks = ticks;

    // An hour and a minute later every list is due again: each syncs incrementally once.
    const due = await tick(
      `${++ticks}: an hour later, every list due (incremental)`,
      Date.now() + 61 * 60_000,
    );
    const incrementalMs = await drain();
    const incrementalCalls = callsAt() - afterFull;
    const perListSync = incrementalCalls / Math.max(1, due.enqueued.length);

    await tick(`${++ticks}: nothing due`, Date.now());

    // Every list of every account in sync with the sandbox: a finished run, no checkpoint, and the
    // mirror holding every record of the list.
    const pairs = accounts.flatMap((a) => SYNC_RESOURCES.map((resource) => ({ account: a.id, resource })));
    const cursors = await stack.deps.runs.getCursors(pairs);
    const counts = await mapLimit(pairs, 32, (p) => stack.deps.mirror.count(p.account, p.resource));
    const expected = (r: SyncResource) => sandbox.dataset.table(r).size;
    const outOfSync = pairs.filter(
      (p, i) =>
        cursors[i]?.lastRunAt == null ||
        cursors[i]?.checkpoint !== null ||
        counts[i] !== expected(p.resource),
    );
    const inSyncAccounts = new Set(accounts.map((a) => a.id));
    for (const p of outOfSync) inSyncAccounts.delete(p.account);

    const syncsPerHour = SYNC_RESOURCES.reduce((s, r) => s + 60 / SCHEDULE[r], 0);
    process.stdout.write(
      `bench:accounts: ${n} accounts x ${SYNC_RESOURCES.length} lists (one tenant and key each, ${contacts} contacts, ` +
        `${SYNC_RESOURCES.reduce((s, r) => s + expected(r), 0)} records per account), worker concurrency ${concurrency}\n\n`,
    );
    process.stdout.write(
      `${formatTable(
        ['scheduler tick', 'enqueued', 'duration', 'DynamoDB requests', 'SQS requests', 'by operation'],
        rows,
        {
          align: ['left', 'right', 'right', 'right', 'right', 'left'],
        },
      )}\n\n`,
    );
    process.stdout.write(
      `first sync of every account: ${(fullMs / 1000).toFixed(1)} s of worker time over ${firstSyncTicks} ticks ` +
        `(bulkJobsPerAccount ${bulkJobsPerAccount(config)}), ${afterFull} Keap calls (${(afterFull / n).toFixed(1)} per account)\n` +
        `every list once incrementally: ${(incrementalMs / 1000).toFixed(1)} s, ${incrementalCalls} Keap calls ` +
        `(${perListSync.toFixed(2)} per list sync)\n` +
        `Keap calls per account per hour at the configuration's schedules: ${syncsPerHour.toFixed(0)} list syncs x ` +
        `${perListSync.toFixed(2)} = ${(syncsPerHour * perListSync).toFixed(1)} (no changes; each page of changes adds a call)\n` +
        `in sync: ${inSyncAccounts.size} of ${n} accounts (${pairs.length - outOfSync.length} of ${pairs.length} lists)\n` +
        '',
    );
    if (values.verbose) {
      const byMessage = new Map<string, number>();
      for (const l of log.lines)
        byMessage.set(String(l.message), (byMessage.get(String(l.message)) ?? 0) + 1);
      process.stdout.write(
        `log lines: ${[...byMessage]
          .sort((a, b) => b[1] - a[1])
          .slice(0, 12)
          .map(([m, c]) => `${c} x ${m}`)
          .join('\n  ')}\n`,
      );
    }
    if (outOfSync.length > 0) process.exitCode = 1;
  } finally {
    ddb.client.destroy();
    sqs.client.destroy();
    secrets.destroy();
    await stack.close();
    await sandbox.close();
  }
}

await main();
