// Domain: what each Keap v2 list accepts (filters, order_by, page sizes, fields), from Keap's OpenAPI.
import type { SandboxDataset } from './dataset.ts';
import type { FieldsSpec, ListSpec, SortKey } from './listing.ts';
import type {
  Company,
  Contact,
  Note,
  Opportunity,
  Order,
  Product,
  Subscription,
  Tag,
  TagApplication,
  Task,
  User,
} from './shapes.ts';

const MAIN_PAGE = { min: 0, max: 1000, default: 1000 };
/** Users page 1..100. */
const USER_PAGE = { min: 1, max: 100, default: 100 };

const num = (id: string | undefined): number => {
  const n = Number(id);
  return Number.isFinite(n) ? n : 0;
};
const time = (v: string | undefined): number => (v === undefined ? 0 : Date.parse(v));
const lower = (v: string | undefined): SortKey => (v ?? '').toLowerCase();
const byId = (r: { id: string }): number => num(r.id);
const email1 = (r: { email_addresses: Array<{ email: string; field: string }> }): string | undefined =>
  (r.email_addresses.find((e) => e.field === 'EMAIL1') ?? r.email_addresses[0])?.email;

/** Contact properties the `fields` parameter may name (Keap's list). */
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
  'account_id',
  'assistant_name',
  'assistant_phone',
  'billing_information',
  'created_by',
  'groups',
  'last_updated_by',
] as const;

/**
 * What a contact carries when `fields` is absent; `fields` adds to it. Keap's exact default set is
 * not documented: `update_time`, `custom_fields` and `tag_ids` are only sent when asked for.
 */
export const CONTACT_DEFAULT_FIELDS: readonly string[] = [
  'id',
  'given_name',
  'family_name',
  'email_addresses',
  'phone_numbers',
  'addresses',
  'company',
];

const contactFields: FieldsSpec = {
  allowed: CONTACT_FIELDS,
  optional: (k) => !CONTACT_DEFAULT_FIELDS.includes(k),
};

const companyFields: FieldsSpec = {
  allowed: [
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
  ],
  // Keap: "notes, fax_number, address, email_address, phone_number, update_time, create_time and custom_fields aren't included, by default".
  optional: [
    'notes',
    'fax_number',
    'address',
    'email_address',
    'phone_number',
    'update_time',
    'create_time',
    'custom_fields',
  ],
};

const OPPORTUNITY_OPTIONAL = [
  'custom_fields',
  'created_by',
  'last_updated_by',
  'status_id',
  'monthly_revenue',
  'order_revenue',
  'objection',
  'status',
  'stage_entrance_time',
];
const opportunityFields: FieldsSpec = { allowed: OPPORTUNITY_OPTIONAL, optional: OPPORTUNITY_OPTIONAL };
/** Notes and tasks: `custom_fields` only when asked for. */
const customOnly: FieldsSpec = { allowed: ['custom_fields'], optional: ['custom_fields'] };

export interface ListSpecs {
  contacts: ListSpec<Contact>;
  companies: ListSpec<Company>;
  orders: ListSpec<Order>;
  opportunities: ListSpec<Opportunity>;
  tags: ListSpec<Tag>;
  tagContacts: ListSpec<TagApplication>;
  notes: ListSpec<Note>;
  tasks: ListSpec<Task>;
  products: ListSpec<Product>;
  subscriptions: ListSpec<Subscription>;
  users: ListSpec<User>;
}

