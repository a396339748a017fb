// Benchmark: `npm run bench:quota` (prints a table; not a test). The keap-sync ledger side by side
// with rate-limiter-flexible's RateLimiterDynamo (one per limit + RateLimiterUnion) and a naive
// per-worker split: 64 workers in 4 processes each, clock offsets up to +-50 ms, arrival jitter
// 0-50 ms, a saturating backlog, Keap's spike and minute limits, a day limit the run exhausts.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CreateTableCommand, DynamoDBClient, waitUntilTableExists } from '@aws-sdk/client-dynamodb';
import { formatTable } from '#harness/cli/table.ts';
import { LOCAL_AWS } from '#harness/emulators/dynamo.ts';
import { KEAP_GATEWAY_LIMITS, minuteUtilization } from '#harness/gateway/rules.ts';
import { createLedgerTable } from '#shared/quota/index.ts';
import { runWorkerProcess } from './fleet.ts';
import type { JudgedArrival } from './judge.ts';
import type { SystemName, WorkerConfig, WorkerResult } from './worker.ts';

const HELP = `Usage: npm run bench:quota -- [--quick] [--json FILE]

Runs four systems at once against one dynalite and one strict gateway (the judge), each with
64 workers in 4 OS processes (clock offsets -50, -17, +17, +50 ms), arrival jitter 0-50 ms, a
saturating backlog, Keap's spike (10/s) and rolling minute (240/60 s) limits and a day limit scaled
down so the run exhausts it:
  keap-sync (k=1)        the ledger, one slot per acquire
  keap-sync (k=5)        the ledger, five slots per acquire (a paging job)
  rate-limiter-flexible  RateLimiterDynamo per limit (10/1 s, 240/60 s, day/86400 s) + RateLimiterUnion
  naive split            every worker keeps 1/64 of each limit on its own clock

Options:
  --quick        ~2 minutes (day limit 300) instead of ~5 (day limit 1140)
  --minutes M    run each scenario M minutes (1-60), the day limit M x 240 (a backlog throughout)
  --store S      dynalite (default) or dynamodb-local (Java; returns the winning item on a failed
                 condition as DynamoDB does, so a lost race costs no read: the cost DynamoDB would see)
  --only LIST    run only these systems (comma list of keap1, keap5, rlf, naive)
  --scenario LIST  run only these scenarios (comma list; default all):
                 baseline, stall, stall-tight, network-tail, network-tail-wide, cpu-hog, fleet-8x4, clock+300ms,
                 clock+300ms-unaligned, clock+3s, clock-3s, clock+10min
                 (every scenario but baseline runs the keap-sync rows only)
  --json FILE    also write {"systems":[{name, accepted, violations, minuteUtilization, dayBudgetUsed,
                 ddbRequestsPerAcceptedCall, acquireOverheadP99Ms, ...}]}
  --help         this text

Examples:
  npm run bench:quota -- --quick
  npm run bench:quota -- --json bench/results/quota.json
`;

interface Scenario {
  id: string;
  /** What the scenario does to the fleet. */
  what: string;
  /** Systems it runs (ids); absent: every selected system. */
  systems?: string[];
  offsets?: number[];
  /** OS processes and acquirers per process (default 4 x 16). */
  fleet?: { processes: number; acquirers: number };
  worker?: Pick<WorkerConfig, 'stall' | 'tail' | 'cpuHog'>;
  /** Ledger settings for this scenario (default: the product's defaults). */
  ledger?: Record<string, unknown>;
  /** Align the processes' clocks at start-up (default true). */
  align?: boolean;
}

