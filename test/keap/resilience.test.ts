// Unit: retries, timeouts, creates never retried, and 429s reported to the ledger then re-acquired.
import { describe, expect, it, vi } from 'vitest';
import { KeapClient, QuotaDeferredError, RateLimitedError, RetryableError } from '#shared/keap/index.ts';
import type { QuotaLedger } from '#shared/quota/index.ts';
import {
  listHandler,
  makeRecords,
  quotaHeaders,
  SECRET_KEY,
  sendJson,
  sendText,
  uniqueTenant,
  useKeapStub,
} from './support.ts';

const fx = useKeapStub();

function setup(settings: Record<string, unknown> = {}): {
  client: KeapClient;
  ledger: QuotaLedger;
  tenant: string;
} {
  const ledger = fx.host.ledger();
  const tenant = uniqueTenant();
  const client = new KeapClient({
    apiKey: SECRET_KEY,
    tenant,
    ledger,
    settings: { baseUrl: fx.stub.baseUrl, backoffBaseMs: 1, backoffMaxMs: 4, ...settings },
  });
  return { client, ledger, tenant };
}

const model = { custom_fields: [{ id: '7', label: 'Plan', field_name: 'plan', field_type: 'Text' }] };
const spikeBody = {
  fault: {
    faultstring: 'Spike arrest violation',
    detail: { errorcode: 'policies.ratelimit.SpikeArrestViolation' },
  },
};

function failingTimes(n: number, fail: (res: import('node:http').ServerResponse) => void) {
  let seen = 0;
  return (_req: unknown, res: import('node:http').ServerResponse) => {
    seen++;
    if (seen <= n) fail(res);
    else sendJson(res, 200, model, quotaHeaders());
  };
}

describe('retries', () => {
  it('retries a read after 5xx answers and returns the eventual success, re-acquiring each time', async () => {
    const { client, ledger } = setup({ maxAttempts: 4 });
    const acquire = vi.spyOn(ledger, 'acquire');
    fx.stub.setHandler(failingTimes(2, (res) => sendJson(res, 503, { message: 'busy' })));
    const before = fx.stub.requests.length;
    const m = await client.getModel('contacts');
    expect(m.custom_fields[0]?.field_name).toBe('plan');
    expect(fx.stub.requests.length - before).toBe(3);
    // Every attempt took a fresh slot (a slot woken too late for is skipped, never reused).
    expect(acquire.mock.calls.length).toBeGreaterThanOrEqual(3);
    expect(client.stats.slotsGranted - client.stats.slotsSpent).toBe(3);
    expect(client.stats.retries).toBe(2);
  });

  it('gives up after maxAttempts with RetryableError counting the attempts', async () => {
    const { client } = setup({ maxAttempts: 3 });
    fx.stub.setHandler((_q, res) => sendJson(res, 500, { message: 'down' }));
    const before = fx.stub.requests.length;
    const err = await client.getModel('contacts').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryableError);
    expect((err as RetryableError).attempts).toBe(3);
    expect(fx.stub.requests.length - before).toBe(3);
  });

  it('stops retrying when the next backoff would pass the retry time budget', async () => {
    const { client } = setup({ maxAttempts: 10, backoffBaseMs: 400, backoffMaxMs: 400, retryBudgetMs: 300 });
    fx.stub.setHandler((_q, res) => sendJson(res, 500, { message: 'down' }));
    const before = fx.stub.requests.length;
    const err = await client.getModel('contacts').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryableError);
    // A 400 ms backoff (at least 200 with jitter) cannot start inside a 300 ms budget twice.
    expect(fx.stub.requests.length - before).toBeLessThan(3);
  });

  it('aborts a hung request after the timeout and retries it within the budget', async () => {
    const { client } = setup({ timeoutMs: 150, maxAttempts: 2 });
    fx.stub.setHandler(() => {
      // Never answers.
    });
    const before = fx.stub.requests.length;
    const err = await client.getModel('contacts').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryableError);
    expect((err as RetryableError).reason).toBe('timeout');
    expect(fx.stub.requests.length - before).toBe(2);
  });

  it('times out a response whose body never finishes', async () => {
    const { client } = setup({ timeoutMs: 150, maxAttempts: 1 });
    fx.stub.setHandler((_q, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"custom_fields": [');
    });
    const err = await client.getModel('contacts').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryableError);
    expect((err as RetryableError).reason).toBe('timeout');
  });

  it('retries a list page whose body was cut and yields only the whole page, never part of it', async () => {
    const { client } = setup({ maxAttempts: 3 });
    const records = makeRecords(1_500);
    const serve = listHandler(() => records, { itemsKey: 'contacts' });
    let cut = 0;
    fx.stub.setHandler((req, res) => {
      // The second page's first answer is a 200 whose JSON body stops halfway.
      if (req.url.searchParams.get('page_token') && cut === 0) {
        cut++;
        const whole = JSON.stringify({ contacts: records.slice(1_000), next_page_token: '' });
        sendText(res, 200, whole.slice(0, Math.floor(whole.length / 2)), 'application/json', quotaHeaders());
        return;
      }
      serve(req, res);
    });
    const before = fx.stub.requests.length;
    const pages = [];
    for await (const p of client.pages('contacts')) pages.push(p);
    expect(cut).toBe(1);
    expect(pages.map((p) => p.records.length)).toEqual([1_000, 500]);
    expect(pages.flatMap((p) => p.records.map((r) => r.id))).toEqual(records.map((r) => r.id));
    // Two pages and one retry of the cut one.
    expect(fx.stub.requests.length - before).toBe(3);
    expect(client.stats.retries).toBe(1);
  });

  it('never retries a creating POST on a 5xx and says the outcome is unknown', async () => {
    const { client } = setup({ maxAttempts: 5 });
    fx.stub.setHandler((_q, res) => sendJson(res, 500, { message: 'oops' }));
    const before = fx.stub.requests.length;
    const err = await client.createNote('12', { user_id: '1', title: 'Call back' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryableError);
    expect((err as RetryableError).outcomeUnknown).toBe(true);
    expect(fx.stub.requests.length - before).toBe(1);
  });

  it('never retries a creating POST that timed out', async () => {
    const { client } = setup({ maxAttempts: 5, timeoutMs: 120 });
    fx.stub.setHandler(() => {});
    const before = fx.stub.requests.length;
    const err = await client.createNote('12', { user_id: '1', type: 'Call' }).catch((e: unknown) => e);
    expect((err as RetryableError).reason).toBe('timeout');
    expect((err as RetryableError).outcomeUnknown).toBe(true);
    expect(fx.stub.requests.length - before).toBe(1);
  });

  it('retries an upsert (duplicate_option makes it repeatable)', async () => {
    const { client } = setup({ maxAttempts: 3 });
    let n = 0;
    fx.stub.setHandler((_q, res) => {
      n++;
      if (n === 1) sendJson(res, 502, { message: 'bad gateway' });
      else sendJson(res, 201, { id: '55', email_addresses: [{ email: 'a@example.com', field: 'EMAIL1' }] });
    });
    const r = await client.upsertContact({ email_addresses: [{ email: 'a@example.com', field: 'EMAIL1' }] });
    expect(r).toMatchObject({ created: true, contact: { id: '55' } });
    expect(n).toBe(2);
  });
});

