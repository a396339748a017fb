// Adapter: the Keap REST v2 endpoints the sandbox serves, over its dataset (reads, upsert, tags, notes).
import { z } from 'zod';
import type { ContactInput, SandboxDataset } from './dataset.ts';
import { ApiError } from './errors.ts';
import { type FieldsSpec, Lister, type ListSpec, parseFields, project } from './listing.ts';
import {
  buildListSpecs,
  CONTACT_DEFAULT_FIELDS,
  CONTACT_FIELDS,
  companyFields,
  contactFields,
  customOnly,
  type ListSpecs,
  opportunityFields,
} from './resources.ts';
import type { Contact, ModelObject, TagApplication } from './shapes.ts';

export interface Request {
  method: string;
  /** Path below `/crm/rest/v2/`, already percent-decoded, e.g. `tags/3/contacts:applyTags`. */
  path: string;
  query: URLSearchParams;
  /** Raw request body ('' when none). */
  body: string;
  /** Sandbox clock at arrival: the time written into created/updated records. */
  now: number;
}

export interface Reply {
  status: number;
  /** JSON body; undefined for 204. */
  body?: unknown;
}

type Handler = (params: string[], req: Request) => Reply;

interface Route {
  method: string;
  segments: string[];
  handler: Handler;
}

const emailSchema = z
  .object({
    email: z.string().min(3),
    field: z.enum(['EMAIL1', 'EMAIL2', 'EMAIL3']).optional(),
    opt_in_reason: z.string().optional(),
  })
  .strict();
const phoneSchema = z
  .object({
    number: z.string().min(1),
    field: z.enum(['PHONE1', 'PHONE2', 'PHONE3', 'PHONE4', 'PHONE5']).optional(),
    type: z.string().optional(),
    extension: z.string().optional(),
    number_e164: z.string().optional(),
  })
  .strict();
const addressSchema = z
  .object({
    field: z.enum(['BILLING', 'SHIPPING', 'OTHER']).optional(),
    line1: z.string().optional(),
    line2: z.string().optional(),
    locality: z.string().optional(),
    region_code: z.string().optional(),
    country_code: z.string().optional(),
    postal_code: z.string().optional(),
    zip_code: z.string().optional(),
    zip_four: z.string().optional(),
  })
  .strict();
const customValueSchema = z.object({
  id: z.string(),
  content: z.union([z.string(), z.number(), z.boolean(), z.null()]),
});

/** Keap's `CreateUpdateContactRequest` (the properties the sandbox stores). */
const contactInputSchema = z
  .object({
    given_name: z.string().max(40).optional(),
    family_name: z.string().max(40).optional(),
    middle_name: z.string().max(100).optional(),
    email_addresses: z.array(emailSchema).optional(),
    phone_numbers: z.array(phoneSchema).optional(),
    addresses: z.array(addressSchema).optional(),
    company: z.object({ id: z.string(), company_name: z.string().optional() }).optional(),
    job_title: z.string().max(255).optional(),
    owner_id: z.string().optional(),
    contact_type: z.string().optional(),
    source_type: z.string().optional(),
    time_zone: z.string().optional(),
    preferred_locale: z.string().optional(),
    website: z.string().max(100).optional(),
    custom_fields: z.array(customValueSchema).optional(),
  })
  .strict();

const applySchema = z.object({ contact_ids: z.array(z.string().min(1)).min(1) }).strict();

const noteSchema = z
  .object({
    user_id: z.string().min(1),
    title: z.string().optional(),
    text: z.string().optional(),
    type: z.string().optional(),
    is_pinned: z.boolean().optional(),
    custom_fields: z.array(customValueSchema).optional(),
  })
  .strict();

const DUPLICATE_OPTIONS = ['Email', 'EmailAndName', 'EmailAndNameAndCompany'] as const;

