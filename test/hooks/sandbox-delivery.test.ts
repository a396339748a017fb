// The sandbox delivering REST hooks to a local receiver built on the receiver core: the handshake,
// batching, Keap's retries, and Inactive after four failures or a 410. Every delay is Keap's times SCALE.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type HookDelivery,
  KEAP_HOOK_POLICY,
  type RunningSandbox,
  startSandbox,
} from '#harness/sandbox/index.ts';
import { call, RELAXED } from '../sandbox/support.ts';
import { startReceiver, type TestReceiver } from './support.ts';

const SCALE = 0.002;
/** Long enough for everything the policy schedules, times the scale, on a busy 2-core machine. */
const WAIT = { timeout: 15_000, interval: 20 };

let sb: RunningSandbox;
beforeEach(async () => {
  sb = await startSandbox({
    contacts: 60,
    limits: RELAXED,
    hooks: { timeScale: SCALE, responseTimeoutMs: 2000 },
  });
});
afterEach(async () => {
  await sb.close();
});

async function register(r: TestReceiver, eventKey: string): Promise<string> {
  const created = await call<{ key: string; status: string }>(sb, '/rest/v1/hooks', {
    method: 'POST',
    body: { eventKey, hookUrl: r.url },
  });
  expect(created.json.status).toBe('Unverified');
  const verified = await call<{ status: string }>(sb, `/rest/v1/hooks/${created.json.key}/verify`, {
    method: 'POST',
  });
  expect(verified.json.status).toBe('Verified');
  return created.json.key;
}

const deliveries = (key: string): HookDelivery[] =>
  sb.hooks.snapshot().deliveries.filter((d) => d.hookKey === key);
const statusOf = (key: string) => sb.hooks.get(key)?.status;
const idsOf = (r: TestReceiver, event: string) =>
  r.jobs
    .filter((j) => j.event === event)
    .flatMap((j) => j.ids)
    .sort((a, b) => Number(a) - Number(b));
const sorted = (ids: string[]) => [...ids].sort((a, b) => Number(a) - Number(b));

