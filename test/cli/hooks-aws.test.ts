// End to end: `keap-sync hooks register|list|verify|remove --aws` against a deployed stack (the
// embedded emulators stand in for AWS via AWS_ENDPOINT_URL_*, the key in the Secrets Manager stub) and
// the Keap sandbox, with a hook receiver reading the same state table as the deployed one would. Keap
// verifies each hook on the receiver; the account's token is kept in the state table, never printed.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type LocalHookServer, startLocalHookServer } from '#harness/local/hook-server.ts';
import { type LocalStack, startLocalStack } from '#harness/local/stack.ts';
import { type RunningSandbox, startSandbox } from '#harness/sandbox/index.ts';
import { parseAppConfig } from '#shared/config/app-config.ts';
import { sqsHookJobSink } from '#shared/hooks/index.ts';
import { MemoryLog, MemoryMetrics } from '#shared/pipeline/index.ts';
import { deployedEnv, removeTempDirs, runCli, tempDir } from './support.ts';

interface HooksJson {
  hooks: Array<{ account: string; eventKey: string; status: string; url: string }>;
  notes: string[];
}

let sandbox: RunningSandbox;
let stack: LocalStack;
let receiver: LocalHookServer;
let env: Record<string, string>;
let configFile: string;

beforeAll(async () => {
  sandbox = await startSandbox({ contacts: 50, seed: 3 });
  const key = sandbox.keys[0];
  if (!key) throw new Error('the sandbox has no key');
  stack = await startLocalStack({
    config: parseAppConfig({}),
    secrets: { 'keap-sync/demo': key.key },
    log: new MemoryLog(),
  });
  const endpoints = stack.deps.hookEndpoints;
  if (!endpoints) throw new Error('no hook endpoints');
  receiver = await startLocalHookServer({
    endpoints,
    enqueue: sqsHookJobSink(stack.sqs.client, stack.sqs.queue.queueUrl),
    log: new MemoryLog(),
    metrics: new MemoryMetrics(),
    maxBodyBytes: 1024 * 1024,
  });
  configFile = join(tempDir(), 'keap-sync.config.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      accounts: [
        {
          id: 'demo',
          tenant: key.tenant,
          secretId: 'keap-sync/demo',
          resources: { contacts: { everyMinutes: 5 }, tagApplications: { everyMinutes: 60 } },
        },
      ],
    }),
  );
  env = { ...deployedEnv(stack), KEAP_API_BASE_URL: sandbox.baseUrl };
}, 60_000);
afterAll(async () => {
  await receiver?.close();
  await stack?.close();
  await sandbox?.close();
  removeTempDirs();
});

async function hooks(...args: string[]): Promise<{ json: HooksJson; out: string }> {
  const r = await runCli(['hooks', ...args, '--aws', '--json', '--config', configFile], {
    env,
    timeoutMs: 30_000,
  });
  expect(r.code, r.stderr).toBe(0);
  return { json: JSON.parse(r.stdout) as HooksJson, out: r.stdout + r.stderr };
}

describe('keap-sync hooks --aws', () => {
  test('register needs the receiver URL, and says where it comes from', async () => {
    const r = await runCli(['hooks', 'register', '--aws', '--config', configFile], {
      env,
      timeoutMs: 30_000,
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--url <HookReceiverUrl>.*HOOK_RECEIVER_URL/);
  });

  test('register, list, verify and remove a verified hook per event key, the token never printed', async () => {
    const registered = await hooks('register', '--url', receiver.url);
    // contacts (add, edit, delete) and tag applications (applied, removed).
    const wanted = [
      'contact.add',
      'contact.delete',
      'contact.edit',
      'contactGroup.applied',
      'contactGroup.removed',
    ];
    expect(registered.json.hooks.map((h) => h.eventKey).sort()).toEqual(wanted);
    expect(registered.json.hooks.every((h) => h.status === 'Verified')).toBe(true);
    expect(
      sandbox.hooks
        .list()
        .map((h) => h.eventKey)
        .sort(),
    ).toEqual(wanted);
    const token = (await stack.deps.hookEndpoints?.get('demo'))?.token ?? '';
    expect(token.length).toBeGreaterThan(16);
    // Keap holds the real URL (it carries the token); the CLI prints it masked.
    expect(sandbox.hooks.list().every((h) => h.hookUrl.includes(token))).toBe(true);

    const listed = await hooks('list');
    expect(listed.json.hooks.map((h) => h.eventKey).sort()).toEqual(wanted);
    const verified = await hooks('verify');
    expect(verified.json.hooks.every((h) => h.status === 'Verified')).toBe(true);
    for (const r of [registered, listed, verified]) expect(r.out).not.toContain(token);

    const removed = await hooks('remove');
    expect(removed.json.notes.join('\n')).toMatch(/demo: removed 5 hook/);
    expect(sandbox.hooks.list()).toEqual([]);
  }, 90_000);
});
