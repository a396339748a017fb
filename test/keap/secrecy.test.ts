// Unit: the API key never shows up in an error (message, stack, JSON, inspect), in the client's own
// serialisation, or in any log line, on every error path, even when the server echoes it back.
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  ConflictError,
  KeapArgumentError,
  KeapClient,
  KeapConfigError,
  type KeapError,
  KeyRejectedError,
  NotFoundError,
  PagingLoopError,
  PermissionError,
  QuotaDeferredError,
  RateLimitedError,
  RetryableError,
  UnexpectedResponseError,
  ValidationError,
} from '#shared/keap/index.ts';
import {
  type CapturedLog,
  capturingLogger,
  type LedgerHost,
  quotaHeaders,
  SECRET_KEY,
  type Stub,
  type StubHandler,
  sendJson,
  sendText,
  startLedgerHost,
  startStub,
  uniqueTenant,
} from './support.ts';

let host: LedgerHost;
let stub: Stub;
const logs: CapturedLog[] = [];
const errors: unknown[] = [];

beforeAll(async () => {
  host = await startLedgerHost();
  stub = await startStub((_req, res) => sendJson(res, 200, {}));
});
afterAll(async () => {
  await stub.close();
  await host.close();
});

function client(settings: Record<string, unknown> = {}, ledgerOverrides = {}): KeapClient {
  const { logger, lines } = capturingLogger();
  const c = new KeapClient({
    apiKey: SECRET_KEY,
    tenant: uniqueTenant(),
    ledger: host.ledger(ledgerOverrides),
    logger: {
      debug: (m, f) => {
        logger.debug(m, f);
        logs.push(...lines.splice(0));
      },
      info: (m, f) => {
        logger.info(m, f);
        logs.push(...lines.splice(0));
      },
      warn: (m, f) => {
        logger.warn(m, f);
        logs.push(...lines.splice(0));
      },
      error: (m, f) => {
        logger.error(m, f);
        logs.push(...lines.splice(0));
      },
    },
    settings: {
      baseUrl: stub.baseUrl,
      backoffBaseMs: 1,
      backoffMaxMs: 2,
      maxAttempts: 2,
      max429Retries: 0,
      ...settings,
    },
  });
  return c;
}

async function capture(run: () => Promise<unknown>): Promise<unknown> {
  try {
    await run();
  } catch (err) {
    errors.push(err);
    return err;
  }
  throw new Error('expected the call to fail');
}

/** Bodies that quote the key back, as a careless server might. */
const echo = `invalid key ${SECRET_KEY}`;

const statusCases: Array<[string, StubHandler, new (...a: never[]) => KeapError]> = [
  [
    '400',
    (_q, res) => sendJson(res, 400, { message: echo, details: [{ domain: 'key', resource: echo }] }),
    ValidationError,
  ],
  [
    '401',
    (_q, res) =>
      sendJson(res, 401, {
        fault: { faultstring: echo, detail: { errorcode: 'oauth.v2.InvalidAccessToken' } },
      }),
    KeyRejectedError,
  ],
  ['403', (_q, res) => sendJson(res, 403, { message: echo }), PermissionError],
  ['404', (_q, res) => sendJson(res, 404, { message: echo }), NotFoundError],
  ['409', (_q, res) => sendJson(res, 409, { message: echo }), ConflictError],
  [
    '429 spike',
    (_q, res) =>
      sendJson(res, 429, {
        fault: { faultstring: echo, detail: { errorcode: 'policies.ratelimit.SpikeArrestViolation' } },
      }),
    RateLimitedError,
  ],
  [
    '429 quota',
    (_q, res) => sendJson(res, 429, { code: '429', message: echo, status: 'Request Throttled' }),
    RateLimitedError,
  ],
  ['500', (_q, res) => sendJson(res, 500, { message: echo }), RetryableError],
  ['502 html', (_q, res) => sendText(res, 502, `<html>${echo}</html>`, 'text/html'), RetryableError],
  ['200 html', (_q, res) => sendText(res, 200, `<html>${echo}</html>`, 'text/html'), UnexpectedResponseError],
  [
    '200 malformed',
    (_q, res) => sendText(res, 200, `{"x": "${echo}`, 'application/json'),
    UnexpectedResponseError,
  ],
  ['200 wrong shape', (_q, res) => sendJson(res, 200, { custom_fields: echo }), UnexpectedResponseError],
  ['405', (_q, res) => sendJson(res, 405, { message: echo }, quotaHeaders()), UnexpectedResponseError],
  [
    'reset',
    (_q, res) => {
      res.socket?.destroy();
    },
    RetryableError,
  ],
];

