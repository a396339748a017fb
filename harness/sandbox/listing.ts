// Domain: Keap v2 list semantics — page_size, opaque page tokens, `filter`, `order_by` and `fields`.
import { createHash } from 'node:crypto';
import { ApiError } from './errors.ts';

export type SortKey = number | string;

/** One `filter` field a list accepts. Time bounds are inclusive and take only `==`. */
export type FilterSpec<T> =
  | { kind: 'from' | 'until'; get: (r: T) => string | undefined }
  | { kind: 'text'; get: (r: T) => string | undefined; wildcard?: boolean }
  | { kind: 'ids'; get: (r: T) => string | undefined }
  | { kind: 'number'; get: (r: T) => number }
  | { kind: 'bool'; get: (r: T) => boolean }
  /** A true/false switch read by the list's `baseline` (e.g. users' `include_inactive`). */
  | { kind: 'flag' };

/** Which properties a response carries: all but `optional` ones, plus any the `fields` param names. */
export interface FieldsSpec {
  allowed: readonly string[];
  /** Properties left out unless requested. */
  optional: readonly string[] | ((key: string) => boolean);
}

export interface ListSpec<T> {
  /** Response array property, e.g. `contacts`. */
  collection: string;
  pageSize: { min: number; max: number; default: number };
  /** `order_by` fields and their sort keys. */
  orderBy: Readonly<Record<string, (r: T) => SortKey>>;
  /** Tie-breaker and default order (ascending). */
  seq: (r: T) => number;
  filters: Readonly<Record<string, FilterSpec<T>>>;
  /** A predicate built from the filter values (e.g. users hide inactive ones unless asked). */
  baseline?: (filters: ReadonlyMap<string, string>) => ((r: T) => boolean) | undefined;
  fields?: FieldsSpec;
}

export interface ListPage<T> {
  items: T[];
  /** Token for the next page, or '' on the last page. */
  next: string;
}

interface Entry<T> {
  k: SortKey;
  n: number;
  r: T;
}

interface TokenBody {
  q: string;
  k: SortKey;
  n: number;
}

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(Z|[+-]\d{2}:\d{2})$/;
const OPS = ['==', '!=', '>=', '<=', '>', '<'] as const;
type Op = (typeof OPS)[number];

function badRequest(message: string, domain: string, resource: string): ApiError {
  return new ApiError(400, message, [{ domain, resource }]);
}

/** Parses a full ISO-8601 date-time with milliseconds and a zone; anything else is a 400 naming `field`. */
export function parseIsoTime(value: string, field: string): number {
  const ms = Date.parse(value);
  if (
    !ISO_MS.test(value) ||
    !Number.isFinite(ms) ||
    (value.endsWith('Z') && new Date(ms).toISOString() !== value)
  )
    throw badRequest(
      `Invalid value "${value}" for ${field}: expected an ISO-8601 date-time with milliseconds and a time zone, e.g. 2026-01-01T00:00:00.000Z.`,
      'filter',
      field,
    );
  return ms;
}

function compareKeys(a: SortKey, b: SortKey): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const x = String(a);
  const y = String(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

function parsePageSize(raw: string | null, spec: ListSpec<unknown>['pageSize']): number {
  if (raw === null || raw === '') return spec.default;
  const n = Number(raw);
  if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < spec.min || n > spec.max)
    throw badRequest(
      `Invalid page_size "${raw}": must be an integer from ${spec.min} to ${spec.max}.`,
      'page_size',
      raw,
    );
  return n === 0 ? spec.default : n;
}

interface ParsedFilter {
  field: string;
  op: Op;
  value: string;
}

function splitFilter(raw: string): ParsedFilter[] {
  const out: ParsedFilter[] = [];
  for (const part of raw.split(';')) {
    const p = part.trim();
    if (p === '') continue;
    const m = /^([A-Za-z0-9_]+)\s*(==|!=|>=|<=|>|<)(.*)$/.exec(p);
    if (!m)
      throw badRequest(`Invalid filter "${p}": expected field==value pairs joined by ";".`, 'filter', p);
    out.push({ field: m[1] ?? '', op: (m[2] ?? '==') as Op, value: (m[3] ?? '').trim() });
  }
  return out;
}

