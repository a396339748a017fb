// Use case: reading a Keap list to its end, page by page, fully or incrementally from a cursor. Yields
// each page with its token so the sync engine can checkpoint after every page and resume from a token.
import { performance } from 'node:perf_hooks';
import type { z } from 'zod';
import type { Priority } from '../quota/index.ts';
import { KeapArgumentError, PagingLoopError, UnexpectedResponseError } from './errors.ts';
import {
  fieldsQuery,
  RESOURCES,
  type RecordTypes,
  type ResourceName,
  type ResourceSpec,
  updateTimeOf,
} from './resources.ts';
import { SlotPool, type Transport } from './transport.ts';

export type TimeInput = string | Date | number;

export interface PageOptions {
  /**
   * Cursor for an incremental read: only records updated at or after `since - overlapMs` are read
   * (by Keap's filter, or by reading newest-first and stopping, or by keeping changed ones, per list).
   * Absent: a full read.
   */
  since?: TimeInput;
  /** Upper bound on the update time (lists with a Keap filter only). */
  until?: TimeInput;
  /** Overlap re-read before the cursor; default the `overlapMs` setting. */
  overlapMs?: number;
  /** Resume from this token (the `nextPageToken` of the last page checkpointed). Use the same `since`. */
  pageToken?: string;
  /** High-water mark already reached before resuming, so the run's mark keeps counting from it. */
  highWaterMark?: string;
  /** Default: the `pageSize` setting, capped at the list's maximum (1000; users 100). */
  pageSize?: number;
  /** Extra filter pairs, `field==value` (joined with `;`). */
  filter?: Readonly<Record<string, string>>;
  /**
   * Only records whose id is in this range (inclusive; decimal ids), by the list's `idRangeFilter`
   * (`contact_id>=1;contact_id<=5000`). Lists without one refuse it.
   */
  idRange?: { min?: string; max?: string };
  /** Override of the list's `fields` (contacts default to every field, so update_time and custom fields come back). */
  fields?: readonly string[];
  /** Override of `order_by` (`field asc|desc`). */
  orderBy?: string;
  /** Drop records already delivered in this run (overlap, shifting pages). Default true. */
  dedupe?: boolean;
  priority?: Priority;
  waitBudgetMs?: number;
  /**
   * Slots one ledger write reserves ahead for the pages that follow a full page (default the
   * `pageSlotBatch` setting). Readers of a list in parallel ranges take 1 each: together they already
   * keep the ledger ahead of them.
   */
  slotBatch?: number;
}

export interface TagPageOptions extends PageOptions {
  /** The tag whose applications (`GET /tags/{tag_id}/contacts`) are read. */
  tagId: string;
}

export type PageOptionsFor<R extends ResourceName> = R extends 'tagApplications'
  ? TagPageOptions
  : PageOptions;

export interface Page<T> {
  resource: ResourceName;
  /** Records of this page: new in this run (deduplicated) and, when incremental, changed since the cursor. */
  records: T[];
  /** 0-based page number in this run. */
  index: number;
  /** Token this page was fetched with (undefined: the first page). */
  pageToken: string | undefined;
  /** Token to resume from after this page; undefined when the run is done. */
  nextPageToken: string | undefined;
  done: boolean;
  /** Latest update time seen so far in the run (ISO-8601 UTC with ms): the next cursor. */
  highWaterMark: string | undefined;
  /** Records Keap returned on this page before filtering and de-duplication. */
  received: number;
  /** HTTP requests this page took, retries included. */
  requests: number;
}

export interface ReadResult<T> {
  records: T[];
  highWaterMark: string | undefined;
  pages: number;
  requests: number;
}

/** Parses a time option to epoch ms, or throws KeapArgumentError naming it. */
export function toEpochMs(name: string, value: TimeInput): number {
  const ms = value instanceof Date ? value.getTime() : typeof value === 'number' ? value : Date.parse(value);
  if (!Number.isFinite(ms)) {
    throw new KeapArgumentError(name, 'must be a Date, epoch milliseconds or an ISO-8601 date-time.');
  }
  return ms;
}

