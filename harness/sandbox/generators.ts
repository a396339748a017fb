// Domain: the sandbox's generator of each Keap list, keyed by the registry's names (a list without a
// generator is a compile error): how its records are seeded and changed, and how the sandbox serves it
// beyond what the registry already says (orderings, extra filters, default fields, single-record route).
// Harness only: the product (shared/) describes the lists; this layer fakes Keap's data for them.
import { MODEL_OBJECTS, type ModelObject, REGISTRY, type ResourceName } from '#shared/keap/registry.ts';
import type { FilterSpec, ListSpec, SortKey } from './listing.ts';
import type { Prng } from './prng.ts';
import type {
  Address,
  Company,
  Contact,
  CurrencyValue,
  CustomFieldMetaData,
  CustomFieldValue,
  Note,
  Opportunity,
  Order,
  OrderItem,
  Product,
  Subscription,
  Tag,
  TagApplication,
  Task,
  User,
} from './shapes.ts';
import type { ReadonlyTable } from './tables.ts';

export const DAY_MS = 86_400_000;

/** What a generator may read and do in its dataset. */
export interface GenContext {
  readonly models: Readonly<Record<ModelObject, readonly CustomFieldMetaData[]>>;
  table<K extends ResourceName>(type: K): ReadonlyTable<SandboxRecords[K]>;
  /** Applies a tag to a contact, keeping the contact's `tag_ids` in step. */
  putApplication(tagId: string, contactId: string, appliedTime: string): void;
  dropApplication(tagId: string, contactId: string): boolean;
}

/**
 * How the sandbox serves a list, beyond what its registry entry says (collection, page size, the
 * update-time and id filters, the `fields` Keap allows).
 */
export interface ListDef<T> {
  /** `order_by` fields and their sort keys. */
  orderBy: Readonly<Record<string, (r: T) => SortKey>>;
  /** Filters besides the registry's update-time and id filters. */
  filters?: Readonly<Record<string, FilterSpec<T>>>;
  /** Tie-breaker and default order; default the numeric id. */
  seq?: (r: T) => number;
  baseline?: ListSpec<T>['baseline'];
  /** Smallest `page_size` accepted; default 0 (which means the largest). */
  pageSizeMin?: number;
}

interface GeneratorBase<T extends { id: string }> {
  /** Tables that must hold records before `mutate` can create one of this list. */
  needs?: readonly ResourceName[];
  /** What a scripted update changes (the dataset then sets the list's update time). */
  touch(r: T, mark: string, rng: Prng): Partial<T>;
  /** Called before a record is deleted (related records go with it). */
  onDelete?(ctx: GenContext, r: T): void;
  list(ctx: GenContext): ListDef<T>;
  /** Properties left out unless `fields` names them; default every property Keap's `fields` allows. */
  optionalFields?: readonly string[] | ((key: string) => boolean);
  /** Name in the 404 of `GET <path>/{id}`; absent: the sandbox serves no such route. */
  entity?: string;
  /** For a list below another record (a `{...}` in its path): the parent and which records are its. */
  scope?: { parent: ResourceName; test(r: T, parentId: string): boolean };
  /** The record as the list serves it, when that differs from the stored record. */
  present?(ctx: GenContext, r: T): unknown;
}

/** Seeded by count: `max(min, round(contacts * estimateShare))` records, made one by one. */
interface CountedGenerator<T extends { id: string }> extends GeneratorBase<T> {
  seed: { order: number; min: number };
  /** `index`: the position in the seeded batch; undefined for a record created later. */
  make(ctx: GenContext, rng: Prng, id: string, created: number, updated: number, index?: number): T;
}

/** Seeded and created by its own rules (tag applications: a few tags per contact). */
interface CustomGenerator<T extends { id: string }> extends GeneratorBase<T> {
  seed: { order: number; custom(ctx: GenContext, rng: Prng, end: number): void };
  create(ctx: GenContext, rng: Prng, now: number): string | undefined;
}

/** `seed.order` places a list among the others when the dataset is generated (referenced lists first). */
export type Generator<T extends { id: string }> = CountedGenerator<T> | CustomGenerator<T>;

