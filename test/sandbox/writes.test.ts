import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Contact, type Note, type RunningSandbox, startSandbox } from '#harness/sandbox/index.ts';
import { call, filter, listAll, ManualClock, RELAXED, type V2Error } from './support.ts';

const T0 = Date.UTC(2026, 8, 2, 10, 0, 0);
const iso = (ms: number) => new Date(ms).toISOString();

let sb: RunningSandbox;
let clock: ManualClock;
beforeEach(async () => {
  clock = new ManualClock(T0);
  sb = await startSandbox({ contacts: 60, limits: RELAXED, clock: clock.read });
});
afterEach(async () => {
  await sb.close();
});

function ada(extra: Record<string, unknown> = {}) {
  return {
    given_name: 'Ada',
    family_name: 'Lovelace',
    email_addresses: [{ email: 'ada@engine.example', field: 'EMAIL1' }],
    ...extra,
  };
}

describe('contact upsert', () => {
  it('creates with 201, then updates the same contact with 200 when the email matches', async () => {
    const created = await call<Contact>(sb, '/rest/v2/contacts?duplicate_option=Email', {
      method: 'POST',
      body: ada(),
    });
    expect(created.status).toBe(201);
    expect(created.json.id).toBe('61');
    expect(sb.dataset.contacts.get('61')?.update_time).toBe(iso(T0));
    clock.advance(5000);
    const updated = await call<Contact>(sb, '/rest/v2/contacts?duplicate_option=Email&fields=update_time', {
      method: 'POST',
      body: ada({ given_name: 'Augusta', email_addresses: [{ email: 'ADA@engine.example' }] }),
    });
    expect(updated.status).toBe(200);
    expect(updated.json).toMatchObject({ id: '61', given_name: 'Augusta', update_time: iso(T0 + 5000) });
    expect(sb.dataset.contacts.size).toBe(61);
    const incremental = await listAll(sb, '/rest/v2/contacts', 'contacts', {
      filter: filter({ start_update_time: iso(T0 + 1) }),
    });
    expect(incremental.items.map((c) => c.id)).toEqual(['61']);
  });

  it('matches on email and name, and on company too, as duplicate_option says', async () => {
    await call(sb, '/rest/v2/contacts?duplicate_option=Email', {
      method: 'POST',
      body: ada({ company: { id: '1' } }),
    });
    const otherName = await call(sb, '/rest/v2/contacts?duplicate_option=EmailAndName', {
      method: 'POST',
      body: ada({ given_name: 'Byron' }),
    });
    expect(otherName.status).toBe(201);
    const sameName = await call<Contact>(sb, '/rest/v2/contacts?duplicate_option=EmailAndName', {
      method: 'POST',
      body: ada({ job_title: 'Analyst' }),
    });
    expect(sameName.status).toBe(200);
    expect(sameName.json.id).toBe('61');
    const otherCompany = await call(sb, '/rest/v2/contacts?duplicate_option=EmailAndNameAndCompany', {
      method: 'POST',
      body: ada({ company: { id: '2' } }),
    });
    expect(otherCompany.status).toBe(201);
    const sameCompany = await call<Contact>(sb, '/rest/v2/contacts?duplicate_option=EmailAndNameAndCompany', {
      method: 'POST',
      body: ada({ company: { id: '1' } }),
    });
    expect(sameCompany.status).toBe(200);
    expect(sameCompany.json.company?.company_name).toBe(sb.dataset.companies.get('1')?.company_name);
  });

  it('always creates without duplicate_option', async () => {
    const a = await call<Contact>(sb, '/rest/v2/contacts', { method: 'POST', body: ada() });
    const b = await call<Contact>(sb, '/rest/v2/contacts', { method: 'POST', body: ada() });
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(a.json.id).not.toBe(b.json.id);
  });

  it('rejects bad upserts with a v2 error naming the problem', async () => {
    const cases: Array<[string, unknown, { domain: string; resource?: string }]> = [
      ['/rest/v2/contacts?duplicate_option=Phone', ada(), { domain: 'duplicate_option', resource: 'Phone' }],
      ['/rest/v2/contacts', { given_name: 'Nobody' }, { domain: 'body', resource: 'email_addresses' }],
      ['/rest/v2/contacts', ada({ shoe_size: 44 }), { domain: 'body' }],
      ['/rest/v2/contacts', ada({ given_name: 'x'.repeat(41) }), { domain: 'body', resource: 'given_name' }],
      ['/rest/v2/contacts', '{"given_name":', { domain: 'body', resource: 'json' }],
    ];
    for (const [path, body, detail] of cases) {
      const r = await call<V2Error>(sb, path, { method: 'POST', body });
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.json).toMatchObject({ code: 400, status: 'Bad Request', details: [detail] });
    }
    const unknown = await call<V2Error>(sb, '/rest/v2/contacts', {
      method: 'POST',
      body: ada({ shoe_size: 44 }),
    });
    expect(unknown.json.message).toContain('shoe_size');
    expect(sb.dataset.contacts.size).toBe(60);
  });
});

