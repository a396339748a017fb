// Unit: writes (contact upsert, tag apply/remove in batches, notes), models and v1 REST hooks.
import { describe, expect, it } from 'vitest';
import { KeapArgumentError, KeapClient } from '#shared/keap/index.ts';
import { quotaHeaders, SECRET_KEY, sendJson, uniqueTenant, useKeapStub } from './support.ts';

const fx = useKeapStub();

function client(settings: Record<string, unknown> = {}): KeapClient {
  return new KeapClient({
    apiKey: SECRET_KEY,
    tenant: uniqueTenant(),
    ledger: fx.host.ledger(),
    settings: { baseUrl: fx.stub.baseUrl, ...settings },
  });
}

const email = { email_addresses: [{ email: 'ann@example.com', field: 'EMAIL1' }], given_name: 'Ann' };

describe('contact upsert', () => {
  it('posts with duplicate_option and reports 201 as created, 200 as updated', async () => {
    const c = client();
    let status = 201;
    fx.stub.setHandler((_q, res) => sendJson(res, status, { id: '42', ...email }, quotaHeaders()));
    const before = fx.stub.requests.length;
    const created = await c.upsertContact(email, { duplicateOption: 'EmailAndName' });
    status = 200;
    const updated = await c.upsertContact(email);
    expect(created).toMatchObject({ created: true, contact: { id: '42', given_name: 'Ann' } });
    expect(updated.created).toBe(false);
    const [first, second] = fx.stub.requests.slice(before);
    expect(first?.method).toBe('POST');
    expect(first?.url.pathname).toBe('/crm/rest/v2/contacts');
    expect(first?.url.searchParams.get('duplicate_option')).toBe('EmailAndName');
    expect(second?.url.searchParams.get('duplicate_option')).toBe('Email');
    expect(JSON.parse(first?.body ?? '{}')).toEqual(email);
    expect(first?.headers['content-type']).toBe('application/json');
  });

  it('refuses a contact without an email address, sending nothing', async () => {
    const c = client();
    const before = fx.stub.requests.length;
    await expect(c.upsertContact({ given_name: 'No mail' })).rejects.toBeInstanceOf(KeapArgumentError);
    expect(fx.stub.requests.length).toBe(before);
  });
});

describe('tags', () => {
  it('applies a tag in batches of tagBatchSize, de-duplicating ids and merging results', async () => {
    const c = client({ tagBatchSize: 100 });
    fx.stub.setHandler((req, res) => {
      const ids = (JSON.parse(req.body) as { contact_ids: string[] }).contact_ids;
      sendJson(res, 200, { results: Object.fromEntries(ids.map((i) => [i, 'SUCCESS'])) }, quotaHeaders());
    });
    const ids = Array.from({ length: 250 }, (_, i) => String(i + 1));
    const before = fx.stub.requests.length;
    const r = await c.applyTags('5', [...ids, '1', '2']);
    const reqs = fx.stub.requests.slice(before);
    expect(reqs.map((q) => q.url.pathname)).toEqual(Array(3).fill('/crm/rest/v2/tags/5/contacts:applyTags'));
    expect(reqs.map((q) => (JSON.parse(q.body) as { contact_ids: string[] }).contact_ids.length)).toEqual([
      100, 100, 50,
    ]);
    expect(r.batches).toBe(3);
    expect(r.contacts).toBe(250);
    expect(Object.keys(r.results)).toHaveLength(250);
  });

  it('removes a tag in batches (Keap answers 204)', async () => {
    const c = client({ tagBatchSize: 2 });
    fx.stub.setHandler((_q, res) => {
      res.writeHead(204, quotaHeaders());
      res.end();
    });
    const before = fx.stub.requests.length;
    const r = await c.removeTags('9', ['1', '2', '3', '4', '5']);
    expect(r.batches).toBe(3);
    expect(
      fx.stub.requests.slice(before).every((q) => q.url.pathname.endsWith('/tags/9/contacts:removeTags')),
    ).toBe(true);
  });
});

describe('notes', () => {
  it('creates a note on the contact', async () => {
    const c = client();
    fx.stub.setHandler((req, res) =>
      sendJson(res, 201, { id: '3', ...JSON.parse(req.body) }, quotaHeaders()),
    );
    const note = await c.createNote('12', { user_id: '1', title: 'Called', text: 'Left a message' });
    expect(note).toMatchObject({ id: '3', title: 'Called' });
    const req = fx.stub.requests.at(-1);
    expect(req?.url.pathname).toBe('/crm/rest/v2/contacts/12/notes');
    expect(JSON.parse(req?.body ?? '{}')).toEqual({ user_id: '1', title: 'Called', text: 'Left a message' });
  });

  it('refuses a note with neither title nor type', async () => {
    const c = client();
    const err = await c.createNote('12', { user_id: '1', text: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeapArgumentError);
    expect((err as KeapArgumentError).argument).toBe('note.title');
  });
});

describe('models', () => {
  it('reads the custom-field model of an object', async () => {
    const c = client();
    fx.stub.setHandler((_q, res) =>
      sendJson(
        res,
        200,
        {
          custom_fields: [{ id: 11, label: 'Plan', field_name: 'plan', field_type: 'Dropdown', options: [] }],
          optional_properties: ['custom_fields'],
        },
        quotaHeaders(),
      ),
    );
    const m = await c.getModel('companies');
    expect(fx.stub.requests.at(-1)?.url.pathname).toBe('/crm/rest/v2/companies/model');
    expect(m.custom_fields[0]).toMatchObject({ id: '11', field_name: 'plan' });
    expect(m.optional_properties).toEqual(['custom_fields']);
  });

  it('refuses an object without a model', async () => {
    await expect(client().getModel('users' as 'contacts')).rejects.toBeInstanceOf(KeapArgumentError);
  });
});

describe('REST hooks (v1)', () => {
  it('lists, creates, verifies and deletes hooks under /rest/v1/hooks', async () => {
    const c = client();
    const hook = {
      key: 'h1',
      eventKey: 'contact.add',
      hookUrl: 'https://example.com/hook',
      status: 'Unverified',
    };
    fx.stub.setHandler((req, res) => {
      if (req.method === 'GET') sendJson(res, 200, [hook], quotaHeaders());
      else if (req.method === 'DELETE') {
        res.writeHead(204, quotaHeaders());
        res.end();
      } else if (req.url.pathname.endsWith('/verify')) sendJson(res, 200, { ...hook, status: 'Verified' });
      else sendJson(res, 201, hook, quotaHeaders());
    });
    const before = fx.stub.requests.length;
    expect(await c.listHooks()).toEqual([hook]);
    expect(await c.createHook({ eventKey: 'contact.add', hookUrl: 'https://example.com/hook' })).toEqual(
      hook,
    );
    expect((await c.verifyHook('h1')).status).toBe('Verified');
    await c.deleteHook('h1');
    expect(fx.stub.requests.slice(before).map((q) => `${q.method} ${q.url.pathname}`)).toEqual([
      'GET /crm/rest/v1/hooks',
      'POST /crm/rest/v1/hooks',
      'POST /crm/rest/v1/hooks/h1/verify',
      'DELETE /crm/rest/v1/hooks/h1',
    ]);
  });

  it('refuses a hook URL that is not https', async () => {
    await expect(
      client().createHook({ eventKey: 'contact.add', hookUrl: 'http://example.com/hook' }),
    ).rejects.toBeInstanceOf(KeapArgumentError);
  });
});
