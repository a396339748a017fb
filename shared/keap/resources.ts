// Domain: the Keap REST v2 lists this client reads, their record shapes (validated loosely with zod:
// the fields a sync needs are typed, anything else passes through) and how each one pages and filters.
import { z } from 'zod';

/** v2 ids are strings; a number is accepted and turned into one. */
const id = z.union([z.string().min(1), z.number()]).transform(String);
const time = z.string().nullish();
const text = z.string().nullish();

const customFieldValue = z.looseObject({ id, content: z.unknown().optional() });
const customFields = z.array(customFieldValue).nullish();
const emailAddress = z.looseObject({ email: text, field: text });

export const contactSchema = z.looseObject({
  id,
  given_name: text,
  family_name: text,
  email_addresses: z.array(emailAddress).nullish(),
  company: z.looseObject({ id: id.optional() }).nullish(),
  owner_id: z.union([z.string(), z.number()]).nullish(),
  tag_ids: z.array(z.union([z.string(), z.number()])).nullish(),
  custom_fields: customFields,
  create_time: time,
  update_time: time,
});
export const companySchema = z.looseObject({
  id,
  company_name: text,
  email_address: emailAddress.nullish(),
  custom_fields: customFields,
  create_time: time,
  update_time: time,
});
export const orderSchema = z.looseObject({
  id,
  title: text,
  status: text,
  total: z.unknown().optional(),
  contact: z.looseObject({ id: id.optional() }).nullish(),
  order_time: time,
  creation_time: time,
  modification_time: time,
  custom_fields: customFields,
});
export const opportunitySchema = z.looseObject({
  id,
  opportunity_title: text,
  contact: z.looseObject({ id: id.optional() }).nullish(),
  stage: z.looseObject({ id: id.optional() }).nullish(),
  custom_fields: customFields,
  created_time: time,
  last_updated_time: time,
});
export const tagSchema = z.looseObject({
  id,
  name: text,
  description: text,
  category: z.looseObject({ id: id.optional() }).nullish(),
  create_time: time,
  update_time: time,
});
/** A contact carrying a tag (`GET /tags/{id}/contacts`); `id` is the contact's id. */
export const taggedContactSchema = z.looseObject({
  id,
  email: text,
  given_name: text,
  family_name: text,
  applied_time: time,
});
export const noteSchema = z.looseObject({
  id,
  title: text,
  text: text,
  type: text,
  contact_id: z.union([z.string(), z.number()]).nullish(),
  custom_fields: customFields,
  create_time: time,
  update_time: time,
});
export const taskSchema = z.looseObject({
  id,
  title: text,
  contact_id: z.union([z.string(), z.number()]).nullish(),
  assigned_to_user_id: z.union([z.string(), z.number()]).nullish(),
  completed: z.boolean().nullish(),
  custom_fields: customFields,
  create_time: time,
  modification_time: time,
  update_time: time,
});
export const productSchema = z.looseObject({
  id,
  name: text,
  sku: text,
  price: z.unknown().optional(),
  active: z.boolean().nullish(),
  create_time: time,
  update_time: time,
  last_updated_time: time,
});
export const subscriptionSchema = z.looseObject({
  id,
  contact_id: z.union([z.string(), z.number()]).nullish(),
  product_id: z.union([z.string(), z.number()]).nullish(),
  active: z.boolean().nullish(),
  custom_fields: customFields,
  modification_time: time,
});
export const userSchema = z.looseObject({
  id,
  given_name: text,
  family_name: text,
  status: text,
  create_time: time,
  update_time: time,
});

export type Contact = z.output<typeof contactSchema>;
export type Company = z.output<typeof companySchema>;
export type Order = z.output<typeof orderSchema>;
export type Opportunity = z.output<typeof opportunitySchema>;
export type Tag = z.output<typeof tagSchema>;
export type TaggedContact = z.output<typeof taggedContactSchema>;
export type Note = z.output<typeof noteSchema>;
export type Task = z.output<typeof taskSchema>;
export type Product = z.output<typeof productSchema>;
export type Subscription = z.output<typeof subscriptionSchema>;
export type User = z.output<typeof userSchema>;

export interface RecordTypes {
  contacts: Contact;
  companies: Company;
  orders: Order;
  opportunities: Opportunity;
  tags: Tag;
  tagApplications: TaggedContact;
  notes: Note;
  tasks: Task;
  products: Product;
  subscriptions: Subscription;
  users: User;
}
export type ResourceName = keyof RecordTypes;

/**
 * How a list is read incrementally:
 * - `filter`: Keap filters on update time (`since`/`until` filter fields);
 * - `descending`: no filter; ordered by the update field, newest first, reading stops past the cursor;
 * - `client`: no filter and no usable order (users): read fully, keep what changed.
 */
export type IncrementalMode = 'filter' | 'descending' | 'client';

