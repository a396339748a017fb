// Domain: the sandbox's deterministic Keap dataset (seeded), its writes and its scripted changes.
import { SandboxMutationError } from './errors.ts';
import { Prng } from './prng.ts';
import {
  type Address,
  type Company,
  type Contact,
  type CurrencyValue,
  type CustomFieldMetaData,
  type CustomFieldValue,
  MODEL_OBJECTS,
  type ModelObject,
  type Note,
  type Opportunity,
  type Order,
  type OrderItem,
  type Product,
  RESOURCE_TYPES,
  type RecordTypes,
  type ResourceType,
  type Subscription,
  type Tag,
  type TagApplication,
  type Task,
  type User,
} from './shapes.ts';
import { type ReadonlyTable, RecordTable } from './tables.ts';

const DAY_MS = 86_400_000;

/** Default end of the generated history: every seeded time lies before it (fixed, so a seed is reproducible). */
export const SANDBOX_DATA_END = Date.UTC(2026, 6, 1);

/** Seeded records are created over this many days before the data end, and updated after creation. */
const HISTORY_DAYS = 3 * 365;

export interface DatasetOptions {
  seed: number;
  contacts: number;
  /** Epoch ms after every seeded create/update time. */
  dataEnd?: number;
}

export interface MutationChange {
  update?: number;
  create?: number;
  delete?: number;
}

export interface MutationResult {
  updated: string[];
  created: string[];
  deleted: string[];
}

export type DuplicateOption = 'Email' | 'EmailAndName' | 'EmailAndNameAndCompany';

/** The contact fields a create/upsert request may set (Keap's `CreateUpdateContactRequest`, subset). */
export type ContactInput = Partial<Omit<Contact, 'id' | 'create_time' | 'update_time' | 'tag_ids'>>;

export interface NoteInput {
  user_id: string;
  title?: string;
  text?: string;
  type?: string;
  custom_fields?: CustomFieldValue[];
}

export type ApplyResult = 'SUCCESS' | 'DUPLICATE' | 'FAILURE';

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

const RECORD_TYPE: Record<ModelObject, CustomFieldMetaData['record_type']> = {
  contacts: 'CONTACT',
  companies: 'COMPANY',
  orders: 'ORDER',
  opportunities: 'OPPORTUNITY',
  notes: 'TASK_NOTE_APPOINTMENT',
  tasks: 'TASK_NOTE_APPOINTMENT',
  subscriptions: 'SUBSCRIPTION',
};

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function day(ms: number): string {
  return iso(ms).slice(0, 10);
}

function money(cents: number): CurrencyValue {
  return { amount: cents, currency_code: 'USD', formatted_amount: `$${(cents / 100).toFixed(2)}` };
}

function primaryEmail(c: { email_addresses: Contact['email_addresses'] }): string | undefined {
  const e = c.email_addresses.find((a) => a.field === 'EMAIL1') ?? c.email_addresses[0];
  return e?.email;
}

/** Builds the custom field models: three fields per object; notes and tasks share one list, as in Keap. */
function buildModels(): Record<ModelObject, CustomFieldMetaData[]> {
  const out = {} as Record<ModelObject, CustomFieldMetaData[]>;
  let base = 10;
  for (const obj of MODEL_OBJECTS) {
    if (obj === 'tasks') {
      out.tasks = out.notes;
      continue;
    }
    const rt = RECORD_TYPE[obj];
    const prefix = obj.slice(0, -1);
    out[obj] = [
      {
        id: String(base + 1),
        label: 'Referral Code',
        field_name: `${prefix}ReferralCode`,
        field_type: 'TEXT',
        record_type: rt,
      },
      {
        id: String(base + 3),
        label: 'Score',
        field_name: `${prefix}Score`,
        field_type: 'WHOLE_NUMBER',
        record_type: rt,
      },
      {
        id: String(base + 5),
        label: 'Tier',
        field_name: `${prefix}Tier`,
        field_type: 'DROPDOWN',
        record_type: rt,
        options: [
          { id: 'bronze', label: 'Bronze' },
          { id: 'silver', label: 'Silver' },
          { id: 'gold', label: 'Gold' },
        ],
      },
    ];
    base += 10;
  }
  return out;
}

/**
 * The live, in-memory Keap records of one sandbox. Read the tables freely; change them only through
 * the methods here (the REST routes and `mutate` do), so dependent records stay consistent.
 */
