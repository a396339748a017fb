// `npm start` (keap-sync run) runs the hook receiver and registers it with the sandbox; `keap-sync hooks
// list|verify|remove|register` manage the hooks of the running system through its ledger. The token is
// never printed.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type CliProcess, removeTempDirs, runCli, startCli, tempDir, waitFor } from './support.ts';

interface HooksJson {
  hooks: Array<{ account: string; eventKey: string; status: string; url: string }>;
  notes: string[];
}

describe('keap-sync hooks', () => {
  let dataDir: string;
  let run: CliProcess;
  let configFile: string;

  const hooks = async (...args: string[]): Promise<HooksJson> => {
    const r = await runCli(['hooks', ...args, '--json', '--data-dir', dataDir, '--config', configFile], {
      timeoutMs: 30_000,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout) as HooksJson;
  };

  beforeAll(async () => {
    const dir = tempDir();
    dataDir = join(dir, 'data');
    configFile = join(dir, 'keap-sync.config.json');
    // Two hooked lists (six event keys) and one without hooks (users).
    writeFileSync(
      configFile,
      JSON.stringify({
        accounts: [
          {
            id: 'demo',
            tenant: 'sandbox.infusionsoft.com',
            secretId: 'keap-sync/demo',
            resources: {
              contacts: { everyMinutes: 5 },
              tags: { everyMinutes: 60 },
              users: { everyMinutes: 60 },
            },
          },
        ],
      }),
    );
    run = startCli(['run', '--contacts', '200', '--data-dir', dataDir, '--config', configFile]);
    await waitFor(() => existsSync(join(dataDir, 'endpoints.json')), 'endpoints.json', 40_000, 100);
  }, 60_000);
  afterAll(async () => {
    run?.child.kill('SIGINT');
    await run?.exited;
    removeTempDirs();
  });

  test('npm start registers a verified hook per event key of each hooked list on its own receiver', async () => {
    const endpoints = JSON.parse(readFileSync(join(dataDir, 'endpoints.json'), 'utf8')) as {
      hookReceiverUrl?: string;
    };
    expect(endpoints.hookReceiverUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    let listed: HooksJson = { hooks: [], notes: [] };
    await waitFor(
      async () => {
        listed = await hooks('list');
        return listed.hooks.length === 6 && listed.hooks.every((h) => h.status === 'Verified');
      },
      '6 verified hooks',
      30_000,
      500,
    );
    for (const h of listed.hooks) expect(h.url).toBe(`${endpoints.hookReceiverUrl}/hooks/demo/<token>`);
    // The live view shows each hook's state.
    await waitFor(
      () => /hooks demo: Verified 6 /.test(run.stdout()),
      'the hooks line of the live view',
      10_000,
      200,
    );
  }, 60_000);

  test('remove deletes one event key, register puts it back and keeps the rest, verify re-verifies all', async () => {
    const removed = await hooks('remove', '--event-key', 'contact.edit');
    expect(removed.notes).toEqual(['demo: removed 1 hook(s): contact.edit']);
    expect((await hooks('list')).hooks.map((h) => h.eventKey)).not.toContain('contact.edit');
    const registered = await hooks('register');
    expect(registered.notes).toEqual(['demo: 1 created, 5 kept, 0 replaced']);
    const verified = await hooks('verify');
    expect(verified.hooks.map((h) => h.status)).toEqual(Array(6).fill('Verified'));
  }, 60_000);

  test('an unknown action or account is a usage error', async () => {
    const bad = await runCli([
      'hooks',
      'list',
      '--account',
      'nope',
      '--data-dir',
      dataDir,
      '--config',
      configFile,
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/No account "nope"/);
  });
});
