// Benchmark: `npm run bench:faults` (prints a report; not a test). The fault drill of issue 13 as a
// figure: the whole local system syncs a fresh sandbox (Keap's real limits, in its own process) to
// in-sync (the backfill), then records are updated and created and synced again, once without faults and once with them (8% 5xx,
// 4% HTML error pages, 4% truncated JSON, 2% hung requests, 20-120 ms latency). Reported: time to
// in-sync with faults / without (target <= 1.5), 429s (target 0), gateway-rule violations judged
// independently on the arrival log (0), lists matching the sandbox (all), dead letters (0).
import { cpus } from 'node:os';
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { Command, Option } from '@commander-js/extra-typings';
import { positiveInt } from '#harness/cli/commander.ts';
import { formatTable } from '#harness/cli/table.ts';
import { tallyTransient } from '#harness/drills/measure.ts';
import { plantedKey, startDrillSystem } from '#harness/drills/system.ts';
import { judgeArrivals, KEAP_GATEWAY_LIMITS } from '#harness/gateway/rules.ts';
import type { SandboxFaults } from '#harness/sandbox/index.ts';
import { OPERATOR_FAULTS, OPERATOR_LATENCY } from '../soak/faults.ts';

const program = new Command('bench:faults')
  .description(
    'Time to in-sync with Keap faults on divided by the same run without faults, with 429s, gateway-rule ' +
      'violations (judged on the arrival log by harness/gateway/rules.ts), lists matching the sandbox and ' +
      "dead letters. Each run: a fresh sandbox in its own process with Keap's real limits, the whole local " +
      'system with 2 worker processes x 3, records updated and created once in sync; in-sync = every list of ' +
      'the mirror equals the sandbox record for record (ids and update times).',
  )
  .addOption(new Option('--contacts <n>', 'dataset size').argParser(positiveInt('contacts')).default(5000))
  .addOption(new Option('--processes <P>', 'worker processes').argParser(positiveInt('processes')).default(2))
  .addOption(new Option('--seed <n>', 'dataset and fault seed').argParser(positiveInt('seed')).default(1))
  .addOption(
    new Option('--timeout-minutes <m>', 'give up on a run after')
      .argParser(positiveInt('timeout-minutes'))
      .default(20),
  )
  .option('--json', 'print the figures as JSON too')
  .addHelpText('after', '\nExample\n  nice -n 10 npm run bench:faults');
program.parse();
const o = program.opts();

interface RunFigures {
  faults: boolean;
  /** Start to the backfill in sync. */
  secondsToInSync: number;
  /** Changes made in Keap to the mirror in sync again. */
  secondsChangesToInSync: number;
  inSync: boolean;
  calls: number;
  rateLimited: number;
  injected: number;
  violations: number;
  listsMatching: number;
  lists: number;
  deadLetters: number;
  deadLettersTransient: number;
  jobsFailed: number;
  jobsRecovered: number;
  requestRetries: number;
  differences: string[];
}

async function deadLetters(
  queueUrl: string,
  send: (
    c: ReceiveMessageCommand,
  ) => Promise<{ Messages?: Array<{ MessageAttributes?: Record<string, { StringValue?: string }> }> }>,
) {
  const reasons: string[] = [];
  for (let empty = 0; empty < 2; ) {
    const r = await send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
        VisibilityTimeout: 600,
        MessageAttributeNames: ['All'],
      }),
    );
    const got = r.Messages ?? [];
    if (got.length === 0) empty++;
    for (const m of got) reasons.push(m.MessageAttributes?.reason?.StringValue ?? 'unknown');
  }
  return reasons;
}

