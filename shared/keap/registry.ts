// Domain: the one registry of Keap REST v2 lists this product reads. Each list is described here once:
// how Keap serves it (path, list key, filters, order, page size, `fields`), the zod schema of its
// records, whether and how it is synced, and its size relative to contacts. Everything else (the
// resource names, the job and configuration schemas, the client's specs, the estimate, the sandbox's
// routes) is derived from it. To add a list: an entry here, a generator in
// harness/sandbox/generators.ts (the compiler asks for it), a schedule in keap-sync.config.json
// (test/keap/registry.test.ts asks for it, and fails on any other half-added part).
import { z } from 'zod';

/** v2 ids are strings; a number is accepted and turned into one. */
const id = z.union([z.string().min(1), z.number()]).transform(String);
const time = z.string().nullish();
const text = z.string().nullish();
const looseId = z.union([z.string(), z.number()]).nullish();

const customFieldValue = z.looseObject({ id, content: z.unknown().optional() });
const customFields = z.array(customFieldValue).nullish();
const emailAddress = z.looseObject({ email: text, field: text });

/**
 * How a list is read incrementally:
 * - `filter`: Keap filters on update time (`since`/`until` filter fields);
 * - `descending`: no filter; ordered by the update field, newest first, reading stops past the cursor;
 * - `client`: no filter and no usable order (users): read fully, keep what changed.
 */
export type IncrementalMode = 'filter' | 'descending' | 'client';

/**
 * How a list's `fields` query parameter is serialized, as Keap's OpenAPI file declares it per list:
 * `comma` (`explode: false`: `fields=a,b`) or `repeat` (the OpenAPI default, `explode: true`:
 * `fields=a&fields=b`).
 */
export type FieldsStyle = 'comma' | 'repeat';

export interface FieldsParam {
  style: FieldsStyle;
  /** Every property Keap's file allows in `fields` for this list. */
  available: readonly string[];
  /** What a sync asks for (a subset of `available`), so update times and custom fields come back. */
  request: readonly string[];
}

/** What a Keap REST hook event says happened to a record of a list. */
export type HookEventKind = 'add' | 'edit' | 'delete' | 'applied' | 'removed';

/**
 * The REST hook events (v1 `/hooks`) that announce a list's changes: event key `<object>.<event>`
 * (`contact.add`, `contactGroup.applied`, ...). Keap's own list comes from `GET /v1/hooks/event_keys`.
 */
export interface HookSpec {
  object: string;
  events: readonly HookEventKind[];
}

/** One Keap list, described once. */
export interface ListEntry {
  /** Path below the base URL; `{tag_id}` is filled from the `tagId` option. */
  path: string;
  /** Property of the response that holds the records. */
  itemsKey: string;
  maxPageSize: number;
  mode: IncrementalMode;
  /** Filter fields on the update time, for `filter` mode. */
  sinceField?: string;
  untilField?: string;
  /** Record fields holding the update time, first present wins (the first is the list's own). */
  timeFields: readonly [string, ...string[]];
  /** `order_by` for full reads and `filter`-mode incremental reads (an immutable field keeps page offsets stable). */
  orderBy?: string;
  /** `order_by` for `descending` mode. */
  descendingOrderBy?: string;
  /** The `filter` field that selects records by a comma-separated list of ids, when Keap has one. */
  idFilter?: string;
  /**
   * The `filter` field that compares record ids (`>=`, `<=`), when Keap has one: a full read of the
   * list can then be split into id ranges read in parallel (shared/pipeline/partitions.ts). Ids never
   * change, so a record updated or created while a range is read never moves between ranges.
   */
  idRangeFilter?: string;
  /** The `fields` parameter, when the list has one. */
  fields?: FieldsParam;
  /** Filter pairs always sent (the `filter` option can override each). */
  defaultFilter?: Readonly<Record<string, string>>;
  /** Whether Keap serves a custom-field model at `GET /rest/v2/{list}/model`. */
  customFieldModel: boolean;
  schema: z.ZodType<{ id: string }>;
  /** The REST hook events of the list, when Keap has them. */
  hook?: HookSpec;
  /**
   * Present when the sync pipeline mirrors the list: `estimateShare` is its typical size relative to
   * the contacts (the estimate and the sandbox's dataset scale by it). Tag applications are read tag
   * by tag (shared/pipeline/tag-applications.ts), a few per contact.
   */
  sync?: { estimateShare: number };
}

