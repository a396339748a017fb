// Domain: the Keap REST v2 lists this client reads, as the client's specs (derived from the registry in
// registry.ts, where each list is described once), and the other shapes it reads (custom-field
// models, REST hooks, tag results), validated loosely with zod: the fields a sync needs are typed,
// anything else passes through.
import { z } from 'zod';
import { type ListEntry, REGISTRY, type RecordTypes, type ResourceName } from './registry.ts';

export {
  type FieldsParam,
  type FieldsStyle,
  fieldsQuery,
  type IncrementalMode,
  MODEL_OBJECTS,
  type ModelObject,
  RESOURCE_NAMES,
  type RecordTypes,
  type ResourceName,
  SYNC_RESOURCES,
  type SyncResource,
} from './registry.ts';

const id = z.union([z.string().min(1), z.number()]).transform(String);
const text = z.string().nullish();

export type Contact = RecordTypes['contacts'];
export type Company = RecordTypes['companies'];
export type Order = RecordTypes['orders'];
export type Opportunity = RecordTypes['opportunities'];
export type Tag = RecordTypes['tags'];
export type TaggedContact = RecordTypes['tagApplications'];
export type Note = RecordTypes['notes'];
export type Task = RecordTypes['tasks'];
export type Product = RecordTypes['products'];
export type Subscription = RecordTypes['subscriptions'];
export type User = RecordTypes['users'];

/** One list as the client reads it: its registry entry and its name. */
export interface ResourceSpec extends ListEntry {
  name: ResourceName;
}

export const RESOURCES = Object.fromEntries(
  Object.entries(REGISTRY).map(([name, entry]) => [name, { ...entry, name }]),
) as unknown as {
  readonly [R in ResourceName]: ResourceSpec & { name: R; schema: (typeof REGISTRY)[R]['schema'] };
};

export const customFieldMetaSchema = z.looseObject({
  id,
  label: text,
  field_name: text,
  field_type: text,
  record_type: text,
  group_id: z.union([z.string(), z.number()]).nullish(),
  options: z.array(z.unknown()).nullish(),
  default_value: z.unknown().optional(),
});
export const objectModelSchema = z.looseObject({
  custom_fields: z
    .array(customFieldMetaSchema)
    .nullish()
    .transform((v) => v ?? []),
  optional_properties: z
    .array(z.string())
    .nullish()
    .transform((v) => v ?? []),
});
export type CustomFieldMeta = z.output<typeof customFieldMetaSchema>;
export type ObjectModel = z.output<typeof objectModelSchema>;

/** REST hook subscription (v1 `/hooks`). `key` is the hook's id, not an API key. */
export const restHookSchema = z.looseObject({
  key: z.union([z.string(), z.number()]).transform(String),
  eventKey: z.string(),
  hookUrl: z.string(),
  status: text,
});
export type RestHook = z.output<typeof restHookSchema>;

export const applyTagsResponseSchema = z.looseObject({
  results: z.record(z.string(), z.string()).nullish(),
});

/** The update time of `record` (epoch ms) from the resource's time fields, or undefined. */
export function updateTimeOf(spec: ResourceSpec, record: Record<string, unknown>): number | undefined {
  for (const f of spec.timeFields) {
    const v = record[f];
    if (typeof v === 'string' && v !== '') {
      const ms = Date.parse(v);
      if (Number.isFinite(ms)) return ms;
    }
  }
  return undefined;
}