/** Keap's filter date format: full ISO-8601, milliseconds, UTC. */
export function keapTime(ms: number): string {
  return new Date(ms).toISOString();
}

function buildQuery(
  spec: ResourceSpec,
  o: PageOptions,
  sinceMs: number | undefined,
  untilMs: number | undefined,
  pageSize: number,
): Record<string, string | number | readonly string[] | undefined> {
  const pairs: string[] = [];
  for (const [k, v] of Object.entries({ ...spec.defaultFilter, ...o.filter })) {
    if (!/^[A-Za-z0-9_.]+$/.test(k))
      throw new KeapArgumentError('filter', `has an invalid field name "${k}".`);
    pairs.push(`${k}==${v}`);
  }
  if (o.idRange) {
    const field = spec.idRangeFilter;
    if (!field)
      throw new KeapArgumentError(
        'idRange',
        `is not supported for ${spec.name}: Keap has no id filter on it.`,
      );
    for (const [op, v] of [
      ['>=', o.idRange.min],
      ['<=', o.idRange.max],
    ] as const) {
      if (v === undefined) continue;
      if (!/^[0-9]{1,20}$/.test(v))
        throw new KeapArgumentError('idRange', `bounds are decimal ids, got "${v}".`);
      pairs.push(`${field}${op}${v}`);
    }
  }
  let orderBy = o.orderBy ?? spec.orderBy;
  if (spec.mode === 'filter') {
    if (sinceMs !== undefined && spec.sinceField) pairs.push(`${spec.sinceField}==${keapTime(sinceMs)}`);
    if (untilMs !== undefined && spec.untilField) pairs.push(`${spec.untilField}==${keapTime(untilMs)}`);
  } else if (untilMs !== undefined) {
    throw new KeapArgumentError('until', `is not supported for ${spec.name}: Keap has no time filter on it.`);
  }
  if (spec.mode === 'descending' && sinceMs !== undefined) orderBy = o.orderBy ?? spec.descendingOrderBy;
  const fields = fieldsQuery(spec.fields?.style ?? 'comma', o.fields ?? spec.fields?.request);
  return {
    page_size: pageSize,
    filter: pairs.length ? pairs.join(';') : undefined,
    order_by: orderBy,
    fields,
  };
}

export interface PagerDefaults {
  pageSize: number;
  overlapMs: number;
  readPriority: Priority;
  waitBudgetMs: number;
  pageSlotBatch: number;
  expectedPageLatencyMs: number;
}

