import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Contact,
  type CustomFieldMetaData,
  type RunningSandbox,
  startSandbox,
} from '#harness/sandbox/index.ts';
import { call, filter, listAll, type Page, RELAXED, type V2Error } from './support.ts';

let sb: RunningSandbox;
beforeAll(async () => {
  sb = await startSandbox({ contacts: 400, seed: 3, limits: RELAXED });
});
afterAll(async () => {
  await sb.close();
});

const ids = (rows: ReadonlyArray<{ id?: unknown }>): string[] => rows.map((r) => String(r.id));
const sorted = (xs: string[]): string[] => [...xs].sort((a, b) => Number(a) - Number(b));

describe('paging', () => {
  it('returns every record of every list exactly once, ending with an empty next_page_token', async () => {
    const d = sb.dataset;
    const tagId = d.tags.values()[0]?.id ?? '';
    const contactWithNotes = d.notes.values()[0]?.contact_id ?? '';
    const cases: Array<[string, string, string[], Record<string, string>?]> = [
      ['/rest/v2/contacts', 'contacts', d.contacts.values().map((r) => r.id)],
      ['/rest/v2/companies', 'companies', d.companies.values().map((r) => r.id)],
      ['/rest/v2/orders', 'orders', d.orders.values().map((r) => r.id)],
      ['/rest/v2/opportunities', 'opportunities', d.opportunities.values().map((r) => r.id)],
      ['/rest/v2/tags', 'tags', d.tags.values().map((r) => r.id)],
      ['/rest/v2/notes', 'notes', d.notes.values().map((r) => r.id)],
      ['/rest/v2/tasks', 'tasks', d.tasks.values().map((r) => r.id)],
      ['/rest/v2/products', 'products', d.products.values().map((r) => r.id)],
      ['/rest/v2/subscriptions', 'subscriptions', d.subscriptions.values().map((r) => r.id)],
      ['/rest/v2/users', 'users', d.users.values().map((r) => r.id), { filter: 'include_inactive==true' }],
      [
        `/rest/v2/tags/${tagId}/contacts`,
        'contacts',
        d.tagApplications
          .values()
          .filter((a) => a.tag_id === tagId)
          .map((a) => a.contact_id),
      ],
      [
        `/rest/v2/contacts/${contactWithNotes}/notes`,
        'notes',
        d.notes
          .values()
          .filter((n) => n.contact_id === contactWithNotes)
          .map((n) => n.id),
      ],
    ];
    for (const [path, collection, expected, params] of cases) {
      const pageSize = 7;
      const { items, pages, lastToken } = await listAll(sb, path, collection, {
        page_size: String(pageSize),
        ...params,
      });
      expect(sorted(ids(items)), path).toEqual(sorted(expected));
      expect(new Set(ids(items)).size, path).toBe(items.length);
      expect(pages, path).toBe(Math.max(1, Math.ceil(expected.length / pageSize)));
      expect(lastToken, path).toBe('');
    }
  });

  it('accepts page_size 0..1000 on the main lists and rejects anything else with a v2 error', async () => {
    for (const size of ['1000', '0', '1'])
      expect((await call(sb, `/rest/v2/contacts?page_size=${size}`)).status).toBe(200);
    for (const size of ['1001', '-1', 'ten', '2.5']) {
      const r = await call<V2Error>(sb, `/rest/v2/contacts?page_size=${size}`);
      expect(r.status).toBe(400);
      expect(r.json).toEqual({
        code: 400,
        message: expect.stringContaining('page_size'),
        status: 'Bad Request',
        details: [{ domain: 'page_size', resource: size }],
      });
    }
    const all = await call<Page<'contacts', Contact>>(sb, '/rest/v2/contacts?page_size=1000');
    expect(all.json.contacts).toHaveLength(400);
  });

  it('limits users to page_size 1..100', async () => {
    for (const size of ['1', '100'])
      expect((await call(sb, `/rest/v2/users?page_size=${size}`)).status).toBe(200);
    for (const size of ['0', '101'])
      expect((await call(sb, `/rest/v2/users?page_size=${size}`)).status).toBe(400);
  });

  it('lists only active users unless include_inactive is set', async () => {
    const all = sb.dataset.users.values();
    const active = await listAll(sb, '/rest/v2/users', 'users');
    const everyone = await listAll(sb, '/rest/v2/users', 'users', { filter: 'include_inactive==true' });
    expect(active.items).toHaveLength(all.filter((u) => u.status === 'ACTIVE').length);
    expect(everyone.items).toHaveLength(all.length);
  });

  it('rejects a page token that is not one it issued for the same query', async () => {
    const first = await call<Page<'contacts', Contact>>(sb, '/rest/v2/contacts?page_size=5');
    const token = first.json.next_page_token ?? '';
    expect(token).not.toBe('');
    expect((await call(sb, `/rest/v2/contacts?page_size=5&page_token=${token}`)).status).toBe(200);
    const otherQuery = `/rest/v2/contacts?page_size=5&order_by=email&page_token=${token}`;
    expect((await call(sb, otherQuery)).status).toBe(400);
    expect((await call(sb, '/rest/v2/contacts?page_token=garbage')).status).toBe(400);
  });

  it('leaves next_page_token out on the last page when lastPageToken is "absent"', async () => {
    const other = await startSandbox({ contacts: 30, limits: RELAXED, lastPageToken: 'absent' });
    try {
      const first = await call<Page<'contacts', Contact>>(other, '/rest/v2/contacts?page_size=20');
      expect(typeof first.json.next_page_token).toBe('string');
      const last = await call<Page<'contacts', Contact>>(
        other,
        `/rest/v2/contacts?page_size=20&page_token=${first.json.next_page_token}`,
      );
      expect(last.json.contacts).toHaveLength(10);
      expect('next_page_token' in last.json).toBe(false);
    } finally {
      await other.close();
    }
  });
});

