// Benchmark: `npm run bench:backfill` (prints a table; not a test). The first full sync of one very large
// list under Keap's real limits and a realistic page latency: the Keap sandbox in its own process
// (lazy contacts, so 1,000,000 fit in memory; pages that take `base + per record` ms to build; Keap's
// gateway rules judging every arrival), the ledger at Keap's limits on dynalite, the job on fauxqs and
// the worker continuing across Lambda-sized invocations. Prints the time to a complete mirror divided
// by the quota's lower bound for the calls it made (calls / the bulk share of 240 a minute).
import { parseArgs } from 'node:util';
import { formatTable } from '#harness/cli/table.ts';
import { startLocalStack } from '#harness/local/stack.ts';
import { nominalPageMs, parsePageLatency } from '#harness/sandbox/latency.ts';
import { startSandboxProcess } from '#harness/sandbox/process.ts';
import { parseAppConfig } from '#shared/config/app-config.ts';
import { createWorkerHandler, MemoryLog, MemoryMetrics, type Mirror } from '#shared/pipeline/index.ts';
import type { MirrorRecord, UpsertResult } from '#shared/store/index.ts';

const HELP = `Usage: npm run bench:backfill -- [options]

Starts the Keap sandbox in its own process with --contacts lazy contacts and the page latency model
(--page-latency, --jitter), Keap's limits enforced at arrival (10 a second per key, 240 a rolling
minute, the day), and the local stack (dynalite for the ledger and state, fauxqs), then sends one full
sync of the contacts and runs the workers (Lambda-sized invocations of --timeout-s, continuing in new
messages) until the mirror holds every contact. Prints the wall time, the Keap calls, the quota's lower
bound (calls / (bulk share x 240 a minute)), their ratio, the 429s, and the time one page after another
would take (pages x the model's mean page time).

The mirror is a counting in-memory store by default (--mirror memory): dynalite writes about 570
records a second on this machine (npm run bench:mirror), far below the 3,200 a second the quota's pace
means at 1,000 a page; DynamoDB takes that (see the README). --mirror dynalite writes to dynalite.

Options
  --contacts <n>        contacts (default 1000000)
  --partitions <n>      worker.partitions, ranges read at once (default 10)
  --page-latency <m>    "<base ms>+<ms per record>/record" (default 300+2/record)
  --jitter <j>          page latency jitter, 0..1 (default 0.2)
  --timeout-s <s>       worker.timeoutSeconds (default 120, as deployed)
  --mirror <kind>       memory | dynalite (default memory)
  --max-minutes <m>     give up after this long (default 30)
  --verbose             print the run's log (info and above) at the end
  --help                this text

Example
  npm run bench:backfill -- --contacts 200000 --partitions 8
`;