async function oneRun(faults: SandboxFaults | undefined): Promise<RunFigures> {
  const sys = await startDrillSystem({
    contacts: o.contacts,
    seed: o.seed,
    key: plantedKey('faults'),
    limits: 'keap',
    sandbox: 'process',
    ...(faults ? { faults, latencyMs: OPERATOR_LATENCY } : {}),
    worker: { timeoutSeconds: 120, concurrency: 3 },
  });
  try {
    const started = Date.now();
    for (let i = 0; i < o.processes; i++) sys.spawnWorker(3);
    sys.startScheduler(10_000);
    // 1. The backfill: every list read into the mirror.
    const backfilled = await sys.waitInSync(o.timeoutMinutes * 60_000, 500);
    const secondsToInSync = (Date.now() - started) / 1000;
    // 2. Records updated and created in Keap, then picked up by the next due syncs (every list is due
    //    each minute, the scheduler ticks every 10 s: this part is bound by the schedule).
    for (const t of ['contacts', 'companies', 'notes', 'tasks', 'orders'] as const)
      await sys.keap.mutate(t, { update: 5, create: 2 });
    const changedAt = Date.now();
    const inSync = backfilled && (await sys.waitInSync(o.timeoutMinutes * 60_000, 500));
    const secondsChangesToInSync = (Date.now() - changedAt) / 1000;
    sys.stopScheduler();
    const arrivals = await sys.keap.arrivals();
    const judged = judgeArrivals(
      arrivals.map((a) => ({ at: a.t, tenant: a.tenant, key: a.keyId })),
      KEAP_GATEWAY_LIMITS,
    );
    const diffs = await sys.differences();
    const reasons = await deadLetters(sys.stack.sqs.queue.dlqUrl, (c) => sys.stack.sqs.client.send(c));
    const t = tallyTransient(sys.allLogLines());
    return {
      faults: faults !== undefined,
      secondsToInSync,
      secondsChangesToInSync,
      inSync,
      calls: arrivals.length,
      rateLimited: arrivals.filter((a) => a.status === 429).length,
      injected: arrivals.filter((a) => a.status >= 500 || a.status === 0).length,
      violations: judged.violations,
      listsMatching: sys.resources.length - diffs.length,
      lists: sys.resources.length,
      deadLetters: reasons.length,
      deadLettersTransient: reasons.filter((r) => r === 'retries-exhausted').length,
      jobsFailed: t.jobsFailed,
      jobsRecovered: t.jobsRecovered,
      requestRetries: t.requestRetries,
      differences: diffs,
    };
  } finally {
    await sys.close();
  }
}

process.stderr.write('run without faults...\n');
const clean = await oneRun(undefined);
process.stderr.write('run with faults...\n');
const faulty = await oneRun(OPERATOR_FAULTS);
const ratio = faulty.secondsToInSync / clean.secondsToInSync;
const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');
const rows = [clean, faulty].map((r) => [
  r.faults ? 'on' : 'off',
  r.inSync ? f(r.secondsToInSync) : `not in ${o.timeoutMinutes} min`,
  r.inSync ? f(r.secondsChangesToInSync) : '-',
  String(r.calls),
  String(r.injected),
  String(r.requestRetries),
  String(r.jobsFailed),
  String(r.jobsRecovered),
  String(r.rateLimited),
  String(r.violations),
  `${r.listsMatching}/${r.lists}`,
  String(r.deadLetters),
  String(r.deadLettersTransient),
]);
process.stdout.write(
  `${[
    `keap-sync fault benchmark: sandbox seed ${o.seed}, ${o.contacts} contacts, in its own process with Keap's real limits; ` +
      `${o.processes} worker processes x 3; records updated and created once in sync; ${cpus().length} CPUs, Node ${process.version}`,
    'faults on: 8% 5xx, 4% HTML error pages, 4% truncated JSON, 2% hung requests, 20-120 ms latency',
    '',
    formatTable(
      [
        'faults',
        'backfill s to in-sync',
        'changes s to in-sync',
        'Keap calls',
        '5xx/hung',
        'requests retried',
        'jobs failed',
        'jobs recovered',
        '429s',
        'violations',
        'lists matching',
        'dead letters',
        'from transient faults',
      ],
      rows,
    ),
    '',
    `backfill time to in-sync with faults / without: ${f(ratio, 2)} (target <= 1.5)   429s: ${faulty.rateLimited + clean.rateLimited} (target 0)   ` +
      `violations: ${faulty.violations + clean.violations} (target 0)   lists matching: ${faulty.listsMatching}/${faulty.lists} with faults (target all)   ` +
      `dead letters from transient faults: ${faulty.deadLettersTransient} (target 0)`,
    ...[clean, faulty].flatMap((r) =>
      r.differences.length
        ? [`differences (faults ${r.faults ? 'on' : 'off'}): ${r.differences.join('; ')}`]
        : [],
    ),
  ].join('\n')}\n`,
);
if (o.json) process.stdout.write(`${JSON.stringify({ clean, faulty, ratio })}\n`);