function compileFilter<T>(f: ParsedFilter, spec: FilterSpec<T> | undefined): (r: T) => boolean {
  if (!spec) throw badRequest(`Unsupported filter field "${f.field}".`, 'filter', f.field);
  const needEq = (): void => {
    if (f.op !== '==') throw badRequest(`Filter field "${f.field}" supports only ==.`, 'filter', f.field);
  };
  switch (spec.kind) {
    case 'from':
    case 'until': {
      needEq();
      const bound = parseIsoTime(f.value, f.field);
      const get = spec.get;
      return spec.kind === 'from'
        ? (r) => {
            const v = get(r);
            return v !== undefined && Date.parse(v) >= bound;
          }
        : (r) => {
            const v = get(r);
            return v !== undefined && Date.parse(v) <= bound;
          };
    }
    case 'text': {
      needEq();
      const get = spec.get;
      if (f.value === 'NONE') return (r) => !get(r);
      const wildcard = spec.wildcard === true && f.value.endsWith('*');
      const want = (wildcard ? f.value.slice(0, -1) : f.value).toLowerCase();
      return wildcard
        ? (r) => (get(r) ?? '').toLowerCase().startsWith(want)
        : (r) => (get(r) ?? '').toLowerCase() === want;
    }
    case 'ids': {
      needEq();
      const set = new Set(
        f.value
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== ''),
      );
      const get = spec.get;
      return (r) => set.has(get(r) ?? '');
    }
    case 'number': {
      const n = Number(f.value);
      if (f.value === '' || !Number.isFinite(n))
        throw badRequest(`Filter field "${f.field}" needs a number, got "${f.value}".`, 'filter', f.field);
      const get = spec.get;
      const cmp: Record<Op, (a: number) => boolean> = {
        '==': (a) => a === n,
        '!=': (a) => a !== n,
        '>=': (a) => a >= n,
        '<=': (a) => a <= n,
        '>': (a) => a > n,
        '<': (a) => a < n,
      };
      const test = cmp[f.op];
      return (r) => test(get(r));
    }
    case 'flag':
    case 'bool': {
      needEq();
      const v = f.value.toLowerCase();
      if (v !== 'true' && v !== 'false')
        throw badRequest(
          `Filter field "${f.field}" needs true or false, got "${f.value}".`,
          'filter',
          f.field,
        );
      if (spec.kind === 'flag') return () => true;
      const want = v === 'true';
      const get = spec.get;
      return (r) => get(r) === want;
    }
  }
}

/** Parses the `fields` query parameter (comma-separated, possibly repeated); undefined when absent. */
export function parseFields(query: URLSearchParams, spec: FieldsSpec | undefined): Set<string> | undefined {
  const raw = query.getAll('fields');
  if (raw.length === 0 || !spec) return undefined;
  const out = new Set<string>();
  for (const part of raw.join(',').split(',')) {
    const f = part.trim();
    if (f === '') continue;
    if (!spec.allowed.includes(f)) throw badRequest(`Unknown field "${f}" in fields.`, 'fields', f);
    out.add(f);
  }
  return out;
}

/** The properties of `r` the response carries, given the requested `fields`. */
export function project<T extends object>(
  r: T,
  spec: FieldsSpec | undefined,
  requested: ReadonlySet<string> | undefined,
): Partial<T> {
  if (!spec) return r;
  const optional = spec.optional;
  const isOptional = typeof optional === 'function' ? optional : (k: string) => optional.includes(k);
  const out: Partial<T> = {};
  for (const key of Object.keys(r) as Array<keyof T & string>) {
    if (!isOptional(key) || requested?.has(key)) out[key] = r[key];
  }
  return out;
}

/**
 * Lists records by Keap's v2 rules. Page tokens are opaque keyset cursors bound to the query: a page
 * resumes after the last record it returned (by sort key, then id), so records changed between pages
 * are neither skipped nor repeated unless their sort key moved.
 */
export class Lister {
  private readonly views = new WeakMap<object, Map<string, { version: number; entries: Entry<unknown>[] }>>();

