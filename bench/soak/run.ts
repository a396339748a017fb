// Benchmark: `npm run bench:soak -- --minutes M` (prints a report; not a test). The whole local system
// for M minutes with Keap faults on, a stream of record changes in Keap and a stream of write jobs:
// Keap calls, 429s, jobs failed and recovered, the time from a change in Keap to the mirror
// (p50/p95/max), and the worker processes' memory at start and end.
import { cpus } from 'node:os';
import { Command, Option } from '@commander-js/extra-typings';
import { positiveInt } from '#harness/cli/commander.ts';
import { formatTable } from '#harness/cli/table.ts';
import { percentile, rssMb, tallyTransient } from '#harness/drills/measure.ts';
import { DRILL_ACCOUNT, type DrillSystem, plantedKey, startDrillSystem } from '#harness/drills/system.ts';
import { type SentWrite, sendWrites, tallyWrites } from '#harness/drills/writes.ts';
import type { ResourceType } from '#harness/sandbox/index.ts';
import { Prng } from '#harness/sandbox/prng.ts';
import { OPERATOR_FAULTS, OPERATOR_LATENCY } from './faults.ts';

const CHANGED: ResourceType[] = ['contacts', 'companies', 'notes', 'tasks', 'orders', 'opportunities'];

interface Pending {
  resource: ResourceType;
  id: string;
  updateTimeMs: number;
  changedAt: number;
}

const program = new Command('bench:soak')
  .description(
    "Runs the whole local system for M minutes: the Keap sandbox in its own process with Keap's real " +
      'limits and faults on (8% 5xx, 4% HTML error pages, 4% truncated JSON, 2% hung requests, 20-120 ms ' +
      'latency), 2 worker processes, the scheduler every 10 s with every list due each minute, a change in ' +
      'Keap every 15 s (records updated and created) and write jobs every 20 s. Reports Keap calls, 429s, ' +
      'jobs failed and recovered, change-to-mirror time (p50/p95/max) and worker memory at start and end.',
  )
  .addOption(new Option('--minutes <M>', 'how long to run').argParser(positiveInt('minutes')).default(5))
  .addOption(new Option('--contacts <n>', 'dataset size').argParser(positiveInt('contacts')).default(2000))
  .addOption(new Option('--processes <P>', 'worker processes').argParser(positiveInt('processes')).default(2))
  .addOption(
    new Option('--seed <n>', 'dataset, change and fault seed').argParser(positiveInt('seed')).default(13),
  )
  .option('--json', 'print the figures as JSON too')
  .addHelpText('after', '\nExample\n  nice -n 10 npm run bench:soak -- --minutes 30');

program.parse();
const o = program.opts();

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function changeStream(sys: DrillSystem, rng: Prng, pending: Pending[], until: number): Promise<number> {
  let changes = 0;
  while (Date.now() < until - 60_000) {
    await sleep(15_000);
    const resource = rng.pick(CHANGED);
    const r = await sys.keap.mutate(resource, { update: 3, create: 1 });
    const changedAt = Date.now();
    const now = new Map(await sys.keap.records(resource));
    for (const id of [...r.updated, ...r.created]) {
      const t = now.get(id);
      if (t !== undefined) pending.push({ resource, id, updateTimeMs: t, changedAt });
      changes++;
    }
  }
  return changes;
}

async function mirrorWatch(
  sys: DrillSystem,
  pending: Pending[],
  lags: number[],
  stop: () => boolean,
): Promise<void> {
  while (!stop() || pending.length > 0) {
    await sleep(1_000);
    for (let i = pending.length - 1; i >= 0; i--) {
      const p = pending[i];
      if (!p) continue;
      const item = await sys.stack.deps.mirror.get(DRILL_ACCOUNT, p.resource, p.id).catch(() => undefined);
      if (item && item.updateTimeMs >= p.updateTimeMs) {
        lags.push(Date.now() - p.changedAt);
        pending.splice(i, 1);
      }
    }
    if (stop() && pending.length > 0 && Date.now() > stopAt + 5 * 60_000) break;
  }
}