const KEAP_ONLY = ['keap1', 'keap5'];
const SCENARIOS: Scenario[] = [
  { id: 'baseline', what: 'clock offsets -50/-17/+17/+50 ms, arrival jitter 0-50 ms' },
  {
    id: 'stall',
    what: '15% of calls stall 50-300 ms between the wake-up and the request',
    systems: KEAP_ONLY,
    worker: { stall: { p: 0.15, minMs: 50, maxMs: 300 } },
  },
  {
    id: 'stall-tight',
    what: 'the same stalls with spikeMarginMs 120 (220 ms a call): slack to reuse refused slots, less margin',
    systems: KEAP_ONLY,
    worker: { stall: { p: 0.15, minMs: 50, maxMs: 300 } },
    ledger: { spikeMarginMs: 120 },
  },
  {
    id: 'network-tail',
    what: '5% of requests take 150 ms longer on the network',
    systems: KEAP_ONLY,
    worker: { tail: { p: 0.05, ms: 150 } },
  },
  {
    id: 'network-tail-wide',
    what: 'the same tail, with spikeMarginMs 200 (300 ms a call: covers the 150 ms tail + 50 ms jitter)',
    systems: KEAP_ONLY,
    worker: { tail: { p: 0.05, ms: 150 } },
    ledger: { spikeMarginMs: 200 },
  },
  {
    id: 'cpu-hog',
    what: 'a CPU hog stalls every worker event loop 50-250 ms about every 400 ms',
    systems: KEAP_ONLY,
    worker: { cpuHog: { everyMs: 400, minMs: 50, maxMs: 250 } },
  },
  {
    id: 'fleet-8x4',
    what: '8 processes x 4 acquirers on one key (DynamoDB cost with many writers)',
    systems: KEAP_ONLY,
    fleet: { processes: 8, acquirers: 4 },
    offsets: [-50, -36, -21, -7, 7, 21, 36, 50],
  },
  {
    id: 'clock+300ms',
    what: "one process's clock 300 ms ahead",
    systems: KEAP_ONLY,
    offsets: [-50, -17, 17, 300],
  },
  {
    id: 'clock+300ms-unaligned',
    what: "one process's clock 300 ms ahead, no start-up alignment: the others converge during the run (as Lambdas starting apart do)",
    systems: KEAP_ONLY,
    offsets: [-50, -17, 17, 300],
    align: false,
  },
  {
    id: 'clock+3s',
    what: "one process's clock 3 s ahead",
    systems: KEAP_ONLY,
    offsets: [-50, -17, 17, 3_000],
  },
  {
    id: 'clock-3s',
    what: "one process's clock 3 s behind",
    systems: KEAP_ONLY,
    offsets: [-50, -17, 17, -3_000],
  },
  {
    id: 'clock+10min',
    what: "one process's clock 10 minutes ahead",
    systems: KEAP_ONLY,
    offsets: [-50, -17, 17, 600_000],
  },
];

interface SystemSpec {
  id: string;
  name: string;
  system: SystemName;
  k: number;
}

const SYSTEMS: SystemSpec[] = [
  { id: 'keap1', name: 'keap-sync (k=1)', system: 'keap-sync', k: 1 },
  { id: 'keap5', name: 'keap-sync (k=5)', system: 'keap-sync', k: 5 },
  { id: 'rlf', name: 'rate-limiter-flexible', system: 'rate-limiter-flexible', k: 1 },
  { id: 'naive', name: 'naive split', system: 'naive-split', k: 1 },
];
const OFFSETS = [-50, -17, 17, 50];
const PROCESSES = 4;
const ACQUIRERS = 16;
const JITTER = { min: 0, max: 50 };

export interface SystemFigures {
  scenario: string;
  name: string;
  accepted: number;
  violations: number;
  violationsByRule: Record<string, number>;
  minuteUtilization: number;
  dayBudgetUsed: number;
  /** Every DynamoDB request (successful and failed writes, reads, start-up clock alignment) per accepted call. */
  ddbRequestsPerAcceptedCall: number;
  /** The same without the one-time start-up clock alignment. */
  steadyDdbRequestsPerAcceptedCall: number;
  setupDdbRequests: number;
  /** Steady-state requests per accepted call by kind: successful writes, writes that lost a race, reads. */
  steadyPerCallByKind: { writes: number; lostRaces: number; reads: number } | null;
  acquireOverheadP99Ms: number;
  missedSlots: number;
  /** Calls the ledger refused at the last moment (late after a stall), and errors by name. */
  refused: number;
  maxSendLatenessMs: number;
  errors: number;
  errorsByName: Record<string, number>;
  /** The first violations, each with the accepted call of the same key before it. */
  clockCorrectionsMs: number[];
  clockCorrectionsAtStartMs: number[];
  violationSamples: Array<{ rule: string; atMs: number; proc: string; gapMs: number; prevProc: string }>;
}