function parseBody<T>(schema: z.ZodType<T>, raw: string): T {
  let json: unknown;
  try {
    json = raw === '' ? undefined : JSON.parse(raw);
  } catch {
    throw new ApiError(400, 'The request body is not valid JSON.', [{ domain: 'body', resource: 'json' }]);
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    const path = issue?.path.map(String).join('.') || 'body';
    const keys = issue && 'keys' in issue && Array.isArray(issue.keys) ? ` (${issue.keys.join(', ')})` : '';
    throw new ApiError(400, `Invalid request body at ${path}: ${issue?.message ?? 'invalid'}${keys}.`, [
      { domain: 'body', resource: path },
    ]);
  }
  return r.data;
}

function notFound(what: string, id: string): ApiError {
  return new ApiError(404, `${what} ${id} was not found.`, [{ domain: what.toLowerCase(), resource: id }]);
}

/** The v2 REST surface over one dataset. */
export class RestV2 {
  private readonly data: SandboxDataset;
  private readonly specs: ListSpecs;
  private readonly lister = new Lister();
  private readonly routes: Route[] = [];
  private readonly absentLastToken: boolean;

  constructor(data: SandboxDataset, options: { lastPageToken: 'empty' | 'absent' }) {
    this.data = data;
    this.specs = buildListSpecs(data);
    this.absentLastToken = options.lastPageToken === 'absent';
    this.register();
  }

  handle(req: Request): Reply {
    const parts = req.path.split('/').filter((s) => s !== '');
    let pathMatched = false;
    for (const r of this.routes) {
      const params = match(r.segments, parts);
      if (!params) continue;
      pathMatched = true;
      if (r.method !== req.method) continue;
      return r.handler(params, req);
    }
    if (pathMatched) throw new ApiError(405, `Method ${req.method} is not allowed on /rest/v2/${req.path}.`);
    throw new ApiError(404, `No v2 endpoint /rest/v2/${req.path}.`, [{ domain: 'path', resource: req.path }]);
  }

  private on(method: string, pattern: string, handler: Handler): void {
    this.routes.push({ method, segments: pattern.split('/'), handler });
  }

  private list<T extends object>(
    spec: ListSpec<T>,
    items: () => readonly T[],
    req: Request,
    scope: { key: string; test?: (r: T) => boolean } = { key: '' },
    shape: (r: T, fields: ReadonlySet<string> | undefined) => unknown = (r, f) => project(r, spec.fields, f),
  ): Reply {
    const fields = parseFields(req.query, spec.fields);
    const page = this.lister.page(spec, { version: this.data.version, items }, req.query, scope);
    const body: Record<string, unknown> = { [spec.collection]: page.items.map((r) => shape(r, fields)) };
    if (page.next !== '' || !this.absentLastToken) body.next_page_token = page.next;
    return { status: 200, body };
  }

  private one<T extends object>(
    rec: T | undefined,
    what: string,
    id: string,
    req: Request,
    fields?: FieldsSpec,
  ): Reply {
    if (!rec) throw notFound(what, id);
    return { status: 200, body: project(rec, fields, parseFields(req.query, fields)) };
  }

  private model(obj: ModelObject): Reply {
    const optional: Record<ModelObject, readonly string[]> = {
      contacts: CONTACT_FIELDS.filter((f) => !CONTACT_DEFAULT_FIELDS.includes(f)),
      companies: typeof companyFields.optional === 'function' ? [] : companyFields.optional,
      orders: [],
      opportunities: typeof opportunityFields.optional === 'function' ? [] : opportunityFields.optional,
      notes: ['custom_fields'],
      tasks: ['custom_fields'],
      subscriptions: [],
    };
    return {
      status: 200,
      body: { custom_fields: this.data.models[obj], optional_properties: optional[obj] },
    };
  }

  private taggedContact(a: TagApplication): unknown {
    const c = this.data.contacts.get(a.contact_id);
    const email = c
      ? (c.email_addresses.find((e) => e.field === 'EMAIL1') ?? c.email_addresses[0])?.email
      : undefined;
    return {
      id: a.contact_id,
      email,
      given_name: c?.given_name,
      family_name: c?.family_name,
      applied_time: a.applied_time,
    };
  }