export class SandboxDataset {
  readonly seed: number;
  /** Every seeded time is before this (epoch ms). */
  readonly dataEnd: number;
  /** Changes on every write to any table; list views are cached against it. */
  version = 0;
  readonly models: Readonly<Record<ModelObject, readonly CustomFieldMetaData[]>>;

  private readonly t: { [K in ResourceType]: RecordTable<RecordTypes[K]> };
  private readonly mutationRng: Prng;

  readonly contacts: ReadonlyTable<Contact>;
  readonly companies: ReadonlyTable<Company>;
  readonly orders: ReadonlyTable<Order>;
  readonly opportunities: ReadonlyTable<Opportunity>;
  readonly tags: ReadonlyTable<Tag>;
  readonly tagApplications: ReadonlyTable<TagApplication>;
  readonly notes: ReadonlyTable<Note>;
  readonly tasks: ReadonlyTable<Task>;
  readonly products: ReadonlyTable<Product>;
  readonly subscriptions: ReadonlyTable<Subscription>;
  readonly users: ReadonlyTable<User>;

  constructor(options: DatasetOptions) {
    this.seed = options.seed;
    this.dataEnd = options.dataEnd ?? SANDBOX_DATA_END;
    const bump = (): void => {
      this.version++;
    };
    this.t = {
      contacts: new RecordTable<Contact>(bump),
      companies: new RecordTable<Company>(bump),
      orders: new RecordTable<Order>(bump),
      opportunities: new RecordTable<Opportunity>(bump),
      tags: new RecordTable<Tag>(bump),
      tagApplications: new RecordTable<TagApplication>(bump),
      notes: new RecordTable<Note>(bump),
      tasks: new RecordTable<Task>(bump),
      products: new RecordTable<Product>(bump),
      subscriptions: new RecordTable<Subscription>(bump),
      users: new RecordTable<User>(bump),
    };
    this.contacts = this.t.contacts;
    this.companies = this.t.companies;
    this.orders = this.t.orders;
    this.opportunities = this.t.opportunities;
    this.tags = this.t.tags;
    this.tagApplications = this.t.tagApplications;
    this.notes = this.t.notes;
    this.tasks = this.t.tasks;
    this.products = this.t.products;
    this.subscriptions = this.t.subscriptions;
    this.users = this.t.users;
    this.models = buildModels();
    this.mutationRng = new Prng(options.seed, 2);
    this.generate(new Prng(options.seed, 1), Math.max(0, Math.floor(options.contacts)));
  }

  table<K extends ResourceType>(type: K): ReadonlyTable<RecordTypes[K]> {
    return this.t[type];
  }

  /** Every table as plain arrays (what "same seed, same dataset" compares). */
  toJSON(): { [K in ResourceType]: RecordTypes[K][] } {
    const out = {} as { [K in ResourceType]: RecordTypes[K][] };
    for (const type of RESOURCE_TYPES) (out as Record<string, unknown[]>)[type] = this.t[type].values();
    return out;
  }

  // ---------------------------------------------------------------- generation

