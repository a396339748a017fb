// The sandbox at scale: the page latency model (a base plus a cost per record, with jitter) and the lazy
// dataset (contacts generated on demand, so a million fit in memory). Timing tests compare ratios only.
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import {
  type Contact,
  type RunningSandbox,
  SandboxConfigError,
  startSandbox,
} from '#harness/sandbox/index.ts';
import { nominalPageMs, PageLatencyModel, parsePageLatency } from '#harness/sandbox/latency.ts';
import { call, filter, listAll, type Page, RELAXED, type V2Error } from './support.ts';

const ids = (rows: ReadonlyArray<{ id?: unknown }>): number[] => rows.map((r) => Number(r.id));
const ms = (iso: unknown): number => Date.parse(String(iso));

describe('page latency model', () => {
  it('parses "<base>+<per record>/record" and a base alone', () => {
    expect(parsePageLatency('300+2/record')).toEqual({ baseMs: 300, perRecordMs: 2 });
    expect(parsePageLatency('300', 0.2)).toEqual({ baseMs: 300, perRecordMs: 0, jitter: 0.2 });
    expect(parsePageLatency('0+1.5/records')).toEqual({ baseMs: 0, perRecordMs: 1.5 });
  });

  it('refuses a malformed model or a jitter outside 0..1 with a SandboxConfigError', () => {
    expect(() => parsePageLatency('300ms')).toThrow(SandboxConfigError);
    expect(() => parsePageLatency('300+2')).toThrow(SandboxConfigError);
    expect(() => parsePageLatency('300', 1.5)).toThrow(SandboxConfigError);
  });

  it('charges the base plus the per-record cost, jittered within [1-j, 1+j] around it, the same for a seed', () => {
    const model = { baseMs: 300, perRecordMs: 2, jitter: 0.2 };
    const a = new PageLatencyModel(model, 7);
    const b = new PageLatencyModel(model, 7);
    const draws = Array.from({ length: 2000 }, () => a.draw(1000));
    expect(Array.from({ length: 2000 }, () => b.draw(1000))).toEqual(draws);
    const nominal = nominalPageMs(model, 1000);
    expect(nominal).toBe(2300);
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(nominal * 0.8);
    expect(Math.max(...draws)).toBeLessThanOrEqual(nominal * 1.2);
    const mean = draws.reduce((s, d) => s + d, 0) / draws.length;
    expect(mean / nominal).toBeGreaterThan(0.98);
    expect(mean / nominal).toBeLessThan(1.02);
    expect(new PageLatencyModel({ baseMs: 300, perRecordMs: 2 }, 7).draw(10)).toBe(320);
  });

  it('is refused by startSandbox when a cost is negative', async () => {
    await expect(startSandbox({ pageLatency: { baseMs: -1, perRecordMs: 0 } })).rejects.toThrow(
      SandboxConfigError,
    );
  });

  it('makes a 1000-record page take longer than a 10-record page by the model ratio, and leaves single reads alone', async () => {
    // 60 ms + 1.2 ms per record, so 10 records take 72 ms and 1000 take 1260 ms (17.5x): large enough
    // that a busy machine's scheduling noise (tens of ms on a 2-core box) moves the ratio by little.
    const model = { baseMs: 60, perRecordMs: 1.2 };
    const slow = await startSandbox({ contacts: 1200, seed: 5, limits: RELAXED, pageLatency: model });
    const fast = await startSandbox({ contacts: 1200, seed: 5, limits: RELAXED });
    onTestFinished(() => Promise.all([slow.close(), fast.close()]).then(() => undefined));
    // The best of several tries: noise only ever adds time, so the minimum is the truest figure.
    const best = async (sb: RunningSandbox, path: string, tries = 5): Promise<number> => {
      let min = Number.POSITIVE_INFINITY;
      for (let i = 0; i < tries; i++) {
        const t0 = performance.now();
        const r = await call(sb, path);
        expect(r.status).toBe(200);
        min = Math.min(min, performance.now() - t0);
      }
      return min;
    };
    const page = (n: number) => `/rest/v2/contacts?page_size=${n}`;
    // The model's share of each page: the slow sandbox's time minus the same page without the model.
    const small = (await best(slow, page(10))) - (await best(fast, page(10)));
    const large = (await best(slow, page(1000), 3)) - (await best(fast, page(1000), 3));
    const expected = nominalPageMs(model, 1000) / nominalPageMs(model, 10);
    expect(large / small).toBeGreaterThan(expected * 0.7);
    expect(large / small).toBeLessThan(expected * 1.3);
    // A single record is no list page: it pays nothing, so it is far faster than even a 1-record page.
    const one = await best(slow, '/rest/v2/contacts/1');
    const onePage = await best(slow, page(1));
    expect(onePage / one).toBeGreaterThan(2);
  });
});