function p99(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? 0;
}

/** Starts a helper process that prints one JSON line when ready. */
async function startHost<T>(
  file: string,
  env: Record<string, string> = {},
): Promise<{ info: T; pid: number; stop: () => void }> {
  const script = fileURLToPath(new URL(file, import.meta.url));
  const child = spawn(process.execPath, [script], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  });
  const info = await new Promise<T>((resolve, reject) => {
    let buf = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      const line = buf.split('\n')[0];
      if (buf.includes('\n') && line) resolve(JSON.parse(line) as T);
    });
    child.once('exit', (code) => reject(new Error(`${file} exited with ${code}`)));
  });
  return { info, pid: child.pid ?? 0, stop: () => child.kill('SIGTERM') };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' },
      json: { type: 'string' },
      only: { type: 'string' },
      scenario: { type: 'string' },
      minutes: { type: 'string' },
      store: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.only) {
    const wanted = values.only.split(',');
    const unknown = wanted.filter((w) => !SYSTEMS.some((s) => s.id === w));
    if (unknown.length)
      throw new Error(
        `--only: unknown system ${unknown.join(', ')}; use ${SYSTEMS.map((s) => s.id).join(', ')}`,
      );
    SYSTEMS.splice(0, SYSTEMS.length, ...SYSTEMS.filter((s) => wanted.includes(s.id)));
  }
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const quick = values.quick ?? false;
  let dayLimit = quick ? 300 : 1_140;
  let runMs = quick ? 90_000 : 310_000;
  if (values.minutes !== undefined) {
    const minutes = Number(values.minutes);
    if (!Number.isFinite(minutes) || minutes < 1 || minutes > 60) {
      throw new Error(`--minutes: a number of minutes from 1 to 60; got ${values.minutes}`);
    }
    // A backlog for the whole run: the day lasts as long as the run at the minute limit's pace.
    runMs = Math.round(minutes * 60_000);
    dayLimit = Math.round(minutes * KEAP_GATEWAY_LIMITS.minuteLimit);
  }
  const limits = {
    spikeIntervalMs: KEAP_GATEWAY_LIMITS.spikeIntervalMs,
    minuteLimit: KEAP_GATEWAY_LIMITS.minuteLimit,
    minuteWindowMs: KEAP_GATEWAY_LIMITS.minuteWindowMs,
    dayLimit,
  };
  process.stderr.write(
    `bench:quota ${quick ? '--quick ' : ''}: ${SYSTEMS.length} systems x ${PROCESSES} processes x ${ACQUIRERS} workers, ` +
      `spike ${limits.spikeIntervalMs} ms, ${limits.minuteLimit}/${limits.minuteWindowMs / 1000} s rolling, day ${dayLimit}, ` +
      `run ${runMs / 1000} s\n`,
  );
  const wantedScenarios = values.scenario ? values.scenario.split(',') : SCENARIOS.map((x) => x.id);
  const unknownScenarios = wantedScenarios.filter((w) => !SCENARIOS.some((x) => x.id === w));
  if (unknownScenarios.length) {
    throw new Error(
      `--scenario: unknown ${unknownScenarios.join(', ')}; use ${SCENARIOS.map((x) => x.id).join(', ')}`,
    );
  }
  const store = values.store ?? 'dynalite';
  if (store !== 'dynalite' && store !== 'dynamodb-local') {
    throw new Error(`--store: dynalite or dynamodb-local; got ${store}`);
  }
  process.stderr.write(`store: ${store}\n`);
  const dynamo = await startHost<{ endpoint: string }>('./dynamo-host.ts', { BENCH_STORE: store });
  const host = { endpoint: dynamo.info.endpoint, stop: dynamo.stop };
  const admin = new DynamoDBClient({ ...LOCAL_AWS, endpoint: host.endpoint });
  const figures: SystemFigures[] = [];
  try {
    for (const scenario of SCENARIOS.filter((x) => wantedScenarios.includes(x.id))) {
      const systems = SYSTEMS.filter((x) => !scenario.systems || scenario.systems.includes(x.id));
      if (systems.length === 0) continue;
      process.stderr.write(`scenario ${scenario.id}: ${scenario.what}\n`);
      figures.push(...(await runScenario(scenario, systems, host.endpoint, admin, limits, runMs)));
      printTable(figures, process.stderr);
    }
    printTable(figures);
    if (values.json) {
      writeFileSync(values.json, `${JSON.stringify({ quick, limits, systems: figures }, null, 2)}\n`);
      process.stderr.write(`wrote ${values.json}\n`);
    }
  } finally {
    admin.destroy();
    host.stop();
  }
}

