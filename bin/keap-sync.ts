#!/usr/bin/env node
// Adapter (CLI entry): the `keap-sync` command. Every command has --help with examples.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from '../harness/cli/config.ts';
import {
  dlqCommand,
  enqueueCommand,
  estimateCommand,
  readInput,
  statusCommand,
  UsageError,
} from '../harness/cli/operator.ts';
import { run, workerProcess } from '../harness/cli/run.ts';
import { ConfigError } from '../shared/config/app-config.ts';

const COMMON = `  --config <file>     configuration file (default keap-sync.config.json, or KEAP_SYNC_CONFIG_FILE)
  --data-dir <dir>    local data folder (default .data, or KEAP_SYNC_DATA_DIR)
  --help              this text`;

const AWS = `  --aws               a deployed stack instead of the local system: set LEDGER_TABLE, STATE_TABLE,
                      MIRROR_TABLE, JOB_QUEUE_URL, DEAD_LETTER_QUEUE_URL from the KeapSyncData outputs;
                      credentials and region from the AWS SDK's usual chain`;

const HELP: Record<string, string> = {
  main: `keap-sync: keeps your systems in sync with Keap, inside Keap's API quota.

Usage: keap-sync <command> [options]      (npm start = keap-sync run)

Commands
  run        the whole system on this machine: embedded DynamoDB and SQS, the Keap sandbox (or the
             real Keap with KEAP_API_KEY), the scheduler and the workers, with a live view
  sandbox    the local Keap sandbox alone
  status     per account the key state, per resource cursor, lag and last run, per scope the quota
             used and left, queue and dead-letter depth (a table, or --json)
  enqueue    validate jobs from a file (or - for standard input) and send them to the queue
  dlq        list or redrive the dead-letter queue
  estimate   calls and time a full or incremental sync needs under the quota

Run "keap-sync <command> --help" for a command's options and examples.`,
  run: `Usage: keap-sync run [options]             (npm start -- [options])

Runs everything on one machine until Ctrl-C: embedded DynamoDB (on disk in the data folder, so state
survives a restart), embedded SQS, a Secrets Manager stand-in, the Keap sandbox as Keap (unless
KEAP_API_KEY or KEAP_API_KEY_FILE gives a real key), the scheduler on its interval, and workers
running the worker Lambda's handler with the same batch, visibility and dead-letter semantics.

Options
  --until-idle          stop once the queue is drained and every resource is in sync
  --processes <P>       worker processes sharing one ledger (default 1)
  --concurrency <C>     parallel invocations per process (default worker.concurrency)
  --contacts <n>        size of the sandbox's dataset (default 5000)
  --schedule-seconds <s> scheduler interval in seconds (default scheduler.everyMinutes)
  --events-url <url>    POST every change event there too (they always go to <data-dir>/events.jsonl)
${COMMON}

Environment: KEAP_API_KEY / KEAP_API_KEY_FILE (talk to the real Keap), KEAP_API_BASE_URL,
AWS_ENDPOINT_URL_DYNAMODB (use another DynamoDB), KEAP_SYNC_WORKER_CONCURRENCY, ...

Examples
  npm start
  npm start -- --until-idle
  npm start -- --processes 4 --concurrency 4 --until-idle
  npm start -- --events-url http://localhost:3000/keap-events
  KEAP_API_KEY_FILE=~/keap.key npm start`,
  status: `Usage: keap-sync status [--json] [options]

Reads the state and mirror tables, the ledger and the queues of the running system (or, when it is
not running, its data folder).
  --json              machine-readable output
${AWS}
${COMMON}

Examples
  keap-sync status
  keap-sync status --json | jq '.accounts[0].quota'
  LEDGER_TABLE=... STATE_TABLE=... MIRROR_TABLE=... JOB_QUEUE_URL=... DEAD_LETTER_QUEUE_URL=... keap-sync status --aws`,
  enqueue: `Usage: keap-sync enqueue <file|-> [options]

Validates every job (one JSON object or an array) against the job schemas and the configured accounts,
then sends them to the running system's queue. If any job is invalid, nothing is sent (exit 2).
${AWS}
${COMMON}

Examples
  echo '{"kind":"sync","account":"demo","resource":"contacts","mode":"incremental"}' | keap-sync enqueue -
  keap-sync enqueue jobs/upsert-contact.json`,
  dlq: `Usage: keap-sync dlq <list|redrive> [--json] [options]

  list      show the dead letters with the reason each was moved there
  redrive   move every dead letter back to the job queue
${AWS}
${COMMON}

Examples
  keap-sync dlq list
  keap-sync dlq redrive`,
  estimate: `Usage: keap-sync estimate [--contacts <n>] [--changes <n>] [--json] [options]

Calls and time a full sync (and an incremental one with <changes> changed records per list) needs
under the quota, for the configured resources, with other lists scaled like the sandbox's dataset.
  --contacts <n>      contacts in the account (default 5000)
  --changes <n>       changed records per list for the incremental estimate (default 100)
${COMMON}

Examples
  keap-sync estimate --contacts 250000
  keap-sync estimate --contacts 20000 --changes 500 --json`,
  sandbox: `Usage: keap-sync sandbox [sandbox options]

Runs the Keap sandbox alone (the same as npm run sandbox). Its --help lists every option.`,
};

