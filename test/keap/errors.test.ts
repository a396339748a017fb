// Unit: every Keap status and body shape maps to its error class, against a local HTTP stub.
import { describe, expect, it } from 'vitest';
import {
  ConflictError,
  KeapClient,
  KeapError,
  KeyRejectedError,
  NotFoundError,
  PermissionError,
  RateLimitedError,
  RetryableError,
  UnexpectedResponseError,
  ValidationError,
} from '#shared/keap/index.ts';
import {
  quotaHeaders,
  SECRET_KEY,
  type StubHandler,
  sendJson,
  sendText,
  startStub,
  uniqueTenant,
  useKeapStub,
} from './support.ts';

const fx = useKeapStub();

function client(settings: Record<string, unknown> = {}): KeapClient {
  return new KeapClient({
    apiKey: SECRET_KEY,
    tenant: uniqueTenant(),
    ledger: fx.host.ledger(),
    settings: { baseUrl: fx.stub.baseUrl, backoffBaseMs: 1, backoffMaxMs: 2, maxAttempts: 2, ...settings },
  });
}

async function failureOf(handler: StubHandler, settings: Record<string, unknown> = {}): Promise<unknown> {
  fx.stub.setHandler(handler);
  try {
    await client(settings).getModel('contacts');
  } catch (err) {
    return err;
  }
  throw new Error('expected the call to fail');
}