/** Every Contact property Keap's `fields` parameter allows. */
const CONTACT_FIELDS = [
  'addresses',
  'anniversary_date',
  'birth_date',
  'company',
  'contact_type',
  'create_time',
  'custom_fields',
  'email_addresses',
  'family_name',
  'fax_numbers',
  'given_name',
  'id',
  'job_title',
  'leadsource_id',
  'links',
  'middle_name',
  'notes',
  'origin',
  'owner_id',
  'phone_numbers',
  'preferred_locale',
  'preferred_name',
  'prefix',
  'referral_code',
  'score_value',
  'social_accounts',
  'source_type',
  'spouse_name',
  'suffix',
  'tag_ids',
  'time_zone',
  'update_time',
  'utm_parameters',
  'website',
  'account_id',
  'assistant_name',
  'assistant_phone',
  'billing_information',
  'created_by',
  'groups',
  'last_updated_by',
] as const;
/** Contact properties a sync does not ask for (account and audit data the mirror has never carried). */
const CONTACT_FIELDS_NOT_SYNCED: readonly string[] = [
  'account_id',
  'assistant_name',
  'assistant_phone',
  'billing_information',
  'created_by',
  'groups',
  'last_updated_by',
];

const COMPANY_FIELDS = [
  'id',
  'address',
  'notes',
  'website',
  'suffix',
  'title',
  'groups',
  'company_name',
  'custom_fields',
  'email_address',
  'fax_number',
  'phone_number',
  'update_time',
  'create_time',
  'anniversary_date',
  'assistant_name',
  'assistant_phone',
  'billing_information',
  'birth_date',
  'contact_type',
  'first_name',
  'job_title',
  'last_name',
  'middle_name',
  'preferred_name',
  'owner_id',
  'referral_code',
  'spouse_name',
  'account_id',
  'created_by',
  'last_updated_by',
] as const;

/** Opportunities' optional properties, the current ones first, then the legacy ones. */
const OPPORTUNITY_FIELDS = [
  'custom_fields',
  'created_by',
  'last_updated_by',
  'status_id',
  'monthly_revenue',
  'order_revenue',
  'objection',
  'status',
  'stage_entrance_time',
] as const;

const customFieldsOnly: FieldsParam = {
  style: 'comma',
  available: ['custom_fields'],
  request: ['custom_fields'],
};

