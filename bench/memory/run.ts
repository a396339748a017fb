// Benchmark: `npm run bench:memory` (prints a table; not a test). The resident memory of the whole local
// system, `keap-sync run --until-idle` (what `npm start -- --until-idle` runs), during a first full sync of
// the sandbox at several dataset sizes: the process tree's RSS, sampled from /proc, and its peak.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatTable } from '#harness/cli/table.ts';
import { type SandboxProcess, startSandboxProcess } from '#harness/sandbox/process.ts';

const HERE = fileURLToPath(new URL('../../', import.meta.url));

const HELP = `Usage: npm run bench:memory -- [options]

For each dataset size, spawns "keap-sync run --until-idle --contacts N" (bin/keap-sync.ts, the whole
local system: embedded dynalite on disk, fauxqs, the Secrets Manager stub, the Keap sandbox, the
scheduler and the workers) in a fresh data folder, samples the resident memory of its process tree
from /proc every --every-ms, and prints the peak RSS, the RSS at the end, the wall time and the
records the mirror holds (from the run's closing status).

Options
  --contacts <list>   dataset sizes (default 5000,20000)
  --every-ms <ms>     sampling interval (default 200)
  --node-args <args>  extra node flags for the run, e.g. "--heap-prof" (default none)
  --root <dir>        the keap-sync checkout to run (default this one; e.g. another worktree, to
                      compare before and after)
  --timeout-s <s>     stop a run that is not idle after this long (SIGTERM; default 900)
  --sandbox-process   run the sandbox in a process of its own (given to keap-sync as the real Keap,
                      through KEAP_API_KEY and KEAP_API_BASE_URL) and report its memory apart: the
                      "peak RSS" column is then keap-sync's alone (dynalite, fauxqs, the Secrets
                      Manager stub, the scheduler and the workers)
  --keep              keep the data folders (printed)
  --json <file>       also write the figures as JSON
  --help              this text

Example
  npm run bench:memory -- --contacts 5000,20000,100000
  npm run bench:memory -- --contacts 100000 --sandbox-process --timeout-s 4200
`;

/** Resident set of one process, in bytes (0 when it is gone). */
function rssOf(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** The pids below `root` (children, grandchildren, ...), from /proc's parent links. */
function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(name), ppid);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const [pid, pp] of parent) {
      if (pp === p) {
        out.push(pid);
        walk(pid);
      }
    }
  };
  walk(root);
  return out;
}

interface Figures {
  contacts: number;
  peakRssBytes: number;
  endRssBytes: number;
  /** --sandbox-process: the sandbox's own peak and final RSS. */
  sandboxPeakRssBytes?: number;
  sandboxEndRssBytes?: number;
  seconds: number;
  records: number | undefined;
  exitCode: number | null;
  /** idle: stopped by itself, every resource in sync; timeout: stopped by this benchmark. */
  ended: 'idle' | 'timeout' | 'failed';
  dataDir: string;
}

async function measure(
  root: string,
  contacts: number,
  everyMs: number,
  nodeArgs: string[],
  keep: boolean,
  timeoutS: number,
  sandboxProcess: boolean,
): Promise<Figures> {
  const BIN = join(root, 'bin', 'keap-sync.ts');
  const dataDir = mkdtempSync(join(tmpdir(), `keap-sync-mem-${contacts}-`));
  const env: NodeJS.ProcessEnv = { KEAP_SYNC_CONFIG_FILE: join(root, 'keap-sync.config.json') };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KEAP_')) env[k] = v;
  let sandbox: SandboxProcess | undefined;
  if (sandboxProcess) {
    sandbox = await startSandboxProcess(['--contacts', String(contacts)]);
    env.KEAP_API_KEY = sandbox.keys[0]?.key ?? '';
    env.KEAP_API_BASE_URL = sandbox.baseUrl;
  }
  const started = Date.now();
  const child = spawn(
    process.execPath,
    [...nodeArgs, BIN, 'run', '--until-idle', '--contacts', String(contacts), '--data-dir', dataDir],
    { cwd: dataDir, stdio: ['ignore', 'pipe', 'pipe'], env },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString('utf8');
  });
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString('utf8');
  });
  let peak = 0;
  let last = 0;
  let sandboxPeak = 0;
  let sandboxLast = 0;
  const sample = (): void => {
    const pid = child.pid;
    if (pid === undefined) return;
    const total = [pid, ...descendants(pid)].reduce((sum, p) => sum + rssOf(p), 0);
    if (total > 0) last = total;
    peak = Math.max(peak, total);
    if (sandbox) {
      const own = rssOf(sandbox.pid);
      if (own > 0) sandboxLast = own;
      sandboxPeak = Math.max(sandboxPeak, own);
    }
  };
  const timer = setInterval(sample, everyMs);
  // Progress on stderr once a minute: the run's own head line (time and Keap calls) and memory so far.
  const gb = (b: number) => (b / 1024 ** 3).toFixed(2);
  const progress = setInterval(() => {
    const heads = [...stdout.slice(-20_000).matchAll(/keap-sync running \d+s\s+Keap calls: \d+/g)];
    const head = heads.at(-1)?.[0] ?? 'starting';
    process.stderr.write(
      `  --contacts ${contacts}: ${head}; RSS ${gb(last)} GB (peak ${gb(peak)})` +
        (sandbox ? `, sandbox ${gb(sandboxLast)} GB` : '') +
        '\n',
    );
  }, 60_000);
  let timedOut = false;
  const limit = setTimeout(() => {
    timedOut = true;
    child.kill('SIGTERM');
    // A run whose invocation hangs never finishes stopping its poller: end it after a grace period.
    setTimeout(() => child.kill('SIGKILL'), 30_000).unref();
  }, timeoutS * 1000);
  const exitCode = await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  clearInterval(timer);
  clearInterval(progress);
  clearTimeout(limit);
  const seconds = (Date.now() - started) / 1000;
  await sandbox?.stop();
  if (exitCode !== 0)
    process.stderr.write(`run --contacts ${contacts} exited ${exitCode}:\n${stderr.slice(-2000)}\n`);
  // The closing status table: "<resource>  <records> ..." lines; sum the records column.
  const records = sumRecords(stdout);
  if (!keep) rmSync(dataDir, { recursive: true, force: true });
  const ended = timedOut ? 'timeout' : stdout.includes('queue drained') ? 'idle' : 'failed';
  return {
    contacts,
    peakRssBytes: peak,
    endRssBytes: last,
    ...(sandbox ? { sandboxPeakRssBytes: sandboxPeak, sandboxEndRssBytes: sandboxLast } : {}),
    seconds,
    records,
    exitCode,
    ended,
    dataDir,
  };
}

