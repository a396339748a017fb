import { describe, expect, it } from 'vitest';
import {
  createHookReceiver,
  eventKeyOf,
  HOOK_EVENT_KEYS,
  HOOK_JOB_MAX_IDS,
  HookReceiverConfigError,
  type HookRequest,
  hookEventJobSchema,
  hookEventOf,
  tokensEqual,
} from '#shared/hooks/index.ts';

const TOKEN = 'tok_0123456789abcdefghijkl';
const NOW = Date.UTC(2026, 8, 2, 10, 0, 0);

function receiver(extra: Partial<Parameters<typeof createHookReceiver>[0]> = {}) {
  return createHookReceiver({
    account: 'demo',
    token: TOKEN,
    eventKeys: ['contact.add', 'contact.delete', 'contactGroup.applied'],
    maxBodyBytes: 64 * 1024,
    clock: () => NOW,
    ...extra,
  });
}

/** A delivery as Keap sends it. */
function delivery(
  eventKey: string,
  ids: Array<number | string>,
  extra: Record<string, unknown> = {},
): string {
  return JSON.stringify({
    event_key: eventKey,
    object_type: eventKey.split('.')[0],
    object_keys: ids.map((id) => ({ id, apiUrl: '', timestamp: '2026-09-02T10:00:00.000Z', ...extra })),
  });
}

function post(body: string, headers: HookRequest['headers'] = {}, path = `/hooks/${TOKEN}`): HookRequest {
  return { method: 'POST', path, headers: { 'content-type': 'application/json', ...headers }, body };
}

describe('event keys from the registry', () => {
  it('maps every list with a hook part to its keys, tag applications to contactGroup.applied/removed', () => {
    expect(hookEventOf('contact.delete')).toEqual({ resource: 'contacts', event: 'delete' });
    expect(hookEventOf('contactGroup.add')).toEqual({ resource: 'tags', event: 'add' });
    expect(hookEventOf('contactGroup.removed')).toEqual({ resource: 'tagApplications', event: 'removed' });
    expect(eventKeyOf('opportunities', 'edit')).toBe('opportunity.edit');
    expect(HOOK_EVENT_KEYS).toHaveLength(29);
    expect(hookEventOf('user.add')).toBeUndefined();
  });
});