const GIVEN = [
  'Ava',
  'Liam',
  'Mia',
  'Noah',
  'Emma',
  'Oliver',
  'Sofia',
  'Elijah',
  'Isla',
  'Lucas',
  'Amara',
  'Mateo',
  'Chloe',
  'Ethan',
  'Priya',
  'Kenji',
  'Zoe',
  'Omar',
  'Grace',
  'Diego',
  'Hana',
  'Felix',
  'Nora',
  'Ravi',
  'Lena',
  'Tomas',
  'Aisha',
  'Jonas',
  'Maya',
  'Samuel',
  'Ines',
  'Theo',
  'Leila',
  'Marco',
  'Yara',
  'Hugo',
];
const FAMILY = [
  'Smith',
  'Garcia',
  'Nguyen',
  'Johnson',
  'Kowalski',
  'Okafor',
  'Rossi',
  'Tanaka',
  'Müller',
  'Brown',
  'Silva',
  'Patel',
  'Martin',
  'Khan',
  'Dubois',
  'Lopez',
  'Andersen',
  'Kim',
  'Novak',
  "O'Brien",
  'Haddad',
  'Costa',
  'Fischer',
  'Ivanova',
  'Mensah',
  'Walker',
  'Chen',
  'Moreau',
  'Schmidt',
  'Alvarez',
];
const CITIES: ReadonlyArray<readonly [string, string, string]> = [
  ['Chandler', 'US-AZ', '85224'],
  ['Phoenix', 'US-AZ', '85001'],
  ['Austin', 'US-TX', '73301'],
  ['Denver', 'US-CO', '80202'],
  ['Portland', 'US-OR', '97201'],
  ['Boise', 'US-ID', '83702'],
  ['Madison', 'US-WI', '53703'],
  ['Raleigh', 'US-NC', '27601'],
  ['Tampa', 'US-FL', '33602'],
  ['Omaha', 'US-NE', '68102'],
  ['Tucson', 'US-AZ', '85701'],
  ['Salem', 'US-MA', '01970'],
];
const STREETS = [
  'Main St',
  'Oak Ave',
  'Maple Dr',
  'Cedar Ln',
  'Elm St',
  'Pine Rd',
  'Lakeview Blvd',
  'Hill St',
];
const COMPANY_A = [
  'Blue',
  'Summit',
  'Bright',
  'Cedar',
  'North',
  'Silver',
  'Harbor',
  'Prairie',
  'Golden',
  'Red',
];
const COMPANY_B = [
  'Ridge',
  'Works',
  'Labs',
  'Studio',
  'Partners',
  'Supply',
  'Dental',
  'Fitness',
  'Bakery',
  'Legal',
];
const COMPANY_C = ['LLC', 'Inc.', 'Co.', 'Group', 'Ltd.'];
const JOBS = ['Owner', 'Manager', 'Director', 'Assistant', 'Consultant', 'Coach', 'Accountant', 'Designer'];
const PRODUCT_A = ['Starter', 'Premium', 'Deluxe', 'Basic', 'Pro', 'Annual', 'Monthly', 'Family'];
const PRODUCT_B = [
  'Coaching',
  'Membership',
  'Workshop',
  'Course',
  'Kit',
  'Consultation',
  'Bundle',
  'Session',
];
const TAG_PREFIX = ['Lead Source', 'Interest', 'Customer', 'Event', 'Newsletter', 'Campaign', 'Status'];
const NOTE_TYPES = ['Call', 'Email', 'Fax', 'Letter', 'Other', 'Appointment'];
const NOTE_TITLES = ['Follow-up call', 'Intro email', 'Left voicemail', 'Meeting notes', 'Pricing question'];
const TASK_TITLES = ['Call back', 'Send proposal', 'Schedule demo', 'Check in', 'Renewal reminder'];
const STAGES: ReadonlyArray<readonly [string, number]> = [
  ['New Opportunity', 10],
  ['Qualified', 25],
  ['Proposal Sent', 50],
  ['Negotiation', 75],
  ['Won', 100],
  ['Lost', 0],
];
const SOURCE_TYPES = ['API', 'IMPORT', 'LANDING_PAGE', 'MANUAL', 'WEBFORM'];

/**
 * The custom-field model of every list that has one (the compiler asks for each): the record type its
 * fields carry, or the list whose model it shares (notes and tasks share one, as in Keap).
 */
const CUSTOM_FIELD_MODELS: {
  readonly [M in ModelObject]: CustomFieldMetaData['record_type'] | { sameAs: ModelObject };
} = {
  contacts: 'CONTACT',
  companies: 'COMPANY',
  orders: 'ORDER',
  opportunities: 'OPPORTUNITY',
  notes: 'TASK_NOTE_APPOINTMENT',
  tasks: { sameAs: 'notes' },
  subscriptions: 'SUBSCRIPTION',
};