export const REGISTRY = {
  contacts: {
    path: '/rest/v2/contacts',
    itemsKey: 'contacts',
    maxPageSize: 1000,
    mode: 'filter',
    sinceField: 'start_update_time',
    untilField: 'end_update_time',
    timeFields: ['update_time'],
    orderBy: 'id asc',
    idFilter: 'ids',
    idRangeFilter: 'contact_id',
    fields: {
      style: 'comma',
      available: CONTACT_FIELDS,
      request: CONTACT_FIELDS.filter((f) => !CONTACT_FIELDS_NOT_SYNCED.includes(f)),
    },
    customFieldModel: true,
    schema: z.looseObject({
      id,
      given_name: text,
      family_name: text,
      email_addresses: z.array(emailAddress).nullish(),
      company: z.looseObject({ id: id.optional() }).nullish(),
      owner_id: looseId,
      tag_ids: z.array(z.union([z.string(), z.number()])).nullish(),
      custom_fields: customFields,
      create_time: time,
      update_time: time,
    }),
    hook: { object: 'contact', events: ['add', 'edit', 'delete'] },
    sync: { estimateShare: 1 },
  },
  companies: {
    path: '/rest/v2/companies',
    itemsKey: 'companies',
    maxPageSize: 1000,
    mode: 'filter',
    sinceField: 'since_time',
    untilField: 'until_time',
    timeFields: ['update_time'],
    orderBy: 'id asc',
    fields: {
      style: 'comma',
      available: COMPANY_FIELDS,
      request: [
        'id',
        'company_name',
        'email_address',
        'phone_number',
        'fax_number',
        'address',
        'website',
        'notes',
        'create_time',
        'update_time',
        'custom_fields',
      ],
    },
    customFieldModel: true,
    schema: z.looseObject({
      id,
      company_name: text,
      email_address: emailAddress.nullish(),
      custom_fields: customFields,
      create_time: time,
      update_time: time,
    }),
    hook: { object: 'company', events: ['add', 'edit', 'delete'] },
    sync: { estimateShare: 0.1 },
  },
  orders: {
    path: '/rest/v2/orders',
    itemsKey: 'orders',
    maxPageSize: 1000,
    mode: 'filter',
    sinceField: 'modified_since_time',
    untilField: 'modified_until_time',
    timeFields: ['modification_time'],
    orderBy: 'id asc',
    idFilter: 'ids',
    idRangeFilter: 'id',
    customFieldModel: true,
    schema: z.looseObject({
      id,
      title: text,
      status: text,
      total: z.unknown().optional(),
      contact: z.looseObject({ id: id.optional() }).nullish(),
      order_time: time,
      creation_time: time,
      modification_time: time,
      custom_fields: customFields,
    }),
    hook: { object: 'order', events: ['add', 'edit', 'delete'] },
    sync: { estimateShare: 0.6 },
  },
  opportunities: {
    path: '/rest/v2/opportunities',
    itemsKey: 'opportunities',
    maxPageSize: 1000,
    mode: 'descending',
    timeFields: ['last_updated_time', 'update_time'],
    descendingOrderBy: 'update_time desc',
    idFilter: 'ids',
    // Keap's file declares this one exploded (no `explode: false`, unlike the other lists).
    fields: {
      style: 'repeat',
      available: OPPORTUNITY_FIELDS,
      request: ['custom_fields', 'created_by', 'last_updated_by', 'status_id'],
    },
    customFieldModel: true,
    schema: z.looseObject({
      id,
      opportunity_title: text,
      contact: z.looseObject({ id: id.optional() }).nullish(),
      stage: z.looseObject({ id: id.optional() }).nullish(),
      custom_fields: customFields,
      created_time: time,
      last_updated_time: time,
    }),
    hook: { object: 'opportunity', events: ['add', 'edit', 'delete'] },
    sync: { estimateShare: 0.2 },
  },
  tags: {
    path: '/rest/v2/tags',
    itemsKey: 'tags',
    maxPageSize: 1000,
    mode: 'filter',
    sinceField: 'since_update_time',
    untilField: 'until_update_time',
    timeFields: ['update_time'],
    orderBy: 'create_time asc',
    idFilter: 'tag_ids',
    customFieldModel: false,
    schema: z.looseObject({
      id,
      name: text,
      description: text,
      category: z.looseObject({ id: id.optional() }).nullish(),
      create_time: time,
      update_time: time,
    }),
    hook: { object: 'contactGroup', events: ['add', 'edit', 'delete'] },
    sync: { estimateShare: 0.02 },
  },
  /** The contacts carrying a tag (`GET /tags/{id}/contacts`); a record's `id` is the contact's id. */
  tagApplications: {
    path: '/rest/v2/tags/{tag_id}/contacts',
    itemsKey: 'contacts',
    maxPageSize: 1000,
    mode: 'filter',
    sinceField: 'since_applied_time',
    untilField: 'until_applied_time',
    timeFields: ['applied_time'],
    orderBy: 'applied_time asc',
    customFieldModel: false,
    schema: z.looseObject({
      id,
      email: text,
      given_name: text,
      family_name: text,
      applied_time: time,
    }),
    hook: { object: 'contactGroup', events: ['applied', 'removed'] },
    sync: { estimateShare: 3 },
  },
  notes: {
    path: '/rest/v2/notes',
    itemsKey: 'notes',
    maxPageSize: 1000,
    mode: 'filter',
    sinceField: 'since_time',
    untilField: 'until_time',
    timeFields: ['update_time'],
    orderBy: 'id asc',
    idFilter: 'ids',
    idRangeFilter: 'id',
    fields: customFieldsOnly,
    customFieldModel: true,
    schema: z.looseObject({
      id,
      title: text,
      text: text,
      type: text,
      contact_id: looseId,
      custom_fields: customFields,
      create_time: time,
      update_time: time,
    }),
    hook: { object: 'note', events: ['add', 'edit', 'delete'] },
    sync: { estimateShare: 0.8 },
  },
  tasks: {
    path: '/rest/v2/tasks',
    itemsKey: 'tasks',
    maxPageSize: 1000,
    mode: 'filter',
    sinceField: 'since_time',
    untilField: 'until_time',
    timeFields: ['modification_time', 'update_time'],
    orderBy: 'id asc',
    idFilter: 'task_ids',
    idRangeFilter: 'id',
    fields: customFieldsOnly,
    customFieldModel: true,
    schema: z.looseObject({
      id,
      title: text,
      contact_id: looseId,
      assigned_to_user_id: looseId,
      completed: z.boolean().nullish(),
      custom_fields: customFields,
      create_time: time,
      modification_time: time,
      update_time: time,
    }),
    hook: { object: 'task', events: ['add', 'edit', 'delete'] },
    sync: { estimateShare: 0.4 },
  },
  products: {
    path: '/rest/v2/products',
    itemsKey: 'products',
    maxPageSize: 1000,
    mode: 'descending',
    timeFields: ['update_time', 'last_updated_time'],
    descendingOrderBy: 'last_updated_time desc',
    idFilter: 'product_ids',
    customFieldModel: false,
    schema: z.looseObject({
      id,
      name: text,
      sku: text,
      price: z.unknown().optional(),
      active: z.boolean().nullish(),
      create_time: time,
      update_time: time,
      last_updated_time: time,
    }),
    hook: { object: 'product', events: ['add', 'edit', 'delete'] },
    sync: { estimateShare: 0.01 },
  },
  subscriptions: {
    path: '/rest/v2/subscriptions',
    itemsKey: 'subscriptions',
    maxPageSize: 1000,
    mode: 'descending',
    timeFields: ['modification_time'],
    descendingOrderBy: 'modification_time desc',
    idFilter: 'ids',
    customFieldModel: true,
    schema: z.looseObject({
      id,
      contact_id: looseId,
      product_id: looseId,
      active: z.boolean().nullish(),
      custom_fields: customFields,
      modification_time: time,
    }),
    hook: { object: 'subscription', events: ['add', 'edit', 'delete'] },
    sync: { estimateShare: 0.1 },
  },
  users: {
    path: '/rest/v2/users',
    itemsKey: 'users',
    maxPageSize: 100,
    mode: 'client',
    timeFields: ['update_time'],
    orderBy: 'create_time asc',
    idFilter: 'user_ids',
    // Keap hides inactive and partner users unless asked; a sync needs every owner a record can name.
    defaultFilter: { include_inactive: 'true', include_partners: 'true' },
    customFieldModel: false,
    schema: z.looseObject({
      id,
      given_name: text,
      family_name: text,
      status: text,
      create_time: time,
      update_time: time,
    }),
    sync: { estimateShare: 0.004 },
  },
} as const satisfies Record<string, ListEntry>;