async function runScenario(
  scenario: Scenario,
  systems: SystemSpec[],
  endpoint: string,
  admin: DynamoDBClient,
  limits: WorkerConfig['limits'],
  runMs: number,
): Promise<SystemFigures[]> {
  // One judge process per system: a system's bursts must not delay another's arrival stamps. The
  // judges stand for Keap's gateway, which does not share our CPU, so they run at a higher priority.
  const judges = await Promise.all(
    systems.map(() =>
      startHost<{ url: string; control: string }>('./judge-host.ts', {
        BENCH_JUDGE: JSON.stringify({
          limits: { ...limits, tenantMinuteLimit: 10_000, tenantDayLimit: 250_000 },
          jitter: JITTER,
        }),
      }),
    ),
  );
  for (const j of judges) {
    try {
      setPriority(j.pid, -10);
    } catch {
      process.stderr.write('  (could not raise a judge priority; figures may show scheduling noise)\n');
    }
  }
  const arrivalsOf = async (i: number) => {
    const j = judges[i];
    if (!j) return [];
    const res = await fetch(`${j.info.control}/arrivals`);
    const all = (await res.json()) as Record<string, JudgedArrival[]>;
    return Object.values(all).flat();
  };
  try {
    for (const spec of systems) {
      const table = tableOf(spec, scenario);
      if (spec.system === 'keap-sync') await createLedgerTable(admin, table);
      if (spec.system === 'rate-limiter-flexible') {
        await admin.send(
          new CreateTableCommand({
            TableName: table,
            AttributeDefinitions: [{ AttributeName: 'key', AttributeType: 'S' }],
            KeySchema: [{ AttributeName: 'key', KeyType: 'HASH' }],
            BillingMode: 'PAY_PER_REQUEST',
          }),
        );
        await waitUntilTableExists({ client: admin, maxWaitTime: 30 }, { TableName: table });
      }
    }
    const startAt = Date.now() + 10_000;
    const endAt = startAt + runMs;
    const offsets = scenario.offsets ?? OFFSETS;
    const processes = scenario.fleet?.processes ?? PROCESSES;
    const acquirers = scenario.fleet?.acquirers ?? ACQUIRERS;
    const runs = systems.map((spec, systemIndex) =>
      Promise.all(
        Array.from({ length: processes }, (_, index) => {
          const cfg: WorkerConfig = {
            system: spec.system,
            index,
            totalWorkers: processes * acquirers,
            acquirers,
            endpoint,
            tableName: tableOf(spec, scenario),
            tenant: tenantOf(spec),
            keys: [`${tenantOf(spec)}-key`],
            offsetMs: offsets[index] ?? 0,
            // Systems start 2 s apart so their start-up bursts do not meet on the shared CPU.
            startAt: startAt + systemIndex * 2_000,
            endAt: endAt + systemIndex * 2_000,
            k: spec.k,
            limits,
            // The product's defaults: nothing tuned for the benchmark.
            ledger: scenario.ledger ?? {},
            judgeUrl: judges[systemIndex]?.info.url ?? '',
            syncClock: scenario.align ?? true,
            ...scenario.worker,
          };
          return runWorkerProcess(cfg);
        }),
      ),
    );
    const progress = setInterval(() => {
      const elapsed = Math.max(0, Math.round((Date.now() - startAt) / 1000));
      Promise.all(systems.map((_, i) => arrivalsOf(i))).then(
        (lists) => {
          const parts = systems.map((x, i) => {
            const list = lists[i] ?? [];
            return `${x.name}: ${list.filter((a) => a.ok).length} ok/${list.filter((a) => !a.ok).length} 429`;
          });
          process.stderr.write(`  ${scenario.id} ${elapsed}s/${runMs / 1000}s  ${parts.join('  |  ')}\n`);
        },
        () => undefined,
      );
    }, 15_000);
    const results = await Promise.all(runs);
    clearInterval(progress);
    const lists = await Promise.all(systems.map((_, i) => arrivalsOf(i)));
    return systems.map((spec, i) => figuresOf(scenario, spec, results[i] ?? [], lists[i] ?? [], limits));
  } finally {
    for (const j of judges) j.stop();
  }
}

