// Unit + sandbox: a Keap list is described once, in the registry, and every part that depends on it is
// there: a sandbox generator, a seed order, a schedule in keap-sync.config.json, a valid sync job, and
// records the sandbox serves that the client's schema reads. A half-added list fails here.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENERATORS, type RunningSandbox, SEED_ORDER, startSandbox } from '#harness/sandbox/index.ts';
import { parseAppConfigJson } from '#shared/config/app-config.ts';
import { parseJob } from '#shared/jobs/schema.ts';
import {
  fieldsQuery,
  type ListEntry,
  MODEL_OBJECTS,
  REGISTRY,
  RESOURCE_NAMES,
  type ResourceName,
  SYNC_RESOURCES,
} from '#shared/keap/registry.ts';
import { RESOURCES, updateTimeOf } from '#shared/keap/resources.ts';
import { call, RELAXED } from '../sandbox/support.ts';

const entry = (name: ResourceName): ListEntry => REGISTRY[name];

let sb: RunningSandbox;
beforeAll(async () => {
  sb = await startSandbox({ contacts: 60, seed: 5, limits: RELAXED });
});
afterAll(async () => {
  await sb.close();
});

describe('registry', () => {
  it('has a sandbox generator for every list, and no generator for anything else', () => {
    expect(Object.keys(GENERATORS).sort()).toEqual([...RESOURCE_NAMES].sort());
    expect([...SEED_ORDER].sort()).toEqual([...RESOURCE_NAMES].sort());
    const orders = RESOURCE_NAMES.map((r) => GENERATORS[r].seed.order);
    expect(new Set(orders).size, 'each list has its own seed order').toBe(orders.length);
  });

  it('gives every synced list a positive estimate share, a schedule in keap-sync.config.json and a valid sync job', () => {
    const config = parseAppConfigJson(readFileSync('keap-sync.config.json', 'utf8'), 'keap-sync.config.json');
    const scheduled = Object.keys(config.accounts[0]?.resources ?? {});
    expect(scheduled.sort()).toEqual([...SYNC_RESOURCES].sort());
    for (const resource of SYNC_RESOURCES) {
      expect(entry(resource).sync?.estimateShare, resource).toBeGreaterThan(0);
      expect(parseJob(JSON.stringify({ kind: 'sync', account: 'demo', resource }))).toMatchObject({
        resource,
      });
    }
    expect(SYNC_RESOURCES).toContain('tagApplications');
  });

  it("declares each list's fields parameter as Keap's OpenAPI file does: exploded for opportunities only", () => {
    const styles = Object.fromEntries(
      RESOURCE_NAMES.flatMap((r) => {
        const style = entry(r).fields?.style;
        return style ? [[r, style]] : [];
      }),
    );
    expect(styles).toEqual({
      contacts: 'comma',
      companies: 'comma',
      opportunities: 'repeat',
      notes: 'comma',
      tasks: 'comma',
    });
    for (const r of RESOURCE_NAMES) {
      const fields = entry(r).fields;
      if (fields) expect(fields.available, r).toEqual(expect.arrayContaining([...fields.request]));
    }
  });

  it('serializes fields one comma-joined value or one value per field, and leaves an empty list out', () => {
    expect(fieldsQuery('comma', ['a', 'b'])).toBe('a,b');
    expect(fieldsQuery('repeat', ['a', 'b'])).toEqual(['a', 'b']);
    expect(fieldsQuery('repeat', [])).toBeUndefined();
    expect(fieldsQuery('comma', undefined)).toBeUndefined();
  });

  it('serves every list the way the client reads it, with records its schema parses and update times it finds', async () => {
    const tagId = sb.dataset.tagApplications.values()[0]?.tag_id ?? '';
    for (const name of RESOURCE_NAMES) {
      const spec = RESOURCES[name];
      const orders = [spec.orderBy, spec.descendingOrderBy].filter((o): o is string => o !== undefined);
      for (const orderBy of orders.length ? orders : [undefined]) {
        const q = new URLSearchParams({ page_size: String(spec.maxPageSize) });
        if (orderBy) q.set('order_by', orderBy);
        const filter = Object.entries(spec.defaultFilter ?? {}).map(([k, v]) => `${k}==${v}`);
        if (spec.sinceField) filter.push(`${spec.sinceField}==2000-01-01T00:00:00.000Z`);
        if (filter.length) q.set('filter', filter.join(';'));
        const fields = fieldsQuery(spec.fields?.style ?? 'comma', spec.fields?.request);
        for (const v of typeof fields === 'string' ? [fields] : (fields ?? [])) q.append('fields', v);
        const path = spec.path.replace('{tag_id}', tagId);
        const res = await call<Record<string, unknown>>(sb, `${path}?${q}`);
        expect(res.status, `${name} ${q}: ${res.text.slice(0, 200)}`).toBe(200);
        const items = spec.schema.array().parse(res.json[spec.itemsKey]);
        expect(items.length, name).toBeGreaterThan(0);
        for (const r of items)
          expect(updateTimeOf(spec, r as Record<string, unknown>), `${name} ${r.id}`).toBeDefined();
      }
      if (spec.customFieldModel) expect((await call(sb, `${spec.path}/model`)).status, name).toBe(200);
    }
    expect(MODEL_OBJECTS.length).toBeGreaterThan(0);
  });
});
