// Unit: paging to the end, stop conditions, the repeating-token guard, incremental filters per list,
// newest-first reads that stop past the cursor, de-duplication, resuming from a token, slot batching.
import { describe, expect, it, vi } from 'vitest';
import {
  KeapArgumentError,
  KeapClient,
  type Page,
  PagingLoopError,
  type ResourceName,
  UnexpectedResponseError,
} from '#shared/keap/index.ts';
import type { QuotaLedger } from '#shared/quota/index.ts';
import {
  listHandler,
  makeRecords,
  quotaHeaders,
  SECRET_KEY,
  sendJson,
  uniqueTenant,
  useKeapStub,
} from './support.ts';

const fx = useKeapStub();

function setup(settings: Record<string, unknown> = {}): { client: KeapClient; ledger: QuotaLedger } {
  const ledger = fx.host.ledger();
  const client = new KeapClient({
    apiKey: SECRET_KEY,
    tenant: uniqueTenant(),
    ledger,
    settings: { baseUrl: fx.stub.baseUrl, ...settings },
  });
  return { client, ledger };
}

async function collect<T>(it: AsyncIterable<Page<T>>): Promise<Page<T>[]> {
  const pages: Page<T>[] = [];
  for await (const p of it) pages.push(p);
  return pages;
}

const T0 = Date.parse('2026-01-01T00:00:00.000Z');

describe('full reads', () => {
  it('reads every contact exactly once at page size 1000, asking for update_time and custom fields', async () => {
    const { client } = setup();
    const records = makeRecords(2_500);
    fx.stub.setHandler(listHandler(() => records, { itemsKey: 'contacts' }));
    const before = fx.stub.requests.length;
    const pages = await collect(client.pages('contacts'));
    const ids = pages.flatMap((p) => p.records.map((r) => r.id));
    expect(ids).toEqual(records.map((r) => r.id));
    expect(pages.map((p) => p.received)).toEqual([1000, 1000, 500]);
    expect(pages.at(-1)?.done).toBe(true);
    expect(pages.at(-1)?.nextPageToken).toBeUndefined();
    const reqs = fx.stub.requests.slice(before);
    expect(reqs).toHaveLength(3);
    const q = reqs[0]?.url.searchParams;
    expect(q?.get('page_size')).toBe('1000');
    expect(q?.get('fields')?.split(',')).toEqual(
      expect.arrayContaining(['id', 'update_time', 'custom_fields']),
    );
    expect(q?.get('filter')).toBeNull();
    expect(pages.at(-1)?.highWaterMark).toBe(new Date(T0 + 2_499_000).toISOString());
  });

  it('sends fields as Keap declares them per list: comma-joined for contacts, one pair per field for opportunities', async () => {
    const { client } = setup({ pageSize: 50 });
    const records = makeRecords(120, 'last_updated_time');
    fx.stub.setHandler(listHandler(() => records, { itemsKey: 'opportunities' }));
    const before = fx.stub.requests.length;
    const r = await client.readAll('opportunities');
    expect(r.records).toHaveLength(120);
    const reqs = fx.stub.requests.slice(before);
    expect(reqs).toHaveLength(3);
    for (const req of reqs) {
      expect(req.url.searchParams.getAll('fields')).toEqual([
        'custom_fields',
        'created_by',
        'last_updated_by',
        'status_id',
      ]);
      expect(req.url.searchParams.get('page_size')).toBe('50');
    }
    // The page token still goes along with the repeated parameter.
    expect(reqs[0]?.url.searchParams.has('page_token')).toBe(false);
    expect(reqs[1]?.url.searchParams.get('page_token')).toBeTruthy();
    fx.stub.setHandler(listHandler(() => records, { itemsKey: 'contacts' }));
    const c0 = fx.stub.requests.length;
    await client.readAll('contacts', { fields: ['id', 'update_time'] });
    expect(fx.stub.requests[c0]?.url.searchParams.getAll('fields')).toEqual(['id,update_time']);
  });

  it('caps users at 100 per page', async () => {
    const { client } = setup();
    const records = makeRecords(250);
    fx.stub.setHandler(listHandler(() => records, { itemsKey: 'users' }));
    const before = fx.stub.requests.length;
    const r = await client.readAll('users');
    expect(r.records).toHaveLength(250);
    expect(r.pages).toBe(3);
    expect(fx.stub.requests.slice(before).every((q) => q.url.searchParams.get('page_size') === '100')).toBe(
      true,
    );
  });

  it('stops on an empty page even when Keap still sends a token', async () => {
    const { client } = setup();
    fx.stub.setHandler((_q, res) =>
      sendJson(res, 200, { contacts: [], next_page_token: 'more' }, quotaHeaders()),
    );
    const before = fx.stub.requests.length;
    const pages = await collect(client.pages('contacts'));
    expect(pages).toHaveLength(1);
    expect(pages[0]?.done).toBe(true);
    expect(fx.stub.requests.length - before).toBe(1);
  });

  it('stops when the token is absent or null', async () => {
    const { client } = setup();
    fx.stub.setHandler((_q, res) =>
      sendJson(res, 200, { tags: [{ id: '1' }], next_page_token: null }, quotaHeaders()),
    );
    const r = await client.readAll('tags');
    expect(r.records.map((t) => t.id)).toEqual(['1']);
    expect(r.pages).toBe(1);
  });

  it('stops with PagingLoopError when Keap hands back a token already used, after delivering the pages', async () => {
    const { client } = setup();
    let n = 0;
    fx.stub.setHandler((_q, res) => {
      n++;
      sendJson(res, 200, { notes: [{ id: String(n) }], next_page_token: 'same-token' }, quotaHeaders());
    });
    const seen: string[] = [];
    const err = await (async () => {
      for await (const p of client.pages('notes')) seen.push(...p.records.map((r) => r.id));
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PagingLoopError);
    expect(seen).toEqual(['1']);
    expect(n).toBe(2);
  });

  it('rejects a response whose token is not a string', async () => {
    const { client } = setup();
    fx.stub.setHandler((_q, res) =>
      sendJson(res, 200, { tasks: [{ id: '1' }], next_page_token: 5 }, quotaHeaders()),
    );
    await expect(client.readAll('tasks')).rejects.toBeInstanceOf(UnexpectedResponseError);
  });

  it('rejects records without an id', async () => {
    const { client } = setup();
    fx.stub.setHandler((_q, res) => sendJson(res, 200, { orders: [{ title: 'x' }] }, quotaHeaders()));
    const err = await client.readAll('orders').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnexpectedResponseError);
    expect((err as UnexpectedResponseError).problem).toMatch(/orders\.0\.id/);
  });

  it('needs a tag id to read tag applications', async () => {
    const { client } = setup();
    const call = (): unknown => client.pages('tagApplications', {} as { tagId: string }).next();
    await expect(call()).rejects.toBeInstanceOf(KeapArgumentError);
  });
});

