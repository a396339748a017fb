// Unit: the client cannot be built without a ledger, a tenant and a key; settings are checked once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_BASE_URL,
  deriveKeyId,
  KeapClient,
  type KeapClientOptions,
  KeapConfigError,
  parseKeapClientSettings,
} from '#shared/keap/index.ts';
import type { QuotaLedger } from '#shared/quota/index.ts';
import {
  capturingLogger,
  type LedgerHost,
  quotaHeaders,
  SECRET_KEY,
  type Stub,
  sendJson,
  startLedgerHost,
  startStub,
  uniqueTenant,
} from './support.ts';

let host: LedgerHost;
let stub: Stub;
let ledger: QuotaLedger;

beforeAll(async () => {
  host = await startLedgerHost();
  ledger = host.ledger();
  stub = await startStub((_req, res) => sendJson(res, 200, { custom_fields: [] }, quotaHeaders()));
});
afterAll(async () => {
  await stub.close();
  await host.close();
});

function settingOf(make: () => unknown): string {
  try {
    make();
  } catch (err) {
    if (err instanceof KeapConfigError) return err.setting;
    throw err;
  }
  throw new Error('expected a KeapConfigError');
}

describe('construction', () => {
  it.each(['ledger', 'tenant', 'apiKey'] as const)('refuses to build without %s', (setting) => {
    const full: Record<string, unknown> = { apiKey: SECRET_KEY, tenant: 't1', ledger };
    delete full[setting];
    expect(settingOf(() => new KeapClient(full as unknown as KeapClientOptions))).toBe(setting);
  });

  it('rejects a key with a line break without echoing it', () => {
    const bad = `${SECRET_KEY}\n`;
    try {
      new KeapClient({ apiKey: bad, tenant: 't1', ledger });
      throw new Error('expected a KeapConfigError');
    } catch (err) {
      expect(err).toBeInstanceOf(KeapConfigError);
      expect((err as KeapConfigError).setting).toBe('apiKey');
      expect((err as Error).message).not.toContain(SECRET_KEY);
    }
  });

  it.each<[string, Record<string, unknown>]>([
    ['baseUrl', { baseUrl: 'not a url' }],
    ['baseUrl', { baseUrl: 'ftp://example.com' }],
    ['timeoutMs', { timeoutMs: 0 }],
    ['tagBatchSize', { tagBatchSize: 5000 }],
    ['readPriority', { readPriority: 'urgent' }],
    ['pageSize', { pageSize: 1001 }],
    ['backoffMaxMs', { backoffBaseMs: 500, backoffMaxMs: 100 }],
    ['timeoutMS', { timeoutMS: 10 }],
  ])('names the bad setting %s', (setting, settings) => {
    expect(settingOf(() => new KeapClient({ apiKey: SECRET_KEY, tenant: 't1', ledger, settings }))).toBe(
      setting,
    );
  });

  it("defaults to Keap's documented host, page size, tag batch and overlap", () => {
    const s = parseKeapClientSettings({});
    expect(s.baseUrl).toBe(DEFAULT_BASE_URL);
    expect(DEFAULT_BASE_URL).toBe('https://api.infusionsoft.com/crm');
    expect(s).toMatchObject({ pageSize: 1000, tagBatchSize: 100, overlapMs: 300_000 });
  });

  it('derives a short key id from the key that does not contain it', () => {
    const id = deriveKeyId(SECRET_KEY);
    expect(id).toMatch(/^k[0-9a-f]{16}$/);
    expect(SECRET_KEY).not.toContain(id.slice(1));
    expect(deriveKeyId(`${SECRET_KEY}x`)).not.toBe(id);
  });

  it('sends the key only as the X-Keap-API-Key header, to baseUrl + /rest/v2/...', async () => {
    const client = new KeapClient({
      apiKey: SECRET_KEY,
      tenant: uniqueTenant(),
      ledger,
      settings: { baseUrl: `${stub.baseUrl}/` },
    });
    await client.getModel('contacts');
    const req = stub.requests.at(-1);
    expect(req?.url.pathname).toBe('/crm/rest/v2/contacts/model');
    expect(req?.headers['x-keap-api-key']).toBe(SECRET_KEY);
    expect(req?.url.search).not.toContain(SECRET_KEY);
    expect(req?.headers['user-agent']).toBe('keap-sync');
  });
});

describe('logging', () => {
  it('logs each response with stable structured fields and never a header or the query', async () => {
    const { logger, lines } = capturingLogger();
    const client = new KeapClient({
      apiKey: SECRET_KEY,
      tenant: uniqueTenant(),
      ledger,
      logger,
      settings: { baseUrl: stub.baseUrl, backoffBaseMs: 1, backoffMaxMs: 2 },
    });
    let n = 0;
    stub.setHandler((_q, res) => {
      n++;
      if (n === 1) sendJson(res, 503, { message: 'busy' }, quotaHeaders());
      else sendJson(res, 200, { contacts: [], next_page_token: '' }, quotaHeaders());
    });
    await client.readAll('contacts', { filter: { email: 'private@example.com' } });
    const responses = lines.filter((l) => l.message === 'Keap responded');
    expect(responses.map((l) => l.fields.status)).toEqual([503, 200]);
    expect(responses[1]?.fields).toMatchObject({
      method: 'GET',
      path: '/rest/v2/contacts',
      attempt: 2,
      keyId: client.keyId,
    });
    expect(typeof responses[1]?.fields.durationMs).toBe('number');
    // On a busy machine the ledger may also refuse a late call (its own warning): find the retry's.
    const retry = lines.find((l) => l.level === 'warn' && l.fields.status !== undefined);
    expect(retry?.fields).toMatchObject({ attempt: 1, status: 503, error: 'RetryableError' });
    const all = JSON.stringify(lines);
    expect(all).not.toMatch(/private@example\.com|x-keap-api-key|headers/i);
  });
});
