import { afterEach, describe, expect, it } from 'vitest';
import {
  RESOURCE_TYPES,
  type RunningSandbox,
  SANDBOX_DATA_END,
  SandboxDataset,
  SandboxMutationError,
  startSandbox,
  UPDATE_FIELD,
} from '#harness/sandbox/index.ts';
import { call, filter, listAll, ManualClock, RELAXED } from './support.ts';

const T0 = Date.UTC(2026, 8, 1, 9, 30, 0);
const iso = (ms: number) => new Date(ms).toISOString();
const sorted = (xs: string[]): string[] => [...xs].sort((a, b) => Number(a) - Number(b));

let sb: RunningSandbox | undefined;
afterEach(async () => {
  await sb?.close();
  sb = undefined;
});

describe('dataset', () => {
  it('is the same, byte for byte, for the same seed, and differs for another seed', () => {
    const a = JSON.stringify(new SandboxDataset({ seed: 4, contacts: 300 }));
    const b = JSON.stringify(new SandboxDataset({ seed: 4, contacts: 300 }));
    const c = JSON.stringify(new SandboxDataset({ seed: 5, contacts: 300 }));
    expect(a).toBe(b);
    expect(a).not.toBe(c);
  });

  it('scales every type from 5,000 contacts by default, served from startSandbox', async () => {
    sb = await startSandbox({ limits: RELAXED });
    const d = sb.dataset;
    expect({
      contacts: d.contacts.size,
      companies: d.companies.size,
      orders: d.orders.size,
      opportunities: d.opportunities.size,
      tags: d.tags.size,
      notes: d.notes.size,
      tasks: d.tasks.size,
      products: d.products.size,
      subscriptions: d.subscriptions.size,
      users: d.users.size,
    }).toEqual({
      contacts: 5000,
      companies: 500,
      orders: 3000,
      opportunities: 1000,
      tags: 100,
      notes: 4000,
      tasks: 2000,
      products: 50,
      subscriptions: 500,
      users: 20,
    });
    expect(d.tagApplications.size).toBeGreaterThan(10_000);
    expect(d.tagApplications.size).toBeLessThan(20_000);
    const all = await listAll(sb, '/rest/v2/contacts', 'contacts', { page_size: '1000' });
    expect(all.pages).toBe(5);
    expect(new Set(all.items.map((c) => c.id)).size).toBe(5000);
  });

  it('spreads create and update times over months, all before the data end', () => {
    const d = new SandboxDataset({ seed: 2, contacts: 1000 });
    for (const type of RESOURCE_TYPES) {
      const field = UPDATE_FIELD[type];
      const times = d
        .table(type)
        .values()
        .map((r) => String((r as unknown as Record<string, unknown>)[field]));
      expect(
        times.every((t) => Date.parse(t) < SANDBOX_DATA_END),
        type,
      ).toBe(true);
      expect(
        times.every((t) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(t)),
        type,
      ).toBe(true);
      if (times.length >= 100)
        expect(new Set(times.map((t) => t.slice(0, 7))).size, type).toBeGreaterThanOrEqual(12);
    }
    expect(d.contacts.values().every((c) => c.update_time >= c.create_time)).toBe(true);
    const tagIds = new Set(d.tagApplications.values().map((a) => `${a.contact_id}:${a.tag_id}`));
    for (const c of d.contacts.values())
      for (const t of c.tag_ids) expect(tagIds.has(`${c.id}:${t}`)).toBe(true);
  });
});

