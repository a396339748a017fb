// Test support: local HTTP stubs standing in for Keap (node:http on 127.0.0.1), a dynalite-backed
// quota ledger with fast limits, a capturing logger, and recognisable test keys.
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll } from 'vitest';
import { type RunningDynamo, startDynalite } from '#harness/emulators/dynamo.ts';
import type { KeapLogger } from '#shared/keap/index.ts';
import {
  createLedgerTable,
  DynamoLedgerStore,
  type LedgerSettingsInput,
  QuotaLedger,
} from '#shared/quota/index.ts';

export interface StubRequest {
  method: string;
  url: URL;
  headers: IncomingMessage['headers'];
  body: string;
  at: number;
}

export type StubHandler = (req: StubRequest, res: ServerResponse) => void | Promise<void>;

export interface Stub {
  baseUrl: string;
  requests: StubRequest[];
  setHandler(h: StubHandler): void;
  close(): Promise<void>;
}

/** An HTTP server on 127.0.0.1 answering with `handler`; records every request. */
export async function startStub(handler: StubHandler): Promise<Stub> {
  let current = handler;
  const requests: StubRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r: StubRequest = {
        method: req.method ?? 'GET',
        url: new URL(req.url ?? '/', 'http://127.0.0.1'),
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at: Date.now(),
      };
      requests.push(r);
      Promise.resolve(current(r, res)).catch(() => {
        res.destroy();
      });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/crm`,
    requests,
    setHandler(h) {
      current = h;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(text);
}

export function sendText(
  res: ServerResponse,
  status: number,
  text: string,
  contentType: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': contentType, ...headers });
  res.end(text);
}

/** Keap's quota headers as a healthy response carries them. */
export function quotaHeaders(
  o: { minuteAvailable?: number; dayAvailable?: number } = {},
): Record<string, string> {
  return {
    'x-keap-product-throttle-limit': '240',
    'x-keap-product-throttle-available': String(o.minuteAvailable ?? 239),
    'x-keap-product-throttle-used': String(240 - (o.minuteAvailable ?? 239)),
    'x-keap-product-quota-limit': '30000',
    'x-keap-product-quota-available': String(o.dayAvailable ?? 29_999),
    'x-keap-product-quota-used': String(30_000 - (o.dayAvailable ?? 29_999)),
    'x-keap-product-quota-expiry-time': String((Math.floor(Date.now() / 86_400_000) + 1) * 86_400_000),
    'x-request-id': `req-${randomUUID().slice(0, 8)}`,
  };
}

/** Ledger settings that keep tests fast: tiny spike spacing, limits far above what a test uses. */
export const FAST_LEDGER: Omit<LedgerSettingsInput, 'tableName'> = {
  spikeIntervalMs: 20,
  marginMs: 12,
  lateToleranceMs: 10,
  minuteLimit: 100_000,
  tenantMinuteLimit: 100_000,
  dayLimit: 10_000_000,
  tenantDayLimit: 10_000_000,
  holdHorizonMs: 5_000,
  bulkShare: 1,
  spikeCoolDownMs: 50,
  quotaCoolDownMs: 100,
};

export interface LedgerHost {
  dynamo: RunningDynamo;
  ledger(overrides?: Partial<LedgerSettingsInput>): QuotaLedger;
  close(): Promise<void>;
}

/** dynalite with one ledger table; each `ledger()` is a fresh QuotaLedger over it. */
export async function startLedgerHost(): Promise<LedgerHost> {
  const dynamo = await startDynalite();
  await createLedgerTable(dynamo.client, 'ledger');
  return {
    dynamo,
    ledger: (overrides = {}) =>
      new QuotaLedger({
        store: new DynamoLedgerStore(dynamo.client, 'ledger'),
        settings: { tableName: 'ledger', ...FAST_LEDGER, ...overrides },
      }),
    close: () => dynamo.close(),
  };
}

/** A tenant id no other test uses (ledger items are per tenant). */
export function uniqueTenant(): string {
  return `t-${randomUUID().slice(0, 12)}`;
}

/** A recognisable fake key, to search for in everything captured. */
export const SECRET_KEY = 'KEAPTESTSECRET-abc123def456ghi789';

export interface CapturedLog {
  level: string;
  message: string;
  fields: Record<string, unknown>;
}

export function capturingLogger(): { logger: KeapLogger; lines: CapturedLog[] } {
  const lines: CapturedLog[] = [];
  const at =
    (level: string) =>
    (message: string, fields: Record<string, unknown>): void => {
      lines.push({ level, message, fields });
    };
  return { logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, lines };
}

/** Records for a list stub: ids 1..n, update times one second apart from `startMs`. */
export function makeRecords(
  n: number,
  timeField = 'update_time',
  startMs = Date.parse('2026-01-01T00:00:00.000Z'),
): Array<Record<string, unknown>> {
  return Array.from({ length: n }, (_, i) => ({
    id: String(i + 1),
    given_name: `Given${i + 1}`,
    [timeField]: new Date(startMs + i * 1000).toISOString(),
  }));
}

export interface ListStubOptions {
  itemsKey: string;
  timeField?: string;
  /** Filter field meaning "updated at or after". */
  sinceField?: string;
  /** Serve newest first when order_by names `desc`. */
  honourDesc?: boolean;
}

/** A handler serving `records` like a v2 list: page_size/page_token (offset tokens), optional since filter. */
export function listHandler(records: () => Array<Record<string, unknown>>, o: ListStubOptions): StubHandler {
  return (req, res) => {
    const size = Number(req.url.searchParams.get('page_size') ?? '1000');
    const token = req.url.searchParams.get('page_token');
    const offset = token ? Number(Buffer.from(token, 'base64url').toString('utf8').slice(4)) : 0;
    let rows = [...records()];
    const filter = req.url.searchParams.get('filter') ?? '';
    const tf = o.timeField ?? 'update_time';
    if (o.sinceField) {
      const m = new RegExp(`(?:^|;)${o.sinceField}==([^;]+)`).exec(filter);
      if (m?.[1]) {
        const since = Date.parse(m[1]);
        rows = rows.filter((r) => Date.parse(String(r[tf])) >= since);
      }
    }
    if (o.honourDesc && /desc$/.test(req.url.searchParams.get('order_by') ?? '')) {
      rows.sort((a, b) => Date.parse(String(b[tf])) - Date.parse(String(a[tf])));
    }
    const page = rows.slice(offset, offset + size);
    const next = offset + size < rows.length ? Buffer.from(`off:${offset + size}`).toString('base64url') : '';
    sendJson(res, 200, { [o.itemsKey]: page, next_page_token: next }, quotaHeaders());
  };
}

/**
 * The fixture most client tests share: one ledger host on dynalite and one stub for the file, started
 * before its tests and closed after them. The stub answers `{}` until a test sets a handler.
 */
export function useKeapStub(handler: StubHandler = (_req, res) => sendJson(res, 200, {})): {
  readonly host: LedgerHost;
  readonly stub: Stub;
} {
  let host: LedgerHost | undefined;
  let stub: Stub | undefined;
  beforeAll(async () => {
    host = await startLedgerHost();
    stub = await startStub(handler);
  });
  afterAll(async () => {
    await stub?.close();
    await host?.close();
  });
  const started = <T>(x: T | undefined): T => {
    if (x === undefined) throw new Error('useKeapStub: used outside a test (before beforeAll ran)');
    return x;
  };
  return {
    get host() {
      return started(host);
    },
    get stub() {
      return started(stub);
    },
  };
}
