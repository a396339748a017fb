// Test support: calling the Keap sandbox, paging its lists, and a hand-driven clock.
import type { RunningSandbox } from '#harness/sandbox/index.ts';

/** Limits that never throttle a test that is not about throttling. */
export const RELAXED = {
  spikeIntervalMs: 0,
  minuteLimit: 1_000_000,
  dayLimit: 10_000_000,
  tenantMinuteLimit: 1_000_000,
  tenantDayLimit: 10_000_000,
};

/** A clock the test moves by hand (sandbox clock, epoch ms). */
export class ManualClock {
  now: number;
  constructor(start: number) {
    this.now = start;
  }
  readonly read = (): number => this.now;
  advance(ms: number): number {
    this.now += ms;
    return this.now;
  }
}

export interface CallResult<T> {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed body, typed as the caller expects (undefined when it is not JSON). */
  json: T;
}

/** Keap's v2 error body. */
export interface V2Error {
  code: number;
  message: string;
  status: string;
  details: Array<{ domain: string; resource: string }>;
}

/** A v2 list page: items under `K`, and the next page's token. */
export type Page<K extends string, T> = { [P in K]: T[] } & { next_page_token?: string };

export interface CallOptions {
  key?: string | null;
  method?: string;
  body?: unknown;
  signal?: AbortSignal;
}

/** Calls `baseUrl + path` with the sandbox's first key unless `key` says otherwise (null: no key). */
export async function call<T = unknown>(
  sb: RunningSandbox,
  path: string,
  opts: CallOptions = {},
): Promise<CallResult<T>> {
  const headers: Record<string, string> = {};
  const key = opts.key === undefined ? sb.keys[0]?.key : opts.key;
  if (key !== null && key !== undefined) headers['X-Keap-API-Key'] = key;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const init: RequestInit = { method: opts.method ?? 'GET', headers };
  if (opts.body !== undefined)
    init.body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  if (opts.signal) init.signal = opts.signal;
  const res = await fetch(`${sb.baseUrl}${path}`, init);
  const text = await res.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json: json as T };
}

/** Pages a v2 list to the end; returns every item and the number of pages. */
export async function listAll<T = Record<string, unknown>>(
  sb: RunningSandbox,
  path: string,
  collection: string,
  params: Record<string, string> = {},
): Promise<{ items: T[]; pages: number; lastToken: unknown }> {
  const items: T[] = [];
  let token = '';
  let pages = 0;
  let lastToken: unknown;
  for (;;) {
    const q = new URLSearchParams(params);
    if (token) q.set('page_token', token);
    const r = await call<Record<string, unknown>>(sb, `${path}?${q.toString()}`);
    if (r.status !== 200) throw new Error(`GET ${path} answered ${r.status}: ${r.text}`);
    pages++;
    items.push(...((r.json[collection] ?? []) as T[]));
    lastToken = r.json.next_page_token;
    if (typeof lastToken !== 'string' || lastToken === '') break;
    token = lastToken;
    if (pages > 10_000) throw new Error('paging did not end');
  }
  return { items, pages, lastToken };
}

/** A `filter` value as Keap expects it, before URL encoding (URLSearchParams encodes it). */
export function filter(pairs: Record<string, string>): string {
  return Object.entries(pairs)
    .map(([k, v]) => `${k}==${v}`)
    .join(';');
}
