// `npm run test:under-load`: the whole suite (`npm test`) run several times in a row beside CPU hogs
// (busy-looping processes), the way a busy CI machine would run it. Prints each run's
// "N passed, N failed", its time and the files that failed; exits non-zero if any run failed.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';

const HELP = `Usage: npm run test:under-load -- [options] [vitest filters...]

Runs "vitest run" --runs times in a row while --hogs processes each keep one CPU busy, and prints
each run's "N passed, N failed", its wall time and the files that failed. Exits 1 if any run failed.

Options
  --runs <n>   runs in a row (default 3)
  --hogs <n>   busy-looping processes beside the suite (default 1; this machine has ${cpus().length} CPUs)
  --help       this text

Example
  npm run test:under-load                       # the whole suite, 3 times, beside one hog
  npm run test:under-load -- --runs 5 test/pipeline
`;

interface VitestJson {
  numPassedTests: number;
  numFailedTests: number;
  testResults: Array<{ name: string; status: string; assertionResults: unknown[] }>;
}

function wholeNumber(name: string, value: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new Error(`--${name} must be a whole number >= ${min} (got "${value}")`);
  return n;
}

function startHog(): ChildProcess {
  // A busy loop with no I/O: one CPU taken for as long as it runs.
  return spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
}

function runSuite(filters: string[], outputFile: string): Promise<number> {
  const vitest = join(import.meta.dirname, '..', 'node_modules', 'vitest', 'vitest.mjs');
  const args = [
    vitest,
    'run',
    '--reporter=dot',
    '--reporter=json',
    `--outputFile.json=${outputFile}`,
    ...filters,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    child.once('error', reject);
    child.once('exit', (code) => resolve(code ?? 1));
  });
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    options: { runs: { type: 'string' }, hogs: { type: 'string' }, help: { type: 'boolean' } },
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const runs = wholeNumber('runs', values.runs ?? '3', 1);
  const hogCount = wholeNumber('hogs', values.hogs ?? '1', 0);
  const dir = mkdtempSync(join(tmpdir(), 'keap-sync-under-load-'));
  const hogs = Array.from({ length: hogCount }, startHog);
  const stopHogs = () => {
    for (const h of hogs) h.kill('SIGKILL');
  };
  process.once('SIGINT', () => {
    stopHogs();
    process.exit(130);
  });
  const summary: string[] = [];
  let failedRuns = 0;
  try {
    for (let i = 1; i <= runs; i++) {
      process.stdout.write(`\n== run ${i} of ${runs}, beside ${hogCount} CPU hog(s) ==\n`);
      const out = join(dir, `run-${i}.json`);
      const started = Date.now();
      const code = await runSuite(positionals, out);
      const secs = (Date.now() - started) / 1000;
      let line: string;
      try {
        const r = JSON.parse(readFileSync(out, 'utf8')) as VitestJson;
        // A file that failed before any test ran (an import error) counts as one failure.
        const broken = r.testResults.filter((t) => t.status === 'failed' && t.assertionResults.length === 0);
        const failedFiles = r.testResults
          .filter((t) => t.status === 'failed')
          .map((t) => relative(process.cwd(), t.name));
        line = `run ${i}: ${r.numPassedTests} passed, ${r.numFailedTests + broken.length} failed in ${secs.toFixed(0)} s`;
        if (failedFiles.length > 0) line += ` (failed: ${failedFiles.join(', ')})`;
      } catch {
        line = `run ${i}: vitest exited ${code} without results in ${secs.toFixed(0)} s`;
      }
      if (code !== 0) failedRuns++;
      summary.push(line);
      process.stdout.write(`${line}\n`);
    }
  } finally {
    stopHogs();
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(
    `\n${summary.join('\n')}\n${runs - failedRuns} of ${runs} runs passed beside ${hogCount} CPU hog(s)\n`,
  );
  return failedRuns === 0 ? 0 : 1;
}

try {
  process.exitCode = await main();
} catch (err) {
  // Bad options: the message and the help's first line, no stack.
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${HELP.split('\n')[0]}\n`);
  process.exitCode = 2;
}
