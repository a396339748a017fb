// Adapter: the sandbox's HTTP server — latency, gateway, faults, the v2 routes and the admin routes.
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { z } from 'zod';
import type { GatewayLimits } from '../gateway/rules.ts';
import { type MutationResult, SANDBOX_DATA_END, SandboxDataset } from './dataset.ts';
import { ApiError, SandboxConfigError, SandboxMutationError } from './errors.ts';
import { FaultInjector, faultsSchema, htmlErrorPage, parseFaults, type SandboxFaults } from './faults.ts';
import { ArrivalLog, type ArrivalRecord, SandboxGateway, type SandboxKey } from './gateway.ts';
import { RESOURCE_TYPES, type ResourceType } from './generators.ts';
import { type HookSettings, hookSettingsSchema, SandboxHooks } from './hooks.ts';
import { type PageLatency, PageLatencyModel, pageLatencySchema } from './latency.ts';
import { LAZY_READ_ONLY, LazyContacts } from './lazy.ts';
import { Prng } from './prng.ts';
import { RestV2 } from './routes.ts';

export const DEFAULT_TENANT = 'sandbox.infusionsoft.com';
const MAX_BODY_BYTES = 5 * 1024 * 1024;

export interface SandboxOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** Default 1; same seed => same dataset, byte for byte (and same keys, faults and latencies). */
  seed?: number;
  /** Default 5000; the other types scale from it. */
  contacts?: number;
  /** Default: tenant "sandbox.infusionsoft.com" with 2 keys derived from the seed. */
  keys?: SandboxKey[];
  /** Default KEAP_GATEWAY_LIMITS. */
  limits?: Partial<GatewayLimits>;
  /** Random latency before the arrival is stamped and judged; default 0..0. */
  latencyMs?: { min: number; max: number };
  faults?: SandboxFaults;
  /** Append one JSON line per arrival: {t, tenant, keyId, method, path, status, rule?}. */
  arrivalLogPath?: string;
  /** Default Date.now. */
  clock?: () => number;
  /** Every seeded create/update time is before this epoch ms (default SANDBOX_DATA_END, 2026-07-01). */
  dataEnd?: number;
  /** Last page: `next_page_token: ""` (default) or no `next_page_token` at all. */
  lastPageToken?: 'empty' | 'absent';
  /** REST hooks (`/rest/v1/hooks`): `timeScale` scales every delay of Keap's delivery policy. */
  hooks?: HookSettings;
  /**
   * Time to build each list page, after the gateway let the request through: `baseMs` plus
   * `perRecordMs` per record in the page, times a jitter factor in [1 - jitter, 1 + jitter].
   * Default: none (pages answer at once).
   */
  pageLatency?: PageLatency;
  /**
   * Lazy dataset: the `contacts` contacts are generated on demand from (seed, index), so a million fit
   * in memory; they are read-only (writes to contacts, tag applications and scripted contact changes
   * are refused) and carry no tags. The other lists hold their minimum counts. Default false.
   */
  lazy?: boolean;
}

export interface RunningSandbox {
  /** "http://127.0.0.1:PORT/crm"; REST v2 at baseUrl + "/rest/v2/...", v1 at baseUrl + "/rest/v1/...". */
  baseUrl: string;
  keys: SandboxKey[];
  arrivals: readonly ArrivalRecord[];
  /** The live in-memory records (in lazy mode, every list but the contacts). */
  dataset: SandboxDataset;
  /** REST hook subscriptions and their deliveries (also at GET /__admin/hooks). */
  hooks: SandboxHooks;
  /** Accepts another key, for its tenant (also at POST /__admin/keys {key, tenant}). */
  addKey(key: SandboxKey): void;
  /** In lazy mode, the virtual contacts. */
  lazyContacts: LazyContacts | undefined;
  mutate(type: ResourceType, change: { update?: number; create?: number; delete?: number }): MutationResult;
  setFaults(f: Partial<SandboxFaults>): void;
  close(): Promise<void>;
}

const limitsSchema = z
  .object({
    spikeIntervalMs: z.number().nonnegative(),
    minuteLimit: z.number().int().positive(),
    minuteWindowMs: z.number().int().positive(),
    dayLimit: z.number().int().positive(),
    tenantMinuteLimit: z.number().int().positive(),
    tenantDayLimit: z.number().int().positive(),
    quotaScope: z.enum(['tenant', 'key']),
  })
  .partial()
  .strict();

