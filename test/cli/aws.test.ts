// End to end: the operator commands with --aws reach a deployed stack through the AWS SDK's usual
// chain (here: the embedded emulators standing in for AWS via AWS_ENDPOINT_URL_*), by the stack's
// output names; without them they say which variable is missing.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueDepth } from '#harness/local/sqs.ts';
import { type LocalStack, startLocalStack } from '#harness/local/stack.ts';
import { parseAppConfigJson } from '#shared/config/app-config.ts';
import { MemoryLog } from '#shared/pipeline/index.ts';
import { deployedEnv } from './support.ts';

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url).pathname;
const CONFIG = `${ROOT}keap-sync.config.json`;

let stack: LocalStack;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  const { readFileSync } = await import('node:fs');
  const config = parseAppConfigJson(readFileSync(CONFIG, 'utf8'), CONFIG);
  stack = await startLocalStack({ config, secrets: { 'keap-sync/demo': 'unused' }, log: new MemoryLog() });
  env = { PATH: process.env.PATH, HOME: process.env.HOME, ...deployedEnv(stack) };
});
afterAll(async () => {
  await stack?.close();
});

function keapSync(args: string[], extraEnv: NodeJS.ProcessEnv = env, input?: string) {
  const child = run(process.execPath, [`${ROOT}bin/keap-sync.ts`, ...args, '--config', CONFIG], {
    cwd: ROOT,
    env: extraEnv,
  });
  if (input !== undefined) {
    child.child.stdin?.end(input);
  }
  return child;
}

describe('keap-sync --aws', () => {
  it('status --aws --json reads the deployed tables and queues', async () => {
    const { stdout } = await keapSync(['status', '--aws', '--json']);
    const report = JSON.parse(stdout) as {
      accounts: Array<{ id: string; resources: unknown[] }>;
      queue: unknown;
    };
    expect(report.accounts.map((a) => a.id)).toEqual(['demo']);
    expect(report.accounts[0]?.resources).toHaveLength(11);
    expect(report.queue).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
  });

  it('enqueue --aws sends a validated job to the deployed queue', async () => {
    const { stdout } = await keapSync(
      ['enqueue', '-', '--aws'],
      env,
      '{"kind":"sync","account":"demo","resource":"contacts"}',
    );
    expect(stdout).toMatch(/Sent 1 job/);
    const depth = await queueDepth(stack.sqs.client, stack.sqs.queue.queueUrl);
    expect(depth.visible + depth.notVisible).toBe(1);
  });

  it('names the missing stack outputs and exits 2', async () => {
    const { JOB_QUEUE_URL: _q, MIRROR_TABLE: _m, ...partial } = env;
    const err = (await keapSync(['status', '--aws'], partial).catch((e: unknown) => e)) as {
      code: number;
      stderr: string;
    };
    expect(err.code).toBe(2);
    expect(err.stderr).toMatch(/MIRROR_TABLE \(the KeapSyncData output MirrorTableName\)/);
    expect(err.stderr).toMatch(/JOB_QUEUE_URL/);
  });
});