  private generate(rng: Prng, n: number): void {
    const end = this.dataEnd;
    const start = end - HISTORY_DAYS * DAY_MS;
    /** A create time in the history and an update time after it, both before `end`. */
    const times = (): [number, number] => {
      const created = start + Math.floor(rng.next() * (end - start - DAY_MS));
      const updated = created + Math.floor(rng.next() * (end - created - 1));
      return [created, updated];
    };
    const counts = {
      users: Math.max(5, Math.round(n / 250)),
      products: Math.max(10, Math.round(n / 100)),
      companies: Math.max(5, Math.round(n / 10)),
      tags: Math.max(10, Math.round(n / 50)),
      orders: Math.round(n * 0.6),
      opportunities: Math.round(n / 5),
      notes: Math.round(n * 0.8),
      tasks: Math.round(n * 0.4),
      subscriptions: Math.round(n / 10),
    };
    for (let i = 0; i < counts.users; i++)
      this.t.users.put(this.makeUser(rng, this.t.users.nextId(), ...times(), i));
    for (let i = 0; i < counts.products; i++)
      this.t.products.put(this.makeProduct(rng, this.t.products.nextId(), ...times()));
    for (let i = 0; i < counts.companies; i++)
      this.t.companies.put(this.makeCompany(rng, this.t.companies.nextId(), ...times()));
    for (let i = 0; i < counts.tags; i++)
      this.t.tags.put(this.makeTag(rng, this.t.tags.nextId(), ...times()));
    for (let i = 0; i < n; i++)
      this.t.contacts.put(this.makeContact(rng, this.t.contacts.nextId(), ...times()));
    const tagIds = this.t.tags.ids();
    for (const c of this.t.contacts.values()) {
      const k = rng.int(0, 6);
      const created = Date.parse(c.create_time);
      for (const tagId of rng.sample(tagIds, k)) {
        this.putApplication(tagId, c.id, iso(created + Math.floor(rng.next() * (end - created - 1))));
      }
    }
    if (n === 0) return;
    for (let i = 0; i < counts.orders; i++)
      this.t.orders.put(this.makeOrder(rng, this.t.orders.nextId(), ...times()));
    for (let i = 0; i < counts.opportunities; i++)
      this.t.opportunities.put(this.makeOpportunity(rng, this.t.opportunities.nextId(), ...times()));
    for (let i = 0; i < counts.notes; i++)
      this.t.notes.put(this.makeNote(rng, this.t.notes.nextId(), ...times()));
    for (let i = 0; i < counts.tasks; i++)
      this.t.tasks.put(this.makeTask(rng, this.t.tasks.nextId(), ...times()));
    for (let i = 0; i < counts.subscriptions; i++)
      this.t.subscriptions.put(this.makeSubscription(rng, this.t.subscriptions.nextId(), ...times()));
  }

  private customValues(rng: Prng, obj: ModelObject): CustomFieldValue[] {
    const [text, score, tier] = this.models[obj];
    const out: CustomFieldValue[] = [];
    if (text) out.push({ id: text.id, content: rng.chance(0.5) ? `R${rng.int(1000, 9999)}` : null });
    if (score) out.push({ id: score.id, content: rng.int(0, 100) });
    if (tier) out.push({ id: tier.id, content: rng.pick(['bronze', 'silver', 'gold']) });
    return out;
  }