describe('sandbox hooks to the receiver core', () => {
  it('verifies by the echoed secret, then delivers creates, updates and deletes as jobs', async () => {
    const r = await startReceiver(['contact.add', 'contact.edit', 'contact.delete']);
    for (const k of ['contact.add', 'contact.edit', 'contact.delete']) await register(r, k);
    expect(r.outcomes).toEqual(['handshake', 'handshake', 'handshake']);

    const m = sb.mutate('contacts', { update: 3, create: 2, delete: 2 });

    await vi.waitFor(() => expect(r.jobs).toHaveLength(3), WAIT);
    expect(idsOf(r, 'add')).toEqual(sorted(m.created));
    expect(idsOf(r, 'edit')).toEqual(sorted(m.updated));
    expect(idsOf(r, 'delete')).toEqual(sorted(m.deleted));
    for (const id of m.deleted) expect(sb.dataset.contacts.has(id)).toBe(false);
    expect(r.jobs.every((j) => j.account === 'demo' && j.resource === 'contacts')).toBe(true);
  });

  it('keeps a hook Unverified when the receiver answers 200 without the secret, and delivers nothing', async () => {
    const r = await startReceiver(['contact.add']);
    r.behaviour = 'no-echo';
    const created = await call<{ key: string }>(sb, '/rest/v1/hooks', {
      method: 'POST',
      body: { eventKey: 'contact.add', hookUrl: r.url },
    });
    const verified = await call<{ status: string }>(sb, `/rest/v1/hooks/${created.json.key}/verify`, {
      method: 'POST',
    });
    expect(verified.json.status).toBe('Unverified');
    sb.mutate('contacts', { create: 2 });
    // Nothing is pending or scheduled for an unverified hook: the admin view shows it at once.
    const view = sb.hooks.snapshot();
    expect(view.hooks[0]).toMatchObject({ status: 'Unverified', pending: 0 });
    expect(view.deliveries).toEqual([]);
  });

  it('batches 2,500 creates into deliveries of at most 1000 ids, which the receiver splits into jobs of 100', async () => {
    const r = await startReceiver(['contact.add']);
    const key = await register(r, 'contact.add');
    const m = sb.mutate('contacts', { create: 2500 });
    await vi.waitFor(
      () => expect(deliveries(key).map((d) => d.state)).toEqual(['delivered', 'delivered', 'delivered']),
      WAIT,
    );
    expect(deliveries(key).map((d) => d.ids.length)).toEqual([1000, 1000, 500]);
    await vi.waitFor(() => expect(r.jobs).toHaveLength(25), WAIT);
    expect(r.jobs.every((j) => j.ids.length === 100)).toBe(true);
    expect(idsOf(r, 'add')).toEqual(sorted(m.created));
  });

  it('sends changes made close together in one delivery', async () => {
    const r = await startReceiver(['contact.edit']);
    const key = await register(r, 'contact.edit');
    const a = sb.mutate('contacts', { update: 2 });
    const b = sb.mutate('contacts', { update: 2 });
    await vi.waitFor(() => expect(deliveries(key)[0]?.state).toBe('delivered'), WAIT);
    expect(deliveries(key)).toHaveLength(1);
    expect(sorted(deliveries(key)[0]?.ids ?? [])).toEqual(sorted([...a.updated, ...b.updated]));
  });

  it("retries after failures with Keap's waits, and stays Verified once a retry succeeds", async () => {
    const r = await startReceiver(['contact.add']);
    const key = await register(r, 'contact.add');
    r.script = [{ status: 500 }, { status: 429 }];
    const m = sb.mutate('contacts', { create: 1 });
    await vi.waitFor(() => expect(deliveries(key)[0]?.state).toBe('delivered'), WAIT);
    const attempts = deliveries(key)[0]?.attempts ?? [];
    expect(attempts.map((a) => a.status)).toEqual([500, 429, 200]);
    const [first, second, third] = attempts.map((a) => a.realMs);
    const [retry1, retry2] = KEAP_HOOK_POLICY.retries;
    expect((second ?? 0) - (first ?? 0)).toBeGreaterThanOrEqual(retry1[0] * SCALE - 1);
    expect((third ?? 0) - (second ?? 0)).toBeGreaterThanOrEqual(retry2[0] * SCALE - 1);
    expect(statusOf(key)).toBe('Verified');
    expect(r.jobs.flatMap((j) => j.ids)).toEqual(m.created);
  });

  it('counts no answer within the response timeout as a failure, and retries', async () => {
    await sb.close();
    sb = await startSandbox({
      contacts: 60,
      limits: RELAXED,
      hooks: { timeScale: SCALE, responseTimeoutMs: 300 },
    });
    const r = await startReceiver(['contact.add']);
    const key = await register(r, 'contact.add');
    r.script = ['hang'];
    sb.mutate('contacts', { create: 1 });
    await vi.waitFor(() => expect(deliveries(key)[0]?.state).toBe('delivered'), WAIT);
    const attempts = deliveries(key)[0]?.attempts ?? [];
    expect(attempts).toHaveLength(2);
    expect(attempts[0]).toMatchObject({ ok: false, error: expect.stringMatching(/no answer within 300 ms/) });
    expect(r.jobs).toHaveLength(1);
  });

  it('turns the hook Inactive after the fourth failed attempt and delivers nothing more until verified again', async () => {
    const r = await startReceiver(['contact.edit']);
    const key = await register(r, 'contact.edit');
    r.behaviour = { status: 503 };
    sb.mutate('contacts', { update: 1 });
    await vi.waitFor(() => expect(statusOf(key)).toBe('Inactive'), WAIT);
    const [d] = deliveries(key);
    expect(d?.attempts.map((a) => a.status)).toEqual([503, 503, 503, 503]);
    expect(d).toMatchObject({ state: 'failed', reason: '4 attempts failed' });

    r.behaviour = 'core';
    sb.mutate('contacts', { update: 1 });
    expect(sb.hooks.snapshot().hooks[0]?.pending).toBe(0);
    const again = await call<{ status: string }>(sb, `/rest/v1/hooks/${key}/verify`, { method: 'POST' });
    expect(again.json.status).toBe('Verified');
    const m = sb.mutate('contacts', { update: 1 });
    await vi.waitFor(() => expect(r.jobs).toHaveLength(1), WAIT);
    expect(r.jobs[0]?.ids).toEqual(m.updated);
    expect(deliveries(key)).toHaveLength(2);
  });

  it('turns the hook Inactive at the first 410, and cancels what was waiting', async () => {
    const r = await startReceiver(['contact.add']);
    const key = await register(r, 'contact.add');
    r.script = [{ status: 410 }];
    sb.mutate('contacts', { create: 1 });
    await vi.waitFor(() => expect(statusOf(key)).toBe('Inactive'), WAIT);
    const [d] = deliveries(key);
    expect(d?.attempts.map((a) => a.status)).toEqual([410]);
    expect(d?.reason).toBe('the receiver answered 410');
    expect(r.jobs).toEqual([]);
  });

  it("announces tag applications and removals, a deleted contact's removals included", async () => {
    const r = await startReceiver(['contactGroup.applied', 'contactGroup.removed']);
    const applied = await register(r, 'contactGroup.applied');
    const removed = await register(r, 'contactGroup.removed');
    const apply = await call<{ results: Record<string, string> }>(sb, '/rest/v2/tags/1/contacts:applyTags', {
      method: 'POST',
      body: { contact_ids: ['2', '3'] },
    });
    const viaApi = Object.entries(apply.json.results)
      .filter(([, v]) => v === 'SUCCESS')
      .map(([c]) => `1:${c}`);
    const m = sb.mutate('tagApplications', { create: 2, delete: 1 });
    const before = sb.dataset.tagApplications.values();
    const gone = sb.mutate('contacts', { delete: 1 }).deleted[0];
    const cascaded = before.filter((a) => a.contact_id === gone).map((a) => a.id);

    const done = (key: string) =>
      deliveries(key).length > 0 && deliveries(key).every((d) => d.state === 'delivered');
    await vi.waitFor(() => expect(done(applied) && done(removed)).toBe(true), WAIT);
    const ids = (event: string) =>
      r.jobs
        .filter((j) => j.event === event)
        .flatMap((j) => j.ids)
        .sort();
    expect(ids('applied')).toEqual([...viaApi, ...m.created].sort());
    expect(ids('removed')).toEqual([...m.deleted, ...cascaded].sort());
    expect(cascaded.every((id) => !sb.dataset.tagApplications.has(id))).toBe(true);
    expect(r.jobs.every((j) => j.resource === 'tagApplications')).toBe(true);
  });
});
