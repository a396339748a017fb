// Domain: what each Keap v2 list accepts (filters, order_by, page sizes, fields), built for every list
// alike from its registry entry (collection, page size, the update-time and id filters, the `fields`
// Keap allows) and its generator's list view (orderings, other filters, default fields).
import { type ListEntry, REGISTRY } from '#shared/keap/registry.ts';
import {
  GENERATORS,
  type GenContext,
  type ListDef,
  RESOURCE_TYPES,
  type RecordTypes,
  type ResourceType,
} from './generators.ts';
import type { FieldsSpec, FilterSpec, ListSpec } from './listing.ts';

export type ListSpecs = { readonly [R in ResourceType]: ListSpec<RecordTypes[R]> };

const byId = (r: { id: string }): number => {
  const n = Number(r.id);
  return Number.isFinite(n) ? n : 0;
};

/** The `fields` a list accepts and the properties it leaves out unless asked, or undefined. */
export function fieldsSpecOf(type: ResourceType): FieldsSpec | undefined {
  const fields = (REGISTRY[type] as ListEntry).fields;
  if (!fields) return undefined;
  return { allowed: fields.available, optional: GENERATORS[type].optionalFields ?? fields.available };
}

/** The list spec of one list over one dataset. */
function listSpecOf<R extends ResourceType>(type: R, data: GenContext): ListSpec<RecordTypes[R]> {
  type T = RecordTypes[R];
  const entry: ListEntry = REGISTRY[type];
  const view = (GENERATORS[type] as unknown as { list(ctx: GenContext): ListDef<T> }).list(data);
  const updateField = entry.timeFields[0];
  const updated = (r: T): string | undefined => {
    const v = (r as unknown as Record<string, unknown>)[updateField];
    return typeof v === 'string' ? v : undefined;
  };
  const filters: Record<string, FilterSpec<T>> = {};
  if (entry.sinceField) filters[entry.sinceField] = { kind: 'from', get: updated };
  if (entry.untilField) filters[entry.untilField] = { kind: 'until', get: updated };
  if (entry.idFilter) filters[entry.idFilter] = { kind: 'ids', get: (r) => r.id };
  Object.assign(filters, view.filters);
  const fields = fieldsSpecOf(type);
  return {
    collection: entry.itemsKey,
    pageSize: { min: view.pageSizeMin ?? 0, max: entry.maxPageSize, default: entry.maxPageSize },
    seq: view.seq ?? byId,
    orderBy: view.orderBy,
    filters,
    baseline: view.baseline,
    fields,
  };
}

/** The list specs of one dataset (tagged-contact lists read contact names from it). */
export function buildListSpecs(data: GenContext): ListSpecs {
  return Object.fromEntries(
    RESOURCE_TYPES.map((type) => [type, listSpecOf(type, data)]),
  ) as unknown as ListSpecs;
}