  private address(rng: Prng, field: Address['field']): Address {
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

  private phone(rng: Prng): string {
    return `(${rng.int(201, 989)}) ${rng.int(200, 999)}-${String(rng.int(0, 9999)).padStart(4, '0')}`;
  }

  private someId(table: ReadonlyTable<{ id: string }>, rng: Prng): string {
    // Ids are dense from 1 at generation; later deletions may leave holes, so fall back to a scan.
    const guess = String(rng.int(1, Math.max(1, table.size)));
    if (table.has(guess)) return guess;
    return rng.pick(table.values()).id;
  }

  private makeUser(rng: Prng, id: string, created: number, updated: number, index: number): User {
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

  private makeProduct(rng: Prng, id: string, created: number, updated: number): Product {
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

  private makeCompany(rng: Prng, id: string, created: number, updated: number): Company {
    const name = `${rng.pick(COMPANY_A)} ${rng.pick(COMPANY_B)} ${rng.pick(COMPANY_C)} ${id}`;
    const domain = `${name.split(' ').slice(0, 2).join('').toLowerCase()}${id}.example`;
    return {
      id,
      company_name: name,
      email_address: { email: `info@${domain}`, field: 'EMAIL1' },
      phone_number: { number: this.phone(rng), field: 'PHONE1', type: 'Work' },
      address: this.address(rng, 'BILLING'),
      website: `https://${domain}`,
      notes: rng.chance(0.3) ? 'Key account.' : '',
      custom_fields: this.customValues(rng, 'companies'),
      create_time: iso(created),
      update_time: iso(updated),
    };
  }

  private makeTag(rng: Prng, id: string, created: number, updated: number): Tag {
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

  private makeContact(rng: Prng, id: string, created: number, updated: number): Contact {
    const given = rng.pick(GIVEN);
    const family = rng.pick(FAMILY);
    const local = `${given}.${family.replace(/[^A-Za-z]/g, '')}.${id}`.toLowerCase();
    const company =
      this.t.companies.size > 0 && rng.chance(0.6)
        ? this.t.companies.get(this.someId(this.t.companies, rng))
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
      phone_numbers: rng.chance(0.8) ? [{ number: this.phone(rng), field: 'PHONE1', type: 'Mobile' }] : [],
      addresses: rng.chance(0.7) ? [this.address(rng, 'BILLING')] : [],
      job_title: rng.pick(JOBS),
      owner_id: this.t.users.size > 0 ? this.someId(this.t.users, rng) : undefined,
      contact_type: rng.pick(['Lead', 'Customer', 'Other']),
      source_type: rng.pick(SOURCE_TYPES),
      time_zone: 'America/Phoenix',
      preferred_locale: 'en_US',
      score_value: String(rng.int(0, 5)),
      tag_ids: [],
      custom_fields: this.customValues(rng, 'contacts'),
      create_time: iso(created),
      update_time: iso(updated),
    };
    if (company) c.company = { id: company.id, company_name: company.company_name };
    return c;
  }

  private contactRef(id: string): Order['contact'] {
    const c = this.t.contacts.get(id);
    return {
      id,
      email: c ? primaryEmail(c) : undefined,
      given_name: c?.given_name,
      family_name: c?.family_name,
    };
  }

  private makeOrder(rng: Prng, id: string, created: number, updated: number): Order {
    const items: OrderItem[] = [];
    for (const pid of rng.sample(this.t.products.ids(), rng.int(1, 3))) {
      const p = this.t.products.get(pid);
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
      contact: this.contactRef(this.someId(this.t.contacts, rng)),
      order_type: rng.chance(0.7) ? 'ONLINE' : 'OFFLINE',
      source_type: rng.pick(['API', 'CHECKOUT_FORM', 'INVOICE', 'MANUAL_PAYMENT']),
      invoice_number: `INV-${id.padStart(6, '0')}`,
      order_items: items,
      custom_fields: this.customValues(rng, 'orders'),
      order_time: iso(created),
      creation_time: iso(created),
      modification_time: iso(updated),
    };
  }

  private makeOpportunity(rng: Prng, id: string, created: number, updated: number): Opportunity {
    const contact = this.t.contacts.get(this.someId(this.t.contacts, rng));
    const user = this.t.users.get(this.someId(this.t.users, rng));
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
      custom_fields: this.customValues(rng, 'opportunities'),
      created_by: user?.id ?? '1',
      last_updated_by: user?.id ?? '1',
      status_id: String(stageIndex + 1),
      created_time: iso(created),
      last_updated_time: iso(updated),
    };
  }

  private userRef(id: string): Note['assigned_to_user'] {
    const u = this.t.users.get(id);
    return {
      id,
      given_name: u?.given_name,
      family_name: u?.family_name,
      email_address: u?.email_addresses[0]?.email,
    };
  }

  private makeNote(rng: Prng, id: string, created: number, updated: number): Note {
    const userId = this.someId(this.t.users, rng);
    return {
      id,
      title: rng.pick(NOTE_TITLES),
      text: `Sandbox note ${id}.`,
      type: rng.pick(NOTE_TYPES),
      contact_id: this.someId(this.t.contacts, rng),
      assigned_to_user: this.userRef(userId),
      created_by_user_id: userId,
      last_updated_by_user_id: userId,
      custom_fields: this.customValues(rng, 'notes'),
      create_time: iso(created),
      update_time: iso(updated),
    };
  }

  private makeTask(rng: Prng, id: string, created: number, updated: number): Task {
    const completed = rng.chance(0.5);
    const userId = this.someId(this.t.users, rng);
    const t: Task = {
      id,
      title: rng.pick(TASK_TITLES),
      description: `Sandbox task ${id}.`,
      type: rng.pick(['Call', 'Email', 'Appointment', 'Other']),
      priority: rng.pick(['CRITICAL', 'ESSENTIAL', 'NONESSENTIAL'] as const),
      completed,
      contact_id: this.someId(this.t.contacts, rng),
      assigned_to_user_id: userId,
      created_by_user_id: userId,
      due_time: iso(created + rng.int(1, 30) * DAY_MS),
      custom_fields: this.customValues(rng, 'tasks'),
      create_time: iso(created),
      modification_time: iso(updated),
    };
    if (completed) t.completion_time = iso(updated);
    return t;
  }

  private makeSubscription(rng: Prng, id: string, created: number, updated: number): Subscription {
    const product = this.t.products.get(this.someId(this.t.products, rng));
    const cycle = rng.pick(['MONTH', 'YEAR', 'WEEK'] as const);
    const active = rng.chance(0.7);
    const s: Subscription = {
      id,
      contact_id: this.someId(this.t.contacts, rng),
      product_id: product?.id ?? '1',
      subscription_plan_id: String(Number(product?.id ?? '1') * 10 + rng.int(1, 3)),
      quantity: rng.int(1, 3),
      active,
      billing_amount: (product?.price.amount ?? 1000) / 100,
      billing_cycle: cycle,
      billing_frequency: 1,
      auto_charge: true,
      start_date: day(created),
      custom_fields: this.customValues(rng, 'subscriptions'),
      modification_time: iso(updated),
    };
    if (active) s.next_bill_date = day(updated + 30 * DAY_MS);
    else s.end_date = day(updated);
    return s;
  }

  // ---------------------------------------------------------------- writes (REST routes)

  private putApplication(tagId: string, contactId: string, appliedTime: string): void {
    this.t.tagApplications.put({
      id: `${tagId}:${contactId}`,
      tag_id: tagId,
      contact_id: contactId,
      applied_time: appliedTime,
    });
    const c = this.t.contacts.get(contactId);
    if (c && !c.tag_ids.includes(tagId)) {
      c.tag_ids = [...c.tag_ids, tagId].sort((a, b) => Number(a) - Number(b));
      this.t.contacts.put(c);
    }
  }

  private dropApplication(tagId: string, contactId: string): boolean {
    if (!this.t.tagApplications.delete(`${tagId}:${contactId}`)) return false;
    const c = this.t.contacts.get(contactId);
    if (c) {
      c.tag_ids = c.tag_ids.filter((t) => t !== tagId);
      this.t.contacts.put(c);
    }
    return true;
  }

  /** `POST /rest/v2/contacts[?duplicate_option=...]`: updates the first match, or creates a contact. */
  upsertContact(
    input: ContactInput,
    option: DuplicateOption | undefined,
    now: number,
  ): { contact: Contact; created: boolean } {
    const match = option ? this.findDuplicate(input, option) : undefined;
    if (match) {
      const updated: Contact = { ...match, ...this.cleanContactInput(input), update_time: iso(now) };
      this.t.contacts.put(updated);
      return { contact: updated, created: false };
    }
    const id = this.t.contacts.nextId();
    const contact: Contact = {
      email_addresses: [],
      phone_numbers: [],
      addresses: [],
      custom_fields: [],
      ...this.cleanContactInput(input),
      id,
      tag_ids: [],
      create_time: iso(now),
      update_time: iso(now),
    };
    this.t.contacts.put(contact);
    return { contact, created: true };
  }

  private cleanContactInput(input: ContactInput): ContactInput {
    const out: ContactInput = { ...input };
    if (input.company) {
      const company = this.t.companies.get(input.company.id);
      out.company = {
        id: input.company.id,
        company_name: company?.company_name ?? input.company.company_name,
      };
    }
    return out;
  }

  private findDuplicate(input: ContactInput, option: DuplicateOption): Contact | undefined {
    const email = input.email_addresses
      ? primaryEmail({ email_addresses: input.email_addresses })?.toLowerCase()
      : undefined;
    if (!email) return undefined;
    const same = (a: string | undefined, b: string | undefined): boolean =>
      (a ?? '').trim().toLowerCase() === (b ?? '').trim().toLowerCase();
    for (const c of this.t.contacts.values()) {
      if (primaryEmail(c)?.toLowerCase() !== email) continue;
      if (
        option !== 'Email' &&
        !(same(c.given_name, input.given_name) && same(c.family_name, input.family_name))
      )
        continue;
      if (
        option === 'EmailAndNameAndCompany' &&
        !(c.company?.id === input.company?.id || same(c.company?.company_name, input.company?.company_name))
      )
        continue;
      return c;
    }
    return undefined;
  }

  /** `POST /rest/v2/tags/{tag_id}/contacts:applyTags`. Applying an applied tag changes nothing. */
  applyTag(tagId: string, contactIds: readonly string[], now: number): Record<string, ApplyResult> {
    const results: Record<string, ApplyResult> = {};
    for (const cid of contactIds) {
      if (!this.t.contacts.has(cid)) results[cid] = 'FAILURE';
      else if (this.t.tagApplications.has(`${tagId}:${cid}`)) results[cid] = 'DUPLICATE';
      else {
        this.putApplication(tagId, cid, iso(now));
        results[cid] = 'SUCCESS';
      }
    }
    return results;
  }

  /** `POST /rest/v2/tags/{tag_id}/contacts:removeTags`. */
  removeTag(tagId: string, contactIds: readonly string[]): void {
    for (const cid of contactIds) this.dropApplication(tagId, cid);
  }

  /** `POST /rest/v2/contacts/{contact_id}/notes`. The caller checked the contact and user exist. */
  createNote(contactId: string, input: NoteInput, now: number): Note {
    const note: Note = {
      id: this.t.notes.nextId(),
      title: input.title,
      text: input.text,
      type: input.type,
      contact_id: contactId,
      assigned_to_user: this.userRef(input.user_id),
      created_by_user_id: input.user_id,
      last_updated_by_user_id: input.user_id,
      custom_fields: input.custom_fields ?? [],
      create_time: iso(now),
      update_time: iso(now),
    };
    this.t.notes.put(note);
    return note;
  }

  // ---------------------------------------------------------------- scripted changes

  /**
   * Updates, creates and deletes records of one type, deterministically (a seeded generator that
   * advances with each call), with every update and create time set to `now`. The updated and deleted
   * records are distinct. Deleting a contact or tag also removes its tag applications.
   */
  mutate(type: ResourceType, change: MutationChange, now: number): MutationResult {
    if (!RESOURCE_TYPES.includes(type))
      throw new SandboxMutationError(`Unknown resource type "${String(type)}".`);
    const want = (n: number | undefined, name: string): number => {
      const v = n ?? 0;
      if (!Number.isInteger(v) || v < 0)
        throw new SandboxMutationError(
          `Mutation count "${name}" must be a non-negative integer, got ${String(n)}.`,
        );
      return v;
    };
    const nUpdate = want(change.update, 'update');
    const nCreate = want(change.create, 'create');
    const nDelete = want(change.delete, 'delete');
    const rng = this.mutationRng;
    const table = this.t[type] as RecordTable<{ id: string }>;
    const picked = rng.sample(table.ids(), nUpdate + nDelete);
    const toUpdate = picked.slice(0, nUpdate);
    const toDelete = picked.slice(nUpdate);
    const result: MutationResult = { updated: [], created: [], deleted: [] };
    for (const id of toUpdate) {
      this.touch(type, id, now, rng);
      result.updated.push(id);
    }
    for (let i = 0; i < nCreate; i++) {
      const id = this.createOne(type, now, rng);
      if (id !== undefined) result.created.push(id);
    }
    for (const id of toDelete) {
      this.deleteOne(type, id);
      result.deleted.push(id);
    }
    return result;
  }

  private touch(type: ResourceType, id: string, now: number, rng: Prng): void {
    const at = iso(now);
    const mark = ` (rev ${rng.int(1, 9999)})`;
    switch (type) {
      case 'contacts': {
        const r = this.t.contacts.get(id);
        if (r) this.t.contacts.put({ ...r, job_title: `${rng.pick(JOBS)}${mark}`, update_time: at });
        return;
      }
      case 'companies': {
        const r = this.t.companies.get(id);
        if (r) this.t.companies.put({ ...r, notes: `Updated${mark}`, update_time: at });
        return;
      }
      case 'orders': {
        const r = this.t.orders.get(id);
        if (r) this.t.orders.put({ ...r, title: `Order ${id}${mark}`, modification_time: at });
        return;
      }
      case 'opportunities': {
        const r = this.t.opportunities.get(id);
        if (r)
          this.t.opportunities.put({
            ...r,
            opportunity_title: `${r.opportunity_title.split(' (rev')[0]}${mark}`,
            last_updated_time: at,
          });
        return;
      }
      case 'tags': {
        const r = this.t.tags.get(id);
        if (r) this.t.tags.put({ ...r, description: `Updated${mark}`, update_time: at });
        return;
      }
      case 'tagApplications': {
        const r = this.t.tagApplications.get(id);
        if (r) this.t.tagApplications.put({ ...r, applied_time: at });
        return;
      }
      case 'notes': {
        const r = this.t.notes.get(id);
        if (r) this.t.notes.put({ ...r, text: `Updated${mark}`, update_time: at });
        return;
      }
      case 'tasks': {
        const r = this.t.tasks.get(id);
        if (r) this.t.tasks.put({ ...r, description: `Updated${mark}`, modification_time: at });
        return;
      }
      case 'products': {
        const r = this.t.products.get(id);
        if (r) this.t.products.put({ ...r, price: money(rng.int(5, 500) * 100 - 1), update_time: at });
        return;
      }
      case 'subscriptions': {
        const r = this.t.subscriptions.get(id);
        if (r) this.t.subscriptions.put({ ...r, quantity: r.quantity + 1, modification_time: at });
        return;
      }
      case 'users': {
        const r = this.t.users.get(id);
        if (r)
          this.t.users.put({
            ...r,
            family_name: `${r.family_name.split(' (rev')[0]}${mark}`,
            update_time: at,
          });
        return;
      }
    }
  }

  private createOne(type: ResourceType, now: number, rng: Prng): string | undefined {
    const needs = (t: ReadonlyTable<{ id: string }>, what: string): void => {
      if (t.size === 0) throw new SandboxMutationError(`Cannot create ${type}: there are no ${what}.`);
    };
    switch (type) {
      case 'contacts': {
        const c = this.makeContact(rng, this.t.contacts.nextId(), now, now);
        this.t.contacts.put(c);
        return c.id;
      }
      case 'companies': {
        const c = this.makeCompany(rng, this.t.companies.nextId(), now, now);
        this.t.companies.put(c);
        return c.id;
      }
      case 'orders': {
        needs(this.t.contacts, 'contacts');
        needs(this.t.products, 'products');
        const r = this.makeOrder(rng, this.t.orders.nextId(), now, now);
        this.t.orders.put(r);
        return r.id;
      }
      case 'opportunities': {
        needs(this.t.contacts, 'contacts');
        const r = this.makeOpportunity(rng, this.t.opportunities.nextId(), now, now);
        this.t.opportunities.put(r);
        return r.id;
      }
      case 'tags': {
        const r = this.makeTag(rng, this.t.tags.nextId(), now, now);
        this.t.tags.put(r);
        return r.id;
      }
      case 'tagApplications': {
        needs(this.t.contacts, 'contacts');
        needs(this.t.tags, 'tags');
        for (let attempt = 0; attempt < 50; attempt++) {
          const tagId = this.someId(this.t.tags, rng);
          const contactId = this.someId(this.t.contacts, rng);
          if (this.t.tagApplications.has(`${tagId}:${contactId}`)) continue;
          this.putApplication(tagId, contactId, iso(now));
          return `${tagId}:${contactId}`;
        }
        return undefined;
      }
      case 'notes': {
        needs(this.t.contacts, 'contacts');
        needs(this.t.users, 'users');
        const r = this.makeNote(rng, this.t.notes.nextId(), now, now);
        this.t.notes.put(r);
        return r.id;
      }
      case 'tasks': {
        needs(this.t.contacts, 'contacts');
        needs(this.t.users, 'users');
        const r = this.makeTask(rng, this.t.tasks.nextId(), now, now);
        this.t.tasks.put(r);
        return r.id;
      }
      case 'products': {
        const r = this.makeProduct(rng, this.t.products.nextId(), now, now);
        this.t.products.put(r);
        return r.id;
      }
      case 'subscriptions': {
        needs(this.t.contacts, 'contacts');
        needs(this.t.products, 'products');
        const r = this.makeSubscription(rng, this.t.subscriptions.nextId(), now, now);
        this.t.subscriptions.put(r);
        return r.id;
      }
      case 'users': {
        const r = this.makeUser(rng, this.t.users.nextId(), now, now, 1);
        this.t.users.put(r);
        return r.id;
      }
    }
  }

  private deleteOne(type: ResourceType, id: string): void {
    if (type === 'tagApplications') {
      const a = this.t.tagApplications.get(id);
      if (a) this.dropApplication(a.tag_id, a.contact_id);
      return;
    }
    if (type === 'contacts') {
      const c = this.t.contacts.get(id);
      for (const tagId of c?.tag_ids ?? []) this.t.tagApplications.delete(`${tagId}:${id}`);
    }
    if (type === 'tags') {
      for (const a of this.t.tagApplications.values())
        if (a.tag_id === id) this.dropApplication(id, a.contact_id);
    }
    this.t[type].delete(id);
  }
}