describe('mutate', () => {
  it('updates, creates and deletes records that an incremental filter from before the change finds exactly', async () => {
    const clock = new ManualClock(T0);
    sb = await startSandbox({ contacts: 200, limits: RELAXED, clock: clock.read });
    const cursor = iso(clock.now - 1);
    clock.advance(1000);
    const change = sb.mutate('contacts', { update: 3, create: 2, delete: 1 });
    expect(change.updated).toHaveLength(3);
    expect(change.created).toHaveLength(2);
    expect(change.deleted).toHaveLength(1);
    expect(change.updated).not.toContain(change.deleted[0]);
    const found = await listAll(sb, '/rest/v2/contacts', 'contacts', {
      filter: filter({ start_update_time: cursor }),
      fields: 'update_time',
    });
    expect(sorted(found.items.map((c) => String(c.id)))).toEqual(
      sorted([...change.updated, ...change.created]),
    );
    expect(found.items.every((c) => c.update_time === iso(T0 + 1000))).toBe(true);
    expect((await call(sb, `/rest/v2/contacts/${change.deleted[0]}`)).status).toBe(404);
    expect(sb.dataset.contacts.size).toBe(201);
  });

  it('changes every type, each found by its own incremental view', async () => {
    const clock = new ManualClock(T0);
    sb = await startSandbox({ contacts: 100, limits: RELAXED, clock: clock.read });
    for (const type of RESOURCE_TYPES) {
      const before = sb.dataset.table(type).size;
      const r = sb.mutate(type, { update: 2, create: 1, delete: 1 });
      expect([r.updated.length, r.created.length, r.deleted.length], type).toEqual([2, 1, 1]);
      expect(sb.dataset.table(type).size, type).toBe(before);
      const changed = sb.dataset
        .table(type)
        .values()
        .filter((rec) => (rec as unknown as Record<string, unknown>)[UPDATE_FIELD[type]] === iso(T0))
        .map((rec) => rec.id);
      expect(changed.sort(), type).toEqual([...r.updated, ...r.created].sort());
      for (const id of r.deleted) expect(sb.dataset.table(type).has(id), type).toBe(false);
    }
    const newest = await listAll(sb, '/rest/v2/subscriptions', 'subscriptions', {
      order_by: 'modification_time desc',
      page_size: '3',
    });
    expect(newest.items.slice(0, 3).map((s) => s.modification_time)).toEqual([iso(T0), iso(T0), iso(T0)]);
  });

  it('shows new tag applications to since_applied_time, and removes a deleted contact from its tags', async () => {
    const clock = new ManualClock(T0);
    sb = await startSandbox({ contacts: 100, limits: RELAXED, clock: clock.read });
    const r = sb.mutate('tagApplications', { create: 5 });
    for (const id of r.created) {
      const [tagId, contactId] = id.split(':');
      const found = await listAll(sb, `/rest/v2/tags/${tagId}/contacts`, 'contacts', {
        filter: filter({ since_applied_time: iso(T0) }),
      });
      expect(found.items.map((c) => c.id)).toContain(contactId);
      expect(sb.dataset.contacts.get(contactId ?? '')?.tag_ids).toContain(tagId);
    }
    const tagsBefore = new Map(sb.dataset.contacts.values().map((c) => [c.id, [...c.tag_ids]]));
    const gone = new Set(sb.mutate('contacts', { delete: 20 }).deleted);
    expect([...gone].some((id) => (tagsBefore.get(id) ?? []).length > 0)).toBe(true);
    expect(sb.dataset.tagApplications.values().some((a) => gone.has(a.contact_id))).toBe(false);
    for (const tag of sb.dataset.tags.values()) {
      const members = await listAll(sb, `/rest/v2/tags/${tag.id}/contacts`, 'contacts');
      expect(members.items.some((c) => gone.has(String(c.id)))).toBe(false);
    }
  });

  it('is driven by POST /__admin/mutate, which needs no key and counts nothing', async () => {
    const clock = new ManualClock(T0);
    sb = await startSandbox({ contacts: 100, clock: clock.read });
    const health = await call<{ status: string; counts: Record<string, number> }>(sb, '/__admin/health', {
      key: null,
    });
    expect(health.json).toMatchObject({ status: 'ok', counts: { contacts: 100 } });
    const bare = await fetch(`${new URL(sb.baseUrl).origin}/__admin/health`);
    expect(bare.status).toBe(200);
    const res = await call<{ updated: string[]; created: string[]; deleted: string[] }>(
      sb,
      '/__admin/mutate',
      {
        method: 'POST',
        key: null,
        body: { type: 'orders', update: 4, create: 1 },
      },
    );
    expect(res.status).toBe(200);
    expect(sb.arrivals).toHaveLength(0);
    const found = await listAll(sb, '/rest/v2/orders', 'orders', {
      filter: filter({ modified_since_time: iso(T0) }),
    });
    expect(sorted(found.items.map((o) => String(o.id)))).toEqual(
      sorted([...res.json.updated, ...res.json.created]),
    );
    expect(found.items.length).toBe(5);
    const bad = await call(sb, '/__admin/mutate', {
      method: 'POST',
      key: null,
      body: { type: 'widgets', update: 1 },
    });
    expect(bad.status).toBe(400);
    expect(() => sb?.mutate('contacts', { update: -1 })).toThrow(SandboxMutationError);
  });

  it('makes the same changes for the same seed and sequence of calls', async () => {
    const run = (): string => {
      const d = new SandboxDataset({ seed: 8, contacts: 150 });
      const out = [
        d.mutate('contacts', { update: 5, create: 2, delete: 2 }, T0),
        d.mutate('notes', { update: 3 }, T0),
      ];
      return JSON.stringify([out, d]);
    };
    expect(run()).toBe(run());
  });

  it('pages on without repeats or gaps while records change between pages', async () => {
    const clock = new ManualClock(T0);
    sb = await startSandbox({ contacts: 300, limits: RELAXED, clock: clock.read });
    const first = await call<{ contacts: Array<{ id: string }>; next_page_token: string }>(
      sb,
      '/rest/v2/contacts?page_size=100',
    );
    const change = sb.mutate('contacts', { update: 50, create: 10, delete: 10 });
    const rest = await listAll(sb, '/rest/v2/contacts', 'contacts', {
      page_size: '100',
      page_token: first.json.next_page_token,
    });
    const seen = [...first.json.contacts.map((c) => c.id), ...rest.items.map((c) => String(c.id))];
    expect(new Set(seen).size).toBe(seen.length);
    const deleted = new Set(change.deleted);
    const survivors = Array.from({ length: 300 }, (_, i) => String(i + 1)).filter((id) => !deleted.has(id));
    for (const id of [...survivors, ...change.created]) expect(seen).toContain(id);
  });
});