export type Registry = typeof REGISTRY;
export type ResourceName = keyof Registry;
/** The record type of each list: what its schema parses to. */
export type RecordTypes = { [R in ResourceName]: z.output<Registry[R]['schema']> };

/** Lists the sync pipeline mirrors. */
export type SyncResource = {
  [R in ResourceName]: Registry[R] extends { sync: object } ? R : never;
}[ResourceName];
/** Lists with a custom-field model at `GET /rest/v2/{object}/model`. */
export type ModelObject = {
  [R in ResourceName]: Registry[R] extends { customFieldModel: true } ? R : never;
}[ResourceName];

const entries = Object.entries(REGISTRY) as Array<[ResourceName, ListEntry]>;

/** Every list, in the registry's order. */
export const RESOURCE_NAMES: readonly ResourceName[] = entries.map(([name]) => name);
/** The synced lists, in the registry's order (a tuple, so it can feed `z.enum`). */
export const SYNC_RESOURCES = entries.filter(([, e]) => e.sync !== undefined).map(([name]) => name) as [
  SyncResource,
  ...SyncResource[],
];
export const MODEL_OBJECTS = entries.filter(([, e]) => e.customFieldModel).map(([name]) => name) as [
  ModelObject,
  ...ModelObject[],
];

/** The `fields` query value for a list: one comma-joined value, or one value per field. */
export function fieldsQuery(
  style: FieldsStyle,
  fields: readonly string[] | undefined,
): string | readonly string[] | undefined {
  if (!fields?.length) return undefined;
  return style === 'comma' ? fields.join(',') : [...fields];
}
