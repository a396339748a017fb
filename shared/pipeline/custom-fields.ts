// Use case: custom fields by name. Keap records carry custom fields as `[{id, content}]`; each list's
// model (`GET /rest/v2/<list>/model`) says which `field_name` and label an id has. The model is kept
// in the state table, read again from Keap when it is older than `customFields.modelMaxAgeMinutes`
// (the schedule: the first sync or hook job of the list after that time refreshes it) and when a
// record carries an id the stored model does not know (at most once per
// `customFields.unknownIdRefreshSeconds`). Records are written with both forms.
import {
  type KeapClient,
  KeyRejectedError,
  MODEL_OBJECTS,
  type ModelObject,
  NotFoundError,
  QuotaDeferredError,
} from '../keap/index.ts';
import type { CustomFieldMeta } from '../keap/resources.ts';
import type { CustomFieldDef, MirrorRecord, NamedCustomFields, StoredModel } from '../store/index.ts';
import type { Log, Metrics } from './ports.ts';
import { isTransient } from './retry.ts';

/** The state table's models, as the use case needs them (DynamoModelStore). */
export interface ModelStore {
  get(account: string, resource: string): Promise<StoredModel | undefined>;
  put(
    account: string,
    resource: string,
    fields: readonly CustomFieldDef[],
    fetchedAtMs: number,
  ): Promise<boolean>;
}

export interface CustomFieldSettings {
  /** A stored model older than this is read again from Keap before it names records. */
  modelMaxAgeMinutes: number;
  /** An unknown custom field id triggers a re-read of the model at most this often. */
  unknownIdRefreshSeconds: number;
}

/** Whether records of `resource` have a custom-field model to name them by. */
export function hasModel(resource: string): resource is ModelObject {
  return (MODEL_OBJECTS as readonly string[]).includes(resource);
}

/** Keap's model entries as stored: those without an id or a field_name cannot name anything. */
export function toDefs(fields: readonly CustomFieldMeta[]): CustomFieldDef[] {
  const out: CustomFieldDef[] = [];
  for (const f of fields) {
    if (!f.id || !f.field_name) continue;
    out.push({ id: f.id, name: f.field_name, label: f.label ?? f.field_name, type: f.field_type ?? null });
  }
  return out;
}

/** The raw `custom_fields` of a record: `[{id, content}]` pairs (anything else is ignored). */
function rawValues(data: Record<string, unknown>): Array<{ id: string; content: unknown }> {
  const raw = data.custom_fields;
  if (!Array.isArray(raw)) return [];
  const out: Array<{ id: string; content: unknown }> = [];
  for (const v of raw) {
    if (typeof v !== 'object' || v === null) continue;
    const { id, content } = v as { id?: unknown; content?: unknown };
    if (typeof id === 'string' || typeof id === 'number')
      out.push({ id: String(id), content: content ?? null });
  }
  return out;
}

/**
 * Names one record's custom fields with `defs` (pure). Ids the model does not know are left out of
 * the named form (Keap's raw form keeps them) and returned in `unknownIds`.
 */
export function nameCustomFields(
  data: Record<string, unknown>,
  defs: readonly CustomFieldDef[],
): { named: NamedCustomFields; unknownIds: string[] } {
  const byId = new Map(defs.map((d) => [d.id, d]));
  const named: NamedCustomFields = { values: {}, info: {} };
  const unknownIds: string[] = [];
  for (const { id, content } of rawValues(data)) {
    const def = byId.get(id);
    if (!def) {
      unknownIds.push(id);
      continue;
    }
    named.values[def.name] = content;
    named.info[def.name] = { id: def.id, label: def.label };
  }
  return { named, unknownIds };
}

export interface CustomFieldNamerDeps {
  models: ModelStore;
  settings: CustomFieldSettings;
  log: Log;
  metrics: Metrics;
  now: () => number;
}