  private register(): void {
    const d = this.data;
    const s = this.specs;

    // Contacts
    this.on('GET', 'contacts', (_p, req) => this.list(s.contacts, () => d.contacts.values(), req));
    this.on('POST', 'contacts', (_p, req) => this.upsertContact(req));
    this.on('GET', 'contacts/model', () => this.model('contacts'));
    this.on('GET', 'contacts/{id}', ([id = ''], req) =>
      this.one(d.contacts.get(id), 'Contact', id, req, contactFields),
    );
    this.on('GET', 'contacts/{id}/notes', ([id = ''], req) => {
      if (!d.contacts.has(id)) throw notFound('Contact', id);
      return this.list(s.notes, () => d.notes.values(), req, {
        key: `contact:${id}`,
        test: (n) => n.contact_id === id,
      });
    });
    this.on('POST', 'contacts/{id}/notes', ([id = ''], req) => this.createNote(id, req));
    this.on('GET', 'contacts/{id}/notes/{note}', ([id = '', noteId = ''], req) => {
      const note = d.notes.get(noteId);
      return this.one(note?.contact_id === id ? note : undefined, 'Note', noteId, req, customOnly);
    });

    // Companies, orders, opportunities
    this.on('GET', 'companies', (_p, req) => this.list(s.companies, () => d.companies.values(), req));
    this.on('GET', 'companies/model', () => this.model('companies'));
    this.on('GET', 'companies/{id}', ([id = ''], req) =>
      this.one(d.companies.get(id), 'Company', id, req, companyFields),
    );
    this.on('GET', 'orders', (_p, req) => this.list(s.orders, () => d.orders.values(), req));
    this.on('GET', 'orders/model', () => this.model('orders'));
    this.on('GET', 'orders/{id}', ([id = ''], req) => this.one(d.orders.get(id), 'Order', id, req));
    this.on('GET', 'opportunities', (_p, req) =>
      this.list(s.opportunities, () => d.opportunities.values(), req),
    );
    this.on('GET', 'opportunities/model', () => this.model('opportunities'));
    this.on('GET', 'opportunities/{id}', ([id = ''], req) =>
      this.one(d.opportunities.get(id), 'Opportunity', id, req, opportunityFields),
    );

    // Tags
    this.on('GET', 'tags', (_p, req) => this.list(s.tags, () => d.tags.values(), req));
    this.on('GET', 'tags/{id}', ([id = ''], req) => this.one(d.tags.get(id), 'Tag', id, req));
    this.on('GET', 'tags/{id}/contacts', ([id = ''], req) => {
      if (!d.tags.has(id)) throw notFound('Tag', id);
      return this.list(
        s.tagContacts,
        () => d.tagApplications.values(),
        req,
        { key: `tag:${id}`, test: (a) => a.tag_id === id },
        (a) => this.taggedContact(a),
      );
    });
    this.on('POST', 'tags/{id}/contacts:applyTags', ([id = ''], req) => {
      if (!d.tags.has(id)) throw notFound('Tag', id);
      const body = parseBody(applySchema, req.body);
      return { status: 200, body: { results: d.applyTag(id, body.contact_ids, req.now) } };
    });
    this.on('POST', 'tags/{id}/contacts:removeTags', ([id = ''], req) => {
      if (!d.tags.has(id)) throw notFound('Tag', id);
      const body = parseBody(applySchema, req.body);
      d.removeTag(id, body.contact_ids);
      return { status: 204 };
    });

    // Notes, tasks
    this.on('GET', 'notes', (_p, req) => this.list(s.notes, () => d.notes.values(), req));
    this.on('GET', 'notes/model', () => this.model('notes'));
    this.on('GET', 'tasks', (_p, req) => this.list(s.tasks, () => d.tasks.values(), req));
    this.on('GET', 'tasks/model', () => this.model('tasks'));
    this.on('GET', 'tasks/{id}', ([id = ''], req) => this.one(d.tasks.get(id), 'Task', id, req, customOnly));

    // Products, subscriptions, users
    this.on('GET', 'products', (_p, req) => this.list(s.products, () => d.products.values(), req));
    this.on('GET', 'products/{id}', ([id = ''], req) => this.one(d.products.get(id), 'Product', id, req));
    this.on('GET', 'subscriptions', (_p, req) =>
      this.list(s.subscriptions, () => d.subscriptions.values(), req),
    );
    this.on('GET', 'subscriptions/model', () => this.model('subscriptions'));
    this.on('GET', 'subscriptions/{id}', ([id = ''], req) =>
      this.one(d.subscriptions.get(id), 'Subscription', id, req),
    );
    this.on('GET', 'users', (_p, req) => this.list(s.users, () => d.users.values(), req));
    this.on('GET', 'users/{id}', ([id = ''], req) => this.one(d.users.get(id), 'User', id, req));
  }

