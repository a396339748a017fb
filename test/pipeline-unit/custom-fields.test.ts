// Unit: when the worker reads a list's custom-field model again (missing, expired, an unknown id; at most
// once per unknownIdRefreshSeconds), what it does when Keap refuses the model, and the two settings'
// defaults and checks. In-memory model store and a stand-in for the client's getModel.
import { describe, expect, it } from 'vitest';
import { ConfigError, parseAppConfig } from '#shared/config/app-config.ts';
import { type KeapClient, PermissionError, QuotaDeferredError } from '#shared/keap/index.ts';
import { CustomFieldNamer, type ModelStore } from '#shared/pipeline/custom-fields.ts';
import { MemoryLog, MemoryMetrics } from '#shared/pipeline/index.ts';
import type { CustomFieldDef, MirrorRecord, StoredModel } from '#shared/store/index.ts';

const NOW = 1_790_000_000_000;
const SETTINGS = { modelMaxAgeMinutes: 60, unknownIdRefreshSeconds: 300 };
const CONTEXT = { method: 'GET', path: '/rest/v2/contacts/model', keyId: 'k1', tenant: 't', attempts: 1 };

class MemoryModels implements ModelStore {
  readonly items = new Map<string, StoredModel>();
  async get(account: string, resource: string) {
    return this.items.get(`${account}#${resource}`);
  }
  async put(account: string, resource: string, fields: readonly CustomFieldDef[], fetchedAtMs: number) {
    const old = this.items.get(`${account}#${resource}`);
    if (old && old.fetchedAtMs > fetchedAtMs) return false;
    this.items.set(`${account}#${resource}`, {
      account,
      resource,
      fields: [...fields],
      fetchedAtMs,
      fetchedAt: new Date(fetchedAtMs).toISOString(),
    });
    return true;
  }
}

/** Keap's model of contacts: field 11 (contactTier), and 12 (contactColor) once `withColor`. */
function keap(o: { fail?: Error; withColor?: boolean } = {}) {
  const calls = { n: 0 };
  const client = {
    getModel: async () => {
      calls.n++;
      if (o.fail) throw o.fail;
      return {
        custom_fields: [
          { id: '11', field_name: 'contactTier', label: 'Tier', field_type: 'DROPDOWN' },
          ...(o.withColor
            ? [{ id: '12', field_name: 'contactColor', label: 'Color', field_type: 'TEXT' }]
            : []),
        ],
        optional_properties: [],
      };
    },
  } as unknown as KeapClient;
  return { client, calls };
}

function rows(...ids: string[]): MirrorRecord[] {
  return [
    { id: '1', updateTimeMs: NOW, data: { custom_fields: ids.map((id) => ({ id, content: `v${id}` })) } },
  ];
}

function namer(models: ModelStore, now = NOW) {
  const metrics = new MemoryMetrics();
  const log = new MemoryLog();
  return {
    namer: new CustomFieldNamer({ models, settings: SETTINGS, log, metrics, now: () => now }),
    metrics,
    log,
  };
}

const tier = [{ id: '11', name: 'contactTier', label: 'Tier', type: 'DROPDOWN' }];

describe('custom field model refresh', () => {
  it('reads the model when none is stored, stores it and names the records', async () => {
    const models = new MemoryModels();
    const k = keap();
    const n = namer(models);

    const [row] = await n.namer.name('acme', 'contacts', rows('11'), k.client);

    expect(k.calls.n).toBe(1);
    expect(row?.customFields).toEqual({
      values: { contactTier: 'v11' },
      info: { contactTier: { id: '11', label: 'Tier' } },
    });
    expect((await models.get('acme', 'contacts'))?.fetchedAtMs).toBe(NOW);
    expect(n.metrics.sum('ModelsRefreshed', { reason: 'missing' })).toBe(1);
  });

  it('reads an expired model again, and not a fresh one', async () => {
    const models = new MemoryModels();
    await models.put('acme', 'contacts', tier, NOW - 61 * 60_000);
    await models.put('fresh', 'contacts', tier, NOW - 59 * 60_000);
    const k = keap();
    const n = namer(models);

    await n.namer.name('acme', 'contacts', rows('11'), k.client);
    const [fresh] = await n.namer.name('fresh', 'contacts', rows('11'), k.client);

    expect(k.calls.n).toBe(1);
    expect(n.metrics.sum('ModelsRefreshed', { reason: 'expired' })).toBe(1);
    expect(fresh?.customFields?.values).toEqual({ contactTier: 'v11' });
  });

  it('reads the model again for an unknown id, but at most once per unknownIdRefreshSeconds', async () => {
    const models = new MemoryModels();
    await models.put('acme', 'contacts', tier, NOW - 301_000);
    const k = keap({ withColor: true });

    const [first] = await namer(models).namer.name('acme', 'contacts', rows('11', '12'), k.client);
    const [again] = await namer(models, NOW + 1_000).namer.name(
      'acme',
      'contacts',
      rows('11', '99'),
      k.client,
    );

    expect(first?.customFields?.values).toEqual({ contactTier: 'v11', contactColor: 'v12' });
    expect(again?.customFields?.values).toEqual({ contactTier: 'v11' });
    expect(k.calls.n).toBe(1);
  });

  it('names the records with the stored model when Keap refuses the model, and warns', async () => {
    const models = new MemoryModels();
    await models.put('acme', 'contacts', tier, NOW - 61 * 60_000);
    const n = namer(models);

    const [row] = await n.namer.name(
      'acme',
      'contacts',
      rows('11'),
      keap({ fail: new PermissionError(CONTEXT) }).client,
    );

    expect(row?.customFields?.values).toEqual({ contactTier: 'v11' });
    expect(n.log.lines.some((l) => l.level === 'warn' && l.error === 'PermissionError')).toBe(true);
  });

  it('lets a quota deferral through, so the job comes back', async () => {
    const fail = new QuotaDeferredError(CONTEXT, NOW + 60_000, 'minute');

    await expect(
      namer(new MemoryModels()).namer.name('acme', 'contacts', rows('11'), keap({ fail }).client),
    ).rejects.toBe(fail);
  });

  it('leaves lists without a custom-field model as they are, without reading anything', async () => {
    const k = keap();

    const out = await namer(new MemoryModels()).namer.name('acme', 'users', rows('11'), k.client);

    expect(out[0]?.customFields).toBeUndefined();
    expect(k.calls.n).toBe(0);
  });
});

describe('customFields settings', () => {
  const account = {
    id: 'acme',
    tenant: 'ab103',
    secretId: 'keap/acme',
    resources: { contacts: { everyMinutes: 5 } },
  };

  it('default to a daily model refresh and a 5-minute unknown-id guard', () => {
    expect(parseAppConfig({ accounts: [account] }).customFields).toEqual({
      modelMaxAgeMinutes: 1_440,
      unknownIdRefreshSeconds: 300,
    });
  });

  it.each([
    [{ modelMaxAgeMinutes: 0 }, 'customFields.modelMaxAgeMinutes'],
    [{ unknownIdRefreshSeconds: 1 }, 'customFields.unknownIdRefreshSeconds'],
  ])('names a bad setting %o', (customFields, setting) => {
    expect(() => parseAppConfig({ accounts: [account], customFields })).toThrow(ConfigError);
    try {
      parseAppConfig({ accounts: [account], customFields });
    } catch (err) {
      expect((err as ConfigError).setting).toBe(setting);
    }
  });
});
