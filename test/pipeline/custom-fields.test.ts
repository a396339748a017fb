// End to end: custom fields by name. A sync reads each list's model once and keeps it in the state
// table; mirrored records carry `{field_name: value}` with the label and id beside Keap's raw form; a
// custom field created in Keap after the model was read is named after one re-read of the model.
import { UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { LOCAL_TABLES } from '#harness/local/stack.ts';
import type { SyncResource } from '#shared/jobs/schema.ts';
import { arrivalsSince, mirrorOf, sandboxKey, startWorld, TENANT_A, type World } from './support.ts';

const ACCOUNT = 'named';
const KEY = sandboxKey(TENANT_A, 0);
const LISTS: SyncResource[] = ['contacts', 'companies', 'users'];

async function syncOnce(w: World, resource: SyncResource, mode: 'full' | 'incremental'): Promise<void> {
  await w.stack.deps.queue.send({ kind: 'sync', account: ACCOUNT, resource, mode });
  const poller = w.stack.poller({ concurrency: 2 });
  await poller.start();
  try {
    await poller.whenIdle({ timeoutMs: 60_000 });
  } finally {
    await poller.stop();
  }
  expect(poller.stats.handlerErrors).toBe(0);
}

function modelCalls(w: World, from: number, resource: string): number {
  return arrivalsSince(w.sandbox, from).filter((a) => a.path.endsWith(`/${resource}/model`)).length;
}

describe('custom fields by name', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({
      contacts: 120,
      keys: [KEY],
      accounts: [{ id: ACCOUNT, tenant: TENANT_A, key: KEY.key, resources: LISTS }],
    });
  });
  afterAll(async () => {
    await w?.close();
  });

  test('a full sync reads the model once and names every custom field of every record', async () => {
    const mark = w.sandbox.arrivals.length;

    await syncOnce(w, 'contacts', 'full');

    expect(modelCalls(w, mark, 'contacts')).toBe(1);
    const model = w.sandbox.dataset.models.contacts;
    const byId = new Map(model.map((f) => [f.id, f]));
    const mirror = await mirrorOf(w.stack, ACCOUNT, 'contacts');
    expect(mirror.size).toBe(w.sandbox.dataset.contacts.size);
    for (const item of mirror.values()) {
      const raw = item.data.custom_fields as Array<{ id: string; content: unknown }>;
      expect(raw.length).toBeGreaterThan(0);
      for (const { id, content } of raw) {
        const field = byId.get(id);
        expect(field).toBeDefined();
        const name = field?.field_name ?? '';
        expect(item.customFields?.[name]).toEqual(content);
        expect(item.customFieldInfo?.[name]).toEqual({ id, label: field?.label });
      }
    }
  });

  test('the model is kept in the state table with the field names, labels and ids', async () => {
    const stored = await w.stack.deps.models.get(ACCOUNT, 'contacts');

    expect(stored?.fields.map((f) => [f.id, f.name, f.label])).toEqual(
      w.sandbox.dataset.models.contacts.map((f) => [f.id, f.field_name, f.label]),
    );
  });

  test('a sync with a fresh model and only known ids does not read the model again', async () => {
    w.sandbox.mutate('contacts', { update: 10 });
    const mark = w.sandbox.arrivals.length;

    await syncOnce(w, 'contacts', 'incremental');

    expect(modelCalls(w, mark, 'contacts')).toBe(0);
  });

  test('a custom field created after the model was read is named after one re-read of the model', async () => {
    const field = w.sandbox.dataset.addCustomField('contacts', {
      label: 'Favorite Color',
      field_type: 'TEXT',
    });
    const [contact] = w.sandbox.dataset.contacts.values();
    if (!contact) throw new Error('the sandbox has no contacts');
    w.sandbox.dataset.upsertContact(
      {
        email_addresses: contact.email_addresses,
        custom_fields: [...contact.custom_fields, { id: field.id, content: 'teal' }],
      },
      'Email',
      Date.now() + 1_000,
    );
    // The model was read seconds ago: age it past unknownIdRefreshSeconds (5 minutes by default).
    const stored = await w.stack.deps.models.get(ACCOUNT, 'contacts');
    if (!stored) throw new Error('no stored model');
    await w.stack.dynamo.client.send(
      new UpdateItemCommand({
        TableName: LOCAL_TABLES.state,
        Key: { pk: { S: `${ACCOUNT}#contacts` }, sk: { S: 'model' } },
        UpdateExpression: 'SET fetchedAtMs = :old',
        ExpressionAttributeValues: { ':old': { N: String(stored.fetchedAtMs - 10 * 60_000) } },
      }),
    );
    const mark = w.sandbox.arrivals.length;

    await syncOnce(w, 'contacts', 'incremental');

    expect(modelCalls(w, mark, 'contacts')).toBe(1);
    const item = (await mirrorOf(w.stack, ACCOUNT, 'contacts')).get(contact.id);
    expect(item?.customFields?.favoriteColor).toBe('teal');
    expect(item?.customFieldInfo?.favoriteColor).toEqual({ id: field.id, label: 'Favorite Color' });
    expect(w.metrics.sum('ModelsRefreshed', { reason: 'unknown-id' })).toBe(1);
  });

  test('a list without a custom-field model is mirrored without named fields or model reads', async () => {
    const mark = w.sandbox.arrivals.length;

    await syncOnce(w, 'users', 'full');

    expect(arrivalsSince(w.sandbox, mark).filter((a) => a.path.includes('/model'))).toEqual([]);
    for (const item of (await mirrorOf(w.stack, ACCOUNT, 'users')).values())
      expect(item.customFields).toBeUndefined();
  });
});