describe('time filters', () => {
  /** Bounds at two records' own times, so inclusiveness is tested at both ends. */
  function bounds(times: string[]): [string, string] {
    const s = [...times].sort();
    return [s[Math.floor(s.length / 4)] ?? '', s[Math.floor((s.length * 3) / 4)] ?? ''];
  }

  it("returns exactly the records whose update time is in range, by each resource's own filter", async () => {
    const d = sb.dataset;
    const tagId = d.tags.values().reduce(
      (best, t) => {
        const n = d.tagApplications.values().filter((a) => a.tag_id === t.id).length;
        return n > best[1] ? ([t.id, n] as [string, number]) : best;
      },
      ['', -1] as [string, number],
    )[0];
    const cases: Array<[string, string, string, string, Array<[string, string]>]> = [
      [
        '/rest/v2/contacts',
        'contacts',
        'start_update_time',
        'end_update_time',
        d.contacts.values().map((r) => [r.id, r.update_time]),
      ],
      [
        '/rest/v2/companies',
        'companies',
        'since_time',
        'until_time',
        d.companies.values().map((r) => [r.id, r.update_time]),
      ],
      [
        '/rest/v2/orders',
        'orders',
        'modified_since_time',
        'modified_until_time',
        d.orders.values().map((r) => [r.id, r.modification_time]),
      ],
      [
        '/rest/v2/tags',
        'tags',
        'since_update_time',
        'until_update_time',
        d.tags.values().map((r) => [r.id, r.update_time]),
      ],
      [
        '/rest/v2/notes',
        'notes',
        'since_time',
        'until_time',
        d.notes.values().map((r) => [r.id, r.update_time]),
      ],
      [
        '/rest/v2/tasks',
        'tasks',
        'since_time',
        'until_time',
        d.tasks.values().map((r) => [r.id, r.modification_time]),
      ],
      [
        `/rest/v2/tags/${tagId}/contacts`,
        'contacts',
        'since_applied_time',
        'until_applied_time',
        d.tagApplications
          .values()
          .filter((a) => a.tag_id === tagId)
          .map((a) => [a.contact_id, a.applied_time]),
      ],
    ];
    for (const [path, collection, from, until, rows] of cases) {
      const [a, b] = bounds(rows.map(([, t]) => t));
      const expected = rows.filter(([, t]) => t >= a && t <= b).map(([id]) => id);
      const got = await listAll(sb, path, collection, {
        filter: filter({ [from]: a, [until]: b }),
        page_size: '50',
      });
      expect(sorted(ids(got.items)), path).toEqual(sorted(expected));
      expect(expected.length, path).toBeGreaterThan(0);
      const open = await listAll(sb, path, collection, { filter: `${filter({ [from]: a })};` });
      expect(open.items.length, path).toBe(rows.filter(([, t]) => t >= a).length);
    }
  });

  it('rejects dates that are not full ISO-8601 with milliseconds and a zone, with details', async () => {
    for (const bad of [
      '2026-01-01',
      '2026-01-01T00:00:00Z',
      '2026-01-01T00:00:00.000',
      'yesterday',
      '2026-13-01T00:00:00.000Z',
    ]) {
      const r = await call<V2Error>(
        sb,
        `/rest/v2/contacts?${new URLSearchParams({ filter: `start_update_time==${bad}` })}`,
      );
      expect(r.status, bad).toBe(400);
      expect(r.json.details).toEqual([{ domain: 'filter', resource: 'start_update_time' }]);
      expect(r.json.message).toContain(bad);
    }
    const offset = await call(
      sb,
      `/rest/v2/companies?${new URLSearchParams({ filter: 'since_time==2026-01-01T02:00:00.000+02:00' })}`,
    );
    expect(offset.status).toBe(200);
  });

  it('rejects unknown filter fields and operators a field does not take', async () => {
    for (const f of ['favourite_colour==blue', 'since_time>2026-01-01T00:00:00.000Z', 'no operator']) {
      const r = await call<V2Error>(sb, `/rest/v2/notes?${new URLSearchParams({ filter: f })}`);
      expect(r.status, f).toBe(400);
      expect(r.json.details[0]?.domain).toBe('filter');
    }
  });

  it('applies the other filters Keap documents (wildcards, id lists, comparisons)', async () => {
    const contacts = sb.dataset.contacts.values();
    const email = (c: Contact) => c.email_addresses[0]?.email ?? '';
    const prefix = email(contacts[0] as Contact).slice(0, 3);
    const wild = await listAll(sb, '/rest/v2/contacts', 'contacts', { filter: `email==${prefix}*` });
    expect(sorted(ids(wild.items))).toEqual(
      sorted(contacts.filter((c) => email(c).startsWith(prefix)).map((c) => c.id)),
    );
    const some = await listAll(sb, '/rest/v2/contacts', 'contacts', { filter: 'ids==3,5,8' });
    expect(sorted(ids(some.items))).toEqual(['3', '5', '8']);
    const above = await listAll(sb, '/rest/v2/contacts', 'contacts', { filter: 'contact_id>390' });
    expect(ids(above.items)).toEqual(['391', '392', '393', '394', '395', '396', '397', '398', '399', '400']);
  });
});

