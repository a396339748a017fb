// Unit: the Lambda runtime. The handlers run under middy with Powertools' middlewares: log lines carry
// the Lambda context, the Keap client logs to the function's logger (not to silence), and the
// invocation's metrics are written once, when it ends. No AWS call is made.
import { randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  buildLambdaRuntime,
  type LambdaRuntime,
  lambdaHandler,
  loadLambdaEnvironment,
} from '#shared/lambda/runtime.ts';
import { ClientCache } from '#shared/pipeline/index.ts';
import { QuotaLedger } from '#shared/quota/index.ts';
import { FAST_LEDGER, quotaHeaders, SECRET_KEY, type Stub, sendJson, startStub } from '../keap/support.ts';
import { MemoryLedgerStore } from '../support/sim.ts';

const ACCOUNT = {
  id: 'acme',
  tenant: 'ab103',
  secretId: 'keap/acme',
  resources: { contacts: { everyMinutes: 5 } },
};

/** A Lambda context as nodejs24.x passes it (callbacks are not supported there). */
function lambdaContext(): Context {
  const deadline = Date.now() + 60_000;
  const unsupported = () => {
    throw new Error('not on nodejs24.x');
  };
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: 'keap-sync-worker',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:eu-west-1:111122223333:function:keap-sync-worker',
    memoryLimitInMB: '256',
    awsRequestId: randomUUID(),
    logGroupName: '/aws/lambda/keap-sync-worker',
    logStreamName: 'test',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: unsupported,
    fail: unsupported,
    succeed: unsupported,
  };
}

function runtimeFor(baseUrl: string): LambdaRuntime {
  const env = loadLambdaEnvironment({
    KEAP_SYNC_CONFIG: JSON.stringify({ accounts: [ACCOUNT], keap: { baseUrl } }),
    LEDGER_TABLE: 'ledger',
    STATE_TABLE: 'state',
    MIRROR_TABLE: 'mirror',
    JOB_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/111122223333/jobs',
    DEAD_LETTER_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/111122223333/dlq',
  });
  return buildLambdaRuntime(env, 'worker');
}

/** Every JSON line the function writes (Powertools' log lines, warnings on stderr, and EMF metrics). */
function captureOutput(): Array<Record<string, unknown>> {
  const lines: Array<Record<string, unknown>> = [];
  const capture = (chunk: string | Uint8Array) => {
    for (const line of String(chunk).split('\n')) if (line.trim()) lines.push(JSON.parse(line));
    return true;
  };
  vi.spyOn(process.stdout, 'write').mockImplementation(capture);
  vi.spyOn(process.stderr, 'write').mockImplementation(capture);
  return lines;
}

const spikeBody = {
  fault: {
    faultstring: 'Spike arrest violation',
    detail: { errorcode: 'policies.ratelimit.SpikeArrestViolation' },
  },
};

describe('lambda runtime', () => {
  let stub: Stub;
  beforeAll(async () => {
    stub = await startStub((_req, res) => sendJson(res, 200, {}));
  });
  afterAll(async () => {
    await stub.close();
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("sends a Keap client's 429 warning to the function's logger, with the Lambda context", async () => {
    const runtime = runtimeFor(stub.baseUrl);
    const ledger = new QuotaLedger({
      store: new MemoryLedgerStore(),
      settings: { tableName: 'ledger', ...FAST_LEDGER },
    });
    const clients = new ClientCache({ ...runtime.deps, ledger });
    let answered = 0;
    stub.setHandler((_req, res) => {
      answered++;
      if (answered === 1) sendJson(res, 429, spikeBody);
      else sendJson(res, 200, { custom_fields: [] }, quotaHeaders());
    });
    const context = lambdaContext();
    const lines = captureOutput();
    const handler = lambdaHandler(runtime, async () => {
      const account = runtime.deps.config.accounts[0];
      if (!account) throw new Error('no account configured');
      await clients.for(account, { apiKey: SECRET_KEY, versionId: 'v1' }).getModel('contacts');
    });

    await handler({}, context);

    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 'WARN',
        message: 'Keap rate-limited a request; the ledger was told',
        account: 'acme',
        kind: 'spike',
        function_request_id: context.awsRequestId,
        function_name: 'keap-sync-worker',
      }),
    );
  });

  it("writes the invocation's metrics once, when it ends, one line per dimension set", async () => {
    const runtime = runtimeFor(stub.baseUrl);
    const lines = captureOutput();
    let linesDuringInvocation = -1;
    const handler = lambdaHandler(runtime, async () => {
      runtime.deps.metrics.add('Pages', 1, { account: 'acme', resource: 'contacts' });
      runtime.deps.metrics.add('Pages', 1, { account: 'acme', resource: 'contacts' });
      runtime.deps.metrics.add('DeadLetters', 1, { reason: 'invalid-json' });
      linesDuringInvocation = lines.filter((l) => '_aws' in l).length;
    });

    await handler({}, lambdaContext());

    const emf = lines.filter((l) => '_aws' in l);
    expect(linesDuringInvocation).toBe(0);
    expect(emf).toHaveLength(2);
    expect(emf).toContainEqual(expect.objectContaining({ account: 'acme', resource: 'contacts', Pages: 2 }));
    expect(emf).toContainEqual(expect.objectContaining({ reason: 'invalid-json', DeadLetters: 1 }));
  });

  it('still writes the metrics when the invocation throws', async () => {
    const runtime = runtimeFor(stub.baseUrl);
    const lines = captureOutput();
    const handler = lambdaHandler(runtime, async () => {
      runtime.deps.metrics.add('KeyRejected', 1, { account: 'acme' });
      throw new Error('the invocation failed');
    });

    const error = await handler({}, lambdaContext()).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(Error);
    expect(lines).toContainEqual(expect.objectContaining({ account: 'acme', KeyRejected: 1 }));
  });
});