/** The list specs of one dataset (tagged-contact lists read contact names from it). */
export function buildListSpecs(data: SandboxDataset): ListSpecs {
  const contactOf = (a: TagApplication): Contact | undefined => data.contacts.get(a.contact_id);
  return {
    contacts: {
      collection: 'contacts',
      pageSize: MAIN_PAGE,
      seq: byId,
      orderBy: {
        id: byId,
        create_time: (r) => time(r.create_time),
        email: (r) => lower(email1(r)),
        update_time: (r) => time(r.update_time),
      },
      filters: {
        start_update_time: { kind: 'from', get: (r) => r.update_time },
        end_update_time: { kind: 'until', get: (r) => r.update_time },
        email: { kind: 'text', wildcard: true, get: email1 },
        given_name: { kind: 'text', wildcard: true, get: (r) => r.given_name },
        family_name: { kind: 'text', wildcard: true, get: (r) => r.family_name },
        middle_name: { kind: 'text', wildcard: true, get: (r) => r.middle_name },
        company_id: { kind: 'text', get: (r) => r.company?.id },
        ids: { kind: 'ids', get: (r) => r.id },
        contact_ids: { kind: 'ids', get: (r) => r.id },
        contact_id: { kind: 'number', get: byId },
      },
      fields: contactFields,
    },
    companies: {
      collection: 'companies',
      pageSize: MAIN_PAGE,
      seq: byId,
      orderBy: {
        id: byId,
        create_time: (r) => time(r.create_time),
        name: (r) => lower(r.company_name),
        email: (r) => lower(r.email_address?.email),
      },
      filters: {
        since_time: { kind: 'from', get: (r) => r.update_time },
        until_time: { kind: 'until', get: (r) => r.update_time },
        company_name: { kind: 'text', get: (r) => r.company_name },
        name: { kind: 'text', wildcard: true, get: (r) => r.company_name },
        email: { kind: 'text', get: (r) => r.email_address?.email },
        company_id: { kind: 'number', get: byId },
      },
      fields: companyFields,
    },
    orders: {
      collection: 'orders',
      pageSize: MAIN_PAGE,
      seq: byId,
      orderBy: {
        id: byId,
        order_time: (r) => time(r.order_time),
        modification_time: (r) => time(r.modification_time),
      },
      filters: {
        modified_since_time: { kind: 'from', get: (r) => r.modification_time },
        modified_until_time: { kind: 'until', get: (r) => r.modification_time },
        created_since_time: { kind: 'from', get: (r) => r.creation_time },
        created_until_time: { kind: 'until', get: (r) => r.creation_time },
        contact_id: { kind: 'text', get: (r) => r.contact.id },
        id: { kind: 'number', get: byId },
        ids: { kind: 'ids', get: (r) => r.id },
        paid: { kind: 'bool', get: (r) => r.status === 'PAID' },
        order_type: { kind: 'text', get: (r) => r.order_type },
        title: { kind: 'text', wildcard: true, get: (r) => r.title },
      },
    },
    opportunities: {
      collection: 'opportunities',
      pageSize: MAIN_PAGE,
      seq: byId,
      orderBy: {
        next_action_time: (r) => time(r.next_action_time),
        contact_name: (r) => lower(`${r.contact.first_name ?? ''} ${r.contact.last_name ?? ''}`),
        opportunity_title: (r) => lower(r.opportunity_title),
        created_time: (r) => time(r.created_time),
        update_time: (r) => time(r.last_updated_time),
      },
      filters: {
        stage_id: { kind: 'text', get: (r) => r.stage.id },
        user_id: { kind: 'text', get: (r) => r.user?.id },
        contact_id: { kind: 'text', get: (r) => r.contact.id },
        opportunity_title: { kind: 'text', wildcard: true, get: (r) => r.opportunity_title },
        opportunity_id: { kind: 'number', get: byId },
        ids: { kind: 'ids', get: (r) => r.id },
      },
      fields: opportunityFields,
    },
    tags: {
      collection: 'tags',
      pageSize: MAIN_PAGE,
      seq: byId,
      orderBy: {
        name: (r) => lower(r.name),
        create_time: (r) => time(r.create_time),
        update_time: (r) => time(r.update_time),
      },
      filters: {
        since_update_time: { kind: 'from', get: (r) => r.update_time },
        until_update_time: { kind: 'until', get: (r) => r.update_time },
        since_create_time: { kind: 'from', get: (r) => r.create_time },
        until_create_time: { kind: 'until', get: (r) => r.create_time },
        name: { kind: 'text', get: (r) => r.name },
        description: { kind: 'text', get: (r) => r.description },
        category_id: { kind: 'text', get: (r) => r.category?.id },
        tag_ids: { kind: 'ids', get: (r) => r.id },
      },
    },
    tagContacts: {
      collection: 'contacts',
      pageSize: MAIN_PAGE,
      seq: (a) => num(a.contact_id),
      orderBy: {
        given_name: (a) => lower(contactOf(a)?.given_name),
        family_name: (a) => lower(contactOf(a)?.family_name),
        email: (a) => {
          const c = contactOf(a);
          return lower(c ? email1(c) : undefined);
        },
        applied_time: (a) => time(a.applied_time),
      },
      filters: {
        since_applied_time: { kind: 'from', get: (a) => a.applied_time },
        until_applied_time: { kind: 'until', get: (a) => a.applied_time },
        given_name: { kind: 'text', get: (a) => contactOf(a)?.given_name },
        family_name: { kind: 'text', get: (a) => contactOf(a)?.family_name },
        email: {
          kind: 'text',
          get: (a) => {
            const c = contactOf(a);
            return c ? email1(c) : undefined;
          },
        },
      },
    },
    notes: {
      collection: 'notes',
      pageSize: MAIN_PAGE,
      seq: byId,
      orderBy: {
        id: byId,
        create_time: (r) => time(r.create_time),
        update_time: (r) => time(r.update_time),
      },
      filters: {
        since_time: { kind: 'from', get: (r) => r.update_time },
        until_time: { kind: 'until', get: (r) => r.update_time },
        id: { kind: 'number', get: byId },
        ids: { kind: 'ids', get: (r) => r.id },
        title: { kind: 'text', wildcard: true, get: (r) => r.title },
        contact_id: { kind: 'text', get: (r) => r.contact_id },
        assigned_to_user_id: { kind: 'text', get: (r) => r.assigned_to_user?.id },
      },
      fields: customOnly,
    },
    tasks: {
      collection: 'tasks',
      pageSize: MAIN_PAGE,
      seq: byId,
      orderBy: {
        id: byId,
        create_time: (r) => time(r.create_time),
        due_time: (r) => time(r.due_time),
        update_time: (r) => time(r.modification_time),
      },
      filters: {
        since_time: { kind: 'from', get: (r) => r.modification_time },
        until_time: { kind: 'until', get: (r) => r.modification_time },
        contact_id: { kind: 'text', get: (r) => r.contact_id },
        user_id: { kind: 'text', get: (r) => r.assigned_to_user_id },
        is_completed: { kind: 'bool', get: (r) => r.completed },
        has_due_date: { kind: 'bool', get: (r) => r.due_time !== undefined },
        priority: { kind: 'text', get: (r) => r.priority },
        task_ids: { kind: 'ids', get: (r) => r.id },
        id: { kind: 'number', get: byId },
        title: { kind: 'text', wildcard: true, get: (r) => r.title },
      },
      fields: customOnly,
    },
    products: {
      collection: 'products',
      pageSize: MAIN_PAGE,
      seq: byId,
      orderBy: {
        name: (r) => lower(r.name),
        sku: (r) => lower(r.sku),
        last_updated_time: (r) => time(r.update_time),
      },
      filters: {
        name: { kind: 'text', wildcard: true, get: (r) => r.name },
        sku: { kind: 'text', wildcard: true, get: (r) => r.sku },
        product_id: { kind: 'number', get: byId },
        product_ids: { kind: 'ids', get: (r) => r.id },
      },
    },
    subscriptions: {
      collection: 'subscriptions',
      pageSize: MAIN_PAGE,
      seq: byId,
      orderBy: {
        id: byId,
        contact_id: (r) => num(r.contact_id),
        subscription_plan_id: (r) => num(r.subscription_plan_id),
        modification_time: (r) => time(r.modification_time),
      },
      filters: {
        contact_id: { kind: 'text', get: (r) => r.contact_id },
        subscription_plan_id: { kind: 'text', get: (r) => r.subscription_plan_id },
        id: { kind: 'number', get: byId },
        ids: { kind: 'ids', get: (r) => r.id },
      },
    },
    users: {
      collection: 'users',
      pageSize: USER_PAGE,
      seq: byId,
      orderBy: {
        create_time: (r) => time(r.create_time),
        email: (r) => lower(email1(r)),
        name: (r) => lower(r.family_name),
      },
      filters: {
        email: { kind: 'text', get: email1 },
        given_name: { kind: 'text', get: (r) => r.given_name },
        user_ids: { kind: 'ids', get: (r) => r.id },
        include_inactive: { kind: 'flag' },
        include_partners: { kind: 'flag' },
      },
      baseline: (f) => {
        const inactive = f.get('include_inactive') === 'true';
        const partners = f.get('include_partners') === 'true';
        return (r) => (inactive || r.status === 'ACTIVE') && (partners || !r.partner);
      },
    },
  };
}

export { companyFields, contactFields, customOnly, opportunityFields };
