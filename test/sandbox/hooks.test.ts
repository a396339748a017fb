import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type HooksSnapshot,
  type RunningSandbox,
  type SandboxHook,
  startSandbox,
} from '#harness/sandbox/index.ts';
import { HOOK_EVENT_KEYS } from '#shared/hooks/index.ts';
import { call, RELAXED } from './support.ts';

let sb: RunningSandbox;
beforeEach(async () => {
  sb = await startSandbox({ contacts: 30, limits: RELAXED, hooks: { timeScale: 0.001 } });
});
afterEach(async () => {
  await sb.close();
});

const hookUrl = 'http://127.0.0.1:9/hooks/nobody-listens';

async function create(eventKey = 'contact.add'): Promise<SandboxHook> {
  const r = await call<SandboxHook>(sb, '/rest/v1/hooks', { method: 'POST', body: { eventKey, hookUrl } });
  expect(r.status).toBe(200);
  return r.json;
}

describe('sandbox /rest/v1/hooks', () => {
  it('creates an Unverified hook, lists it, reads it, changes it and deletes it', async () => {
    const h = await create();
    expect(h).toEqual({ key: h.key, eventKey: 'contact.add', hookUrl, status: 'Unverified' });
    expect((await call<SandboxHook[]>(sb, '/rest/v1/hooks')).json).toEqual([h]);
    expect((await call<SandboxHook>(sb, `/rest/v1/hooks/${h.key}`)).json).toEqual(h);
    const put = await call<SandboxHook>(sb, `/rest/v1/hooks/${h.key}`, {
      method: 'PUT',
      body: { eventKey: 'contact.edit', hookUrl },
    });
    expect(put.json).toMatchObject({ key: h.key, eventKey: 'contact.edit', status: 'Unverified' });
    expect((await call(sb, `/rest/v1/hooks/${h.key}`, { method: 'DELETE' })).status).toBe(204);
    expect((await call(sb, `/rest/v1/hooks/${h.key}`)).status).toBe(404);
  });

  it('lists the event keys the registry announces', async () => {
    const r = await call<string[]>(sb, '/rest/v1/hooks/event_keys');
    expect(r.json).toEqual([...HOOK_EVENT_KEYS]);
    expect(r.json).toEqual(
      expect.arrayContaining(['contact.delete', 'contactGroup.applied', 'contactGroup.removed']),
    );
  });

  it('refuses an unknown event key, a bad URL and a body that is not JSON with 400', async () => {
    const bad = [
      { eventKey: 'contact.explode', hookUrl },
      { eventKey: 'contact.add', hookUrl: 'ftp://x' },
      { eventKey: 'contact.add' },
    ];
    for (const body of bad)
      expect((await call(sb, '/rest/v1/hooks', { method: 'POST', body })).status).toBe(400);
    expect((await call(sb, '/rest/v1/hooks', { method: 'POST', body: '{' })).status).toBe(400);
  });

  it('asks for a key like every Keap call', async () => {
    expect((await call(sb, '/rest/v1/hooks', { key: null })).status).toBe(401);
  });

  it('stays Unverified when the hook URL does not answer, and records the attempt', async () => {
    const h = await create();
    const v = await call<SandboxHook>(sb, `/rest/v1/hooks/${h.key}/verify`, { method: 'POST' });
    expect(v.json.status).toBe('Unverified');
    const admin = await call<HooksSnapshot>(sb, '/__admin/hooks', { key: null });
    expect(admin.json.hooks[0]?.verifications).toEqual([expect.objectContaining({ ok: false })]);
    expect(admin.json.settings.timeScale).toBe(0.001);
  });

  it('verifies through delayedVerify with the secret of the last handshake only', async () => {
    const h = await create();
    const wrong = await call(sb, `/rest/v1/hooks/${h.key}/delayedVerify`, { method: 'POST' });
    expect(wrong.status).toBe(400);
    await call(sb, `/rest/v1/hooks/${h.key}/verify`, { method: 'POST' });
    // The receiver would have kept the secret; the test reads it from the sandbox's side.
    const secret = (sb.hooks as unknown as { hooks: Map<string, { secret?: string }> }).hooks.get(
      h.key,
    )?.secret;
    const res = await fetch(`${sb.baseUrl}/rest/v1/hooks/${h.key}/delayedVerify`, {
      method: 'POST',
      headers: { 'X-Keap-API-Key': sb.keys[0]?.key ?? '', 'X-Hook-Secret': secret ?? '' },
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as SandboxHook).status).toBe('Verified');
  });

  it('refuses unusable hook settings at start', async () => {
    await expect(startSandbox({ hooks: { timeScale: 0 } })).rejects.toThrow(/timeScale/);
  });
});

describe('admin mutations and deletions', () => {
  it('removes deleted records, and tag applications of deleted contacts, from the lists', async () => {
    const before = sb.dataset.tagApplications.values();
    const m = sb.mutate('contacts', { delete: 3 });
    for (const id of m.deleted) {
      expect(sb.dataset.contacts.has(id)).toBe(false);
      expect(
        before.filter((a) => a.contact_id === id).some((a) => sb.dataset.tagApplications.has(a.id)),
      ).toBe(false);
    }
  });

  it('applies and removes tags through POST /__admin/mutate on tagApplications', async () => {
    const r = await call<{ created: string[]; deleted: string[] }>(sb, '/__admin/mutate', {
      method: 'POST',
      key: null,
      body: { type: 'tagApplications', create: 2, delete: 2 },
    });
    expect(r.status).toBe(200);
    for (const id of r.json.created) expect(sb.dataset.tagApplications.has(id)).toBe(true);
    for (const id of r.json.deleted) expect(sb.dataset.tagApplications.has(id)).toBe(false);
    const [tagId = '', contactId = ''] = r.json.created[0]?.split(':') ?? [];
    expect(sb.dataset.contacts.get(contactId)?.tag_ids).toContain(tagId);
  });
});