let stopAt = Number.POSITIVE_INFINITY;

async function main(): Promise<void> {
  const rng = new Prng(o.seed, 7);
  const started = Date.now();
  const until = started + o.minutes * 60_000;
  const sys = await startDrillSystem({
    contacts: o.contacts,
    seed: o.seed,
    key: plantedKey('soak'),
    limits: 'keap',
    sandbox: 'process',
    faults: OPERATOR_FAULTS,
    latencyMs: OPERATOR_LATENCY,
    worker: { timeoutSeconds: 60, concurrency: 3 },
  });
  try {
    const workers = Array.from({ length: o.processes }, () => sys.spawnWorker(3));
    sys.startScheduler(10_000);
    await sleep(5_000);
    const memStart = workers.map((w) => rssMb(w.child.pid ?? 0));
    const mainStart = process.memoryUsage().rss / 1024 / 1024;
    const pending: Pending[] = [];
    const lags: number[] = [];
    let stopped = false;
    const watch = mirrorWatch(sys, pending, lags, () => stopped);
    const sent: SentWrite[] = [];
    const writer = (async () => {
      while (Date.now() < until - 60_000) {
        await sleep(20_000);
        sent.push(...(await sendWrites(sys, 'SOAK', 2, sent.length)));
      }
    })();
    // Progress on stderr once a minute (the figures come at the end, on stdout).
    const progress = setInterval(() => {
      void sys.keap
        .arrivals()
        .then((arrivals) => {
          const limitedSoFar = arrivals.filter((a) => a.status === 429).length;
          process.stderr.write(
            `soak ${((Date.now() - started) / 60_000).toFixed(1)}/${o.minutes} min: ${arrivals.length} Keap calls, ` +
              `${limitedSoFar} 429, ${lags.length} changes mirrored, ${pending.length} waiting, ${sent.length} write jobs sent\n`,
          );
        })
        .catch(() => {});
    }, 60_000).unref();
    const memPeak = [...memStart];
    const sampler = setInterval(() => {
      workers.forEach((w, i) => {
        memPeak[i] = Math.max(memPeak[i] ?? 0, rssMb(w.child.pid ?? 0));
      });
    }, 10_000);
    const changes = await changeStream(sys, rng, pending, until);
    await writer;
    while (Date.now() < until) await sleep(1_000);
    const memEnd = workers.map((w) => rssMb(w.child.pid ?? 0));
    const mainEnd = process.memoryUsage().rss / 1024 / 1024;
    clearInterval(sampler);
    clearInterval(progress);
    stopAt = Date.now();
    stopped = true;
    await watch;
    const inSync = await sys.waitInSync(120_000, 5_000);
    sys.stopScheduler();
    const arrivals = await sys.keap.arrivals();
    const writes = await tallyWrites(sys, 'SOAK', sent);
    const transient = tallyTransient(sys.allLogLines());
    const dlq = await sys.stack.sqs.client.send(
      new (await import('@aws-sdk/client-sqs')).GetQueueAttributesCommand({
        QueueUrl: sys.stack.sqs.queue.dlqUrl,
        AttributeNames: ['ApproximateNumberOfMessages'],
      }),
    );
    const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');
    // Each 429 with the rule it broke and the arrivals around it on the same key, so a 429 can be
    // traced (a spike 429 two arrivals under 100 ms apart; injected latency is 20-120 ms).
    const limited = arrivals.flatMap((a, i) => {
      if (a.status !== 429) return [];
      const sameKey = arrivals.slice(0, i).filter((b) => b.keyId === a.keyId);
      const prev = sameKey.at(-1);
      return [
        {
          atS: (a.t - started) / 1000,
          rule: a.rule ?? '?',
          path: a.path,
          gapMs: prev ? a.t - prev.t : Number.NaN,
          previousStatus: prev?.status ?? Number.NaN,
        },
      ];
    });
    const figures = {
      minutes: o.minutes,
      contacts: o.contacts,
      processes: o.processes,
      keapCalls: arrivals.length,
      ok: arrivals.filter((a) => a.status === 200 || a.status === 201).length,
      rateLimited: arrivals.filter((a) => a.status === 429).length,
      rateLimitedDetail: limited,
      injectedOrHung: arrivals.filter((a) => a.status >= 500 || a.status === 0).length,
      jobsFailed: transient.jobsFailed,
      jobsRecovered: transient.jobsRecovered,
      retriesExhausted: transient.retriesExhausted,
      requestRetries: transient.requestRetries,
      deadLetters: Number(dlq.Attributes?.ApproximateNumberOfMessages ?? 0),
      changes,
      changesMirrored: lags.length,
      changesNotMirrored: pending.length,
      lagP50s: percentile(lags, 50) / 1000,
      lagP95s: percentile(lags, 95) / 1000,
      lagMaxs: lags.length > 0 ? Math.max(...lags) / 1000 : Number.NaN,
      writes,
      inSyncAtEnd: inSync,
      workerRssStartMb: memStart,
      workerRssEndMb: memEnd,
      workerRssPeakMb: memPeak,
      mainRssStartMb: mainStart,
      mainRssEndMb: mainEnd,
    };
    const out = [
      `keap-sync soak: ${o.minutes} min, sandbox seed ${o.seed} with ${o.contacts} contacts in its own process, Keap's real limits,`,
      'faults 8% 5xx / 4% HTML / 4% truncated JSON / 2% hung, 20-120 ms latency; ' +
        `${o.processes} worker processes x 3, scheduler every 10 s, every list due each minute; ${cpus().length} CPUs, Node ${process.version}`,
      '',
      formatTable(
        [
          'Keap calls',
          '200',
          '429',
          '5xx/hung (injected)',
          'requests retried',
          'jobs failed',
          'jobs recovered',
          'retries exhausted',
          'dead letters',
        ],
        [
          [
            String(figures.keapCalls),
            String(figures.ok),
            String(figures.rateLimited),
            String(figures.injectedOrHung),
            String(figures.requestRetries),
            String(figures.jobsFailed),
            String(figures.jobsRecovered),
            String(figures.retriesExhausted),
            String(figures.deadLetters),
          ],
        ],
      ),
      ...(limited.length === 0
        ? []
        : [
            '',
            formatTable(
              ['429 at s', 'rule', 'path', 'ms after the previous arrival (same key)', 'its status'],
              limited.map((l) => [f(l.atS), l.rule, l.path, f(l.gapMs), String(l.previousStatus)]),
            ),
          ]),
      '',
      formatTable(
        ['changes in Keap', 'mirrored', 'not mirrored', 'change to mirror p50 s', 'p95 s', 'max s'],
        [
          [
            String(changes),
            String(lags.length),
            String(pending.length),
            f(figures.lagP50s),
            f(figures.lagP95s),
            f(figures.lagMaxs),
          ],
        ],
      ),
      '',
      formatTable(
        ['write jobs', 'done', 'unresolved', 'created once', 'created twice', 'not created'],
        [
          [
            writes.sent,
            writes.done,
            writes.unresolved,
            writes.createdOnce,
            writes.createdTwice,
            writes.notCreated,
          ].map(String),
        ],
      ),
      '',
      formatTable(
        ['process', 'RSS at start MB', 'RSS peak MB', 'RSS at end MB'],
        [
          ...workers.map((w, i) => [
            w.name,
            f(memStart[i] ?? Number.NaN),
            f(memPeak[i] ?? Number.NaN),
            f(memEnd[i] ?? Number.NaN),
          ]),
          ['main (stack + scheduler)', f(mainStart), '-', f(mainEnd)],
        ],
      ),
      '',
      `mirror == sandbox at the end (record for record): ${inSync ? 'yes' : `NO (${(await sys.differences()).join('; ')})`}`,
      `run time ${f((Date.now() - started) / 60_000)} min`,
    ].join('\n');
    process.stdout.write(`${out}\n`);
    if (o.json) process.stdout.write(`${JSON.stringify(figures)}\n`);
  } finally {
    await sys.close();
  }
}

await main();
