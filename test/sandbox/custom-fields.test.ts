// Sandbox: Keap's `POST /rest/v2/{object}/model/customFields` adds a field to the object's model, as
// `GET /rest/v2/{object}/model` then serves it (what the worker's model refresh is tested against).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CustomFieldMetaData, type RunningSandbox, startSandbox } from '#harness/sandbox/index.ts';
import { call, RELAXED } from './support.ts';

let sb: RunningSandbox;
beforeAll(async () => {
  sb = await startSandbox({ contacts: 20, seed: 5, limits: RELAXED });
});
afterAll(async () => {
  await sb?.close();
});

type Model = { custom_fields: CustomFieldMetaData[] };

describe('sandbox custom field models', () => {
  it('creates a field with a new id and a camel-case field_name, and serves it in the model', async () => {
    const before = await call<Model>(sb, '/rest/v2/contacts/model');

    const created = await call<CustomFieldMetaData>(sb, '/rest/v2/contacts/model/customFields', {
      method: 'POST',
      body: { label: 'Favorite Color', field_type: 'TEXT' },
    });
    const after = await call<Model>(sb, '/rest/v2/contacts/model');

    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({
      label: 'Favorite Color',
      field_name: 'favoriteColor',
      record_type: 'CONTACT',
    });
    const ids = before.json.custom_fields.map((f) => f.id);
    expect(ids).not.toContain(created.json.id);
    expect(after.json.custom_fields).toEqual([...before.json.custom_fields, created.json]);
  });

  it('numbers a field_name that is taken', async () => {
    const body = { label: 'Shoe Size', field_type: 'WHOLE_NUMBER' };
    const first = await call<CustomFieldMetaData>(sb, '/rest/v2/companies/model/customFields', {
      method: 'POST',
      body,
    });

    const second = await call<CustomFieldMetaData>(sb, '/rest/v2/companies/model/customFields', {
      method: 'POST',
      body,
    });

    expect([first.json.field_name, second.json.field_name]).toEqual(['shoeSize', 'shoeSize1']);
  });

  it('refuses a field without a label, as a v2 error naming the body field', async () => {
    const r = await call<{ message: string }>(sb, '/rest/v2/contacts/model/customFields', {
      method: 'POST',
      body: { field_type: 'TEXT' },
    });

    expect(r.status).toBe(400);
    expect(r.json.message).toContain('label');
  });
});
