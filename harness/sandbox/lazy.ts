// Domain: the sandbox's lazy (virtual) contacts list, for very large datasets (e.g. 1,000,000 contacts).
// A contact is generated on demand from (seed, index) alone, so none is held in memory; only each
// contact's update time is kept (a Float64Array, 8 bytes a contact) with an index sorted by it, so paging
// by id or update time, the update-time filters and the ids filter work as on the eager list.
// Read-only: writes to contacts, and the lists derived from contacts, are refused (see LAZY_READ_ONLY).
import { createHash } from 'node:crypto';
import { REGISTRY } from '#shared/keap/registry.ts';
import { ApiError } from './errors.ts';
import { DAY_MS, GENERATORS, type GenContext } from './generators.ts';
import { type FieldsSpec, parseFields, parseIsoTime, project } from './listing.ts';
import { Prng } from './prng.ts';
import { fieldsSpecOf } from './resources.ts';
import type { Reply, Request } from './routes.ts';
import type { Contact } from './shapes.ts';

/** Days of seeded history before the data end (the eager dataset's span). */
const HISTORY_DAYS = 3 * 365;
/** Prng streams of lazy contacts start here (the eager dataset uses streams 1..6). */
const STREAM_BASE = 1_000;

export const LAZY_READ_ONLY =
  "The sandbox's lazy dataset is read-only: contacts are generated on demand and cannot be written.";

interface Token {
  q: string;
  k: number;
  n: number;
}

/** The virtual contacts `1..count` of one seed. */
export class LazyContacts {
  readonly count: number;
  private readonly seed: number;
  private readonly ctx: GenContext;
  private readonly start: number;
  private readonly end: number;
  /** Update time (epoch ms) of contact index i (id i + 1). */
  private readonly updated: Float64Array;
  /** Indexes ordered by (update time, id). */
  private readonly byUpdate: Uint32Array;
  private readonly fields: FieldsSpec | undefined;
  private readonly entry = REGISTRY.contacts;

  /** `ctx`: the (small, eager) dataset the contacts refer to (companies, users). */
  constructor(ctx: GenContext, seed: number, count: number, dataEnd: number) {
    this.ctx = ctx;
    this.seed = seed;
    this.count = count;
    this.end = dataEnd;
    this.start = dataEnd - HISTORY_DAYS * DAY_MS;
    this.updated = new Float64Array(count);
    for (let i = 0; i < count; i++) this.updated[i] = this.times(new Prng(seed, STREAM_BASE + i))[1];
    const order = new Uint32Array(count);
    for (let i = 0; i < count; i++) order[i] = i;
    const u = this.updated;
    order.sort((a, b) => (u[a] as number) - (u[b] as number) || a - b);
    this.byUpdate = order;
    this.fields = fieldsSpecOf('contacts');
  }

  private times(rng: Prng): [number, number] {
    const created = this.start + Math.floor(rng.next() * (this.end - this.start - DAY_MS));
    const updated = created + Math.floor(rng.next() * (this.end - created - 1));
    return [created, updated];
  }

  /** Contact `id` ("1".."count"), generated afresh; undefined when there is no such contact. */
  get(id: string): Contact | undefined {
    if (!/^[1-9]\d*$/.test(id)) return undefined;
    const index = Number(id) - 1;
    if (index >= this.count) return undefined;
    return this.make(index);
  }

  private make(index: number): Contact {
    const rng = new Prng(this.seed, STREAM_BASE + index);
    const [created, updated] = this.times(rng);
    const g = GENERATORS.contacts;
    if (!('make' in g)) throw new Error('The contacts generator must seed by count.');
    return g.make(this.ctx, rng, String(index + 1), created, updated);
  }