describe('Keap error mapping', () => {
  it('maps a 401 Apigee auth fault to KeyRejectedError telling the user to create a new key', async () => {
    const err = await failureOf((_q, res) =>
      sendJson(
        res,
        401,
        {
          fault: {
            faultstring: 'Invalid access token',
            detail: { errorcode: 'oauth.v2.InvalidAccessToken' },
          },
        },
        quotaHeaders(),
      ),
    );
    expect(err).toBeInstanceOf(KeyRejectedError);
    expect(err).toBeInstanceOf(KeapError);
    const e = err as KeyRejectedError;
    expect(e.name).toBe('KeyRejectedError');
    expect(e.status).toBe(401);
    expect(e.message).toMatch(/Settings > API Settings/);
    expect(e.message).toMatch(/Invalid access token/);
    expect(e.attempts).toBe(1);
  });

  it('maps a 401 with an HTML body to KeyRejectedError', async () => {
    const err = await failureOf((_q, res) =>
      sendText(res, 401, '<html><body>Denied</body></html>', 'text/html'),
    );
    expect(err).toBeInstanceOf(KeyRejectedError);
  });

  it('maps a 403 to PermissionError naming the personal token limitation', async () => {
    const err = await failureOf((_q, res) =>
      sendJson(res, 403, { code: 403, message: 'Forbidden', status: 'PERMISSION_DENIED' }),
    );
    expect(err).toBeInstanceOf(PermissionError);
    expect((err as Error).message).toMatch(/Personal Access Token/);
  });

  it('maps a 404 with a v1-style body to NotFoundError', async () => {
    const err = await failureOf((_q, res) => sendJson(res, 404, { message: 'Contact 99 not found' }));
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as Error).message).toMatch(/Contact 99 not found/);
  });

  it("maps a 400 to ValidationError carrying Keap's details", async () => {
    const err = await failureOf((_q, res) =>
      sendJson(res, 400, {
        code: 400,
        message: 'Invalid filter',
        status: 'INVALID_ARGUMENT',
        details: [{ domain: 'filter', resource: 'start_update_time must be ISO-8601' }],
      }),
    );
    expect(err).toBeInstanceOf(ValidationError);
    const e = err as ValidationError;
    expect(e.details).toEqual([{ domain: 'filter', resource: 'start_update_time must be ISO-8601' }]);
    expect(e.keapMessage).toBe('Invalid filter');
    expect(e.message).toMatch(/start_update_time must be ISO-8601/);
  });

  it('maps a 409 to ConflictError', async () => {
    const err = await failureOf((_q, res) => sendJson(res, 409, { message: 'duplicate' }));
    expect(err).toBeInstanceOf(ConflictError);
  });

  it.each([
    [
      'Apigee spike arrest',
      {
        fault: {
          faultstring: 'Spike arrest violation. Allowed rate : 10ps',
          detail: { errorcode: 'policies.ratelimit.SpikeArrestViolation' },
        },
      },
      'spike',
    ],
    [
      'Apigee quota violation',
      {
        fault: {
          faultstring: 'Rate limit quota violation. Quota limit exceeded.',
          detail: { errorcode: 'policies.ratelimit.QuotaViolation' },
        },
      },
      'quota',
    ],
    ['Keap throttle body', { code: '429', message: 'Quota Exceeded', status: 'Request Throttled' }, 'quota'],
  ])('maps a 429 (%s) to RateLimitedError of kind %s', async (_label, body, kind) => {
    const err = await failureOf((_q, res) => sendJson(res, 429, body), { max429Retries: 0 });
    expect(err).toBeInstanceOf(RateLimitedError);
    expect((err as RateLimitedError).kind).toBe(kind);
    expect((err as RateLimitedError).retryAt).toBeGreaterThan(Date.now() - 1000);
  });

  it('maps a 429 whose body is unreadable from the headers (minute throttle spent: quota)', async () => {
    const err = await failureOf(
      (_q, res) =>
        sendText(res, 429, 'Too Many Requests', 'text/plain', quotaHeaders({ minuteAvailable: 0 })),
      { max429Retries: 0 },
    );
    expect((err as RateLimitedError).kind).toBe('quota');
  });

  it('takes the retry time of a day-quota 429 from the expiry header', async () => {
    const headers = quotaHeaders({ dayAvailable: 0 });
    const err = await failureOf(
      (_q, res) =>
        sendJson(res, 429, { code: '429', message: 'Quota Exceeded', status: 'Request Throttled' }, headers),
      { max429Retries: 0 },
    );
    expect((err as RateLimitedError).retryAt).toBe(Number(headers['x-keap-product-quota-expiry-time']));
  });

  it('maps a 500 JSON error to RetryableError (server) after the retries', async () => {
    const before = fx.stub.requests.length;
    const err = await failureOf((_q, res) => sendJson(res, 500, { code: 500, message: 'boom' }));
    expect(err).toBeInstanceOf(RetryableError);
    expect((err as RetryableError).reason).toBe('server');
    expect((err as RetryableError).outcomeUnknown).toBe(false);
    expect(fx.stub.requests.length - before).toBe(2);
  });

  it('maps a 502 HTML gateway page to RetryableError', async () => {
    const err = await failureOf((_q, res) =>
      sendText(res, 502, '<!DOCTYPE html><html><h1>Bad Gateway</h1></html>', 'text/html'),
    );
    expect(err).toBeInstanceOf(RetryableError);
    expect((err as Error).message).toMatch(/HTML error page/);
  });

  it('maps a 200 HTML page to UnexpectedResponseError', async () => {
    const err = await failureOf((_q, res) => sendText(res, 200, '<html>maintenance</html>', 'text/html'));
    expect(err).toBeInstanceOf(UnexpectedResponseError);
    expect((err as UnexpectedResponseError).problem).toMatch(/HTML/);
  });

  it('maps a 200 with malformed JSON to UnexpectedResponseError', async () => {
    const err = await failureOf((_q, res) => sendText(res, 200, '{"custom_fields": [', 'application/json'));
    expect(err).toBeInstanceOf(UnexpectedResponseError);
    expect((err as UnexpectedResponseError).problem).toMatch(/malformed JSON/);
  });

  it('maps a 200 with the wrong shape to UnexpectedResponseError naming the field', async () => {
    const err = await failureOf((_q, res) => sendJson(res, 200, { custom_fields: 'nope' }));
    expect(err).toBeInstanceOf(UnexpectedResponseError);
    expect((err as UnexpectedResponseError).problem).toMatch(/custom_fields/);
  });

  it('maps an unexpected status (405) to UnexpectedResponseError without retrying', async () => {
    const before = fx.stub.requests.length;
    const err = await failureOf((_q, res) => sendJson(res, 405, { message: 'Method Not Allowed' }));
    expect(err).toBeInstanceOf(UnexpectedResponseError);
    expect(fx.stub.requests.length - before).toBe(1);
  });

  it('maps a dropped connection to RetryableError (network)', async () => {
    const err = await failureOf((_q, res) => {
      res.socket?.destroy();
    });
    expect(err).toBeInstanceOf(RetryableError);
    expect((err as RetryableError).reason).toBe('network');
  });

  it('maps a refused connection to RetryableError (network)', async () => {
    const dead = await startStub((_q, res) => sendJson(res, 200, {}));
    const baseUrl = dead.baseUrl;
    await dead.close();
    const c = new KeapClient({
      apiKey: SECRET_KEY,
      tenant: uniqueTenant(),
      ledger: fx.host.ledger(),
      settings: { baseUrl, maxAttempts: 1 },
    });
    const err = await c.getModel('contacts').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryableError);
    expect((err as RetryableError).reason).toBe('network');
  });
});