describe('tags', () => {
  it('applies a tag once, reports duplicates and unknown contacts, and lists it by applied time', async () => {
    const tagId = '3';
    const fresh = sb.dataset.contacts
      .values()
      .filter((c) => !c.tag_ids.includes(tagId))
      .slice(0, 2)
      .map((c) => c.id);
    const [a = '', b = ''] = fresh;
    clock.advance(60_000);
    const applied = await call<{ results: Record<string, string> }>(
      sb,
      `/rest/v2/tags/${tagId}/contacts:applyTags`,
      {
        method: 'POST',
        body: { contact_ids: [a, b] },
      },
    );
    expect(applied.status).toBe(200);
    expect(applied.json.results).toEqual({ [a]: 'SUCCESS', [b]: 'SUCCESS' });
    const again = await call<{ results: Record<string, string> }>(
      sb,
      `/rest/v2/tags/${tagId}/contacts%3AapplyTags`,
      {
        method: 'POST',
        body: { contact_ids: [a, '999999'] },
      },
    );
    expect(again.json.results).toEqual({ [a]: 'DUPLICATE', '999999': 'FAILURE' });
    const recent = await listAll(sb, `/rest/v2/tags/${tagId}/contacts`, 'contacts', {
      filter: filter({ since_applied_time: iso(T0 + 60_000) }),
    });
    expect(recent.items.map((c) => c.id).sort()).toEqual([a, b].sort());
    expect(recent.items[0]).toMatchObject({ applied_time: iso(T0 + 60_000), email: expect.any(String) });
    expect(sb.dataset.contacts.get(a)?.tag_ids).toContain(tagId);
  });

  it('removes a tag with 204, and rejects unknown tags and empty lists', async () => {
    const tagId = '4';
    const member = sb.dataset.tagApplications.values().find((x) => x.tag_id === tagId)?.contact_id ?? '';
    expect(member).not.toBe('');
    const removed = await call(sb, `/rest/v2/tags/${tagId}/contacts:removeTags`, {
      method: 'POST',
      body: { contact_ids: [member] },
    });
    expect(removed.status).toBe(204);
    expect(removed.text).toBe('');
    const members = await listAll(sb, `/rest/v2/tags/${tagId}/contacts`, 'contacts');
    expect(members.items.map((c) => c.id)).not.toContain(member);
    expect(sb.dataset.contacts.get(member)?.tag_ids).not.toContain(tagId);
    const unknown = await call(sb, '/rest/v2/tags/999/contacts:applyTags', {
      method: 'POST',
      body: { contact_ids: ['1'] },
    });
    expect(unknown.status).toBe(404);
    const empty = await call(sb, `/rest/v2/tags/${tagId}/contacts:applyTags`, {
      method: 'POST',
      body: { contact_ids: [] },
    });
    expect(empty.status).toBe(400);
  });
});

describe('notes', () => {
  it('creates a note for a contact with 201, visible in both note lists', async () => {
    clock.advance(30_000);
    const created = await call<Note>(sb, '/rest/v2/contacts/12/notes', {
      method: 'POST',
      body: { user_id: '1', title: 'Called back', text: 'Wants the annual plan.', type: 'Call' },
    });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({
      contact_id: '12',
      title: 'Called back',
      create_time: iso(T0 + 30_000),
      update_time: iso(T0 + 30_000),
      assigned_to_user: { id: '1' },
    });
    const forContact = await listAll(sb, '/rest/v2/contacts/12/notes', 'notes');
    expect(forContact.items.map((n) => n.id)).toContain(created.json.id);
    const recent = await listAll(sb, '/rest/v2/notes', 'notes', {
      filter: filter({ since_time: iso(T0 + 30_000) }),
    });
    expect(recent.items.map((n) => n.id)).toEqual([created.json.id]);
  });

  it('requires a known user and a title or type, and an existing contact', async () => {
    const cases: Array<[string, unknown, number]> = [
      ['/rest/v2/contacts/12/notes', { title: 'No user' }, 400],
      ['/rest/v2/contacts/12/notes', { user_id: '1', text: 'No title or type' }, 400],
      ['/rest/v2/contacts/12/notes', { user_id: '999', title: 'Unknown user' }, 400],
      ['/rest/v2/contacts/999999/notes', { user_id: '1', title: 'No contact' }, 404],
    ];
    for (const [path, body, status] of cases) {
      expect((await call(sb, path, { method: 'POST', body })).status, JSON.stringify(body)).toBe(status);
    }
    expect(sb.arrivals.map((a) => a.status)).toEqual([400, 400, 400, 404]);
  });
});