function out(text: string): void {
  process.stdout.write(`${text}\n`);
}

function fail(err: unknown): number {
  // An unknown option or a bad option value (node:util parseArgs) is a usage error too.
  const parseError = String((err as { code?: unknown }).code ?? '').startsWith('ERR_PARSE_ARGS');
  if (err instanceof ConfigError || err instanceof UsageError || parseError) {
    const hint = parseError ? '\nRun "keap-sync <command> --help" for the options.' : '';
    process.stderr.write(`keap-sync: ${(err as Error).message}${hint}\n`);
    return 2;
  }
  process.stderr.write(`keap-sync: ${(err as Error).name}: ${(err as Error).message}\n`);
  return 1;
}

function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new UsageError(`--${name} must be a whole number of 1 or more; got "${value}".`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === 'worker-process') {
    await workerProcess();
    return -1;
  }
  if (command === 'sandbox') {
    const script = fileURLToPath(new URL('../scripts/sandbox.ts', import.meta.url));
    const child = spawn(process.execPath, [script, ...rest], { stdio: 'inherit' });
    return new Promise((r) => child.on('exit', (code) => r(code ?? 1)));
  }
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    out(HELP.main ?? '');
    return command ? 0 : 2;
  }
  const help = HELP[command];
  if (!help) {
    process.stderr.write(`keap-sync: unknown command "${command}". Run "keap-sync --help".\n`);
    return 2;
  }
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      help: { type: 'boolean' },
      config: { type: 'string' },
      'data-dir': { type: 'string' },
      aws: { type: 'boolean' },
      json: { type: 'boolean' },
      'until-idle': { type: 'boolean' },
      processes: { type: 'string' },
      concurrency: { type: 'string' },
      contacts: { type: 'string' },
      changes: { type: 'string' },
      'schedule-seconds': { type: 'string' },
      'events-url': { type: 'string' },
    },
  });
  if (values.help) {
    out(help);
    return 0;
  }
  const config = loadConfig(values.config ?? process.env.KEAP_SYNC_CONFIG_FILE ?? 'keap-sync.config.json');
  const dataDir = values['data-dir'] ?? process.env.KEAP_SYNC_DATA_DIR ?? '.data';
  const target = { dataDir, aws: values.aws ?? false };
  switch (command) {
    case 'run': {
      const keyFile = process.env.KEAP_API_KEY_FILE;
      const realKey =
        process.env.KEAP_API_KEY || (keyFile ? readFileSync(keyFile, 'utf8').trim() : undefined);
      return run({
        config,
        dataDir,
        untilIdle: values['until-idle'] ?? false,
        processes: positiveInt('processes', values.processes, 1),
        concurrency: positiveInt('concurrency', values.concurrency, config.worker.concurrency),
        contacts: positiveInt('contacts', values.contacts, 5000),
        scheduleSeconds: values['schedule-seconds']
          ? positiveInt('schedule-seconds', values['schedule-seconds'], 1)
          : undefined,
        realKey,
        eventsUrl: values['events-url'],
        out,
        isTty: Boolean(process.stdout.isTTY),
      });
    }
    case 'status':
      out(await statusCommand(config, target, values.json ?? false));
      return 0;
    case 'enqueue': {
      const file = positionals[0];
      if (!file) throw new UsageError('enqueue needs a job file, or - for standard input.');
      out(await enqueueCommand(config, target, readInput(file)));
      return 0;
    }
    case 'dlq': {
      const action = positionals[0];
      if (action !== 'list' && action !== 'redrive') throw new UsageError('dlq needs "list" or "redrive".');
      out(await dlqCommand(config, target, action, values.json ?? false));
      return 0;
    }
    case 'estimate':
      out(
        estimateCommand(
          config,
          positiveInt('contacts', values.contacts, 5000),
          positiveInt('changes', values.changes, 100),
          values.json ?? false,
        ),
      );
      return 0;
    default:
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => process.exit(fail(err)),
);