const optionsSchema = z
  .object({
    host: z.string().min(1).optional(),
    port: z.number().int().min(0).max(65_535).optional(),
    seed: z.number().int().optional(),
    contacts: z.number().int().min(0).max(1_000_000).optional(),
    keys: z
      .array(z.object({ key: z.string().min(1), tenant: z.string().min(1) }).strict())
      .min(1)
      .optional(),
    limits: limitsSchema.optional(),
    latencyMs: z
      .object({ min: z.number().nonnegative(), max: z.number().nonnegative() })
      .strict()
      .refine((l) => l.max >= l.min, { message: 'max must not be below min' })
      .optional(),
    faults: faultsSchema.optional(),
    arrivalLogPath: z.string().min(1).optional(),
    clock: z.custom<() => number>((v) => typeof v === 'function', 'must be a function').optional(),
    dataEnd: z.number().int().optional(),
    lastPageToken: z.enum(['empty', 'absent']).optional(),
    hooks: hookSettingsSchema.optional(),
    pageLatency: pageLatencySchema.optional(),
    lazy: z.boolean().optional(),
  })
  .strict();

const mutateBodySchema = z
  .object({
    type: z.enum(RESOURCE_TYPES as [ResourceType, ...ResourceType[]]),
    update: z.number().int().nonnegative().optional(),
    create: z.number().int().nonnegative().optional(),
    delete: z.number().int().nonnegative().optional(),
  })
  .strict();

/** The default keys of a seed: `count` keys (two by default) of tenant "sandbox.infusionsoft.com". */
export function defaultKeys(seed: number, count = 2, tenant = DEFAULT_TENANT): SandboxKey[] {
  return Array.from({ length: count }, (_, i) => ({
    key: `KeapAK-${createHash('sha256').update(`keap-sandbox:${seed}:${i}`).digest('hex').slice(0, 40)}`,
    tenant,
  }));
}

const sandboxKeySchema = z.object({ key: z.string().min(1), tenant: z.string().min(1) }).strict();

function validate(options: SandboxOptions): void {
  const r = optionsSchema.safeParse(options);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new SandboxConfigError(issue?.path.map(String).join('.') || 'options', issue?.message ?? 'invalid');
  }
}