describe('hook receiver', () => {
  it('answers the handshake with 200 and the same X-Hook-Secret, and queues nothing', () => {
    const out = receiver()(post('', { 'X-Hook-Secret': 's3cr3t-value' }));
    expect(out.kind).toBe('handshake');
    expect(out.response.status).toBe(200);
    expect(out.response.headers['X-Hook-Secret']).toBe('s3cr3t-value');
    expect('jobs' in out).toBe(false);
  });

  it('accepts a delivery and turns it into one job per list and event', () => {
    const out = receiver()(post(delivery('contact.add', [123, 456])));
    expect(out.kind).toBe('accepted');
    if (out.kind !== 'accepted') return;
    expect(out.response.status).toBe(200);
    expect(out.jobs).toEqual([
      {
        kind: 'hookEvent',
        account: 'demo',
        resource: 'contacts',
        event: 'add',
        ids: ['123', '456'],
        receivedAt: new Date(NOW).toISOString(),
        attempt: 0,
      },
    ]);
  });

  it('chunks 1000 ids into jobs of at most 100, de-duplicating repeated ids', () => {
    const ids = Array.from({ length: 1000 }, (_, i) => i + 1);
    const out = receiver()(post(delivery('contact.delete', [...ids.slice(0, 999), 5])));
    if (out.kind !== 'accepted') throw new Error(out.kind);
    expect(out.objects).toBe(1000);
    expect(out.jobs).toHaveLength(10);
    expect(out.jobs.every((j) => j.ids.length <= HOOK_JOB_MAX_IDS && j.event === 'delete')).toBe(true);
    expect(out.jobs.flatMap((j) => j.ids)).toEqual(ids.slice(0, 999).map(String));
  });

  it('chunks by idsPerJob when set lower', () => {
    const out = receiver({ idsPerJob: 2 })(post(delivery('contact.add', [1, 2, 3, 4, 5])));
    if (out.kind !== 'accepted') throw new Error(out.kind);
    expect(out.jobs.map((j) => j.ids)).toEqual([['1', '2'], ['3', '4'], ['5']]);
  });

  it('accepts a delivery with no objects and queues nothing', () => {
    const out = receiver()(post(delivery('contact.add', [])));
    expect(out.kind).toBe('accepted');
    if (out.kind === 'accepted') expect(out.jobs).toEqual([]);
  });

  it('names tag applications "<tagId>:<contactId>" when the object carries the contact, the tag alone otherwise', () => {
    const body = JSON.stringify({
      event_key: 'contactGroup.applied',
      object_type: 'contactGroup',
      object_keys: [
        { id: 91, contact_id: 7, timestamp: 'x' },
        { id: 92, timestamp: 'x' },
      ],
    });
    const out = receiver()(post(body));
    if (out.kind !== 'accepted') throw new Error(out.kind);
    expect(out.jobs[0]).toMatchObject({ resource: 'tagApplications', event: 'applied', ids: ['91:7', '92'] });
  });

  it('answers 404 when the path carries no token, and 403 for a wrong one, before reading the body', () => {
    const r = receiver();
    const none = r(post(delivery('contact.add', [1]), {}, '/'));
    expect(none).toMatchObject({ kind: 'rejected', reason: 'no-token', response: { status: 404 } });
    const wrong = r(post('not json', { 'X-Hook-Secret': 'x' }, `/hooks/${TOKEN.slice(0, -1)}X`));
    expect(wrong).toMatchObject({ kind: 'rejected', reason: 'wrong-token', response: { status: 403 } });
    expect(wrong.response.headers['X-Hook-Secret']).toBeUndefined();
  });

  it('ignores a query string after the token', () => {
    expect(receiver()(post(delivery('contact.add', [1]), {}, `/hooks/${TOKEN}?x=1`)).kind).toBe('accepted');
  });

  it('answers 405 to anything but POST', () => {
    const out = receiver()({ method: 'GET', path: `/hooks/${TOKEN}`, headers: {}, body: '' });
    expect(out).toMatchObject({ reason: 'method', response: { status: 405, headers: { allow: 'POST' } } });
  });

  it('answers 413 to a body over the limit, counting UTF-8 bytes', () => {
    const r = receiver({ maxBodyBytes: 10 });
    expect(r(post('é'.repeat(6))).response.status).toBe(413);
    expect(r(post('{"a":"é"}')).response.status).toBe(400); // 10 bytes: within the limit
  });

  it('answers 400 to a body that is not JSON', () => {
    expect(receiver()(post('{"event_key":'))).toMatchObject({
      reason: 'invalid-json',
      response: { status: 400 },
    });
  });

  it.each([
    ['no object_keys', { event_key: 'contact.add' }],
    ['an id that is not a number', { event_key: 'contact.add', object_keys: [{ id: 'abc' }] }],
    ['a negative id', { event_key: 'contact.add', object_keys: [{ id: -1 }] }],
    ['no event key', { object_keys: [{ id: 1 }] }],
    [
      'more than 1000 objects',
      { event_key: 'contact.add', object_keys: Array.from({ length: 1001 }, () => ({ id: 1 })) },
    ],
    ['an array', [1, 2]],
  ])('answers 400 to a payload with %s', (_name, body) => {
    const out = receiver()(post(JSON.stringify(body)));
    expect(out).toMatchObject({ kind: 'rejected', reason: 'invalid-payload', response: { status: 400 } });
  });

  it('answers 422 to an event key the account did not register, known to Keap or not', () => {
    const r = receiver();
    expect(r(post(delivery('contact.edit', [1])))).toMatchObject({
      reason: 'unregistered-event',
      response: { status: 422 },
    });
    expect(r(post(delivery('invoice.add', [1]))).response.status).toBe(422);
  });

  it('never answers 410, which would make Keap deactivate the hook', () => {
    const r = receiver();
    const statuses = [
      r(post('', {}, '/')),
      r(post('', {}, '/hooks/wrong-token')),
      r(post('x')),
      r(post(delivery('task.add', [1]))),
    ].map((o) => o.response.status);
    expect(statuses).not.toContain(410);
  });

  it('refuses unusable settings when built', () => {
    expect(() => receiver({ token: 'short' })).toThrow(HookReceiverConfigError);
    expect(() => receiver({ token: `${TOKEN}/x` })).toThrow(HookReceiverConfigError);
    expect(() => receiver({ eventKeys: ['contact.explode'] })).toThrow(/contact\.explode/);
    expect(() => receiver({ maxBodyBytes: 0 })).toThrow(HookReceiverConfigError);
    expect(() => receiver({ idsPerJob: 101 })).toThrow(HookReceiverConfigError);
    expect(() => receiver({ account: 'Not An Account' })).toThrow();
  });
});

describe('token comparison', () => {
  it('is true only for the same string, whatever the lengths', () => {
    expect(tokensEqual(TOKEN, TOKEN)).toBe(true);
    expect(tokensEqual(TOKEN, `${TOKEN}x`)).toBe(false);
    expect(tokensEqual('', TOKEN)).toBe(false);
  });
});

describe('hook job schema', () => {
  const job = {
    kind: 'hookEvent',
    account: 'demo',
    resource: 'contacts',
    event: 'edit',
    ids: ['1'],
    receivedAt: new Date(NOW).toISOString(),
  };

  it('accepts a job and defaults attempt to 0', () => {
    expect(hookEventJobSchema.parse(job).attempt).toBe(0);
  });

  it.each([
    ['no ids', { ids: [] }],
    ['101 ids', { ids: Array.from({ length: 101 }, (_, i) => String(i)) }],
    ['a repeated id', { ids: ['1', '1'] }],
    ['an id that is not digits', { ids: ['1a'] }],
    ['a pair id outside tag applications', { ids: ['1:2'] }],
    ['an unknown list', { resource: 'users' }],
    ['an unknown event', { event: 'complete' }],
    ['an extra field', { extra: 1 }],
  ])('refuses a job with %s', (_name, change) => {
    expect(hookEventJobSchema.safeParse({ ...job, ...change }).success).toBe(false);
  });

  it('accepts "<tagId>:<contactId>" ids for tag applications', () => {
    expect(
      hookEventJobSchema.safeParse({
        ...job,
        resource: 'tagApplications',
        event: 'removed',
        ids: ['9:1', '9'],
      }).success,
    ).toBe(true);
  });
});