/** Builds the custom field models: three fields per object, in the registry's order. */
export function buildModels(): Record<ModelObject, CustomFieldMetaData[]> {
  const out = {} as Record<ModelObject, CustomFieldMetaData[]>;
  let base = 10;
  for (const obj of MODEL_OBJECTS) {
    const model = CUSTOM_FIELD_MODELS[obj];
    if (typeof model !== 'string') {
      const shared = out[model.sameAs];
      if (shared) out[obj] = shared;
      continue;
    }
    const prefix = obj.slice(0, -1);
    out[obj] = [
      {
        id: String(base + 1),
        label: 'Referral Code',
        field_name: `${prefix}ReferralCode`,
        field_type: 'TEXT',
        record_type: model,
      },
      {
        id: String(base + 3),
        label: 'Score',
        field_name: `${prefix}Score`,
        field_type: 'WHOLE_NUMBER',
        record_type: model,
      },
      {
        id: String(base + 5),
        label: 'Tier',
        field_name: `${prefix}Tier`,
        field_type: 'DROPDOWN',
        record_type: model,
        options: [
          { id: 'bronze', label: 'Bronze' },
          { id: 'silver', label: 'Silver' },
          { id: 'gold', label: 'Gold' },
        ],
      },
    ];
    base += 10;
  }
  for (const obj of MODEL_OBJECTS) {
    const model = CUSTOM_FIELD_MODELS[obj];
    if (typeof model !== 'string' && !out[obj]) out[obj] = out[model.sameAs];
  }
  return out;
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function day(ms: number): string {
  return iso(ms).slice(0, 10);
}

function money(cents: number): CurrencyValue {
  return { amount: cents, currency_code: 'USD', formatted_amount: `$${(cents / 100).toFixed(2)}` };
}

export function primaryEmail(c: { email_addresses: Contact['email_addresses'] }): string | undefined {
  const e = c.email_addresses.find((a) => a.field === 'EMAIL1') ?? c.email_addresses[0];
  return e?.email;
}

function customValues(ctx: GenContext, rng: Prng, obj: ModelObject): CustomFieldValue[] {
  const [text, score, tier] = ctx.models[obj];
  const out: CustomFieldValue[] = [];
  if (text) out.push({ id: text.id, content: rng.chance(0.5) ? `R${rng.int(1000, 9999)}` : null });
  if (score) out.push({ id: score.id, content: rng.int(0, 100) });
  if (tier) out.push({ id: tier.id, content: rng.pick(['bronze', 'silver', 'gold']) });
  return out;
}

function address(rng: Prng, field: Address['field']): Address {
  const [locality, region, postal] = rng.pick(CITIES);
  return {
    field,
    line1: `${rng.int(10, 9999)} ${rng.pick(STREETS)}`,
    locality,
    region_code: region,
    country_code: 'USA',
    postal_code: postal,
  };
}

function phone(rng: Prng): string {
  return `(${rng.int(201, 989)}) ${rng.int(200, 999)}-${String(rng.int(0, 9999)).padStart(4, '0')}`;
}

export function someId(table: ReadonlyTable<{ id: string }>, rng: Prng): string {
  // Ids are dense from 1 at generation; later deletions may leave holes, so fall back to a scan.
  const guess = String(rng.int(1, Math.max(1, table.size)));
  if (table.has(guess)) return guess;
  return rng.pick(table.values()).id;
}

function makeUser(
  _ctx: GenContext,
  rng: Prng,
  id: string,
  created: number,
  updated: number,
  /** Position in the seeded batch (the first user is the admin); undefined for a user created later. */
  index?: number,
): User {
  const given = rng.pick(GIVEN);
  const family = rng.pick(FAMILY);
  return {
    id,
    given_name: given,
    family_name: family,
    email_addresses: [
      { email: `${given}.${family}.u${id}@sandbox-business.example`.toLowerCase(), field: 'EMAIL1' },
    ],
    status: index === 0 || rng.chance(0.9) ? 'ACTIVE' : 'INACTIVE',
    admin: index === 0,
    partner: false,
    company_name: 'Sandbox Business',
    create_time: iso(created),
    update_time: iso(updated),
  };
}

function makeProduct(_ctx: GenContext, rng: Prng, id: string, created: number, updated: number): Product {
  const name = `${rng.pick(PRODUCT_A)} ${rng.pick(PRODUCT_B)} ${id}`;
  return {
    id,
    name,
    sku: `SKU-${id.padStart(5, '0')}`,
    price: money(rng.int(5, 500) * 100 - 1),
    active: rng.chance(0.9),
    description: `${name}: sandbox product.`,
    short_description: name,
    shippable: rng.chance(0.3),
    taxable: rng.chance(0.5),
    subscription_only: false,
    storefront_hidden: rng.chance(0.1),
    create_time: iso(created),
    update_time: iso(updated),
  };
}

function makeCompany(ctx: GenContext, rng: Prng, id: string, created: number, updated: number): Company {
  const name = `${rng.pick(COMPANY_A)} ${rng.pick(COMPANY_B)} ${rng.pick(COMPANY_C)} ${id}`;
  const domain = `${name.split(' ').slice(0, 2).join('').toLowerCase()}${id}.example`;
  return {
    id,
    company_name: name,
    email_address: { email: `info@${domain}`, field: 'EMAIL1' },
    phone_number: { number: phone(rng), field: 'PHONE1', type: 'Work' },
    address: address(rng, 'BILLING'),
    website: `https://${domain}`,
    notes: rng.chance(0.3) ? 'Key account.' : '',
    custom_fields: customValues(ctx, rng, 'companies'),
    create_time: iso(created),
    update_time: iso(updated),
  };
}

function makeTag(_ctx: GenContext, rng: Prng, id: string, created: number, updated: number): Tag {
  const prefix = rng.pick(TAG_PREFIX);
  return {
    id,
    name: `${prefix} ${id}`,
    description: `${prefix} segment`,
    category: { id: String(TAG_PREFIX.indexOf(prefix) + 1) },
    create_time: iso(created),
    update_time: iso(updated),
  };
}

function makeContact(ctx: GenContext, rng: Prng, id: string, created: number, updated: number): Contact {
  const given = rng.pick(GIVEN);
  const family = rng.pick(FAMILY);
  const local = `${given}.${family.replace(/[^A-Za-z]/g, '')}.${id}`.toLowerCase();
  const company =
    ctx.table('companies').size > 0 && rng.chance(0.6)
      ? ctx.table('companies').get(someId(ctx.table('companies'), rng))
      : undefined;
  const c: Contact = {
    id,
    given_name: given,
    family_name: family,
    email_addresses: [
      {
        email: `${local}@example.com`,
        field: 'EMAIL1',
        is_opt_in: rng.chance(0.7),
        email_opt_status: rng.pick([
          'SINGLE_OPT_IN',
          'DOUBLE_OPT_IN',
          'UNENGAGED_MARKETABLE',
          'NON_MARKETABLE',
        ]),
      },
    ],
    phone_numbers: rng.chance(0.8) ? [{ number: phone(rng), field: 'PHONE1', type: 'Mobile' }] : [],
    addresses: rng.chance(0.7) ? [address(rng, 'BILLING')] : [],
    job_title: rng.pick(JOBS),
    owner_id: ctx.table('users').size > 0 ? someId(ctx.table('users'), rng) : undefined,
    contact_type: rng.pick(['Lead', 'Customer', 'Other']),
    source_type: rng.pick(SOURCE_TYPES),
    time_zone: 'America/Phoenix',
    preferred_locale: 'en_US',
    score_value: String(rng.int(0, 5)),
    tag_ids: [],
    custom_fields: customValues(ctx, rng, 'contacts'),
    create_time: iso(created),
    update_time: iso(updated),
  };
  if (company) c.company = { id: company.id, company_name: company.company_name };
  return c;
}

function contactRef(ctx: GenContext, id: string): Order['contact'] {
  const c = ctx.table('contacts').get(id);
  return {
    id,
    email: c ? primaryEmail(c) : undefined,
    given_name: c?.given_name,
    family_name: c?.family_name,
  };
}

function makeOrder(ctx: GenContext, rng: Prng, id: string, created: number, updated: number): Order {
  const items: OrderItem[] = [];
  for (const pid of rng.sample(ctx.table('products').ids(), rng.int(1, 3))) {
    const p = ctx.table('products').get(pid);
    if (!p) continue;
    items.push({
      id: `${id}${items.length + 1}`,
      name: p.name,
      quantity: rng.int(1, 3),
      item_type: 'PRODUCT',
      price_per_unit: p.price,
      product: { id: p.id, name: p.name, sku: p.sku },
    });
  }
  const total = items.reduce((s, i) => s + i.quantity * i.price_per_unit.amount, 0);
  const status = rng.pick(['DRAFT', 'SENT', 'VIEWED', 'PAID'] as const);
  const paid = status === 'PAID' ? total : 0;
  return {
    id,
    title: `Order ${id}`,
    status,
    total: money(total),
    total_paid: money(paid),
    total_due: money(total - paid),
    contact: contactRef(ctx, someId(ctx.table('contacts'), rng)),
    order_type: rng.chance(0.7) ? 'ONLINE' : 'OFFLINE',
    source_type: rng.pick(['API', 'CHECKOUT_FORM', 'INVOICE', 'MANUAL_PAYMENT']),
    invoice_number: `INV-${id.padStart(6, '0')}`,
    order_items: items,
    custom_fields: customValues(ctx, rng, 'orders'),
    order_time: iso(created),
    creation_time: iso(created),
    modification_time: iso(updated),
  };
}

function makeOpportunity(
  ctx: GenContext,
  rng: Prng,
  id: string,
  created: number,
  updated: number,
): Opportunity {
  const contact = ctx.table('contacts').get(someId(ctx.table('contacts'), rng));
  const user = ctx.table('users').get(someId(ctx.table('users'), rng));
  const stageIndex = rng.int(0, STAGES.length - 1);
  const [stageName, probability] = STAGES[stageIndex] ?? ['New Opportunity', 10];
  const low = rng.int(5, 200) * 100;
  return {
    id,
    opportunity_title: `${contact?.company?.company_name ?? contact?.family_name ?? 'Deal'} opportunity ${id}`,
    contact: {
      id: contact?.id ?? '0',
      email: contact ? primaryEmail(contact) : undefined,
      first_name: contact?.given_name,
      last_name: contact?.family_name,
      company_name: contact?.company?.company_name,
    },
    stage: {
      id: String(stageIndex + 1),
      name: stageName,
      details: { probability, stage_order: stageIndex + 1 },
    },
    user: user ? { id: user.id, first_name: user.given_name, last_name: user.family_name } : undefined,
    next_action_time: iso(updated + rng.int(1, 30) * DAY_MS),
    estimated_close_time: iso(created + rng.int(15, 120) * DAY_MS),
    include_in_forecast: rng.chance(0.6),
    projected_revenue_low: low,
    projected_revenue_high: low + rng.int(0, 200) * 100,
    custom_fields: customValues(ctx, rng, 'opportunities'),
    created_by: user?.id ?? '1',
    last_updated_by: user?.id ?? '1',
    status_id: String(stageIndex + 1),
    created_time: iso(created),
    last_updated_time: iso(updated),
  };
}

export function userRef(ctx: GenContext, id: string): Note['assigned_to_user'] {
  const u = ctx.table('users').get(id);
  return {
    id,
    given_name: u?.given_name,
    family_name: u?.family_name,
    email_address: u?.email_addresses[0]?.email,
  };
}

function makeNote(ctx: GenContext, rng: Prng, id: string, created: number, updated: number): Note {
  const userId = someId(ctx.table('users'), rng);
  return {
    id,
    title: rng.pick(NOTE_TITLES),
    text: `Sandbox note ${id}.`,
    type: rng.pick(NOTE_TYPES),
    contact_id: someId(ctx.table('contacts'), rng),
    assigned_to_user: userRef(ctx, userId),
    created_by_user_id: userId,
    last_updated_by_user_id: userId,
    custom_fields: customValues(ctx, rng, 'notes'),
    create_time: iso(created),
    update_time: iso(updated),
  };
}

function makeTask(ctx: GenContext, rng: Prng, id: string, created: number, updated: number): Task {
  const completed = rng.chance(0.5);
  const userId = someId(ctx.table('users'), rng);
  const t: Task = {
    id,
    title: rng.pick(TASK_TITLES),
    description: `Sandbox task ${id}.`,
    type: rng.pick(['Call', 'Email', 'Appointment', 'Other']),
    priority: rng.pick(['CRITICAL', 'ESSENTIAL', 'NONESSENTIAL'] as const),
    completed,
    contact_id: someId(ctx.table('contacts'), rng),
    assigned_to_user_id: userId,
    created_by_user_id: userId,
    due_time: iso(created + rng.int(1, 30) * DAY_MS),
    custom_fields: customValues(ctx, rng, 'tasks'),
    create_time: iso(created),
    modification_time: iso(updated),
  };
  if (completed) t.completion_time = iso(updated);
  return t;
}

function makeSubscription(
  ctx: GenContext,
  rng: Prng,
  id: string,
  created: number,
  updated: number,
): Subscription {
  const product = ctx.table('products').get(someId(ctx.table('products'), rng));
  const cycle = rng.pick(['MONTH', 'YEAR', 'WEEK'] as const);
  const active = rng.chance(0.7);
  const s: Subscription = {
    id,
    contact_id: someId(ctx.table('contacts'), rng),
    product_id: product?.id ?? '1',
    subscription_plan_id: String(Number(product?.id ?? '1') * 10 + rng.int(1, 3)),
    quantity: rng.int(1, 3),
    active,
    billing_amount: (product?.price.amount ?? 1000) / 100,
    billing_cycle: cycle,
    billing_frequency: 1,
    auto_charge: true,
    start_date: day(created),
    custom_fields: customValues(ctx, rng, 'subscriptions'),
    modification_time: iso(updated),
  };
  if (active) s.next_bill_date = day(updated + 30 * DAY_MS);
  else s.end_date = day(updated);
  return s;
}

// ---------------------------------------------------------------- writes (REST routes)
const num = (id: string | undefined): number => {
  const n = Number(id);
  return Number.isFinite(n) ? n : 0;
};
const time = (v: string | undefined): number => (v === undefined ? 0 : Date.parse(v));
const lower = (v: string | undefined): SortKey => (v ?? '').toLowerCase();
const email1 = (r: { email_addresses: Array<{ email: string; field: string }> }): string | undefined =>
  (r.email_addresses.find((e) => e.field === 'EMAIL1') ?? r.email_addresses[0])?.email;

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

const contacts: Generator<Contact> = {
  seed: { order: 5, min: 0 },
  make: makeContact,
  touch: (_r, mark, rng) => ({ job_title: `${rng.pick(JOBS)}${mark}` }),
  onDelete: (ctx, c) => {
    for (const tagId of c.tag_ids) ctx.dropApplication(tagId, c.id);
  },
  entity: 'Contact',
  list: () => ({
    orderBy: {
      id: (r) => num(r.id),
      create_time: (r) => time(r.create_time),
      email: (r) => lower(email1(r)),
      update_time: (r) => time(r.update_time),
    },
    filters: {
      email: { kind: 'text', wildcard: true, get: email1 },
      given_name: { kind: 'text', wildcard: true, get: (r) => r.given_name },
      family_name: { kind: 'text', wildcard: true, get: (r) => r.family_name },
      middle_name: { kind: 'text', wildcard: true, get: (r) => r.middle_name },
      company_id: { kind: 'text', get: (r) => r.company?.id },
      contact_ids: { kind: 'ids', get: (r) => r.id },
      contact_id: { kind: 'number', get: (r) => num(r.id) },
    },
  }),
  optionalFields: (k) => !CONTACT_DEFAULT_FIELDS.includes(k),
};

const companies: Generator<Company> = {
  seed: { order: 3, min: 5 },
  make: makeCompany,
  touch: (_r, mark) => ({ notes: `Updated${mark}` }),
  entity: 'Company',
  list: () => ({
    orderBy: {
      id: (r) => num(r.id),
      create_time: (r) => time(r.create_time),
      name: (r) => lower(r.company_name),
      email: (r) => lower(r.email_address?.email),
    },
    filters: {
      company_name: { kind: 'text', get: (r) => r.company_name },
      name: { kind: 'text', wildcard: true, get: (r) => r.company_name },
      email: { kind: 'text', get: (r) => r.email_address?.email },
      company_id: { kind: 'number', get: (r) => num(r.id) },
    },
  }),
  // Keap: "notes, fax_number, address, email_address, phone_number, update_time, create_time and custom_fields aren't included, by default".
  optionalFields: [
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

const orders: Generator<Order> = {
  seed: { order: 7, min: 0 },
  make: makeOrder,
  needs: ['contacts', 'products'],
  touch: (r, mark) => ({ title: `Order ${r.id}${mark}` }),
  entity: 'Order',
  list: () => ({
    orderBy: {
      id: (r) => num(r.id),
      order_time: (r) => time(r.order_time),
      modification_time: (r) => time(r.modification_time),
    },
    filters: {
      created_since_time: { kind: 'from', get: (r) => r.creation_time },
      created_until_time: { kind: 'until', get: (r) => r.creation_time },
      contact_id: { kind: 'text', get: (r) => r.contact.id },
      id: { kind: 'number', get: (r) => num(r.id) },
      paid: { kind: 'bool', get: (r) => r.status === 'PAID' },
      order_type: { kind: 'text', get: (r) => r.order_type },
      title: { kind: 'text', wildcard: true, get: (r) => r.title },
    },
  }),
};

const opportunities: Generator<Opportunity> = {
  seed: { order: 8, min: 0 },
  make: makeOpportunity,
  needs: ['contacts'],
  touch: (r, mark) => ({ opportunity_title: `${r.opportunity_title.split(' (rev')[0]}${mark}` }),
  entity: 'Opportunity',
  list: () => ({
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
      opportunity_id: { kind: 'number', get: (r) => num(r.id) },
    },
  }),
};

const tags: Generator<Tag> = {
  seed: { order: 4, min: 10 },
  make: makeTag,
  touch: (_r, mark) => ({ description: `Updated${mark}` }),
  onDelete: (ctx, t) => {
    for (const a of ctx.table('tagApplications').values())
      if (a.tag_id === t.id) ctx.dropApplication(t.id, a.contact_id);
  },
  entity: 'Tag',
  list: () => ({
    orderBy: {
      name: (r) => lower(r.name),
      create_time: (r) => time(r.create_time),
      update_time: (r) => time(r.update_time),
    },
    filters: {
      since_create_time: { kind: 'from', get: (r) => r.create_time },
      until_create_time: { kind: 'until', get: (r) => r.create_time },
      name: { kind: 'text', get: (r) => r.name },
      description: { kind: 'text', get: (r) => r.description },
      category_id: { kind: 'text', get: (r) => r.category?.id },
    },
  }),
};

const tagApplications: Generator<TagApplication> = {
  seed: {
    order: 6,
    // Each contact carries 0-6 tags, applied after it was created.
    custom: (ctx, rng, end) => {
      const tagIds = ctx.table('tags').ids();
      for (const c of ctx.table('contacts').values()) {
        const k = rng.int(0, 6);
        const created = Date.parse(c.create_time);
        for (const tagId of rng.sample(tagIds, k)) {
          ctx.putApplication(tagId, c.id, iso(created + Math.floor(rng.next() * (end - created - 1))));
        }
      }
    },
  },
  needs: ['contacts', 'tags'],
  create: (ctx, rng, now) => {
    const applications = ctx.table('tagApplications');
    for (let attempt = 0; attempt < 50; attempt++) {
      const tagId = someId(ctx.table('tags'), rng);
      const contactId = someId(ctx.table('contacts'), rng);
      if (applications.has(`${tagId}:${contactId}`)) continue;
      ctx.putApplication(tagId, contactId, iso(now));
      return `${tagId}:${contactId}`;
    }
    return undefined;
  },
  touch: () => ({}),
  onDelete: (ctx, a) => {
    ctx.dropApplication(a.tag_id, a.contact_id);
  },
  scope: { parent: 'tags', test: (a, tagId) => a.tag_id === tagId },
  present: (ctx, a) => {
    const c = ctx.table('contacts').get(a.contact_id);
    return {
      id: a.contact_id,
      email: c ? email1(c) : undefined,
      given_name: c?.given_name,
      family_name: c?.family_name,
      applied_time: a.applied_time,
    };
  },
  list: (ctx) => {
    const contactOf = (a: TagApplication): Contact | undefined => ctx.table('contacts').get(a.contact_id);
    return {
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
    };
  },
};

const notes: Generator<Note> = {
  seed: { order: 9, min: 0 },
  make: makeNote,
  needs: ['contacts', 'users'],
  touch: (_r, mark) => ({ text: `Updated${mark}` }),
  list: () => ({
    orderBy: {
      id: (r) => num(r.id),
      create_time: (r) => time(r.create_time),
      update_time: (r) => time(r.update_time),
    },
    filters: {
      id: { kind: 'number', get: (r) => num(r.id) },
      title: { kind: 'text', wildcard: true, get: (r) => r.title },
      contact_id: { kind: 'text', get: (r) => r.contact_id },
      assigned_to_user_id: { kind: 'text', get: (r) => r.assigned_to_user?.id },
    },
  }),
};

const tasks: Generator<Task> = {
  seed: { order: 10, min: 0 },
  make: makeTask,
  needs: ['contacts', 'users'],
  touch: (_r, mark) => ({ description: `Updated${mark}` }),
  entity: 'Task',
  list: () => ({
    orderBy: {
      id: (r) => num(r.id),
      create_time: (r) => time(r.create_time),
      due_time: (r) => time(r.due_time),
      update_time: (r) => time(r.modification_time),
    },
    filters: {
      contact_id: { kind: 'text', get: (r) => r.contact_id },
      user_id: { kind: 'text', get: (r) => r.assigned_to_user_id },
      is_completed: { kind: 'bool', get: (r) => r.completed },
      has_due_date: { kind: 'bool', get: (r) => r.due_time !== undefined },
      priority: { kind: 'text', get: (r) => r.priority },
      id: { kind: 'number', get: (r) => num(r.id) },
      title: { kind: 'text', wildcard: true, get: (r) => r.title },
    },
  }),
};

const products: Generator<Product> = {
  seed: { order: 2, min: 10 },
  make: makeProduct,
  touch: (_r, _mark, rng) => ({ price: money(rng.int(5, 500) * 100 - 1) }),
  entity: 'Product',
  list: () => ({
    orderBy: {
      name: (r) => lower(r.name),
      sku: (r) => lower(r.sku),
      last_updated_time: (r) => time(r.update_time),
    },
    filters: {
      name: { kind: 'text', wildcard: true, get: (r) => r.name },
      sku: { kind: 'text', wildcard: true, get: (r) => r.sku },
      product_id: { kind: 'number', get: (r) => num(r.id) },
    },
  }),
};

const subscriptions: Generator<Subscription> = {
  seed: { order: 11, min: 0 },
  make: makeSubscription,
  needs: ['contacts', 'products'],
  touch: (r) => ({ quantity: r.quantity + 1 }),
  entity: 'Subscription',
  list: () => ({
    orderBy: {
      id: (r) => num(r.id),
      contact_id: (r) => num(r.contact_id),
      subscription_plan_id: (r) => num(r.subscription_plan_id),
      modification_time: (r) => time(r.modification_time),
    },
    filters: {
      contact_id: { kind: 'text', get: (r) => r.contact_id },
      subscription_plan_id: { kind: 'text', get: (r) => r.subscription_plan_id },
      id: { kind: 'number', get: (r) => num(r.id) },
    },
  }),
};

const users: Generator<User> = {
  seed: { order: 1, min: 5 },
  make: makeUser,
  touch: (r, mark) => ({ family_name: `${r.family_name.split(' (rev')[0]}${mark}` }),
  entity: 'User',
  list: () => ({
    pageSizeMin: 1,
    orderBy: {
      create_time: (r) => time(r.create_time),
      email: (r) => lower(email1(r)),
      name: (r) => lower(r.family_name),
    },
    filters: {
      email: { kind: 'text', get: email1 },
      given_name: { kind: 'text', get: (r) => r.given_name },
      include_inactive: { kind: 'flag' },
      include_partners: { kind: 'flag' },
    },
    baseline: (f) => {
      const inactive = f.get('include_inactive') === 'true';
      const partners = f.get('include_partners') === 'true';
      return (r) => (inactive || r.status === 'ACTIVE') && (partners || !r.partner);
    },
  }),
};

/** The sandbox's record type of each list (Keap's full shape, where the registry's schema is loose). */
export interface SandboxRecords {
  contacts: Contact;
  companies: Company;
  orders: Order;
  opportunities: Opportunity;
  tags: Tag;
  tagApplications: TagApplication;
  notes: Note;
  tasks: Task;
  products: Product;
  subscriptions: Subscription;
  users: User;
}

/** Every list's generator, keyed by the registry's names: a list without one does not compile. */
export const GENERATORS: { readonly [R in ResourceName]: Generator<SandboxRecords[R]> } = {
  contacts,
  companies,
  orders,
  opportunities,
  tags,
  tagApplications,
  notes,
  tasks,
  products,
  subscriptions,
  users,
};

export type ResourceType = ResourceName;
export type RecordTypes = SandboxRecords;

/** Every list, in the registry's order. */
export const RESOURCE_TYPES: readonly ResourceType[] = Object.keys(REGISTRY) as ResourceType[];

/** The generic view of a list's generator (its record type erased). */
export function generatorOf(type: ResourceType): Generator<{ id: string }> {
  return GENERATORS[type] as unknown as Generator<{ id: string }>;
}

/** Each list's own update-time field (the one incremental syncs follow): its registry's first time field. */
export const UPDATE_FIELD = Object.fromEntries(
  RESOURCE_TYPES.map((type) => [type, REGISTRY[type].timeFields[0]]),
) as { readonly [K in ResourceType]: string };

/** The lists in the order they are seeded (a list after those its records refer to). */
export const SEED_ORDER: readonly ResourceType[] = [...RESOURCE_TYPES].sort(
  (a, b) => GENERATORS[a].seed.order - GENERATORS[b].seed.order,
);
