// Tests (infrastructure): the one test that really bundles. esbuild (no Docker) builds every entry as
// ESM with source maps, and the worker's and the publisher's bundles load in Node 24 (the Lambda
// runtime) with the environment the stack gives them.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build, testConfig } from './support.ts';

describe('bundles', () => {
  const savedEnv = { ...process.env };
  let assets: string[];
  afterAll(() => {
    process.env = savedEnv;
  });
  beforeAll(() => {
    const { cdkApp } = build({ config: testConfig(), bundle: true });
    const outdir = cdkApp.synth().directory;
    assets = readdirSync(outdir)
      .filter((name) => name.startsWith('asset.') && existsSync(path.join(outdir, name, 'index.mjs')))
      .map((name) => path.join(outdir, name));
  }, 60_000);

  it('builds each entry as an ESM bundle with the require shim and a source map', () => {
    const entries = assets.map((dir) => {
      const code = readFileSync(path.join(dir, 'index.mjs'), 'utf8');
      expect(code.startsWith("import { createRequire as __keapSyncCreateRequire } from 'node:module';")).toBe(
        true,
      );
      expect(code).toMatch(/\/\/# sourceMappingURL=index\.mjs\.map\s*$/);
      const map = JSON.parse(readFileSync(path.join(dir, 'index.mjs.map'), 'utf8')) as { sources: string[] };
      return map.sources
        .filter((source) => /functions\/(worker|scheduler|publisher|hook-receiver)\.ts$/.test(source))
        .map((source) => source.replace(/^.*functions\//, 'functions/'));
    });
    expect(entries.flat().sort()).toEqual([
      'functions/hook-receiver.ts',
      'functions/publisher.ts',
      'functions/scheduler.ts',
      'functions/worker.ts',
    ]);
  });

  it('bundles one copy of Powertools commons, however many Powertools packages use it', () => {
    const commonsCopies = new Set(
      assets.flatMap((dir) => {
        const map = JSON.parse(readFileSync(path.join(dir, 'index.mjs.map'), 'utf8')) as {
          sources: string[];
        };
        return map.sources
          .map((source) => /^(.*node_modules\/@aws-lambda-powertools\/commons)\//.exec(source)?.[1])
          .filter((copy): copy is string => copy !== undefined);
      }),
    );
    expect([...commonsCopies].map((copy) => copy.replace(/^.*?node_modules\//, 'node_modules/'))).toEqual([
      'node_modules/@aws-lambda-powertools/commons',
    ]);
  });

  it('bundles middy and the Powertools middlewares into each function', () => {
    for (const dir of assets) {
      const map = JSON.parse(readFileSync(path.join(dir, 'index.mjs.map'), 'utf8')) as { sources: string[] };
      expect(map.sources.some((source) => source.includes('node_modules/@middy/core/'))).toBe(true);
      expect(map.sources.some((source) => /logger\/lib\/esm\/middleware\/middy\.js$/.test(source))).toBe(
        true,
      );
      expect(map.sources.some((source) => /metrics\/lib\/esm\/middleware\/middy\.js$/.test(source))).toBe(
        true,
      );
    }
  });

  it('loads the worker bundle as Lambda would, and exports its handler', async () => {
    const worker = assets.find((dir) =>
      readFileSync(path.join(dir, 'index.mjs.map'), 'utf8').includes('functions/worker.ts'),
    );
    if (!worker) throw new Error('no worker bundle');
    Object.assign(process.env, {
      KEAP_SYNC_CONFIG: JSON.stringify(testConfig()),
      LEDGER_TABLE: 'ledger',
      STATE_TABLE: 'state',
      MIRROR_TABLE: 'mirror',
      JOB_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/111122223333/jobs',
      DEAD_LETTER_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/111122223333/dlq',
      AWS_REGION: 'eu-west-1',
    });
    const mod = (await import(pathToFileURL(path.join(worker, 'index.mjs')).href)) as { handler?: unknown };
    expect(typeof mod.handler).toBe('function');
  });

  it('loads the publisher bundle as Lambda would, and exports its handler', async () => {
    const publisher = assets.find((dir) =>
      readFileSync(path.join(dir, 'index.mjs.map'), 'utf8').includes('functions/publisher.ts'),
    );
    if (!publisher) throw new Error('no publisher bundle');
    Object.assign(process.env, {
      EVENT_BUS_NAME: 'KeapSync-changes',
      EVENTS_DEAD_LETTER_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/111122223333/events-dlq',
      MIRROR_TABLE: 'mirror',
      AWS_REGION: 'eu-west-1',
    });
    const mod = (await import(pathToFileURL(path.join(publisher, 'index.mjs')).href)) as {
      handler?: unknown;
    };
    expect(typeof mod.handler).toBe('function');
  });

  it('loads the hook receiver bundle as Lambda would, and exports its handler', async () => {
    const receiver = assets.find((dir) =>
      readFileSync(path.join(dir, 'index.mjs.map'), 'utf8').includes('functions/hook-receiver.ts'),
    );
    if (!receiver) throw new Error('no hook receiver bundle');
    Object.assign(process.env, {
      STATE_TABLE: 'state',
      JOB_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/111122223333/jobs',
      AWS_REGION: 'eu-west-1',
    });
    const mod = (await import(pathToFileURL(path.join(receiver, 'index.mjs')).href)) as {
      handler?: unknown;
    };
    expect(typeof mod.handler).toBe('function');
  });
});