  /**
   * Serves `GET contacts` and `GET contacts/{id}`; refuses any other request below `contacts` (and a
   * tag's contacts) with 405. Undefined: not a contacts path, the eager routes serve it.
   */
  handle(req: Request): Reply | undefined {
    const parts = req.path.split('/').filter((s) => s !== '');
    const under = parts[0] === 'contacts' || (parts[0] === 'tags' && (parts[2] ?? '').startsWith('contacts'));
    // The contacts' custom-field model is the (eager) dataset's: the routes serve it.
    if (!under || (parts[0] === 'contacts' && parts[1] === 'model' && parts.length === 2)) return undefined;
    if (req.method !== 'GET' || parts[0] === 'tags' || parts.length > 2)
      throw new ApiError(405, LAZY_READ_ONLY);
    if (parts.length === 2) {
      const id = parts[1] ?? '';
      const c = this.get(id);
      if (!c) throw new ApiError(404, `Contact ${id} was not found.`, [{ domain: 'contact', resource: id }]);
      return { status: 200, body: project(c, this.fields, parseFields(req.query, this.fields)) };
    }
    return this.list(req.query);
  }

  private list(query: URLSearchParams): Reply {
    const max: number = this.entry.maxPageSize;
    const rawSize = query.get('page_size');
    let size = max;
    if (rawSize !== null && rawSize !== '') {
      const n = Number(rawSize);
      if (!/^\d+$/.test(rawSize.trim()) || n > max)
        throw bad(
          `Invalid page_size "${rawSize}": must be an integer from 0 to ${max}.`,
          'page_size',
          rawSize,
        );
      size = n === 0 ? max : n;
    }
    const fields = parseFields(query, this.fields);
    // order_by: id (default) or update_time, asc or desc.
    const rawOrder = (query.get('order_by') ?? '').trim();
    const [field = 'id', d = 'asc', ...extra] = rawOrder === '' ? [] : rawOrder.split(/[\s,]+/);
    const dir = d.toLowerCase();
    if ((field !== 'id' && field !== 'update_time') || (dir !== 'asc' && dir !== 'desc') || extra.length > 0)
      throw bad(
        `Invalid order_by "${rawOrder}": the lazy dataset orders by id or update_time, asc or desc.`,
        'order_by',
        field,
      );
    // filter: the update-time bounds and the ids filter.
    let from = Number.NEGATIVE_INFINITY;
    let until = Number.POSITIVE_INFINITY;
    let ids: number[] | undefined;
    // contact_id's comparisons, as index bounds (id i + 1), inclusive.
    let idMin = 0;
    let idMax = this.count - 1;
    for (const part of (query.get('filter') ?? '').split(';')) {
      const p = part.trim();
      if (p === '') continue;
      const m = /^([A-Za-z0-9_]+)\s*(==|>=|<=|>|<)(.*)$/.exec(p);
      const name = m?.[1] ?? '';
      const op = m?.[2] ?? '==';
      const value = (m?.[3] ?? '').trim();
      if (name === this.entry.idRangeFilter) {
        if (!/^\d{1,20}$/.test(value))
          throw bad(`Filter field "${name}" needs a number, got "${value}".`, 'filter', name);
        const n = Number(value) - 1;
        if (op === '==' || op === '>=') idMin = Math.max(idMin, n);
        if (op === '==' || op === '<=') idMax = Math.min(idMax, n);
        if (op === '>') idMin = Math.max(idMin, n + 1);
        if (op === '<') idMax = Math.min(idMax, n - 1);
        continue;
      }
      if (op !== '==') throw bad(`Filter field "${name}" supports only ==.`, 'filter', name);
      if (name === this.entry.sinceField) from = Math.max(from, parseIsoTime(value, name));
      else if (name === this.entry.untilField) until = Math.min(until, parseIsoTime(value, name));
      else if (name === this.entry.idFilter || name === 'contact_ids') {
        const set = new Set<number>();
        for (const s of value.split(',')) {
          const t = s.trim();
          if (/^[1-9]\d*$/.test(t) && Number(t) <= this.count) set.add(Number(t) - 1);
        }
        ids = [...set].sort((a, b) => a - b);
      } else
        throw bad(
          `Unsupported filter "${p}": the lazy dataset filters on ${this.entry.sinceField}, ${this.entry.untilField}, ${this.entry.idFilter} (==) and ${this.entry.idRangeFilter} (==, >=, <=, >, <) only.`,
          'filter',
          p,
        );
    }
    const q = createHash('sha256')
      .update(`lazy-contacts\u0000${query.get('filter') ?? ''}\u0000${field}\u0000${dir}`)
      .digest('base64url')
      .slice(0, 12);
    const token = query.get('page_token');
    const after = token ? decodeToken(token, q) : undefined;
    const u = this.updated;
    const inRange = (i: number): boolean => {
      const t = u[i] as number;
      return t >= from && t <= until && i >= idMin && i <= idMax;
    };
    const key = field === 'id' ? (i: number) => i : (i: number) => u[i] as number;
    // The candidates in the list's order, as a position range over an index array.
    let seq: { length: number; at(p: number): number };
    if (ids) {
      const chosen = field === 'id' ? ids : [...ids].sort((a, b) => key(a) - key(b) || a - b);
      seq = { length: chosen.length, at: (p) => chosen[p] as number };
    } else if (field === 'id') seq = { length: this.count, at: (p) => p };
    else seq = { length: this.count, at: (p) => this.byUpdate[p] as number };
    const asc = dir === 'asc';
    const at = (p: number): number => seq.at(asc ? p : seq.length - 1 - p);
    // First position past the token (keyset: (key, id) strictly after it in the list's direction).
    const past = (i: number): boolean => {
      if (!after) return true;
      const c = key(i) - after.k || i + 1 - after.n;
      return asc ? c > 0 : c < 0;
    };
    let lo = 0;
    let hi = seq.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (past(at(mid))) hi = mid;
      else lo = mid + 1;
    }
    // Time-ordered without an ids filter: skip straight to the range's bounds.
    if (!ids && field === 'update_time') {
      const first = (test: (t: number) => boolean): number => {
        let a = 0;
        let b = seq.length;
        while (a < b) {
          const mid = (a + b) >> 1;
          if (test(u[at(mid)] as number)) b = mid;
          else a = mid + 1;
        }
        return a;
      };
      lo = Math.max(lo, asc ? first((t) => t >= from) : first((t) => t <= until));
    }
    // Id-ordered without an ids filter: skip straight to the id range.
    if (!ids && field === 'id') lo = Math.max(lo, asc ? idMin : this.count - 1 - idMax);
    const items: Contact[] = [];
    let last = -1;
    for (let p = lo; p < seq.length; p++) {
      const i = at(p);
      if (!inRange(i)) {
        const t = u[i] as number;
        // Sorted by time: past the time range nothing further is in it.
        if (!ids && field === 'update_time' && !(t >= from && t <= until)) break;
        if (!ids && field === 'id' && (asc ? i > idMax : i < idMin)) break; // past the id range
        continue;
      }
      if (items.length === size) {
        const next = encodeToken({ q, k: key(last), n: last + 1 });
        return { status: 200, body: this.body(items, fields, next), listed: items.length };
      }
      items.push(this.make(i));
      last = i;
    }
    return { status: 200, body: this.body(items, fields, ''), listed: items.length };
  }

  private body(items: Contact[], fields: ReadonlySet<string> | undefined, next: string): unknown {
    return { contacts: items.map((c) => project(c, this.fields, fields)), next_page_token: next };
  }
}

function bad(message: string, domain: string, resource: string): ApiError {
  return new ApiError(400, message, [{ domain, resource }]);
}

function encodeToken(t: Token): string {
  return Buffer.from(JSON.stringify(t), 'utf8').toString('base64url');
}

function decodeToken(token: string, q: string): Token {
  const invalid = bad(
    'Invalid page_token: it must be a next_page_token returned for the same filter and order_by.',
    'page_token',
    token.slice(0, 40),
  );
  let b: unknown;
  try {
    b = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw invalid;
  }
  const t = b as Partial<Token> | null;
  if (!t || t.q !== q || typeof t.k !== 'number' || typeof t.n !== 'number') throw invalid;
  return { q: t.q, k: t.k, n: t.n };
}
