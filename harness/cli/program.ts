// Adapter (CLI): the `keap-sync` command's commands, options and help (commander), and what each runs.
// bin/keap-sync.ts only calls `main`. Every command has its own options and --help with examples; an
// unknown or misplaced option is a usage error (exit 2) naming it.
import { spawn } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Argument, Command, Option } from '@commander-js/extra-typings';
import { ConfigError } from '#shared/config/app-config.ts';
import { SYNC_RESOURCES } from '#shared/jobs/schema.ts';
import { accountsAdd, accountsChange, accountsList, accountsShow } from './accounts.ts';
import { isoTime, positiveInt, runProgram, UsageError, withExamples } from './commander.ts';
import { loadConfig } from './config.ts';
import { hooksCommand } from './hooks.ts';
import { liveView } from './live.ts';
import {
  dlqCommand,
  enqueueCommand,
  estimateCommand,
  exportCommand,
  readInput,
  statusCommand,
} from './operator.ts';
import { run, workerProcess } from './run.ts';

const SANDBOX_SCRIPT = fileURLToPath(new URL('../../scripts/sandbox.ts', import.meta.url));

const configOption = () =>
  new Option(
    '--config <file>',
    'configuration file (default keap-sync.config.json, or KEAP_SYNC_CONFIG_FILE)',
  );
const dataDirOption = () =>
  new Option('--data-dir <dir>', 'local data folder (default .data, or KEAP_SYNC_DATA_DIR)');
const awsOption = () =>
  new Option(
    '--aws',
    'a deployed stack instead of the local system: set LEDGER_TABLE, STATE_TABLE, MIRROR_TABLE, ' +
      'JOB_QUEUE_URL, DEAD_LETTER_QUEUE_URL from the KeapSyncData outputs; credentials and region ' +
      "from the AWS SDK's usual chain",
  );
const jsonOption = () => new Option('--json', 'machine-readable output');

/** The configuration and the target every operator command starts from (checked before anything runs). */
function setup(opts: { config?: string; dataDir?: string; aws?: true }) {
  const config = loadConfig(opts.config ?? process.env.KEAP_SYNC_CONFIG_FILE ?? 'keap-sync.config.json');
  const dataDir = opts.dataDir ?? process.env.KEAP_SYNC_DATA_DIR ?? '.data';
  return { config, dataDir, target: { dataDir, aws: opts.aws ?? false } };
}

export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
  isTty: boolean;
  /** Whether standard error is a terminal (progress bars go there). */
  errIsTty?: boolean;
}

const defaultIo: CliIo = {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(text),
  isTty: Boolean(process.stdout.isTTY),
  errIsTty: Boolean(process.stderr.isTTY),
};

/**
 * The program. `result.code` is the exit code of the action that ran (-1: the process keeps running,
 * as a worker process does).
 */
