// Benchmark: `npm run bench:run` (prints tables; not a test). The whole local system as an operator runs
// it (`keap-sync run`, spawned), against a Keap sandbox started here with Keap's real limits and given
// to `run` as the real Keap (KEAP_API_KEY / KEAP_API_BASE_URL), so every call, and every 429, is seen.
//   1. First full sync of the dataset with 1, 4 and 16 workers: wall time and Keap calls.
//   2. Idle cost: after an initial sync, the system runs with nothing changing; calls per scheduler
//      tick and per due resource, and the calls per hour that means at keap-sync.config.json's intervals.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { StatusReport } from '#harness/cli/status.ts';
import { formatTable } from '#harness/cli/table.ts';
import { type ArrivalRecord, type RunningSandbox, startSandbox } from '#harness/sandbox/index.ts';
import { SYNC_RESOURCES } from '#shared/jobs/schema.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'keap-sync.ts');
const CONFIG_FILE = join(ROOT, 'keap-sync.config.json');

const HELP = `Usage: npm run bench:run -- [options]

Spawns "keap-sync run" (bin/keap-sync.ts) against a Keap sandbox this benchmark starts (seed 1, Keap's
real limits: 10 calls/s spike, 240 per rolling minute, 30,000 per day) and gives to run as the real
Keap through KEAP_API_KEY and KEAP_API_BASE_URL, so it counts every call and every 429.

  1. First full sync with 1, 4 and 16 workers (run --until-idle --concurrency C, a fresh data folder
     and a fresh sandbox each): wall time (spawn to exit), the run's own time, Keap calls by status,
     the busiest second and rolling minute, and a check that the mirror equals the dataset.
  2. Idle cost: a fresh sandbox and data folder, a temporary copy of keap-sync.config.json with every
     resource at everyMinutes 1 (the shortest interval the configuration allows), an initial sync,
     then "run --schedule-seconds <tick>" for <idle> seconds with nothing changing in Keap. Measured:
     scheduler ticks, resources enqueued per tick, Keap calls per tick and per due resource, and the
     interval at which each resource was actually synced. Then COMPUTED (not measured): the calls
     per hour and per day at keap-sync.config.json's own intervals, from the measured calls per due
     resource, both at the nominal intervals and at the intervals the scheduler actually keeps.

Options
  --contacts <n>        dataset size (default 5000)
  --workers <list>      worker counts for part 1 (default 1,4,16)
  --tick-seconds <s>    scheduler interval for part 2 (default 20)
  --idle-seconds <s>    how long part 2 runs idle (default 230)
  --skip-full           part 2 only      --skip-idle   part 1 only
  --json <file>         also write the figures as JSON
  --help                this text

Example
  npm run bench:run -- --json bench/results/run.json
`;

interface Spawned {
  child: ChildProcess;
  stdout(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

function childEnv(sandbox: RunningSandbox): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('KEAP_') && !k.startsWith('AWS_ENDPOINT_URL')) env[k] = v;
  env.PATH = `${join(ROOT, 'node_modules', '.bin')}:${process.env.PATH ?? ''}`;
  env.KEAP_API_KEY = sandbox.keys[0]?.key ?? '';
  env.KEAP_API_BASE_URL = sandbox.baseUrl;
  return env;
}

function keapSync(args: readonly string[], env: NodeJS.ProcessEnv): Spawned {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const exited = new Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
  }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, stdout: () => stdout, exited };
}

async function mustSucceed(s: Spawned, what: string): Promise<string> {
  const r = await s.exited;
  if (r.code !== 0)
    throw new Error(
      `${what} exited ${r.code ?? r.signal}:\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`,
    );
  return r.stdout;
}

async function status(dataDir: string, env: NodeJS.ProcessEnv): Promise<StatusReport> {
  return JSON.parse(
    await mustSucceed(keapSync(['status', '--json', '--data-dir', dataDir], env), 'status'),
  ) as StatusReport;
}