function tableOf(spec: SystemSpec, scenario: Scenario): string {
  // '+' and '-' must stay apart: clock+3s and clock-3s once shared a table, so -3s started on a spent day.
  const id = scenario.id
    .replace(/\+/g, 'p')
    .replace(/-/g, 'm')
    .replace(/[^a-z0-9]/g, '');
  return `bench_${id}_${spec.system.replace(/[^a-z]/g, '')}_${spec.k}`;
}
function tenantOf(spec: SystemSpec): string {
  return `${spec.system}-k${spec.k}`;
}

function figuresOf(
  scenario: Scenario,
  spec: SystemSpec,
  results: WorkerResult[],
  arrivals: Array<{ t: number; ok: boolean; rule?: string; proc: string; key: string }>,
  limits: { minuteLimit: number; minuteWindowMs: number; dayLimit: number },
): SystemFigures {
  const accepted = arrivals.filter((a) => a.ok);
  const byRule: Record<string, number> = {};
  for (const a of arrivals) if (!a.ok && a.rule) byRule[a.rule] = (byRule[a.rule] ?? 0) + 1;
  const samples: SystemFigures['violationSamples'] = [];
  const lastOk = new Map<string, { t: number; proc: string }>();
  const t0 = arrivals[0]?.t ?? 0;
  for (const a of arrivals) {
    if (a.ok) lastOk.set(a.key, { t: a.t, proc: a.proc });
    else if (samples.length < 10) {
      const prev = lastOk.get(a.key);
      samples.push({
        rule: a.rule ?? '?',
        atMs: a.t - t0,
        proc: a.proc,
        gapMs: prev ? a.t - prev.t : -1,
        prevProc: prev?.proc ?? '',
      });
    }
  }
  const ddb = results.reduce((n, r) => n + r.ddbRequests, 0);
  const setup = results.reduce((n, r) => n + r.setupDdbRequests, 0);
  const errorsByName: Record<string, number> = {};
  for (const r of results) {
    for (const e of r.errors) errorsByName[e] = (errorsByName[e] ?? 0) + 1;
    // Dropped errors repeat the last kind the worker saw.
    const last = r.errors[r.errors.length - 1];
    if (r.errorsDropped && last) errorsByName[last] = (errorsByName[last] ?? 0) + r.errorsDropped;
  }
  return {
    scenario: scenario.id,
    name: spec.name,
    accepted: accepted.length,
    violations: arrivals.length - accepted.length,
    violationsByRule: byRule,
    minuteUtilization: round(
      minuteUtilization(
        accepted.map((a) => a.t),
        limits.minuteLimit,
        limits.minuteWindowMs,
      ),
      3,
    ),
    dayBudgetUsed: round(accepted.length / limits.dayLimit, 3),
    ddbRequestsPerAcceptedCall: accepted.length ? round(ddb / accepted.length, 3) : 0,
    steadyDdbRequestsPerAcceptedCall: accepted.length ? round((ddb - setup) / accepted.length, 3) : 0,
    setupDdbRequests: setup,
    steadyPerCallByKind: (() => {
      const kinds = results.map((r) => r.steadyByKind).filter((k) => k !== undefined);
      if (kinds.length === 0 || accepted.length === 0) return null;
      const per = (f: (k: NonNullable<WorkerResult['steadyByKind']>) => number) =>
        round(kinds.reduce((n, k) => n + f(k), 0) / accepted.length, 2);
      return { writes: per((k) => k.writes), lostRaces: per((k) => k.lostRaces), reads: per((k) => k.reads) };
    })(),
    acquireOverheadP99Ms: round(p99(results.flatMap((r) => r.acquireMs)), 1),
    missedSlots: results.reduce((n, r) => n + r.missedSlots, 0),
    refused: results.reduce((n, r) => n + (r.refused ?? 0), 0),
    maxSendLatenessMs: round(Math.max(0, ...results.map((r) => r.maxLatenessMs ?? 0)), 1),
    errors: results.reduce((n, r) => n + r.errors.length + (r.errorsDropped ?? 0), 0),
    errorsByName,
    violationSamples: samples,
    clockCorrectionsMs: results.map((r) => r.clockCorrectionMs),
    clockCorrectionsAtStartMs: results.map((r) => r.correctionAtStartMs ?? 0),
  };
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

function printTable(rows: SystemFigures[], out: NodeJS.WriteStream = process.stdout): void {
  const head = [
    'scenario',
    'system',
    'accepted',
    'violations',
    'minuteUtil',
    'dayUsed',
    'ddbReq/call',
    '(steady)',
    'wr/lost/rd',
    'acquireP99ms',
    'missed',
    'refused',
    'maxLateMs',
    'errors',
  ];
  const lines = rows.map((r) => [
    r.scenario,
    r.name,
    String(r.accepted),
    `${r.violations}${
      r.violations
        ? ` (${Object.entries(r.violationsByRule)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')})`
        : ''
    }`,
    r.minuteUtilization.toFixed(3),
    r.dayBudgetUsed.toFixed(3),
    r.ddbRequestsPerAcceptedCall.toFixed(3),
    r.steadyDdbRequestsPerAcceptedCall.toFixed(3),
    r.steadyPerCallByKind
      ? `${r.steadyPerCallByKind.writes.toFixed(2)}/${r.steadyPerCallByKind.lostRaces.toFixed(2)}/${r.steadyPerCallByKind.reads.toFixed(2)}`
      : '-',
    r.acquireOverheadP99Ms.toFixed(1),
    String(r.missedSlots),
    String(r.refused),
    r.maxSendLatenessMs.toFixed(1),
    Object.entries(r.errorsByName)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ') || '0',
  ]);
  out.write(`${formatTable(head, lines, { align: head.map(() => 'left') })}
`);
  out.write(
    'ddbReq/call counts every DynamoDB request (failed writes, reads and the one-time start-up clock\n' +
      'alignment); (steady) leaves the alignment out, and wr/lost/rd splits it per call into successful\n' +
      'writes, writes that lost a race and reads. missed = slots not sent (woken too late, or refused\n' +
      "by the ledger's last check before the request was written: refused), given back. maxLateMs = the\n" +
      'latest an admitted call left after its slot (the tolerance is 50 ms; the spike margin 150 ms).\n',
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:quota failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