function sumRecords(stdout: string): number | undefined {
  const tail = stdout.slice(stdout.lastIndexOf('keap-sync stopped'));
  let total = 0;
  let seen = false;
  for (const line of tail.split('\n')) {
    const m =
      /^\s*(contacts|companies|orders|opportunities|tags|tagApplications|notes|tasks|products|subscriptions|users)\s+(?:in-sync|never-synced|syncing p\d+)\s+([\d,]+)/.exec(
        line,
      );
    if (m?.[2]) {
      total += Number(m[2].replaceAll(',', ''));
      seen = true;
    }
  }
  return seen ? total : undefined;
}

function gitHead(root: string): string {
  try {
    return execFileSync('git', ['-C', root, 'log', '-1', '--format=%h %s'], { encoding: 'utf8' })
      .trim()
      .slice(0, 80);
  } catch {
    return 'not a git checkout';
  }
}

const gb = (b: number): string => (b / 1024 ** 3).toFixed(2);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      contacts: { type: 'string' },
      'every-ms': { type: 'string' },
      'node-args': { type: 'string' },
      keep: { type: 'boolean' },
      root: { type: 'string' },
      'timeout-s': { type: 'string' },
      'sandbox-process': { type: 'boolean' },
      json: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const sizes = (values.contacts ?? '5000,20000').split(',').map((s) => Number(s.trim()));
  if (sizes.some((n) => !Number.isInteger(n) || n < 0))
    throw new Error('--contacts: whole numbers, comma-separated.');
  const everyMs = Number(values['every-ms'] ?? 200);
  const root = values.root ?? HERE;
  const timeoutS = Number(values['timeout-s'] ?? 900);
  process.stdout.write(`keap-sync at ${root} (${gitHead(root)})\n`);
  const nodeArgs = (values['node-args'] ?? '').split(' ').filter((s) => s !== '');
  const rows: Figures[] = [];
  for (const n of sizes) {
    process.stderr.write(`measuring --contacts ${n} ...\n`);
    rows.push(
      await measure(
        root,
        n,
        everyMs,
        nodeArgs,
        values.keep === true,
        timeoutS,
        values['sandbox-process'] === true,
      ),
    );
  }
  const split = values['sandbox-process'] === true;
  if (split) process.stdout.write('RSS columns: keap-sync alone; the sandbox ran in a process of its own\n');
  process.stdout.write(
    `${formatTable(
      [
        'contacts',
        'records synced',
        'peak RSS (GB)',
        'RSS at end (GB)',
        ...(split ? ['sandbox peak (GB)', 'sandbox at end (GB)'] : []),
        'wall (s)',
        'ended',
      ],
      rows.map((r) => [
        r.contacts.toLocaleString('en-US'),
        r.records === undefined ? '-' : r.records.toLocaleString('en-US'),
        gb(r.peakRssBytes),
        gb(r.endRssBytes),
        ...(split ? [gb(r.sandboxPeakRssBytes ?? 0), gb(r.sandboxEndRssBytes ?? 0)] : []),
        r.seconds.toFixed(1),
        r.ended,
      ]),
    )}\n`,
  );
  if (values.keep)
    for (const r of rows) process.stdout.write(`data folder for ${r.contacts}: ${r.dataDir}\n`);
  if (values.json) writeFileSync(values.json, `${JSON.stringify(rows, null, 2)}\n`);
}

await main();