describe('429 handling', () => {
  it('reports a 429 to the ledger, re-acquires and succeeds', async () => {
    const { client, ledger, tenant } = setup({ max429Retries: 2 });
    const report429 = vi.spyOn(ledger, 'report429');
    const acquire = vi.spyOn(ledger, 'acquire');
    fx.stub.setHandler(failingTimes(1, (res) => sendJson(res, 429, spikeBody)));
    await client.getModel('contacts', { waitBudgetMs: 5_000 });
    expect(report429).toHaveBeenCalledTimes(1);
    expect(report429.mock.calls[0]?.slice(0, 3)).toEqual([tenant, client.keyId, 'spike']);
    expect(acquire.mock.calls.length).toBeGreaterThanOrEqual(2);
    expect(client.stats.slotsGranted - client.stats.slotsSpent).toBe(2);
    expect(client.stats.rateLimited).toBe(1);
  });

  it('a 429 cool-down longer than the wait budget surfaces as QuotaDeferredError (cool-down)', async () => {
    const ledger = fx.host.ledger({ spikeCoolDownMs: 5_000 });
    const client = new KeapClient({
      apiKey: SECRET_KEY,
      tenant: uniqueTenant(),
      ledger,
      settings: { baseUrl: fx.stub.baseUrl, waitBudgetMs: 100 },
    });
    fx.stub.setHandler((_q, res) => sendJson(res, 429, spikeBody));
    const before = fx.stub.requests.length;
    const err = await client.getModel('contacts').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QuotaDeferredError);
    expect((err as QuotaDeferredError).reason).toBe('cool-down');
    expect((err as QuotaDeferredError).retryAt).toBeGreaterThan(ledger.now() + 1_000);
    expect(fx.stub.requests.length - before).toBe(1);
  });

  it('throws RateLimitedError once the bounded re-acquires are used up', async () => {
    const { client, ledger } = setup({ max429Retries: 2, waitBudgetMs: 5_000 });
    const report429 = vi.spyOn(ledger, 'report429');
    fx.stub.setHandler((_q, res) => sendJson(res, 429, spikeBody));
    const err = await client.getModel('contacts').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RateLimitedError);
    expect((err as RateLimitedError).attempts).toBe(3);
    expect(report429).toHaveBeenCalledTimes(3);
  });

  it('a 429 on a creating POST is re-sent (the gateway rejected it before Keap saw it)', async () => {
    const { client } = setup({ max429Retries: 1, waitBudgetMs: 5_000 });
    let n = 0;
    fx.stub.setHandler((_q, res) => {
      n++;
      if (n === 1)
        sendJson(res, 429, { code: '429', message: 'Quota Exceeded', status: 'Request Throttled' });
      else sendJson(res, 201, { id: '9', title: 'Call back' });
    });
    const note = await client.createNote('12', { user_id: '1', title: 'Call back' });
    expect(note.id).toBe('9');
    expect(n).toBe(2);
  });
});