/** Reads `resource` page by page through `transport` (every request through the ledger). */
export async function* readPages<R extends ResourceName>(
  transport: Transport,
  resource: R,
  options: PageOptionsFor<R>,
): AsyncGenerator<Page<RecordTypes[R]>, void, undefined> {
  const spec = RESOURCES[resource];
  if (!spec)
    throw new KeapArgumentError('resource', `"${String(resource)}" is not a list this client reads.`);
  const o: PageOptions = options;
  const s = transport.settings;
  let path = spec.path;
  if (path.includes('{tag_id}')) {
    const tagId = (options as Partial<TagPageOptions>).tagId;
    if (typeof tagId !== 'string' || tagId === '') {
      throw new KeapArgumentError('tagId', `is required to read ${resource}.`);
    }
    path = path.replace('{tag_id}', encodeURIComponent(tagId));
  }
  const pageSize = Math.min(o.pageSize ?? s.pageSize, spec.maxPageSize);
  if (!Number.isInteger(pageSize) || pageSize < 1) {
    throw new KeapArgumentError('pageSize', `must be an integer from 1 to ${spec.maxPageSize}.`);
  }
  const overlapMs = o.overlapMs ?? s.overlapMs;
  if (!(overlapMs >= 0)) throw new KeapArgumentError('overlapMs', 'must be zero or more.');
  const cursorMs = o.since === undefined ? undefined : toEpochMs('since', o.since);
  const sinceMs = cursorMs === undefined ? undefined : cursorMs - overlapMs;
  const untilMs = o.until === undefined ? undefined : toEpochMs('until', o.until);
  const query = buildQuery(spec, o, sinceMs, untilMs, pageSize);
  const listSchema = spec.schema.array();
  const dedupe = o.dedupe ?? true;
  const seenIds = new Set<string>();
  const usedTokens = new Set<string>();
  let hwm = o.highWaterMark === undefined ? undefined : toEpochMs('highWaterMark', o.highWaterMark);
  let token = o.pageToken;
  if (token !== undefined) usedTokens.add(token);
  const pool = new SlotPool();
  pool.minGapMs = s.expectedPageLatencyMs;
  let workEwma: number | undefined;
  let lastResponseAt: number | undefined;
  let lastLatency = 0;

  try {
    for (let index = 0; ; index++) {
      if (lastResponseAt !== undefined) {
        // Work per page = request latency + the consumer's time with the page; reserved slots are spaced by it.
        const work = lastLatency + (performance.now() - lastResponseAt);
        workEwma = workEwma === undefined ? work : 0.7 * workEwma + 0.3 * work;
        pool.minGapMs = Math.ceil(workEwma * 1.25 + 20);
      }
      const result = await transport.call({
        method: 'GET',
        path,
        query: { ...query, page_token: token },
        retry: 'safe',
        priority: o.priority ?? s.readPriority,
        waitBudgetMs: o.waitBudgetMs ?? s.waitBudgetMs,
        pool,
      });
      lastResponseAt = performance.now();
      lastLatency = result.latencyMs;
      const ctx = {
        method: 'GET',
        path,
        keyId: transport.keyId,
        tenant: transport.tenant,
        attempts: result.attempts,
        status: result.status,
        requestId: result.requestId,
      };
      const body = result.json;
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        throw new UnexpectedResponseError(ctx, 'the list response is not a JSON object');
      }
      const envelope = body as Record<string, unknown>;
      const rawItems = envelope[spec.itemsKey] ?? [];
      const parsed = listSchema.safeParse(rawItems);
      if (!parsed.success)
        throw new UnexpectedResponseError(ctx, describeIssues(spec.itemsKey, parsed.error));
      const items = parsed.data as RecordTypes[R][];
      const rawNext = envelope.next_page_token;
      if (rawNext !== undefined && rawNext !== null && typeof rawNext !== 'string') {
        throw new UnexpectedResponseError(ctx, 'next_page_token is not a string');
      }
      const next = rawNext || undefined;

      let pastCursor = false;
      const records: RecordTypes[R][] = [];
      for (const record of items) {
        const t = updateTimeOf(spec, record as Record<string, unknown>);
        if (sinceMs !== undefined && spec.mode !== 'filter' && t !== undefined && t < sinceMs) {
          // Newest first: everything after this one is older still.
          if (spec.mode === 'descending') pastCursor = true;
          continue;
        }
        if (dedupe) {
          if (seenIds.has(record.id)) continue;
          seenIds.add(record.id);
        }
        if (t !== undefined && (hwm === undefined || t > hwm)) hwm = t;
        records.push(record);
      }
      const done = next === undefined || items.length === 0 || pastCursor;
      if (!done && usedTokens.has(next)) throw new PagingLoopError(ctx, index + 1);
      if (next !== undefined) usedTokens.add(next);
      // A full page means more are likely: reserve several slots in one ledger write for what follows.
      pool.nextCount = !done && items.length >= pageSize ? (o.slotBatch ?? s.pageSlotBatch) : 1;
      yield {
        resource,
        records,
        index,
        pageToken: token,
        nextPageToken: done ? undefined : next,
        done,
        highWaterMark: hwm === undefined ? undefined : keapTime(hwm),
        received: items.length,
        requests: result.attempts,
      };
      if (done) return;
      token = next;
    }
  } finally {
    // Slots reserved for pages that will not be read (last page, consumer stopped, error) go back.
    transport.release(pool.slots.splice(0));
  }
}

function describeIssues(itemsKey: string, error: z.ZodError): string {
  const first = error.issues[0];
  if (!first) return `${itemsKey} has an unexpected shape`;
  const at = [itemsKey, ...first.path.map(String)].join('.');
  return `${at}: ${first.message} (${error.issues.length} problem(s) in the page)`;
}
