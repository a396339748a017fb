// Unit: the Lambda runtime. The Keap client logs to the function's logger (not to silence). No AWS
// call is made.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildLambdaDeps, loadLambdaEnvironment } from '#shared/lambda/runtime.ts';
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

function depsFor(baseUrl: string) {
  const env = loadLambdaEnvironment({
    KEAP_SYNC_CONFIG: JSON.stringify({ accounts: [ACCOUNT], keap: { baseUrl } }),
    LEDGER_TABLE: 'ledger',
    STATE_TABLE: 'state',
    MIRROR_TABLE: 'mirror',
    JOB_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/111122223333/jobs',
    DEAD_LETTER_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/111122223333/dlq',
  });
  return buildLambdaDeps(env, 'worker');
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

  it("sends a Keap client's 429 warning to the function's logger", async () => {
    const deps = depsFor(stub.baseUrl);
    const ledger = new QuotaLedger({
      store: new MemoryLedgerStore(),
      settings: { tableName: 'ledger', ...FAST_LEDGER },
    });
    const clients = new ClientCache({ ...deps, ledger });
    let answered = 0;
    stub.setHandler((_req, res) => {
      answered++;
      if (answered === 1) sendJson(res, 429, spikeBody);
      else sendJson(res, 200, { custom_fields: [] }, quotaHeaders());
    });
    const lines = captureOutput();
    const account = deps.config.accounts[0];
    if (!account) throw new Error('no account configured');

    await clients.for(account, { apiKey: SECRET_KEY, versionId: 'v1' }).getModel('contacts');

    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 'WARN',
        message: 'Keap rate-limited a request; the ledger was told',
        account: 'acme',
        kind: 'spike',
      }),
    );
  });
});