describe('order_by', () => {
  it('orders opportunities, subscriptions and products by their update field descending, across pages', async () => {
    const cases: Array<[string, string, string, string, number]> = [
      [
        '/rest/v2/opportunities',
        'opportunities',
        'update_time desc',
        'last_updated_time',
        sb.dataset.opportunities.size,
      ],
      [
        '/rest/v2/subscriptions',
        'subscriptions',
        'modification_time desc',
        'modification_time',
        sb.dataset.subscriptions.size,
      ],
      ['/rest/v2/products', 'products', 'last_updated_time desc', 'update_time', sb.dataset.products.size],
    ];
    for (const [path, collection, order, field, total] of cases) {
      const { items } = await listAll(sb, path, collection, { order_by: order, page_size: '6' });
      const times = items.map((r) => String(r[field]));
      expect(times, path).toEqual([...times].sort().reverse());
      expect(new Set(ids(items)).size, path).toBe(total);
    }
  });

  it('orders ascending too, and rejects fields and directions the list does not allow', async () => {
    const { items } = await listAll(sb, '/rest/v2/contacts', 'contacts', {
      order_by: 'update_time asc',
      fields: 'update_time',
      page_size: '90',
    });
    const times = items.map((r) => String(r.update_time));
    expect(times).toEqual([...times].sort());
    for (const bad of ['given_name', 'update_time sideways', 'update_time desc extra']) {
      const r = await call<V2Error>(sb, `/rest/v2/contacts?${new URLSearchParams({ order_by: bad })}`);
      expect(r.status, bad).toBe(400);
      expect(r.json.details[0]?.domain).toBe('order_by');
    }
  });
});

