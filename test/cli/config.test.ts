// A bad configuration (file or environment) or a bad option stops every command before anything happens:
// a message naming the setting, exit code 2, and no data folder created.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, test } from 'vitest';
import { absentDir, removeTempDirs, runCli, tempDir } from './support.ts';

afterAll(removeTempDirs);

const ACCOUNT = { id: 'demo', tenant: 'sandbox.infusionsoft.com', secretId: 'keap-sync/demo' };

function configFile(content: string): string {
  const file = join(tempDir(), 'keap-sync.config.json');
  writeFileSync(file, content);
  return file;
}

interface Case {
  name: string;
  file?: string;
  env?: Record<string, string>;
  /** What stderr must say: the setting's name and the problem. */
  says: RegExp[];
}

const cases: Case[] = [
  {
    name: 'an account without resources',
    file: JSON.stringify({ accounts: [{ ...ACCOUNT, resources: {} }] }),
    says: [/accounts\.0\.resources/, /list at least one resource/],
  },
  {
    name: 'an unknown setting',
    file: JSON.stringify({
      accounts: [{ ...ACCOUNT, resources: { contacts: { everyMinutes: 5 } } }],
      worker: { concurrency: 4, paralelism: 8 },
    }),
    says: [/worker: unknown setting\(s\) paralelism/],
  },
  {
    name: 'an unknown resource',
    file: JSON.stringify({ accounts: [{ ...ACCOUNT, resources: { leads: { everyMinutes: 5 } } }] }),
    says: [/accounts\.0\.resources/, /leads/],
  },
  {
    name: 'an interval out of range',
    file: JSON.stringify({ accounts: [{ ...ACCOUNT, resources: { contacts: { everyMinutes: 0 } } }] }),
    says: [/accounts\.0\.resources\.contacts\.everyMinutes/],
  },
  {
    name: 'a file that is not JSON',
    file: '{ "accounts": [ { "id": "demo", ',
    says: [/is not valid JSON/, /keap-sync\.config\.json/],
  },
  {
    name: 'a bad value in an environment override',
    env: { KEAP_SYNC_WORKER_CONCURRENCY: 'lots' },
    says: [/worker\.concurrency/, /KEAP_SYNC_WORKER_CONCURRENCY="lots"/],
  },
  {
    name: 'a bad Keap address in KEAP_API_BASE_URL',
    env: { KEAP_API_BASE_URL: 'not a url' },
    says: [/keap\.baseUrl/, /KEAP_API_BASE_URL/],
  },
];

describe('a bad configuration: a clear message, exit 2, nothing written', () => {
  for (const c of cases) {
    test(`run: ${c.name}`, async ({ expect }) => {
      const dataDir = absentDir();
      const args = ['run', '--until-idle', '--contacts', '50', '--data-dir', dataDir];
      if (c.file !== undefined) args.push('--config', configFile(c.file));
      const r = await runCli(args, { env: c.env, timeoutMs: 30_000 });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^keap-sync: Invalid keap-sync configuration: /);
      for (const says of c.says) expect(r.stderr).toMatch(says);
      expect(r.stderr).toContain('Fix the setting');
      // No stack trace, and nothing started or written.
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(existsSync(dataDir)).toBe(false);
    });
  }

  test('a missing configuration file names the file and --config', async ({ expect }) => {
    const dataDir = absentDir();
    const missing = join(tempDir(), 'nowhere.json');
    const r = await runCli(['run', '--config', missing, '--data-dir', dataDir], { timeoutMs: 30_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`cannot read the configuration file ${missing} (ENOENT)`);
    expect(r.stderr).toContain('--config');
    expect(existsSync(dataDir)).toBe(false);
  });

  test('KEAP_SYNC_CONFIG_FILE chooses the file, and the other commands check it the same way', async ({
    expect,
  }) => {
    const file = configFile(JSON.stringify({ accounts: [{ ...ACCOUNT, resources: {} }] }));
    for (const args of [['status'], ['status', '--json'], ['dlq', 'list'], ['estimate'], ['enqueue', '-']]) {
      const dataDir = absentDir();
      const r = await runCli([...args, '--data-dir', dataDir], {
        env: { KEAP_SYNC_CONFIG_FILE: file },
        input: '{"kind":"sync","account":"demo","resource":"contacts"}',
        timeoutMs: 30_000,
      });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(/accounts\.0\.resources: list at least one resource/);
      expect(existsSync(dataDir), args.join(' ')).toBe(false);
    }
  });

  test.for<[string[], RegExp]>([
    [['run', '--processes', '0'], /--processes must be a whole number of 1 or more; got "0"/],
    [['run', '--concurrency', 'two'], /--concurrency must be a whole number/],
    [['run', '--contacts=-5'], /--contacts must be a whole number of 1 or more; got "-5"/],
    [['run', '--contacts', '-5'], /Option '--contacts' argument is ambiguous/],
    [['run', '--paralel', '3'], /Unknown option '--paralel'/],
    [['status', '--json=yes'], /'--json' does not take an argument/],
    [['estimate', '--changes', '0'], /--changes must be a whole number/],
    [['run', '--data-dir', '--until-idle'], /Option '--data-dir' argument is ambiguous/],
    [['dlq', 'purge'], /'purge' is invalid for argument 'action'\. Allowed choices are list, redrive/],
    [['estimate', 'now'], /Too many arguments for 'estimate'/],
  ])('a bad option %j: usage error, exit 2, nothing written', async ([args, says], { expect }) => {
    const dataDir = absentDir();
    const r = await runCli([...args, '--data-dir', dataDir], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(says);
    expect(r.stderr).not.toMatch(/TypeError|\n\s+at /);
    expect(existsSync(dataDir)).toBe(false);
  });

  test.for<[string[], string, RegExp]>([
    [['status', '--until-idle'], '--until-idle', /it is an option of "keap-sync run"/],
    [
      ['estimate', '--aws'],
      '--aws',
      /it is an option of "keap-sync status", "keap-sync enqueue", "keap-sync dlq"/,
    ],
    [
      ['run', '--json'],
      '--json',
      /it is an option of "keap-sync status", "keap-sync dlq", "keap-sync hooks", "keap-sync estimate"/,
    ],
    [
      ['dlq', 'list', '--contacts', '5'],
      '--contacts',
      /it is an option of "keap-sync run", "keap-sync estimate"/,
    ],
  ])(
    'an option of another command %j: rejected naming it and its command, exit 2',
    async ([args, flag, owner], { expect }) => {
      const dataDir = absentDir();
      const r = await runCli([...args, '--data-dir', dataDir], { timeoutMs: 30_000 });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(new RegExp(`^keap-sync: Unknown option '${flag}'`));
      expect(r.stderr).toMatch(owner);
      expect(r.stderr).toContain(`Run "keap-sync ${args[0]} --help" for its options.`);
      expect(existsSync(dataDir)).toBe(false);
    },
  );
});