export interface ResourceSpec {
  name: ResourceName;
  /** Path below the base URL; `{tag_id}` is filled from the `tagId` option. */
  path: string;
  /** Property of the response that holds the records. */
  itemsKey: string;
  maxPageSize: number;
  mode: IncrementalMode;
  /** Filter fields for `filter` mode. */
  sinceField?: string;
  untilField?: string;
  /** Record fields holding the update time, first present wins. */
  timeFields: readonly string[];
  /** `order_by` for full reads and `filter`-mode incremental reads (an immutable field keeps page offsets stable). */
  orderBy?: string;
  /** `order_by` for `descending` mode. */
  descendingOrderBy?: string;
  /** Explicit `fields`, so update times and custom fields come back. */
  fields?: readonly string[];
  /** Filter pairs always sent (the `filter` option can override each). */
  defaultFilter?: Readonly<Record<string, string>>;
  schema: z.ZodType<{ id: string }>;
}

/** Every Contact property v2 can return (the list returns only defaults unless asked). */
export const CONTACT_FIELDS = [
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
] as const;

export const COMPANY_FIELDS = [
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
] as const;

export const RESOURCES: { readonly [R in ResourceName]: ResourceSpec } = {
  contacts: {
    name: 'contacts',
    path: '/rest/v2/contacts',
    itemsKey: 'contacts',
    maxPageSize: 1000,
    mode: 'filter',
    sinceField: 'start_update_time',
    untilField: 'end_update_time',
    timeFields: ['update_time'],
    orderBy: 'id asc',
    fields: CONTACT_FIELDS,
    schema: contactSchema,
  },
  companies: {
    name: 'companies',
    path: '/rest/v2/companies',
    itemsKey: 'companies',
    maxPageSize: 1000,
    mode: 'filter',
    sinceField: 'since_time',
    untilField: 'until_time',
    timeFields: ['update_time'],
    orderBy: 'id asc',
    fields: COMPANY_FIELDS,
    schema: companySchema,
  },
  orders: {
    name: 'orders',
    path: '/rest/v2/orders',
    itemsKey: 'orders',
    maxPageSize: 1000,
    mode: 'filter',
    sinceField: 'modified_since_time',
    untilField: 'modified_until_time',
    timeFields: ['modification_time'],
    orderBy: 'id asc',
    schema: orderSchema,
  },
  opportunities: {
    name: 'opportunities',
    path: '/rest/v2/opportunities',
    itemsKey: 'opportunities',
    maxPageSize: 1000,
    mode: 'descending',
    timeFields: ['last_updated_time', 'update_time'],
    descendingOrderBy: 'update_time desc',
    fields: ['custom_fields', 'created_by', 'last_updated_by', 'status_id'],
    schema: opportunitySchema,
  },
  tags: {
    name: 'tags',
    path: '/rest/v2/tags',
    itemsKey: 'tags',
    maxPageSize: 1000,
    mode: 'filter',
    sinceField: 'since_update_time',
    untilField: 'until_update_time',
    timeFields: ['update_time'],
    orderBy: 'create_time asc',
    schema: tagSchema,
  },
  tagApplications: {
    name: 'tagApplications',
    path: '/rest/v2/tags/{tag_id}/contacts',
    itemsKey: 'contacts',
    maxPageSize: 1000,
    mode: 'filter',
    sinceField: 'since_applied_time',
    untilField: 'until_applied_time',
    timeFields: ['applied_time'],
    orderBy: 'applied_time asc',
    schema: taggedContactSchema,
  },
  notes: {
    name: 'notes',
    path: '/rest/v2/notes',
    itemsKey: 'notes',
    maxPageSize: 1000,
    mode: 'filter',
    sinceField: 'since_time',
    untilField: 'until_time',
    timeFields: ['update_time'],
    orderBy: 'id asc',
    fields: ['custom_fields'],
    schema: noteSchema,
  },
  tasks: {
    name: 'tasks',
    path: '/rest/v2/tasks',
    itemsKey: 'tasks',
    maxPageSize: 1000,
    mode: 'filter',
    sinceField: 'since_time',
    untilField: 'until_time',
    timeFields: ['modification_time', 'update_time'],
    orderBy: 'id asc',
    fields: ['custom_fields'],
    schema: taskSchema,
  },
  products: {
    name: 'products',
    path: '/rest/v2/products',
    itemsKey: 'products',
    maxPageSize: 1000,
    mode: 'descending',
    timeFields: ['update_time', 'last_updated_time'],
    descendingOrderBy: 'last_updated_time desc',
    schema: productSchema,
  },
  subscriptions: {
    name: 'subscriptions',
    path: '/rest/v2/subscriptions',
    itemsKey: 'subscriptions',
    maxPageSize: 1000,
    mode: 'descending',
    timeFields: ['modification_time'],
    descendingOrderBy: 'modification_time desc',
    schema: subscriptionSchema,
  },
  users: {
    name: 'users',
    path: '/rest/v2/users',
    itemsKey: 'users',
    maxPageSize: 100,
    mode: 'client',
    timeFields: ['update_time'],
    orderBy: 'create_time asc',
    // Keap hides inactive and partner users unless asked; a sync needs every owner a record can name.
    defaultFilter: { include_inactive: 'true', include_partners: 'true' },
    schema: userSchema,
  },
};

export const RESOURCE_NAMES = Object.keys(RESOURCES) as ResourceName[];

/** Objects with a custom-field model at `GET /rest/v2/{object}/model`. */
export const MODEL_OBJECTS = [
  'contacts',
  'companies',
  'orders',
  'opportunities',
  'notes',
  'tasks',
  'subscriptions',
] as const;
export type ModelObject = (typeof MODEL_OBJECTS)[number];

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