/** Most arrivals in any window of `ms` (arrival times are the sandbox's stamps). */
function peak(arrivals: readonly ArrivalRecord[], ms: number): number {
  const t = arrivals.map((a) => a.t).sort((a, b) => a - b);
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < t.length; hi++) {
    while ((t[hi] ?? 0) - (t[lo] ?? 0) >= ms) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}

function datasetMatches(report: StatusReport, sandbox: RunningSandbox): boolean {
  const resources = report.accounts[0]?.resources ?? [];
  return (
    report.inSync &&
    resources.length === SYNC_RESOURCES.length &&
    resources.every((r) => r.state === 'in-sync' && r.records === sandbox.dataset.table(r.resource).size)
  );
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'keap-sync-bench-run-'));
}

// ---------------------------------------------------------------------------------------------------
// Part 1: first full sync.

interface FullSync {
  workers: number;
  wallSeconds: number;
  runSeconds: number;
  keapWindowSeconds: number;
  calls: number;
  ok: number;
  rateLimited: number;
  otherStatus: number;
  peakPerSecond: number;
  peakPerMinute: number;
  deferrals: number;
  deadLetters: number;
  records: number;
  mirrorComplete: boolean;
}

async function fullSync(contacts: number, workers: number): Promise<FullSync> {
  const sandbox = await startSandbox({ contacts, seed: 1 });
  const dir = tempDir();
  try {
    const env = childEnv(sandbox);
    const dataDir = join(dir, 'data');
    const started = performance.now();
    const out = await mustSucceed(
      keapSync(['run', '--until-idle', '--concurrency', String(workers), '--data-dir', dataDir], env),
      `run --concurrency ${workers}`,
    );
    const wallSeconds = (performance.now() - started) / 1000;
    const closing =
      /keap-sync stopped .*after ([\d.]+)s {3}Keap calls: (\d+) {3}deferrals: (\d+) {3}dead letters: (\d+)/.exec(
        out,
      );
    const report = await status(dataDir, env);
    const a = sandbox.arrivals;
    const times = a.map((x) => x.t);
    return {
      workers,
      wallSeconds,
      runSeconds: Number(closing?.[1] ?? Number.NaN),
      keapWindowSeconds: times.length ? (Math.max(...times) - Math.min(...times)) / 1000 : 0,
      calls: a.length,
      ok: a.filter((x) => x.status === 200).length,
      rateLimited: a.filter((x) => x.status === 429).length,
      otherStatus: a.filter((x) => x.status !== 200 && x.status !== 429).length,
      peakPerSecond: peak(a, 1_000),
      peakPerMinute: peak(a, 60_000),
      deferrals: Number(closing?.[3] ?? Number.NaN),
      deadLetters: Number(closing?.[4] ?? Number.NaN),
      records: (report.accounts[0]?.resources ?? []).reduce((n, r) => n + r.records, 0),
      mirrorComplete: datasetMatches(report, sandbox),
    };
  } finally {
    await sandbox.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------
// Part 2: idle cost.

interface LogLine {
  time: string;
  message: string;
  resource?: string;
  enqueued?: number;
}

interface Idle {
  tickSeconds: number;
  idleSeconds: number;
  initialSyncCalls: number;
  ticks: Array<{ atSeconds: number; enqueued: number; calls: number }>;
  calls: number;
  dueResources: number;
  callsPerTick: number;
  callsPerDueResource: number;
  callsOnTicksWithNothingDue: number;
  callsPerDueSyncByResource: Record<string, number>;
  /** Seconds between consecutive finished syncs of each resource (everyMinutes 1 = 60 s configured). */
  measuredIntervalSeconds: Record<string, number[]>;
  rateLimited: number;
}

async function idleCost(contacts: number, tickSeconds: number, idleSeconds: number): Promise<Idle> {
  const sandbox = await startSandbox({ contacts, seed: 1 });
  const dir = tempDir();
  try {
    const env = childEnv(sandbox);
    const dataDir = join(dir, 'data');
    const config = JSON.parse(readFileSync(CONFIG_FILE, 'utf8')) as {
      accounts: Array<{ resources: Record<string, { everyMinutes: number }> }>;
    };
    for (const a of config.accounts) for (const r of Object.values(a.resources)) r.everyMinutes = 1;
    const configFile = join(dir, 'every-minute.config.json');
    writeFileSync(configFile, JSON.stringify(config, null, 2));

    await mustSucceed(
      keapSync(['run', '--until-idle', '--config', configFile, '--data-dir', dataDir], env),
      'initial sync',
    );
    const initialSyncCalls = sandbox.arrivals.length;
    const logFile = join(dataDir, 'keap-sync.log');
    const logFrom = readFileSync(logFile).length;

    const idle = keapSync(
      ['run', '--config', configFile, '--schedule-seconds', String(tickSeconds), '--data-dir', dataDir],
      env,
    );
    await sleep(idleSeconds * 1000);
    idle.child.kill('SIGTERM');
    await mustSucceed(idle, 'idle run');

    const lines = readFileSync(logFile)
      .subarray(logFrom)
      .toString('utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as LogLine);
    const calls = sandbox.arrivals.slice(initialSyncCalls);
    const tickLines = lines.filter((l) => l.message === 'Scheduler run');
    const t0 = Date.parse(tickLines[0]?.time ?? '');
    // The "Scheduler run" line is written after the jobs are enqueued, and workers may call Keap a
    // moment before it: an arrival belongs to the last tick logged up to 2 s after it.
    const tickTimes = tickLines.map((l) => Date.parse(l.time));
    const ticks = tickLines.map((l, i) => ({
      atSeconds: Math.round((Date.parse(l.time) - t0) / 100) / 10,
      enqueued: l.enqueued ?? 0,
      calls: calls.filter((a) => {
        let owner = 0;
        tickTimes.forEach((t, j) => {
          if (t <= a.t + 2_000) owner = j;
        });
        return owner === i;
      }).length,
    }));
    const dueResources = ticks.reduce((n, t) => n + t.enqueued, 0);
    const finished = lines.filter((l) => l.message === 'Sync finished');
    const measuredIntervalSeconds: Record<string, number[]> = {};
    const callsPerDueSyncByResource: Record<string, number> = {};
    for (const r of SYNC_RESOURCES) {
      const at = finished.filter((l) => l.resource === r).map((l) => Date.parse(l.time));
      measuredIntervalSeconds[r] = at.slice(1).map((t, i) => Math.round((t - (at[i] ?? t)) / 100) / 10);
      const n = calls.filter((a) => a.path.endsWith(`/rest/v2/${r}`)).length;
      callsPerDueSyncByResource[r] = at.length ? n / at.length : Number.NaN;
    }
    return {
      tickSeconds,
      idleSeconds,
      initialSyncCalls,
      ticks,
      calls: calls.length,
      dueResources,
      callsPerTick: ticks.length ? calls.length / ticks.length : 0,
      callsPerDueResource: dueResources ? calls.length / dueResources : Number.NaN,
      callsOnTicksWithNothingDue: ticks.filter((t) => t.enqueued === 0).reduce((n, t) => n + t.calls, 0),
      callsPerDueSyncByResource,
      measuredIntervalSeconds,
      rateLimited: calls.filter((a) => a.status === 429).length,
    };
  } finally {
    await sandbox.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * COMPUTED from the measured calls per due resource: calls per hour at keap-sync.config.json's
 * intervals. "nominal": each resource synced exactly every everyMinutes. "as scheduled": the scheduler
 * runs every scheduler.everyMinutes (P) and a resource is due once everyMinutes (I), less half a tick
 * (min(P, I) / 2), have passed since its last run FINISHED, a moment after the tick that enqueued it;
 * so it is next enqueued k ticks later, k = max(1, ceil((I - min(P, I) / 2) / P)) (the part-2
 * measurement checks this rule at P = tick seconds, I = 60 s).
 */
function extrapolate(callsPerDue: Record<string, number>, fallback: number) {
  const config = JSON.parse(readFileSync(CONFIG_FILE, 'utf8')) as {
    accounts: Array<{ resources: Record<string, { everyMinutes: number }> }>;
    scheduler?: { everyMinutes?: number };
  };
  const P = config.scheduler?.everyMinutes ?? 5;
  const rows: Array<{
    resource: string;
    everyMinutes: number;
    scheduledEveryMinutes: number;
    callsPerSync: number;
    nominalPerHour: number;
    scheduledPerHour: number;
  }> = [];
  for (const a of config.accounts) {
    for (const [resource, s] of Object.entries(a.resources)) {
      const c = Number.isFinite(callsPerDue[resource]) ? (callsPerDue[resource] ?? fallback) : fallback;
      const threshold = s.everyMinutes - Math.min(P, s.everyMinutes) / 2;
      const scheduled = P * Math.max(1, Math.ceil(threshold / P));
      rows.push({
        resource,
        everyMinutes: s.everyMinutes,
        scheduledEveryMinutes: scheduled,
        callsPerSync: c,
        nominalPerHour: (60 / s.everyMinutes) * c,
        scheduledPerHour: (60 / scheduled) * c,
      });
    }
  }
  const nominalPerHour = rows.reduce((n, r) => n + r.nominalPerHour, 0);
  const scheduledPerHour = rows.reduce((n, r) => n + r.scheduledPerHour, 0);
  return { schedulerEveryMinutes: P, rows, nominalPerHour, scheduledPerHour };
}

function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a whole number of 1 or more`);
  return n;
}

const f = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : '-');

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      contacts: { type: 'string' },
      workers: { type: 'string' },
      'tick-seconds': { type: 'string' },
      'idle-seconds': { type: 'string' },
      'skip-full': { type: 'boolean' },
      'skip-idle': { type: 'boolean' },
      json: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const contacts = positive('contacts', values.contacts, 5000);
  const workers = (values.workers ?? '1,4,16').split(',').map((w) => positive('workers', w, 1));
  const tickSeconds = positive('tick-seconds', values['tick-seconds'], 20);
  const idleSeconds = positive('idle-seconds', values['idle-seconds'], 230);
  const out: Record<string, unknown> = {
    machine: { cpus: cpus().length, node: process.version },
    dataset: { seed: 1, contacts },
  };
  process.stdout.write(
    `keap-sync run benchmark: sandbox seed 1, ${contacts} contacts, Keap's real limits (10/s spike, 240 per ` +
      `rolling minute, 30,000 per day), ${cpus().length} CPUs, Node ${process.version}.\n` +
      'Keap calls = requests the sandbox received from "keap-sync run" (given as the real Keap).\n\n',
  );

  if (!values['skip-full']) {
    const runs: FullSync[] = [];
    for (const w of workers) {
      process.stderr.write(`full sync with ${w} worker(s)...\n`);
      runs.push(await fullSync(contacts, w));
    }
    out.fullSync = runs;
    process.stdout.write(
      `1. First full sync (run --until-idle --concurrency C, fresh data folder and sandbox each)\n\n${formatTable(
        [
          'workers',
          'wall s',
          'run s',
          'Keap window s',
          'Keap calls',
          '200',
          '429',
          'other',
          'peak/1s',
          'peak/60s',
          'deferrals',
          'dead letters',
          'records',
          'mirror = dataset',
        ],
        runs.map((r) => [
          String(r.workers),
          f(r.wallSeconds, 1),
          f(r.runSeconds, 1),
          f(r.keapWindowSeconds, 1),
          String(r.calls),
          String(r.ok),
          String(r.rateLimited),
          String(r.otherStatus),
          String(r.peakPerSecond),
          String(r.peakPerMinute),
          String(r.deferrals),
          String(r.deadLetters),
          String(r.records),
          r.mirrorComplete ? 'yes' : 'NO',
        ]),
      )}\n` +
        'wall s: spawn to exit (start-up, sync, shutdown); run s: the run\'s own "stopped after"; Keap window s:\n' +
        'first to last call at the sandbox. Records are written to the embedded dynalite of the data folder.\n\n',
    );
  }

  if (!values['skip-idle']) {
    process.stderr.write(`idle cost: initial sync, then ${idleSeconds} s idle...\n`);
    const idle = await idleCost(contacts, tickSeconds, idleSeconds);
    const ex = extrapolate(idle.callsPerDueSyncByResource, idle.callsPerDueResource);
    out.idle = idle;
    out.extrapolation = ex;
    const intervals = Object.entries(idle.measuredIntervalSeconds)
      .map(([r, s]) => `${r} ${s.length ? s.join('/') : '-'}`)
      .join(', ');
    process.stdout.write(
      `2. Idle cost (MEASURED): every resource at everyMinutes 1, scheduler every ${tickSeconds} s, ${idleSeconds} s ` +
        `with nothing changing (after an initial sync of ${idle.initialSyncCalls} calls)\n\n${formatTable(
          ['tick', 'at s', 'resources enqueued', 'Keap calls'],
          idle.ticks.map((t, i) => [String(i + 1), f(t.atSeconds, 1), String(t.enqueued), String(t.calls)]),
        )}\n\n` +
        `scheduler ticks: ${idle.ticks.length}   Keap calls: ${idle.calls}   due resources (syncs): ${idle.dueResources}   ` +
        `429s: ${idle.rateLimited}\n` +
        `calls per tick: ${f(idle.callsPerTick)} (mean over all ticks)   calls per due resource: ${f(idle.callsPerDueResource)}   ` +
        `calls on ticks with nothing due: ${idle.callsOnTicksWithNothingDue}\n` +
        `measured seconds between syncs of each resource (configured: 60): ${intervals}\n` +
        `the scheduling rule of part 3 predicts ${tickSeconds * Math.max(1, Math.ceil((60 - Math.min(tickSeconds, 60) / 2) / tickSeconds))} s at a ${tickSeconds} s tick ` +
        '(a resource is due at the first tick at least everyMinutes, less half a tick, after its last run finished)\n\n' +
        `3. Idle cost at keap-sync.config.json's intervals (COMPUTED from the measured calls per due sync; ` +
        `scheduler every ${ex.schedulerEveryMinutes} min)\n\n${formatTable(
          [
            'resource',
            'everyMinutes',
            'calls/sync (measured)',
            'calls/h nominal',
            'synced every (as scheduled)',
            'calls/h as scheduled',
          ],
          ex.rows.map((r) => [
            r.resource,
            String(r.everyMinutes),
            f(r.callsPerSync),
            f(r.nominalPerHour),
            `${r.scheduledEveryMinutes} min`,
            f(r.scheduledPerHour),
          ]),
        )}\n\n` +
        `COMPUTED calls per hour, nominal (each resource exactly every everyMinutes): ${f(ex.nominalPerHour)} ` +
        `(${f(ex.nominalPerHour * 24, 0)} per day, ${f((ex.nominalPerHour * 24 * 100) / 30_000, 1)}% of 30,000)\n` +
        `COMPUTED calls per hour, as scheduled (next tick after everyMinutes have passed since the run finished): ` +
        `${f(ex.scheduledPerHour)} (${f(ex.scheduledPerHour * 24, 0)} per day, ${f((ex.scheduledPerHour * 24 * 100) / 30_000, 1)}% of 30,000)\n` +
        'Extrapolation: everyMinutes is at least 1, so the idle run uses 1 minute for every resource and a short\n' +
        'scheduler tick; an idle incremental sync reads one page per resource whatever its interval, so the calls\n' +
        'per due sync measured here carry over to the configured intervals; only the number of syncs per hour\n' +
        'changes. The "as scheduled" cadence is the rule the measured intervals above show.\n',
    );
  }
  if (values.json) {
    writeFileSync(values.json, `${JSON.stringify(out, null, 2)}\n`);
    process.stdout.write(`\nFigures written to ${values.json}\n`);
  }
}

await main();