describe('lazy dataset', () => {
  let sb: RunningSandbox;
  const N = 5000;
  beforeAll(async () => {
    sb = await startSandbox({ contacts: N, seed: 11, limits: RELAXED, lazy: true });
  });
  afterAll(async () => {
    await sb.close();
  });

  it('pages every contact exactly once in id order, with no contact held in the dataset', async () => {
    const all = await listAll<Contact>(sb, '/rest/v2/contacts', 'contacts', { page_size: '1000' });
    expect(all.pages).toBe(5);
    expect(all.lastToken).toBe('');
    expect(ids(all.items)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    expect(sb.dataset.contacts.size).toBe(0);
    expect(sb.lazyContacts?.count).toBe(N);
  });

  it('serves the same contact from the list and from GET contacts/{id}, the same for a seed', async () => {
    const fields = 'update_time,custom_fields';
    const page = await call<Page<'contacts', Contact>>(sb, `/rest/v2/contacts?page_size=50&fields=${fields}`);
    const listed = page.json.contacts[41];
    const one = await call<Contact>(sb, `/rest/v2/contacts/42?fields=${fields}`);
    expect(one.json).toEqual(listed);
    expect(one.json.update_time).toMatch(/Z$/);
    const again = await startSandbox({ contacts: N, seed: 11, limits: RELAXED, lazy: true });
    onTestFinished(() => again.close());
    expect((await call(again, `/rest/v2/contacts/42?fields=${fields}`)).json).toEqual(one.json);
    expect((await call(sb, '/rest/v2/contacts/5001')).status).toBe(404);
  });

  it('filters on update time (inclusive) in update-time order, ascending and descending, across pages', async () => {
    const everything = await listAll<Contact>(sb, '/rest/v2/contacts', 'contacts', { fields: 'update_time' });
    const times = everything.items.map((c) => ms(c.update_time)).sort((a, b) => a - b);
    const from = times[Math.floor(N * 0.8)] as number;
    const until = times[Math.floor(N * 0.95)] as number;
    const want = everything.items
      .filter((c) => ms(c.update_time) >= from && ms(c.update_time) <= until)
      .sort((a, b) => ms(a.update_time) - ms(b.update_time) || Number(a.id) - Number(b.id));
    const f = filter({
      start_update_time: new Date(from).toISOString(),
      end_update_time: new Date(until).toISOString(),
    });
    const asc = await listAll<Contact>(sb, '/rest/v2/contacts', 'contacts', {
      filter: f,
      order_by: 'update_time asc',
      page_size: '100',
      fields: 'update_time',
    });
    expect(ids(asc.items)).toEqual(ids(want));
    const desc = await listAll<Contact>(sb, '/rest/v2/contacts', 'contacts', {
      filter: f,
      order_by: 'update_time desc',
      page_size: '100',
      fields: 'update_time',
    });
    expect(ids(desc.items)).toEqual(ids(want).reverse());
    // The sync's own form: id order with the start bound.
    const byId = await listAll<Contact>(sb, '/rest/v2/contacts', 'contacts', {
      filter: filter({ start_update_time: new Date(from).toISOString() }),
      page_size: '333',
    });
    expect(ids(byId.items)).toEqual(
      ids(everything.items.filter((c) => ms(c.update_time) >= from)).sort((a, b) => a - b),
    );
  });

  it('answers the ids filter with exactly the named contacts, ignoring unknown ones', async () => {
    const r = await listAll<Contact>(sb, '/rest/v2/contacts', 'contacts', {
      filter: filter({ ids: '4999,7,7,123,9999999' }),
      page_size: '2',
    });
    expect(ids(r.items)).toEqual([7, 123, 4999]);
    expect(r.pages).toBe(2);
  });

  it('compares contact_id (>=, <=, >, <), in id order ascending and descending, across pages', async () => {
    const range = await listAll<Contact>(sb, '/rest/v2/contacts', 'contacts', {
      filter: 'contact_id>=1200;contact_id<=3456',
      page_size: '1000',
    });
    expect(ids(range.items)).toEqual(Array.from({ length: 3456 - 1200 + 1 }, (_, i) => 1200 + i));
    expect(range.pages).toBe(3);
    const open = await listAll<Contact>(sb, '/rest/v2/contacts', 'contacts', {
      filter: 'contact_id>4990',
      order_by: 'id desc',
      page_size: '3',
    });
    expect(ids(open.items)).toEqual([5000, 4999, 4998, 4997, 4996, 4995, 4994, 4993, 4992, 4991]);
    const highest = await call<Page<'contacts', Contact>>(
      sb,
      '/rest/v2/contacts?page_size=1&order_by=id%20desc',
    );
    expect(ids(highest.json.contacts)).toEqual([N]);
    const below = await listAll<Contact>(sb, '/rest/v2/contacts', 'contacts', { filter: 'contact_id<3' });
    expect(ids(below.items)).toEqual([1, 2]);
    const bad = await call<V2Error>(sb, `/rest/v2/contacts?filter=${encodeURIComponent('contact_id>=x')}`);
    expect(bad.status).toBe(400);
    // The custom-field model is served as for an eager dataset.
    expect((await call(sb, '/rest/v2/contacts/model')).status).toBe(200);
  });

  it('refuses writes to contacts, tag applications and scripted contact changes', async () => {
    const post = await call<V2Error>(sb, '/rest/v2/contacts', {
      method: 'POST',
      body: { email_addresses: [{ email: 'a@example.com' }] },
    });
    expect(post.status).toBe(405);
    expect(post.json.message).toMatch(/read-only/);
    const apply = await call(sb, '/rest/v2/tags/1/contacts:applyTags', {
      method: 'POST',
      body: { contact_ids: ['1'] },
    });
    expect(apply.status).toBe(405);
    const mutate = await fetch(`${sb.baseUrl}/__admin/mutate`, {
      method: 'POST',
      body: JSON.stringify({ type: 'contacts', update: 1 }),
    });
    expect(mutate.status).toBe(400);
  });

  it('refuses a filter it cannot serve with a 400 naming it', async () => {
    const r = await call<V2Error>(sb, `/rest/v2/contacts?filter=${encodeURIComponent('email==a@b.c')}`);
    expect(r.status).toBe(400);
    expect(r.json.message).toMatch(/email==a@b.c/);
  });

  it('holds 1,000,000 contacts in little memory and serves the first and last of them', async () => {
    const before = process.memoryUsage();
    const big = await startSandbox({ contacts: 1_000_000, seed: 2, limits: RELAXED, lazy: true });
    onTestFinished(() => big.close());
    const after = process.memoryUsage();
    // 12 bytes a contact for the time index; an eager million is several GB.
    expect(after.heapUsed + after.arrayBuffers - (before.heapUsed + before.arrayBuffers)).toBeLessThan(
      200 * 1024 * 1024,
    );
    const first = await call<Page<'contacts', Contact>>(big, '/rest/v2/contacts?page_size=1000');
    expect(ids(first.json.contacts)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    expect((await call<Contact>(big, '/rest/v2/contacts/1000000')).json.id).toBe('1000000');
    const last = await call<Page<'contacts', Contact>>(
      big,
      '/rest/v2/contacts?order_by=id%20desc&page_size=1',
    );
    expect(ids(last.json.contacts)).toEqual([1_000_000]);
    // An incremental read of the newest few: only contacts at or after the bound, in time order.
    const bound = '2026-06-30T00:00:00.000Z';
    const recent = await listAll<Contact>(big, '/rest/v2/contacts', 'contacts', {
      filter: filter({ start_update_time: bound }),
      order_by: 'update_time asc',
      fields: 'update_time',
    });
    expect(recent.items.length).toBeGreaterThan(0);
    const times = recent.items.map((c) => ms(c.update_time));
    expect(times.every((t) => t >= Date.parse(bound))).toBe(true);
    expect(times).toEqual([...times].sort((a, b) => a - b));
  }, 60_000);
});