  page<T>(
    spec: ListSpec<T>,
    source: { version: number; items: () => readonly T[] },
    query: URLSearchParams,
    scope: { key: string; test?: (r: T) => boolean },
  ): ListPage<T> {
    const size = parsePageSize(query.get('page_size'), spec.pageSize as ListSpec<unknown>['pageSize']);
    const { field, dir } = this.parseOrder(query.get('order_by'), spec);
    const filters = splitFilter(query.get('filter') ?? '');
    const tests: Array<(r: T) => boolean> = [];
    if (scope.test) tests.push(scope.test);
    for (const f of filters) tests.push(compileFilter(f, spec.filters[f.field]));
    const base = spec.baseline?.(new Map(filters.map((f) => [f.field, f.value.toLowerCase()])));
    if (base) tests.push(base);
    const q = createHash('sha256')
      .update(
        `${spec.collection}\u0000${scope.key}\u0000${query.get('filter') ?? ''}\u0000${field}\u0000${dir}`,
      )
      .digest('base64url')
      .slice(0, 12);
    const entries = this.view(spec, source, field);
    let i = 0;
    const token = query.get('page_token');
    if (token) {
      const t = decodeToken(token, q);
      i = lowerBound(entries, t, dir);
    }
    const items: T[] = [];
    let last: Entry<T> | undefined;
    for (; i < entries.length; i++) {
      const e = entries[dir === 1 ? i : entries.length - 1 - i] as Entry<T>;
      if (!tests.every((t) => t(e.r))) continue;
      if (items.length === size) {
        return { items, next: last ? encodeToken({ q, k: last.k, n: last.n }) : '' };
      }
      items.push(e.r);
      last = e;
    }
    return { items, next: '' };
  }

  private parseOrder<T>(raw: string | null, spec: ListSpec<T>): { field: string; dir: 1 | -1 } {
    if (raw === null || raw.trim() === '') return { field: '', dir: 1 };
    const parts = raw.trim().split(/[\s,]+/);
    const field = parts[0] ?? '';
    const d = (parts[1] ?? 'asc').toLowerCase();
    if (!(field in spec.orderBy) || (d !== 'asc' && d !== 'desc') || parts.length > 2)
      throw badRequest(
        `Invalid order_by "${raw}": use one of ${Object.keys(spec.orderBy).join(', ')} followed by asc or desc.`,
        'order_by',
        field,
      );
    return { field, dir: d === 'asc' ? 1 : -1 };
  }

  /** The records sorted ascending by (key, seq), cached until the source changes. */
  private view<T>(
    spec: ListSpec<T>,
    source: { version: number; items: () => readonly T[] },
    field: string,
  ): Entry<T>[] {
    let byField = this.views.get(spec);
    if (!byField) {
      byField = new Map();
      this.views.set(spec, byField);
    }
    const cached = byField.get(field);
    if (cached && cached.version === source.version) return cached.entries as Entry<T>[];
    const keyOf = field === '' ? spec.seq : (spec.orderBy[field] ?? spec.seq);
    const entries: Entry<T>[] = source.items().map((r) => ({ k: keyOf(r), n: spec.seq(r), r }));
    entries.sort((a, b) => compareKeys(a.k, b.k) || a.n - b.n);
    byField.set(field, { version: source.version, entries: entries as Entry<unknown>[] });
    return entries;
  }
}

/** Index (in iteration order for `dir`) of the first entry after the token's position. */
function lowerBound<T>(entries: readonly Entry<T>[], t: TokenBody, dir: 1 | -1): number {
  // Ascending storage; for desc we walk from the end, so find entries strictly before the token.
  const after = (e: Entry<T>): boolean => {
    const c = compareKeys(e.k, t.k) * dir || (e.n - t.n) * dir;
    return c > 0;
  };
  let lo = 0;
  let hi = entries.length;
  if (dir === 1) {
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (after(entries[mid] as Entry<T>)) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
  // Descending: position p in storage is the first with !after (i.e. >= token); iteration index = len - p.
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (after(entries[mid] as Entry<T>)) lo = mid + 1;
    else hi = mid;
  }
  return entries.length - lo;
}

function encodeToken(t: TokenBody): string {
  return Buffer.from(JSON.stringify(t), 'utf8').toString('base64url');
}

function decodeToken(token: string, q: string): TokenBody {
  const invalid = badRequest(
    'Invalid page_token: it must be a next_page_token returned for the same filter and order_by.',
    'page_token',
    token.slice(0, 40),
  );
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw invalid;
  }
  if (typeof body !== 'object' || body === null) throw invalid;
  const b = body as Record<string, unknown>;
  if (b.q !== q || (typeof b.k !== 'number' && typeof b.k !== 'string') || typeof b.n !== 'number')
    throw invalid;
  return { q: b.q, k: b.k, n: b.n };
}