describe('id ranges', () => {
  it.each<[ResourceName, string]>([
    ['contacts', 'contact_id'],
    ['orders', 'id'],
    ['notes', 'id'],
    ['tasks', 'id'],
  ])('reads %s in an id range with %s>= and <=', async (resource, field) => {
    const { client } = setup();
    fx.stub.setHandler(listHandler(() => makeRecords(3, 'update_time'), { itemsKey: resource }));
    const before = fx.stub.requests.length;
    await client.readAll(resource as 'contacts', { idRange: { min: '1001', max: '5000' } });
    expect(fx.stub.requests[before]?.url.searchParams.get('filter')).toBe(`${field}>=1001;${field}<=5000`);
    await client.readAll(resource as 'contacts', { idRange: { min: '7' } });
    expect(fx.stub.requests.at(-1)?.url.searchParams.get('filter')).toBe(`${field}>=7`);
  });

  it('refuses an id range on a list without an id filter, or bounds that are not ids', async () => {
    const { client } = setup();
    await expect(client.readAll('companies', { idRange: { min: '1' } })).rejects.toThrow(/no id filter/);
    await expect(client.readAll('contacts', { idRange: { min: '1;email==x' } })).rejects.toBeInstanceOf(
      KeapArgumentError,
    );
  });
});