  private upsertContact(req: Request): Reply {
    const option = req.query.get('duplicate_option');
    if (option !== null && !(DUPLICATE_OPTIONS as readonly string[]).includes(option))
      throw new ApiError(400, `Invalid duplicate_option "${option}": use ${DUPLICATE_OPTIONS.join(', ')}.`, [
        { domain: 'duplicate_option', resource: option },
      ]);
    const fields = parseFields(req.query, contactFields);
    const input = parseBody(contactInputSchema, req.body);
    if (!input.email_addresses?.length && !input.phone_numbers?.length && !input.addresses?.length)
      throw new ApiError(
        400,
        'A contact needs at least one of email_addresses, phone_numbers or addresses.',
        [{ domain: 'body', resource: 'email_addresses' }],
      );
    if (input.owner_id !== undefined && !this.data.users.has(input.owner_id))
      throw new ApiError(400, `Unknown owner_id ${input.owner_id}.`, [
        { domain: 'body', resource: 'owner_id' },
      ]);
    const clean: ContactInput = {
      ...input,
      email_addresses: input.email_addresses?.map((e, i) => ({
        ...e,
        field: e.field ?? (`EMAIL${Math.min(3, i + 1)}` as 'EMAIL1'),
      })),
      phone_numbers: input.phone_numbers?.map((p, i) => ({
        ...p,
        field: p.field ?? (`PHONE${Math.min(5, i + 1)}` as 'PHONE1'),
      })),
      company: input.company
        ? { id: input.company.id, company_name: input.company.company_name ?? '' }
        : undefined,
    };
    for (const k of Object.keys(clean) as Array<keyof ContactInput>)
      if (clean[k] === undefined) delete clean[k];
    const { contact, created } = this.data.upsertContact(
      clean,
      (option ?? undefined) as (typeof DUPLICATE_OPTIONS)[number] | undefined,
      req.now,
    );
    return { status: created ? 201 : 200, body: project<Contact>(contact, contactFields, fields) };
  }

  private createNote(contactId: string, req: Request): Reply {
    if (!this.data.contacts.has(contactId)) throw notFound('Contact', contactId);
    const fields = parseFields(req.query, customOnly);
    const input = parseBody(noteSchema, req.body);
    if (!input.title && !input.type)
      throw new ApiError(400, 'A note needs a title or a type.', [{ domain: 'body', resource: 'title' }]);
    if (!this.data.users.has(input.user_id))
      throw new ApiError(400, `Unknown user_id ${input.user_id}.`, [{ domain: 'body', resource: 'user_id' }]);
    const note = this.data.createNote(contactId, input, req.now);
    return { status: 201, body: project(note, customOnly, fields) };
  }
}

function match(pattern: readonly string[], parts: readonly string[]): string[] | undefined {
  if (pattern.length !== parts.length) return undefined;
  const params: string[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i] ?? '';
    const v = parts[i] ?? '';
    if (p === '{id}' || p === '{note}') params.push(v);
    else if (p !== v) return undefined;
  }
  return params;
}