interface Outgoing {
  status: number;
  headers: Record<string, string>;
  body?: string;
  contentType?: string;
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Outgoing {
  return {
    status,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    contentType: 'application/json',
  };
}

function v2Error(err: ApiError): unknown {
  return {
    code: err.status,
    message: err.message,
    status: STATUS_CODES[err.status] ?? 'Error',
    details: err.details,
  };
}

function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        resolve(undefined);
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function decodePath(p: string): string {
  try {
    return decodeURIComponent(p);
  } catch {
    throw new ApiError(400, 'The request path is not valid percent-encoding.', [
      { domain: 'path', resource: p },
    ]);
  }
}

function write(res: ServerResponse, out: Outgoing): void {
  if (res.destroyed || res.headersSent) return;
  const headers: Record<string, string> = { ...out.headers };
  if (out.body !== undefined) {
    headers['content-type'] = `${out.contentType ?? 'application/json'}; charset=utf-8`;
    headers['content-length'] = String(Buffer.byteLength(out.body));
  }
  res.writeHead(out.status, headers);
  res.end(out.body);
}

/** Starts a Keap sandbox on 127.0.0.1 (by default on a free port). */
export async function startSandbox(options: SandboxOptions = {}): Promise<RunningSandbox> {
  validate(options);
  const seed = options.seed ?? 1;
  const clock = options.clock ?? Date.now;
  const keys = [...(options.keys ?? defaultKeys(seed))];
  const contacts = options.contacts ?? 5000;
  const dataEnd = options.dataEnd ?? SANDBOX_DATA_END;
  const dataset = new SandboxDataset({ seed, contacts: options.lazy ? 0 : contacts, dataEnd });
  const lazyContacts = options.lazy ? new LazyContacts(dataset, seed, contacts, dataEnd) : undefined;
  const pageLatency = options.pageLatency ? new PageLatencyModel(options.pageLatency, seed) : undefined;
  const gateway = new SandboxGateway(options.limits ?? {}, keys);
  const addKey = (key: SandboxKey) => {
    if (gateway.addKey(key)) keys.push(key);
  };
  const faults = new FaultInjector(seed, options.faults ? parseFaults(options.faults) : {});
  const log = new ArrivalLog(options.arrivalLogPath);
  const hooks = new SandboxHooks({ settings: options.hooks, seed, clock, baseUrl: () => baseUrl });
  const rest = new RestV2(dataset, {
    lastPageToken: options.lastPageToken ?? 'empty',
    onChange: (type, event, ids, now) => hooks.emit(type, event, ids, now),
  });
  const latencyRng = new Prng(seed, 4);
  const latency = options.latencyMs ?? { min: 0, max: 0 };
  const closing = new AbortController();
  let baseUrl = '';

  /** A scripted change, announced to the hooks: its updates, creates and every record it removed (cascades too). */
  const mutate = (type: ResourceType, change: { update?: number; create?: number; delete?: number }) => {
    const now = clock();
    const before = new Map(RESOURCE_TYPES.map((t) => [t, new Set(dataset.table(t).ids())]));
    const result = dataset.mutate(type, change, now);
    const created = type === 'tagApplications' ? 'applied' : 'add';
    hooks.emit(type, created, result.created, now);
    // A tag application changes only by being applied again (a later applied time): Keap says applied.
    hooks.emit(type, type === 'tagApplications' ? 'applied' : 'edit', result.updated, now);
    for (const t of RESOURCE_TYPES) {
      const table = dataset.table(t);
      const gone = [...(before.get(t) ?? [])].filter((id) => !table.has(id));
      hooks.emit(t, t === 'tagApplications' ? 'removed' : 'delete', gone, now);
    }
    return result;
  };

  async function admin(req: IncomingMessage, path: string): Promise<Outgoing> {
    if (path === '/__admin/health' && req.method === 'GET') {
      const counts: Record<string, number> = {};
      for (const t of RESOURCE_TYPES) counts[t] = dataset.table(t).size;
      if (lazyContacts) counts.contacts = lazyContacts.count;
      return json(200, { status: 'ok', baseUrl, seed, counts, arrivals: log.records.length });
    }
    if (path === '/__admin/hooks' && req.method === 'GET') return json(200, hooks.snapshot());
    if (path === '/__admin/keys' && req.method === 'POST') {
      let body: unknown;
      try {
        body = JSON.parse((await readBody(req)) ?? '');
      } catch {
        return json(400, { message: 'The request body must be JSON.' });
      }
      const r = sandboxKeySchema.safeParse(body);
      if (!r.success) return json(400, { message: 'Send {"key": "<key>", "tenant": "<tenant>"}.' });
      addKey(r.data);
      return json(200, { tenant: r.data.tenant, keys: keys.length });
    }
    if ((path === '/__admin/mutate' || path === '/__admin/faults') && req.method === 'POST') {
      const raw = await readBody(req);
      let body: unknown;
      try {
        body = JSON.parse(raw ?? '');
      } catch {
        return json(400, { message: 'The request body must be JSON.' });
      }
      try {
        if (path === '/__admin/faults') {
          // JSON has no undefined: null clears a fault.
          const change =
            typeof body === 'object' && body !== null
              ? Object.fromEntries(Object.entries(body).map(([k, v]) => [k, v === null ? undefined : v]))
              : body;
          faults.set(parseFaults(change));
          return json(200, { faults: faults.current });
        }
        const r = mutateBodySchema.safeParse(body);
        if (!r.success) {
          const issue = r.error.issues[0];
          return json(400, {
            message: `Invalid ${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}.`,
          });
        }
        const { type, ...change } = r.data;
        if (lazyContacts && (type === 'contacts' || type === 'tagApplications'))
          return json(400, { message: LAZY_READ_ONLY });
        return json(200, mutate(type, change));
      } catch (err) {
        if (err instanceof SandboxConfigError || err instanceof SandboxMutationError)
          return json(400, { message: err.message });
        throw err;
      }
    }
    return json(404, { message: `No admin route ${req.method} ${path}.` });
  }

  async function restCall(req: IncomingMessage, url: URL): Promise<Outgoing | 'hang'> {
    const raw = await readBody(req);
    if (latency.max > 0) {
      const ms = latency.min + latencyRng.next() * (latency.max - latency.min);
      await delay(ms, undefined, { signal: closing.signal });
    }
    const arrival = gateway.stamp(clock());
    const method = req.method ?? 'GET';
    const path = url.pathname;
    const header = req.headers['x-keap-api-key'];
    const rawKey = Array.isArray(header) ? header[0] : header;
    const requestId = randomUUID();
    const base = { 'x-request-id': requestId };
    const d = gateway.judge(rawKey, arrival, faults.revokedFrom(rawKey), faults.inStorm(arrival));
    const record = (status: number, rule?: string): void => {
      const rec: ArrivalRecord = { t: arrival, tenant: d.tenant, keyId: d.keyId, method, path, status };
      if (rule !== undefined) rec.rule = rule;
      log.add(rec);
    };
    if (d.kind === 'unauthorized') {
      record(401);
      return json(401, d.body, base);
    }
    if (d.kind === 'throttled') {
      record(429, d.rule);
      return json(429, d.body, { ...d.headers, ...base });
    }
    const headers = { ...d.headers, ...base };
    const fault = faults.draw();
    if (fault === 'hang') {
      record(0);
      return 'hang';
    }
    if (fault === 'server-error') {
      const e = faults.serverError();
      record(e.status);
      if (e.html)
        return { status: e.status, headers, body: htmlErrorPage(e.status), contentType: 'text/html' };
      return json(
        e.status,
        {
          code: e.status,
          message: STATUS_CODES[e.status] ?? 'Server Error',
          status: STATUS_CODES[e.status] ?? 'Error',
          details: [],
        },
        headers,
      );
    }
    if (fault === 'html-error') {
      const status = faults.htmlError();
      record(status);
      return { status, headers, body: htmlErrorPage(status), contentType: 'text/html' };
    }
    let out: Outgoing;
    let listed: number | undefined;
    if (raw === undefined)
      out = json(413, v2Error(new ApiError(413, 'The request body is too large.')), headers);
    else if (path.startsWith('/crm/rest/v2/')) {
      try {
        const request = {
          method,
          path: decodePath(path.slice('/crm/rest/v2/'.length)),
          query: url.searchParams,
          body: raw,
          now: arrival,
        };
        const reply = lazyContacts?.handle(request) ?? rest.handle(request);
        listed = reply.listed;
        out = json(reply.status, reply.body, headers);
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        out = json(err.status, v2Error(err), headers);
      }
    } else if (path === '/crm/rest/v1/hooks' || path.startsWith('/crm/rest/v1/hooks/')) {
      try {
        const reply = await hooks.handle(method, path.slice('/crm/rest/v1/hooks'.length), raw, req.headers);
        out = json(reply.status, reply.body, headers);
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        out = json(err.status, { message: err.message }, headers);
      }
    } else {
      out = json(404, { message: `The sandbox serves no endpoint ${method} ${path}.` }, headers);
    }
    if (pageLatency && listed !== undefined)
      await delay(pageLatency.draw(listed), undefined, { signal: closing.signal });
    if (fault === 'malformed-json') {
      const full = out.body && out.body.length >= 2 ? out.body : '{"contacts":[{"id":"1"}]}';
      out = {
        status: 200,
        headers,
        body: full.slice(0, faults.cut(full.length)),
        contentType: 'application/json',
      };
    }
    record(out.status);
    return out;
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://sandbox.local');
    const path = url.pathname;
    const adminPath = path.startsWith('/crm/__admin/') ? path.slice('/crm'.length) : path;
    const work: Promise<Outgoing | 'hang'> = adminPath.startsWith('/__admin/')
      ? admin(req, adminPath)
      : path.startsWith('/crm/rest/')
        ? restCall(req, url)
        : Promise.resolve(json(404, { message: `Not a Keap path: ${path}. Use ${baseUrl}/rest/v2/...` }));
    work
      .then(async (out) => {
        if (out === 'hang') return;
        const slow = faults.current.slowMs ?? 0;
        if (slow > 0 && !adminPath.startsWith('/__admin/'))
          await delay(slow, undefined, { signal: closing.signal });
        write(res, out);
      })
      .catch((err: unknown) => {
        if (closing.signal.aborted) {
          res.destroy();
          return;
        }
        const message = err instanceof Error ? `${err.name}: ${err.message}` : 'unknown error';
        write(
          res,
          json(500, {
            code: 500,
            message: `Sandbox failure (${message}).`,
            status: 'Internal Server Error',
            details: [],
          }),
        );
      });
  });
  server.keepAliveTimeout = 5_000;

  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  baseUrl = `http://${urlHost}:${address.port}/crm`;

  let closed: Promise<void> | undefined;
  return {
    baseUrl,
    keys,
    addKey,
    arrivals: log.records,
    dataset,
    hooks,
    lazyContacts,
    mutate,
    setFaults: (f) => faults.set(f),
    close: () => {
      closed ??= (async () => {
        closing.abort();
        hooks.close();
        const done = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await done;
        await log.close();
      })();
      return closed;
    },
  };
}