describe('key secrecy', () => {
  it.each(statusCases)('keeps the key out of the %s error path', async (_label, handler, cls) => {
    stub.setHandler(handler);
    const err = await capture(() => client().getModel('contacts'));
    expect(err).toBeInstanceOf(cls);
  });

  it('keeps the key out of a timeout, a refused connection and an unknown-outcome create', async () => {
    stub.setHandler(() => {});
    expect(await capture(() => client({ timeoutMs: 80 }).getModel('contacts'))).toBeInstanceOf(
      RetryableError,
    );
    expect(
      await capture(() => client({ timeoutMs: 80 }).createNote('1', { user_id: '1', title: 't' })),
    ).toBeInstanceOf(RetryableError);
    const dead = await startStub(() => {});
    const deadUrl = dead.baseUrl;
    await dead.close();
    expect(await capture(() => client({ baseUrl: deadUrl }).getModel('contacts'))).toBeInstanceOf(
      RetryableError,
    );
  });

  it('keeps the key out of deferrals, paging loops, argument and config errors', async () => {
    stub.setHandler((_q, res) =>
      sendJson(res, 200, { contacts: [{ id: '1' }], next_page_token: 'x' }, quotaHeaders()),
    );
    const limited = client({ waitBudgetMs: 0 }, { minuteLimit: 1 });
    await limited.getModel('contacts').catch(() => undefined);
    expect(await capture(() => limited.getModel('contacts'))).toBeInstanceOf(QuotaDeferredError);
    expect(await capture(() => client().readAll('contacts'))).toBeInstanceOf(PagingLoopError);
    expect(await capture(() => client().createNote('1', { user_id: '1' }))).toBeInstanceOf(KeapArgumentError);
    expect(
      await capture(
        async () =>
          new KeapClient({
            apiKey: SECRET_KEY,
            tenant: 't',
            ledger: host.ledger(),
            settings: { baseUrl: SECRET_KEY },
          }),
      ),
    ).toBeInstanceOf(KeapConfigError);
    expect(
      await capture(
        async () => new KeapClient({ apiKey: `${SECRET_KEY} x`, tenant: 't', ledger: host.ledger() }),
      ),
    ).toBeInstanceOf(KeapConfigError);
  });

  it('finds the key nowhere in anything captured', () => {
    const c = client();
    const texts: string[] = [];
    for (const err of errors) {
      const e = err as Error;
      texts.push(
        String(e),
        e.message,
        e.stack ?? '',
        JSON.stringify(e),
        JSON.stringify(Object.getOwnPropertyDescriptors(e)),
        inspect(e, { depth: 10, showHidden: true }),
      );
    }
    texts.push(
      JSON.stringify(c),
      inspect(c, { depth: 10 }),
      inspect(c, { depth: 10, showHidden: true, customInspect: false }),
      String(c),
      JSON.stringify(c.stats),
      JSON.stringify(logs),
      inspect(logs, { depth: 10 }),
    );
    expect(errors.length).toBeGreaterThanOrEqual(statusCases.length + 8);
    expect(logs.length).toBeGreaterThan(10);
    const hits = texts.filter((t) => t.includes(SECRET_KEY) || t.includes('KEAPTESTSECRET'));
    expect(hits).toEqual([]);
    // The echoed bodies were redacted, not dropped.
    expect(errors.some((e) => (e as Error).message.includes('[redacted]'))).toBe(true);
  });

  it('writes nothing to the console', async () => {
    const spies = (['log', 'info', 'warn', 'error', 'debug'] as const).map((m) =>
      vi.spyOn(console, m).mockImplementation(() => {}),
    );
    stub.setHandler((_q, res) => sendJson(res, 500, { message: echo }));
    await client()
      .getModel('contacts')
      .catch(() => undefined);
    for (const s of spies) {
      expect(s).not.toHaveBeenCalled();
      s.mockRestore();
    }
  });
});