/** Names records' custom fields with the stored model, refreshing it from Keap when due. */
export class CustomFieldNamer {
  private readonly deps: CustomFieldNamerDeps;
  /** Model reads in flight by account and list: readers of one list in parallel ranges share one. */
  private readonly reading = new Map<string, Promise<StoredModel | undefined>>();

  constructor(deps: CustomFieldNamerDeps) {
    this.deps = deps;
  }

  /**
   * `rows` with `customFields` set (lists with a model; others are returned as they are). Reads the
   * model through `client` (and so the quota ledger) when it is missing, too old, or misses an id a
   * record carries. A quota deferral, a rejected key or a transient failure propagates (the job
   * comes back); any other failure to read the model is logged and the stored model, if any, is used.
   */
  async name(
    account: string,
    resource: string,
    rows: readonly MirrorRecord[],
    client: KeapClient,
  ): Promise<MirrorRecord[]> {
    if (!hasModel(resource) || rows.length === 0) return [...rows];
    const { models, settings, now } = this.deps;
    let model = await models.get(account, resource);
    const age = model === undefined ? Number.POSITIVE_INFINITY : now() - model.fetchedAtMs;
    let reason: 'missing' | 'expired' | 'unknown-id' | undefined =
      model === undefined ? 'missing' : age > settings.modelMaxAgeMinutes * 60_000 ? 'expired' : undefined;
    if (reason === undefined && model !== undefined && age > settings.unknownIdRefreshSeconds * 1_000) {
      const known = new Set(model.fields.map((f) => f.id));
      if (rows.some((r) => rawValues(r.data).some((v) => !known.has(v.id)))) reason = 'unknown-id';
    }
    if (reason !== undefined) {
      const key = `${account}\u0000${resource}`;
      let read = this.reading.get(key);
      if (!read) {
        read = this.refresh(account, resource, client, reason).finally(() => this.reading.delete(key));
        this.reading.set(key, read);
      }
      model = (await read) ?? model;
    }
    if (model === undefined) return [...rows];
    const defs = model.fields;
    const unknown = new Set<string>();
    const out = rows.map((row) => {
      const { named, unknownIds } = nameCustomFields(row.data, defs);
      for (const id of unknownIds) unknown.add(id);
      return { ...row, customFields: named };
    });
    if (unknown.size > 0) {
      this.deps.log.warn('Custom field ids not in the model are kept only in the raw form', {
        account,
        resource,
        ids: [...unknown].slice(0, 20),
        modelFetchedAt: model.fetchedAt,
      });
    }
    return out;
  }

  private async refresh(
    account: string,
    resource: ModelObject,
    client: KeapClient,
    reason: string,
  ): Promise<StoredModel | undefined> {
    const { models, log, metrics, now } = this.deps;
    try {
      const read = await client.getModel(resource, { priority: 'bulk' });
      const fetchedAtMs = now();
      const fields = toDefs(read.custom_fields);
      await models.put(account, resource, fields, fetchedAtMs);
      metrics.add('ModelsRefreshed', 1, { account, resource, reason });
      log.info('Custom field model read from Keap', { account, resource, reason, fields: fields.length });
      return (
        (await models.get(account, resource)) ?? {
          account,
          resource,
          fields,
          fetchedAtMs,
          fetchedAt: new Date(fetchedAtMs).toISOString(),
        }
      );
    } catch (err) {
      if (err instanceof QuotaDeferredError || err instanceof KeyRejectedError || isTransient(err)) throw err;
      log.warn('Custom field model could not be read; the stored one (if any) names the records', {
        account,
        resource,
        reason,
        error: (err as Error).name,
        message: (err as Error).message,
      });
      // Keap serves no model for the list: remembered as an empty one, so it is not asked for again
      // on every page (a record carrying custom field ids asks again after unknownIdRefreshSeconds).
      if (err instanceof NotFoundError && (await models.get(account, resource)) === undefined) {
        await models.put(account, resource, [], now());
        return models.get(account, resource);
      }
      return undefined;
    }
  }
}