export function buildProgram(io: CliIo = defaultIo, result = { code: 0 }) {
  const program = new Command('keap-sync')
    .usage('<command> [options]      (npm start = keap-sync run)')
    .addHelpText('before', "keap-sync: keeps your systems in sync with Keap, inside Keap's API quota.\n")
    .addHelpText('after', '\nRun "keap-sync <command> --help" for a command\'s options and examples.')
    .helpCommand('help [command]', 'the help of a command')
    .showSuggestionAfterError(true);

  const runCommand = program
    .command('run')
    .summary(
      'the whole system on this machine: embedded DynamoDB and SQS, the Keap sandbox (or the real Keap ' +
        'with KEAP_API_KEY), the scheduler and the workers, with a live view',
    )
    .description(
      'Runs everything on one machine until Ctrl-C: embedded DynamoDB (on disk in the data folder, so ' +
        'state survives a restart), embedded SQS, a Secrets Manager stand-in, the Keap sandbox as Keap ' +
        '(unless KEAP_API_KEY or KEAP_API_KEY_FILE gives a real key), the scheduler on its interval, and ' +
        "workers running the worker Lambda's handler with the same batch, visibility and dead-letter " +
        'semantics.',
    )
    .usage('[options]             (npm start -- [options])')
    .option('--until-idle', 'stop once the queue is drained and every resource is in sync')
    .addOption(
      new Option('--processes <P>', 'worker processes sharing one ledger (default 1)').argParser(
        positiveInt('processes'),
      ),
    )
    .addOption(
      new Option(
        '--concurrency <C>',
        'parallel invocations per process (default worker.concurrency)',
      ).argParser(positiveInt('concurrency')),
    )
    .addOption(
      new Option('--contacts <n>', "size of the sandbox's dataset (default 5000)").argParser(
        positiveInt('contacts'),
      ),
    )
    .addOption(
      new Option(
        '--schedule-seconds <s>',
        'scheduler interval in seconds (default scheduler.everyMinutes)',
      ).argParser(positiveInt('schedule-seconds')),
    )
    .option(
      '--events-url <url>',
      'POST every change event there too (they always go to <data-dir>/events.jsonl)',
    )
    .addOption(configOption())
    .addOption(dataDirOption())
    .addHelpText(
      'after',
      '\nEnvironment: KEAP_API_KEY / KEAP_API_KEY_FILE (talk to the real Keap), KEAP_API_BASE_URL,\n' +
        'AWS_ENDPOINT_URL_DYNAMODB (use another DynamoDB), KEAP_SYNC_WORKER_CONCURRENCY, ...',
    )
    .action(async (opts) => {
      const { config, dataDir } = setup(opts);
      const keyFile = process.env.KEAP_API_KEY_FILE;
      const realKey =
        process.env.KEAP_API_KEY || (keyFile ? readFileSync(keyFile, 'utf8').trim() : undefined);
      result.code = await run({
        config,
        dataDir,
        untilIdle: opts.untilIdle ?? false,
        processes: opts.processes ?? 1,
        concurrency: opts.concurrency ?? config.worker.concurrency,
        contacts: opts.contacts ?? 5000,
        scheduleSeconds: opts.scheduleSeconds,
        realKey,
        out: io.out,
        view: liveView(io),
        configSource: opts.config ?? process.env.KEAP_SYNC_CONFIG_FILE ?? 'keap-sync.config.json',
        ...(opts.eventsUrl ? { eventsUrl: opts.eventsUrl } : {}),
      });
    });
  withExamples(runCommand, [
    'npm start',
    'npm start -- --until-idle',
    'npm start -- --processes 4 --concurrency 4 --until-idle',
    'npm start -- --events-url http://localhost:3000/keap-events',
    'KEAP_API_KEY_FILE=~/keap.key npm start',
  ]);

  // The sandbox script has its own options and help: everything after "sandbox" goes to it.
  program
    .command('sandbox')
    .description(
      'the local Keap sandbox alone (npm run sandbox); "keap-sync sandbox --help" lists its options',
    )
    .usage('[sandbox options]')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .action(async (_opts, command) => {
      const child = spawn(process.execPath, [SANDBOX_SCRIPT, ...command.args], { stdio: 'inherit' });
      result.code = await new Promise<number>((r) => child.on('exit', (code) => r(code ?? 1)));
    });

  const statusCmd = program
    .command('status')
    .summary(
      'per account the key state, per resource cursor, lag and last run, per scope the quota used and ' +
        'left, queue and dead-letter depth (a table, or --json)',
    )
    .description(
      'Reads the state and mirror tables, the ledger and the queues of the running system (or, when it ' +
        'is not running, its data folder).',
    )
    .addOption(jsonOption())
    .addOption(awsOption())
    .addOption(configOption())
    .addOption(dataDirOption())
    .action(async (opts) => {
      const { config, target } = setup(opts);
      io.out(await statusCommand(config, target, opts.json ?? false));
    });
  withExamples(statusCmd, [
    'keap-sync status',
    "keap-sync status --json | jq '.accounts[0].quota'",
    'LEDGER_TABLE=... STATE_TABLE=... MIRROR_TABLE=... JOB_QUEUE_URL=... DEAD_LETTER_QUEUE_URL=... keap-sync status --aws',
  ]);

  const enqueueCmd = program
    .command('enqueue')
    .summary('validate jobs from a file (or - for standard input) and send them to the queue')
    .description(
      'Validates every job (one JSON object or an array) against the job schemas and the configured ' +
        "accounts, then sends them to the running system's queue. If any job is invalid, nothing is " +
        'sent (exit 2).',
    )
    .argument('[file]', 'a job file, or - for standard input')
    .addOption(awsOption())
    .addOption(configOption())
    .addOption(dataDirOption())
    .action(async (file, opts) => {
      const { config, target } = setup(opts);
      if (!file) throw new UsageError('enqueue needs a job file, or - for standard input.');
      io.out(await enqueueCommand(config, target, readInput(file)));
    });
  withExamples(enqueueCmd, [
    `echo '{"kind":"sync","account":"demo","resource":"contacts","mode":"incremental"}' | keap-sync enqueue -`,
    'keap-sync enqueue jobs/upsert-contact.json',
  ]);

  const dlqCmd = program
    .command('dlq')
    .summary('list or redrive the dead-letter queue')
    .description(
      'list: show the dead letters with the reason each was moved there; redrive: move every dead ' +
        'letter back to the job queue.',
    )
    .addArgument(new Argument('[action]', 'list or redrive').choices(['list', 'redrive'] as const))
    .addOption(jsonOption())
    .addOption(awsOption())
    .addOption(configOption())
    .addOption(dataDirOption())
    .action(async (action, opts) => {
      const { config, target } = setup(opts);
      if (!action) throw new UsageError('dlq needs "list" or "redrive".');
      io.out(await dlqCommand(config, target, action, opts.json ?? false));
    });
  withExamples(dlqCmd, ['keap-sync dlq list', 'keap-sync dlq redrive']);

  const hooksCmd = program
    .command('hooks')
    .summary("register, list, verify or remove each account's Keap REST hooks")
    .description(
      "register: one hook per event key of the account's synced lists (or --event-key), on the receiver's " +
        "URL with the account's token (made once, kept in the state table), verified at once; list: the " +
        "account's hooks and their status; verify: ask Keap to verify each again; remove: delete them and " +
        'stop the receiver accepting them. Locally against the running system (its sandbox and receiver); ' +
        '--aws against the deployed stack, --url being its HookReceiverUrl output. Keap calls go through ' +
        'the quota ledger. The token is never printed.',
    )
    .addArgument(
      new Argument('[action]', 'register, list, verify or remove').choices([
        'register',
        'list',
        'verify',
        'remove',
      ] as const),
    )
    .addOption(new Option('--account <id>', 'one account (default: every configured account)'))
    .addOption(
      new Option(
        '--url <base>',
        "the receiver's base URL (default: the local receiver, or HOOK_RECEIVER_URL with --aws)",
      ),
    )
    .addOption(new Option('--event-key <key...>', 'only these event keys (e.g. contact.add contact.delete)'))
    .addOption(jsonOption())
    .addOption(awsOption())
    .addOption(configOption())
    .addOption(dataDirOption())
    .action(async (action, opts) => {
      const { config, target } = setup(opts);
      if (!action) throw new UsageError('hooks needs "register", "list", "verify" or "remove".');
      io.out(
        await hooksCommand(action, config, target, {
          ...(opts.account ? { account: opts.account } : {}),
          ...(opts.url ? { url: opts.url } : {}),
          ...(opts.eventKey ? { eventKeys: opts.eventKey } : {}),
          json: opts.json ?? false,
        }),
      );
    });
  withExamples(hooksCmd, [
    'keap-sync hooks register',
    'keap-sync hooks list --json',
    'keap-sync hooks register --aws --url "$(out KeapSyncApp HookReceiverUrl)"',
    'keap-sync hooks remove --account demo --event-key contact.edit',
  ]);

  const exportCmd = program
    .command('export')
    .summary('stream one list of the mirror as JSON lines or CSV (custom fields as named columns)')
    .description(
      "Streams one list of an account's mirror (the running local system, its data folder, or a deployed " +
        'stack with --aws) to standard output or --out, a page at a time, with a progress bar on standard ' +
        "error. JSON lines: one record per line with its named custom fields beside Keap's raw form. CSV: " +
        'one column per field (objects and arrays as JSON) and one per custom field, named by its field_name. ' +
        'Records Keap deleted are left out unless --include-deleted.',
    )
    .addArgument(new Argument('<list>', 'the list to export').choices(SYNC_RESOURCES))
    .addOption(
      new Option('--format <format>', 'jsonl or csv')
        .choices(['jsonl', 'csv'] as const)
        .default('jsonl' as const),
    )
    .addOption(
      new Option(
        '--since <time>',
        'only records updated at or after this ISO-8601 time (e.g. 2026-01-01T00:00:00Z)',
      ).argParser(isoTime('since')),
    )
    .option('--account <id>', 'the account (default: the only one configured)')
    .option('--out <file>', 'write to this file instead of standard output')
    .option('--include-deleted', 'also export records Keap deleted (tombstones), with their deletedAt')
    .addOption(awsOption())
    .addOption(configOption())
    .addOption(dataDirOption())
    .action(async (list, opts) => {
      const { config, target } = setup(opts);
      const out = opts.out ? createWriteStream(opts.out) : process.stdout;
      const tty = io.errIsTty ?? false;
      const r = await exportCommand(config, target, {
        account: opts.account,
        list,
        format: opts.format,
        ...(opts.since === undefined ? {} : { sinceMs: opts.since }),
        includeDeleted: opts.includeDeleted ?? false,
        out,
        keepOpen: !opts.out,
        ...(tty ? { progress: (line: string) => io.err(`\r${line}`) } : {}),
      });
      const left = [
        r.skippedDeleted ? `${r.skippedDeleted} deleted` : '',
        r.skippedOlder ? `${r.skippedOlder} older than --since` : '',
      ].filter(Boolean);
      io.err(
        `${tty ? '\n' : ''}Exported ${r.written} of ${r.total} ${list} as ${opts.format}` +
          `${left.length ? ` (left out: ${left.join(', ')})` : ''}${opts.out ? ` to ${opts.out}` : ''}.\n`,
      );
    });
  withExamples(exportCmd, [
    'keap-sync export contacts --format csv --out contacts.csv',
    'keap-sync export orders --format jsonl --since 2026-06-01T00:00:00Z | jq .customFields',
    'LEDGER_TABLE=... STATE_TABLE=... MIRROR_TABLE=... JOB_QUEUE_URL=... DEAD_LETTER_QUEUE_URL=... keap-sync export contacts --format csv --aws > contacts.csv',
  ]);

  const estimateCmd = program
    .command('estimate')
    .summary('calls and time a full or incremental sync needs under the quota')
    .description(
      'Calls and time a full sync (and an incremental one with <changes> changed records per list) ' +
        "needs under the quota, for the configured resources, with other lists scaled like the sandbox's dataset.",
    )
    .addOption(
      new Option('--contacts <n>', 'contacts in the account (default 5000)').argParser(
        positiveInt('contacts'),
      ),
    )
    .addOption(
      new Option(
        '--changes <n>',
        'changed records per list for the incremental estimate (default 100)',
      ).argParser(positiveInt('changes')),
    )
    .addOption(
      new Option(
        '--page-ms <ms>',
        "how long Keap takes to build a page of a list (e.g. 2000 for 1,000 contacts with every field; default 0: the quota's bound alone)",
      ).argParser(positiveInt('page-ms')),
    )
    .addOption(jsonOption())
    .addOption(configOption())
    .addOption(dataDirOption())
    .action((opts) => {
      const { config } = setup(opts);
      io.out(
        estimateCommand(
          config,
          opts.contacts ?? 5000,
          opts.changes ?? 100,
          opts.json ?? false,
          opts.pageMs ?? 0,
        ),
      );
    });
  withExamples(estimateCmd, [
    'keap-sync estimate --contacts 250000',
    'keap-sync estimate --contacts 1000000 --page-ms 2000',
    'keap-sync estimate --contacts 20000 --changes 500 --json',
  ]);

  const accountsCmd = program
    .command('accounts')
    .summary('the account registry: add, list, show, pause, resume, remove accounts (no deploy needed)')
    .description(
      'Accounts live in the state table (the registry), not in the configuration or the stack: an account ' +
        "added here is synced from the scheduler's next run. Each is validated like the configuration file's " +
        'accounts, and its secret must be named under secrets.prefix (one IAM grant covers them all). The ' +
        "configuration file's accounts seed the registry when keap-sync run starts (or with accounts add <file>).",
    )
    .helpCommand('help [command]', 'the help of an accounts command');
  const registryTarget = (opts: { config?: string; dataDir?: string; aws?: true }) => setup(opts);
  const addCmd = accountsCmd
    .command('add')
    .description(
      'Registers an account given by flags, or the accounts of a JSON file (one account object, an array, ' +
        'or a configuration file\'s "accounts"; - for standard input). --key-file stores its key: in AWS as ' +
        'the secret (created under the prefix), locally in the Secrets Manager stand-in; on the local ' +
        'sandbox without --key-file a sandbox key is issued for the tenant.',
    )
    .argument('[file]', 'a JSON account or array of accounts, or - for standard input')
    .option('--id <id>', 'the account id: 1-40 lower-case letters, digits and dashes')
    .option('--tenant <tenant>', 'the Keap tenant (application) id')
    .option('--resources <lists>', 'lists and minutes between syncs: contacts=5,tags=60,products=60:full')
    .option('--secret-id <name>', 'the secret holding the key (default <secrets.prefix><id>)')
    .option('--key-file <file>', "store this file's content as the account's key (never printed)")
    .option('--replace', 'overwrite a registered account of the same id (keeps its paused state)')
    .addOption(awsOption())
    .addOption(configOption())
    .addOption(dataDirOption())
    .action(async (file, opts) => {
      const { config, target } = registryTarget(opts);
      const fromFile = file === undefined ? undefined : readInput(file);
      const json =
        fromFile === undefined
          ? undefined
          : (() => {
              try {
                const parsed = JSON.parse(fromFile) as unknown;
                const list = (parsed as { accounts?: unknown }).accounts;
                return Array.isArray(list) ? JSON.stringify(list) : fromFile;
              } catch {
                return fromFile;
              }
            })();
      const apiKey = opts.keyFile ? readFileSync(opts.keyFile, 'utf8').trim() : undefined;
      io.out(
        await accountsAdd(config, target, {
          ...(json === undefined ? {} : { json }),
          ...(opts.id ? { id: opts.id } : {}),
          ...(opts.tenant ? { tenant: opts.tenant } : {}),
          ...(opts.resources ? { resources: opts.resources } : {}),
          ...(opts.secretId ? { secretId: opts.secretId } : {}),
          ...(apiKey === undefined ? {} : { apiKey }),
          replace: opts.replace ?? false,
        }),
      );
    });
  withExamples(addCmd, [
    'keap-sync accounts add --id acme --tenant ab103 --resources contacts=5,companies=15,tags=60',
    'keap-sync accounts add --id acme --tenant ab103 --resources contacts=5 --key-file acme.key --aws',
    'keap-sync accounts add agency-accounts.json --aws',
    'keap-sync accounts add keap-sync.config.json --aws      (seed a deployment from the file)',
  ]);
  const listCmd = accountsCmd
    .command('list')
    .description('every registered account: tenant, paused or active, lists and intervals, secret')
    .addOption(jsonOption())
    .addOption(awsOption())
    .addOption(configOption())
    .addOption(dataDirOption())
    .action(async (opts) => {
      const { target } = registryTarget(opts);
      io.out(await accountsList(target, opts.json ?? false));
    });
  withExamples(listCmd, ['keap-sync accounts list', 'keap-sync accounts list --aws --json']);
  const showCmd = accountsCmd
    .command('show')
    .description('one registered account as stored (status and sync state: keap-sync status)')
    .argument('<id>', 'the account id')
    .addOption(jsonOption())
    .addOption(awsOption())
    .addOption(configOption())
    .addOption(dataDirOption())
    .action(async (id, opts) => {
      const { target } = registryTarget(opts);
      io.out(await accountsShow(target, id, opts.json ?? false));
    });
  withExamples(showCmd, ['keap-sync accounts show acme', 'keap-sync accounts show acme --aws --json']);
  for (const [action, text] of [
    ['pause', 'stop scheduling an account (its state, mirror and key are kept)'],
    ['resume', 'schedule a paused account again'],
    ['remove', 'remove an account from the registry (its mirror, cursors and secret are kept)'],
  ] as const) {
    const cmd = accountsCmd
      .command(action)
      .description(text)
      .argument('<id>', 'the account id')
      .addOption(awsOption())
      .addOption(configOption())
      .addOption(dataDirOption())
      .action(async (id, opts) => {
        const { target } = registryTarget(opts);
        io.out(await accountsChange(target, id, action));
      });
    withExamples(cmd, [`keap-sync accounts ${action} acme`, `keap-sync accounts ${action} acme --aws`]);
  }

  // A worker process of `run --processes P` (started by run itself, not by an operator).
  program.command('worker-process', { hidden: true }).action(async () => {
    await workerProcess();
    result.code = -1;
  });

  return program;
}

/** Runs `keap-sync <argv>`; resolves to the exit code (-1: keep the process running). */
export async function main(argv: readonly string[], io: CliIo = defaultIo): Promise<number> {
  const result = { code: 0 };
  const program = buildProgram(io, result);
  // No command: the command list, as a usage error.
  const code = await runProgram(program, argv.length === 0 ? ['--help'] : argv, {
    isUsageError: (err) => err instanceof ConfigError,
    out: (text) => io.out(text.replace(/\n$/, '')),
    err: io.err,
  });
  if (argv.length === 0) return 2;
  return code === 0 ? result.code : code;
}