describe('incremental reads', () => {
  it.each<[ResourceName, string, string, string]>([
    ['contacts', 'start_update_time', 'end_update_time', 'update_time'],
    ['companies', 'since_time', 'until_time', 'update_time'],
    ['orders', 'modified_since_time', 'modified_until_time', 'modification_time'],
    ['tags', 'since_update_time', 'until_update_time', 'update_time'],
    ['notes', 'since_time', 'until_time', 'update_time'],
    ['tasks', 'since_time', 'until_time', 'modification_time'],
  ])('filters %s on %s/%s, with the overlap, in ISO-8601 UTC with ms', async (resource, since, until, tf) => {
    const { client } = setup({ overlapMs: 60_000 });
    const records = makeRecords(30, tf);
    fx.stub.setHandler(listHandler(() => records, { itemsKey: resource, timeField: tf, sinceField: since }));
    const before = fx.stub.requests.length;
    const cursor = new Date(T0 + 20_000 + 60_000);
    const r = await client.readAll(resource as 'contacts', { since: cursor, until: T0 + 3_600_000 });
    const filter = fx.stub.requests[before]?.url.searchParams.get('filter');
    expect(filter).toBe(`${since}==2026-01-01T00:00:20.000Z;${until}==2026-01-01T01:00:00.000Z`);
    expect(r.records.map((x) => x.id)).toEqual(records.slice(20).map((x) => x.id));
    expect(r.highWaterMark).toBe(new Date(T0 + 29_000).toISOString());
  });

  it('filters tag applications on since_applied_time under the tag path', async () => {
    const { client } = setup({ overlapMs: 0 });
    const records = makeRecords(10, 'applied_time');
    fx.stub.setHandler(
      listHandler(() => records, {
        itemsKey: 'contacts',
        timeField: 'applied_time',
        sinceField: 'since_applied_time',
      }),
    );
    const before = fx.stub.requests.length;
    const r = await client.readAll('tagApplications', { tagId: '77', since: T0 + 5_000 });
    const req = fx.stub.requests[before];
    expect(req?.url.pathname).toBe('/crm/rest/v2/tags/77/contacts');
    expect(req?.url.searchParams.get('filter')).toBe('since_applied_time==2026-01-01T00:00:05.000Z');
    expect(r.records).toHaveLength(5);
  });

  it.each<[ResourceName, string, string]>([
    ['products', 'last_updated_time desc', 'update_time'],
    ['subscriptions', 'modification_time desc', 'modification_time'],
    ['opportunities', 'update_time desc', 'last_updated_time'],
  ])('reads %s newest first (%s) and stops once past the cursor', async (resource, orderBy, tf) => {
    const { client } = setup({ overlapMs: 0, pageSize: 50 });
    const records = makeRecords(3_000, tf);
    fx.stub.setHandler(listHandler(() => records, { itemsKey: resource, timeField: tf, honourDesc: true }));
    const before = fx.stub.requests.length;
    const r = await client.readAll(resource as 'products', { since: T0 + 2_899_000 });
    const reqs = fx.stub.requests.slice(before);
    expect(reqs[0]?.url.searchParams.get('order_by')).toBe(orderBy);
    expect(reqs[0]?.url.searchParams.get('filter')).toBeNull();
    // Records 2900..3000 are at or after the cursor: two full pages, then one that crosses it.
    expect(r.records.map((x) => Number(x.id)).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 101 }, (_, i) => 2_900 + i),
    );
    expect(reqs).toHaveLength(3);
  });

  it('reads users fully and keeps only those changed since the cursor (no filter exists)', async () => {
    const { client } = setup({ overlapMs: 0 });
    const records = makeRecords(150);
    fx.stub.setHandler(listHandler(() => records, { itemsKey: 'users' }));
    const r = await client.readAll('users', { since: T0 + 140_000 });
    expect(r.records.map((u) => u.id)).toEqual(records.slice(140).map((u) => u.id));
    expect(r.pages).toBe(2);
  });

  it('rejects a date it cannot read instead of sending it', async () => {
    const { client } = setup();
    const before = fx.stub.requests.length;
    await expect(client.readAll('contacts', { since: '2026-01-01 noon' })).rejects.toBeInstanceOf(
      KeapArgumentError,
    );
    expect(fx.stub.requests.length).toBe(before);
  });

  it('delivers a record repeated across pages only once', async () => {
    const { client } = setup();
    fx.stub.setHandler((req, res) => {
      const token = req.url.searchParams.get('page_token');
      if (!token) sendJson(res, 200, { contacts: [{ id: '1' }, { id: '2' }], next_page_token: 'p2' });
      else sendJson(res, 200, { contacts: [{ id: '2' }, { id: '3' }], next_page_token: '' });
    });
    const r = await client.readAll('contacts');
    expect(r.records.map((c) => c.id)).toEqual(['1', '2', '3']);
  });

  it('resumes from a checkpointed token and keeps the high-water mark counting', async () => {
    const { client } = setup({ pageSize: 10 });
    const records = makeRecords(35);
    fx.stub.setHandler(listHandler(() => records, { itemsKey: 'contacts' }));
    const first = await client.pages('contacts').next();
    const page = first.value;
    if (!page) throw new Error('expected a page');
    expect(page.nextPageToken).toBeTruthy();
    const rest = await client.readAll('contacts', {
      pageToken: page.nextPageToken,
      highWaterMark: page.highWaterMark,
    });
    expect([...page.records, ...rest.records].map((r) => r.id)).toEqual(records.map((r) => r.id));
    expect(rest.highWaterMark).toBe(new Date(T0 + 34_000).toISOString());
  });
});

describe('slot reservation for page runs', () => {
  it('reserves several slots per ledger write while pages come back full', async () => {
    const { client, ledger } = setup({ pageSize: 20, pageSlotBatch: 5, expectedPageLatencyMs: 5 });
    const records = makeRecords(400);
    fx.stub.setHandler(listHandler(() => records, { itemsKey: 'contacts' }));
    const acquire = vi.spyOn(ledger, 'acquire');
    const r = await client.readAll('contacts');
    expect(r.records).toHaveLength(400);
    expect(r.requests).toBe(20);
    expect(acquire.mock.calls.length).toBeLessThan(r.requests);
    expect(acquire.mock.calls.some((c) => (c[0].count ?? 1) === 5)).toBe(true);
  });
});