describe('fields', () => {
  it('returns contacts with default fields only, adding update_time and custom_fields when asked', async () => {
    const plain = await call<Page<'contacts', Record<string, unknown>>>(sb, '/rest/v2/contacts?page_size=20');
    for (const c of plain.json.contacts) {
      expect(c).toHaveProperty('id');
      expect(c).toHaveProperty('given_name');
      expect(c).not.toHaveProperty('update_time');
      expect(c).not.toHaveProperty('custom_fields');
      expect(c).not.toHaveProperty('tag_ids');
    }
    const asked = await call<Page<'contacts', Record<string, unknown>>>(
      sb,
      '/rest/v2/contacts?page_size=20&fields=update_time,custom_fields',
    );
    for (const c of asked.json.contacts) {
      const stored = sb.dataset.contacts.get(String(c.id));
      expect(c.update_time).toBe(stored?.update_time);
      expect(c.custom_fields).toEqual(stored?.custom_fields);
      expect(c).toHaveProperty('given_name');
      expect(c).not.toHaveProperty('tag_ids');
    }
    const one = await call<Record<string, unknown>>(sb, '/rest/v2/contacts/7?fields=tag_ids');
    expect(one.json.tag_ids).toEqual(sb.dataset.contacts.get('7')?.tag_ids);
    expect(one.json).not.toHaveProperty('update_time');
    const bad = await call<V2Error>(sb, '/rest/v2/contacts?fields=update_time,shoe_size');
    expect(bad.status).toBe(400);
    expect(bad.json.details).toEqual([{ domain: 'fields', resource: 'shoe_size' }]);
  });

  it('leaves out the company, note and task properties Keap sends only on request', async () => {
    const companies = await call<Page<'companies', Record<string, unknown>>>(
      sb,
      '/rest/v2/companies?page_size=3',
    );
    expect(companies.json.companies[0]).not.toHaveProperty('update_time');
    const withTime = await call<Page<'companies', Record<string, unknown>>>(
      sb,
      '/rest/v2/companies?page_size=3&fields=update_time',
    );
    expect(withTime.json.companies[0]).toHaveProperty('update_time');
    const notes = await call<Page<'notes', Record<string, unknown>>>(sb, '/rest/v2/notes?page_size=3');
    expect(notes.json.notes[0]).toHaveProperty('update_time');
    expect(notes.json.notes[0]).not.toHaveProperty('custom_fields');
    const tasks = await call<Page<'tasks', Record<string, unknown>>>(
      sb,
      '/rest/v2/tasks?page_size=3&fields=custom_fields',
    );
    expect(tasks.json.tasks[0]).toHaveProperty('custom_fields');
  });

  it('takes fields comma-joined or repeated, as Keap declares it exploded on some lists and not on others', async () => {
    const joined = await call<Page<'opportunities', Record<string, unknown>>>(
      sb,
      '/rest/v2/opportunities?page_size=5&fields=custom_fields,status_id',
    );
    const repeated = await call<Page<'opportunities', Record<string, unknown>>>(
      sb,
      '/rest/v2/opportunities?page_size=5&fields=custom_fields&fields=status_id',
    );
    expect(repeated.status).toBe(200);
    expect(repeated.json.opportunities).toEqual(joined.json.opportunities);
    expect(repeated.json.opportunities[0]).toHaveProperty('status_id');
    expect(repeated.json.opportunities[0]).not.toHaveProperty('created_by');
    const contacts = await call<Page<'contacts', Record<string, unknown>>>(
      sb,
      '/rest/v2/contacts?page_size=5&fields=update_time&fields=tag_ids',
    );
    expect(contacts.json.contacts[0]).toHaveProperty('update_time');
    expect(contacts.json.contacts[0]).toHaveProperty('tag_ids');
  });
});

describe('single records and models', () => {
  it('serves single records where Keap has them, and a v2 404 for missing ones', async () => {
    const d = sb.dataset;
    const cases: Array<[string, unknown]> = [
      ['/rest/v2/orders/4', d.orders.get('4')],
      ['/rest/v2/tags/2', d.tags.get('2')],
      ['/rest/v2/products/3', d.products.get('3')],
      ['/rest/v2/subscriptions/5', d.subscriptions.get('5')],
      ['/rest/v2/users/1', d.users.get('1')],
    ];
    for (const [path, expected] of cases) {
      const r = await call(sb, path);
      expect(r.status, path).toBe(200);
      expect(r.json, path).toEqual(JSON.parse(JSON.stringify(expected)));
    }
    const note = d.notes.get('9');
    const noteRes = await call<Record<string, unknown>>(sb, `/rest/v2/contacts/${note?.contact_id}/notes/9`);
    expect(noteRes.json.id).toBe('9');
    const missing = await call<V2Error>(sb, '/rest/v2/contacts/999999');
    expect(missing.status).toBe(404);
    expect(missing.json).toMatchObject({ code: 404, status: 'Not Found' });
    expect((await call(sb, '/rest/v2/no-such-thing')).status).toBe(404);
    expect((await call(sb, '/rest/v2/orders', { method: 'DELETE' })).status).toBe(405);
  });

  it('serves the custom field model of each object; notes and tasks share one', async () => {
    const recordType: Record<string, string> = {
      contacts: 'CONTACT',
      companies: 'COMPANY',
      orders: 'ORDER',
      opportunities: 'OPPORTUNITY',
      notes: 'TASK_NOTE_APPOINTMENT',
      tasks: 'TASK_NOTE_APPOINTMENT',
      subscriptions: 'SUBSCRIPTION',
    };
    const models: Record<string, CustomFieldMetaData[]> = {};
    for (const [obj, type] of Object.entries(recordType)) {
      const r = await call<{ custom_fields: CustomFieldMetaData[]; optional_properties: string[] }>(
        sb,
        `/rest/v2/${obj}/model`,
      );
      expect(r.status, obj).toBe(200);
      expect(r.json.custom_fields.length, obj).toBeGreaterThan(0);
      expect(new Set(r.json.custom_fields.map((f) => f.record_type)), obj).toEqual(new Set([type]));
      models[obj] = r.json.custom_fields;
    }
    expect(models.tasks).toEqual(models.notes);
    const contactModel = await call<{ optional_properties: string[] }>(sb, '/rest/v2/contacts/model');
    expect(contactModel.json.optional_properties).toEqual(
      expect.arrayContaining(['update_time', 'custom_fields']),
    );
  });
});
