// End to end: `keap-sync accounts` against a deployed stack (--aws; here the embedded emulators stand in
// for AWS via AWS_ENDPOINT_URL_*) and a local data folder. An account added with the CLI is validated
// like the configuration file's, its key goes to the secret under the prefix, and the scheduler's next
// run enqueues it: no deploy, no restart. A bad account is a usage error (exit 2) and writes nothing.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalStack, startLocalStack } from '#harness/local/stack.ts';
import { parseAppConfig } from '#shared/config/app-config.ts';
import { MemoryLog, runScheduler } from '#shared/pipeline/index.ts';
import { deployedEnv, removeTempDirs, runCli, tempDir } from './support.ts';

let stack: LocalStack;
let env: Record<string, string>;

beforeAll(async () => {
  // A deployment's Lambdas get no accounts: the configuration holds only global settings.
  const config = parseAppConfig({ scheduler: { everyMinutes: 5, reserveCallsForIncremental: 0 } });
  stack = await startLocalStack({ config, secrets: {}, log: new MemoryLog() });
  env = deployedEnv(stack);
});
afterAll(async () => {
  await stack?.close();
  removeTempDirs();
});

describe('keap-sync accounts --aws', () => {
  it('adds an account with its key, and the next scheduler run enqueues it', async () => {
    const dir = tempDir();
    const keyFile = join(dir, 'acme.key');
    writeFileSync(keyFile, 'KeapAK-0123456789abcdef0123456789abcdef\n');
    const add = await runCli(
      [
        'accounts',
        'add',
        '--id',
        'acme',
        '--tenant',
        'ab103',
        '--resources',
        'contacts=5,tags=60',
        '--key-file',
        keyFile,
        '--aws',
      ],
      { env },
    );
    expect(add.code, add.stderr).toBe(0);
    expect(add.stdout).toMatch(
      /Registered acme \(tenant ab103, 2 lists\).*key stored in secret keap-sync\/acme/,
    );
    expect(add.stdout + add.stderr).not.toContain('0123456789abcdef0123456789abcdef');
    const secret = await stack.secrets.client.send(new GetSecretValueCommand({ SecretId: 'keap-sync/acme' }));
    expect(secret.SecretString).toBe('KeapAK-0123456789abcdef0123456789abcdef');

    const tick = await runScheduler(stack.deps, Date.now());
    expect(tick.enqueued.map((e) => `${e.account}/${e.resource}/${e.mode}`).sort()).toEqual([
      'acme/contacts/full',
      'acme/tags/full',
    ]);
    for (const e of tick.enqueued) await stack.deps.leases.release(e.account, e.resource, e.runId);
  });

  it('lists, shows, pauses, resumes and removes', async () => {
    const list = await runCli(['accounts', 'list', '--aws', '--json'], { env });
    expect(list.code, list.stderr).toBe(0);
    expect(
      (JSON.parse(list.stdout) as Array<{ account: { id: string }; paused: boolean }>).map((e) => [
        e.account.id,
        e.paused,
      ]),
    ).toEqual([['acme', false]]);
    expect((await runCli(['accounts', 'pause', 'acme', '--aws'], { env })).stdout).toMatch(/^Paused acme/);
    const show = await runCli(['accounts', 'show', 'acme', '--aws'], { env });
    expect(show.stdout).toMatch(/^account acme {2}PAUSED\n {2}tenant: ab103\n {2}secret: keap-sync\/acme/);
    const paused = await runScheduler(stack.deps, Date.now());
    expect(paused.enqueued).toEqual([]);
    expect((await runCli(['accounts', 'resume', 'acme', '--aws'], { env })).code).toBe(0);
    expect((await runCli(['accounts', 'remove', 'acme', '--aws'], { env })).stdout).toMatch(/^Removed acme/);
    const gone = await runCli(['accounts', 'show', 'acme', '--aws'], { env });
    expect(gone.code).toBe(2);
    expect(gone.stderr).toMatch(/The account "acme" is not registered/);
  });

  it.each([
    [
      ['--id', 'Acme', '--tenant', 'ab103', '--resources', 'contacts=5'],
      /account: id: use 1-40 lower-case letters/,
    ],
    [
      ['--id', 'acme', '--tenant', 'ab103', '--resources', 'leads=5'],
      /account: resources: unknown setting\(s\) leads/,
    ],
    [
      ['--id', 'acme', '--tenant', 'ab103', '--resources', 'contacts'],
      /--resources: "contacts" is not <list>=<minutes>/,
    ],
    [
      ['--id', 'acme', '--tenant', 'ab103', '--resources', 'contacts=5', '--secret-id', 'other/acme'],
      /secretId: "other\/acme" is not named under the secrets prefix "keap-sync\/"/,
    ],
  ])('refuses an invalid account (%j) with exit 2, registering nothing', async (args, says) => {
    const r = await runCli(['accounts', 'add', ...args, '--aws'], { env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(says);
    expect(await stack.deps.registry.list()).toEqual([]);
  });
});

describe('keap-sync accounts on a local data folder', () => {
  it("registers the configuration file's accounts and refuses one registered already", async () => {
    const dataDir = join(tempDir(), 'data');
    const add = await runCli(['accounts', 'add', 'keap-sync.config.json', '--data-dir', dataDir]);
    expect(add.code, add.stderr).toBe(0);
    expect(add.stdout).toMatch(/Registered demo \(tenant sandbox\.infusionsoft\.com, 11 lists\)/);
    const again = await runCli(['accounts', 'add', 'keap-sync.config.json', '--data-dir', dataDir]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/The account "demo" is registered already.*--replace/);
    const list = await runCli(['accounts', 'list', '--data-dir', dataDir]);
    expect(list.stdout).toMatch(/^account +tenant +state +lists +secret\n/);
    expect(list.stdout).toMatch(/demo +sandbox\.infusionsoft\.com +active +contacts\/5m/);
  });
});