/** A mirror that keeps each id's update time only, and counts writes: enough to check completeness. */
class CountingMirror implements Mirror {
  readonly ut = new Map<string, number>();
  writes = 0;
  async upsertMany(
    _account: string,
    _resource: string,
    records: readonly MirrorRecord[],
  ): Promise<UpsertResult> {
    let written = 0;
    let skippedStale = 0;
    for (const r of records) {
      this.writes++;
      const old = this.ut.get(r.id);
      if (old !== undefined && old > r.updateTimeMs) skippedStale++;
      else {
        this.ut.set(r.id, r.updateTimeMs);
        written++;
      }
    }
    return { written, skippedStale };
  }
  async tombstoneMany(): Promise<{ tombstoned: number; unchanged: number }> {
    return { tombstoned: 0, unchanged: 0 };
  }
  async count(): Promise<number> {
    return this.ut.size;
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      contacts: { type: 'string', default: '1000000' },
      partitions: { type: 'string', default: '10' },
      'page-latency': { type: 'string', default: '300+2/record' },
      jitter: { type: 'string', default: '0.2' },
      'timeout-s': { type: 'string', default: '120' },
      mirror: { type: 'string', default: 'memory' },
      'max-minutes': { type: 'string', default: '30' },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const contacts = Number(values.contacts);
  const partitions = Number(values.partitions);
  const jitter = Number(values.jitter);
  const timeoutS = Number(values['timeout-s']);
  const maxMs = Number(values['max-minutes']) * 60_000;
  const model = parsePageLatency(values['page-latency'], jitter);
  if (!Number.isInteger(contacts) || contacts < 1) throw new Error('--contacts must be a positive integer');
  if (values.mirror !== 'memory' && values.mirror !== 'dynalite')
    throw new Error('--mirror is memory or dynalite');

  process.stderr.write(
    `Starting the sandbox (${contacts} lazy contacts, pages ${values['page-latency']}, jitter ${jitter})...\n`,
  );
  const sandbox = await startSandboxProcess([
    '--contacts',
    String(contacts),
    '--lazy',
    '--seed',
    '1',
    '--page-latency',
    values['page-latency'],
    '--latency-jitter',
    String(jitter),
  ]);
  const key = sandbox.keys[0];
  if (!key) throw new Error('the sandbox printed no key');
  const config = parseAppConfig({
    accounts: [
      {
        id: 'big',
        tenant: key.tenant,
        secretId: 'keap-sync/big',
        resources: { contacts: { everyMinutes: 60, mode: 'full' } },
      },
    ],
    keap: { baseUrl: sandbox.baseUrl },
    worker: { concurrency: 2, batchSize: 1, timeoutSeconds: timeoutS, partitions },
  });
  const log = new MemoryLog();
  const stack = await startLocalStack({
    config,
    secrets: { 'keap-sync/big': key.key },
    log,
    metrics: new MemoryMetrics(),
  });
  const counting = new CountingMirror();
  const mirror = values.mirror === 'memory' ? counting : stack.deps.mirror;
  const handler = createWorkerHandler({ ...stack.deps, mirror });
  const poller = stack.poller({ concurrency: 2, batchSize: 1, handler });
  let arrivals: Awaited<ReturnType<typeof sandbox.stop>> = [];
  try {
    const started = Date.now();
    await stack.deps.queue.send({ kind: 'sync', account: 'big', resource: 'contacts', mode: 'full' });
    await poller.start();
    let finishedAt: number | undefined;
    let shown = 0;
    for (;;) {
      await new Promise((r) => setTimeout(r, 250));
      if (log.lines.some((l) => l.message === 'Sync finished')) {
        finishedAt = Date.now();
        break;
      }
      const s = Math.floor((Date.now() - started) / 10_000) * 10;
      if (s > shown) {
        shown = s;
        const held = await mirror.count('big', 'contacts');
        process.stderr.write(`  ${s} s: ${held} of ${contacts} contacts in the mirror\n`);
      }
      if (Date.now() - started > maxMs) {
        process.stderr.write(`Gave up after ${values['max-minutes']} minutes.\n`);
        break;
      }
    }
    await poller.stop();
    const wallMs = (finishedAt ?? Date.now()) - started;
    const held = await mirror.count('big', 'contacts');
    arrivals = await sandbox.stop();
    const reads = arrivals.filter((a) => a.method === 'GET' && a.path.endsWith('/contacts'));
    const refused = arrivals.filter((a) => a.status === 429);
    const calls = arrivals.filter((a) => a.status !== 429).length;
    const bulkPerMinute = (config.limits.bulkShare ?? 0.8) * 240;
    const lowerMs = (calls / bulkPerMinute) * 60_000;
    const pages = Math.ceil(contacts / 1000);
    const sequentialMs = pages * nominalPageMs(model, 1000);
    const plans = log.lines.filter((l) => l.message === 'Reading the rest of the list in id ranges');
    const continued = log.lines.filter(
      (l) => l.message === 'Out of invocation time: continuing in a new message',
    );
    process.stdout.write(
      `${formatTable(
        ['figure', 'value'],
        [
          ['contacts in the mirror', `${held} of ${contacts}${finishedAt ? '' : ' (not finished)'}`],
          ...(values.mirror === 'memory'
            ? [
                [
                  'records written (duplicates: re-read pages)',
                  `${counting.writes} (${counting.writes - held})`,
                ],
              ]
            : []),
          ['Keap calls (contact reads)', `${calls} (${reads.length})`],
          ['429s', String(refused.length)],
          [
            'ranges planned / invocations continued',
            `${String(plans[0]?.ranges ?? 0)} / ${continued.length}`,
          ],
          ['time to a complete mirror', `${(wallMs / 1000).toFixed(1)} s`],
          [`quota lower bound (calls / ${bulkPerMinute} a minute)`, `${(lowerMs / 1000).toFixed(1)} s`],
          ['RATIO time / lower bound', (wallMs / lowerMs).toFixed(2)],
          [
            'one page after another (COMPUTED: pages x mean page)',
            `${(sequentialMs / 1000).toFixed(0)} s (ratio ${(sequentialMs / lowerMs).toFixed(2)})`,
          ],
        ],
      )}\n`,
    );
    if (values.verbose)
      for (const l of log.lines.filter((x) => x.level !== 'debug'))
        process.stderr.write(`${JSON.stringify(l)}\n`);
    process.stdout.write(
      `Settings: partitions ${partitions}, page latency ${values['page-latency']} jitter ${jitter}, worker timeout ${timeoutS} s, mirror ${values.mirror}.\n`,
    );
  } finally {
    await poller.stop().catch(() => undefined);
    await stack.close();
    if (arrivals.length === 0) await sandbox.stop().catch(() => undefined);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
