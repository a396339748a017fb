// Every command answers --help with its usage and examples (exit 0, nothing started or written); an
// unknown command, or none, is a usage error (exit 2).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, test } from 'vitest';
import { ROOT, removeTempDirs, runCli, tempDir } from './support.ts';

afterAll(removeTempDirs);

const COMMANDS = ['run', 'status', 'enqueue', 'dlq', 'estimate', 'hooks'];
/** Every keap-sync command here runs in this empty folder, where the default data folder (.data) would be. */
const CWD = tempDir();
const CONFIG = join(ROOT, 'keap-sync.config.json');
const cli = (args: string[]) => runCli(args, { cwd: CWD, timeoutMs: 30_000 });

describe('--help and unknown commands', () => {
  test.for(COMMANDS)('keap-sync %s --help: usage with examples, exit 0', async (command, { expect }) => {
    const r = await cli([command, '--help']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(new RegExp(`^Usage: keap-sync ${command}`));
    expect(r.stdout).toContain('Examples');
    // Every example is a keap-sync or npm command line.
    const examples = r.stdout.slice(r.stdout.indexOf('Examples')).split('\n').slice(1).filter(Boolean);
    expect(examples.length).toBeGreaterThanOrEqual(2);
    for (const e of examples) expect(e).toMatch(/^\s+(\S+=\S+ )*(keap-sync|npm start|echo .*\| keap-sync)/);
    // The options every command shares are described.
    expect(r.stdout).toContain('--data-dir <dir>');
    expect(r.stdout).toContain('--help');
  });

  test.for(['--help', '-h', 'help'])('keap-sync %s: the command list, exit 0', async (flag, { expect }) => {
    const r = await cli([flag]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^keap-sync: keeps your systems in sync with Keap/);
    for (const c of [...COMMANDS, 'sandbox']) expect(r.stdout).toMatch(new RegExp(`^ {2}${c} `, 'm'));
    expect(r.stdout).toContain('Run "keap-sync <command> --help"');
  });

  test('keap-sync sandbox --help: the sandbox options with examples, exit 0', async ({ expect }) => {
    const r = await cli(['sandbox', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Keap sandbox');
    expect(r.stdout).toContain('Usage:');
    expect(r.stdout).toContain('Examples');
    expect(r.stdout).toContain('--contacts <n>');
  });

  test('npm start -- --help is the run command help, exit 0', async ({ expect }) => {
    const r = await runCli(['start', '--', '--help'], { command: 'npm', timeoutMs: 60_000 });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: keap-sync run [options]');
    expect(r.stdout).toContain('--until-idle');
  });

  test('an unknown command: a message naming it, exit 2', async ({ expect }) => {
    const r = await cli(['strat']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('keap-sync: unknown command "strat". Run "keap-sync --help".\n');
  });

  test('no command at all: the command list, exit 2', async ({ expect }) => {
    const r = await cli([]);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('Usage: keap-sync <command> [options]');
  });

  test('the estimate examples of the help run as shown', async ({ expect }) => {
    const table = await cli(['estimate', '--contacts', '250000', '--config', CONFIG]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^Estimate for 250000 contacts/);
    expect(table.stdout).toMatch(/full sync: +\d+ calls/);
    const json = await cli([
      'estimate',
      '--contacts',
      '20000',
      '--changes',
      '500',
      '--json',
      '--config',
      CONFIG,
    ]);
    expect(json.code).toBe(0);
    const e = JSON.parse(json.stdout) as {
      contacts: number;
      fullSync: { calls: number };
      perResource: unknown[];
    };
    expect(e.contacts).toBe(20000);
    expect(e.perResource).toHaveLength(11);
    // A full read costs at least one call per 1,000 contacts.
    expect(e.fullSync.calls).toBeGreaterThanOrEqual(20);
    // The reconciliation sweep: a page of ids per call, once a day by default.
    const sweep = (
      e as unknown as { sweep: { everyHours: number; callsPerSweep: number; callsPerDay: number } }
    ).sweep;
    expect(sweep.everyHours).toBe(24);
    expect(sweep.callsPerSweep).toBeGreaterThanOrEqual(20);
    expect(sweep.callsPerDay).toBe(sweep.callsPerSweep);
    expect(table.stdout).toMatch(/sweep: +\d+ calls per sweep/);
  });

  test('none of these wrote anything (no data folder in the working folder)', ({ expect }) => {
    expect(readdirSync(CWD)).toEqual([]);
  });
});
