// Adapter: the Keap REST v2 endpoints the sandbox serves, over its dataset: every registry list's
// list, record and custom-field model routes, registered alike, and the writes (upsert, tags, notes).
import { z } from 'zod';
import { type HookEventKind, type ListEntry, type ModelObject, REGISTRY } from '#shared/keap/registry.ts';
import type { ContactInput, SandboxDataset } from './dataset.ts';
import { ApiError } from './errors.ts';
import { generatorOf, RESOURCE_TYPES, type ResourceType } from './generators.ts';
import { type FieldsSpec, Lister, type ListSpec, parseFields, project } from './listing.ts';
import { buildListSpecs, fieldsSpecOf, type ListSpecs } from './resources.ts';
import type { Contact } from './shapes.ts';
import type { ReadonlyTable } from './tables.ts';

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
  /** For a list page: the records in it (what the page latency model charges for). */
  listed?: number;
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

/** Keap's `CreateCustomFieldRequest`, the part the sandbox keeps (options, groups and tabs are not modelled). */
const customFieldSchema = z
  .object({
    label: z.string().min(1).max(255),
    field_type: z.enum(['TEXT', 'WHOLE_NUMBER', 'DATE', 'DROPDOWN', 'YES_NO']),
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

/** Told of every change a write makes (the sandbox's REST hooks announce them). */
export type ChangeListener = (type: ResourceType, event: HookEventKind, ids: string[], now: number) => void;

/** The v2 REST surface over one dataset. */
export class RestV2 {
  private readonly data: SandboxDataset;
  private readonly specs: ListSpecs;
  private readonly lister = new Lister();
  private readonly routes: Route[] = [];
  private readonly absentLastToken: boolean;

  private readonly onChange: ChangeListener;

  constructor(
    data: SandboxDataset,
    options: { lastPageToken: 'empty' | 'absent'; onChange?: ChangeListener },
  ) {
    this.data = data;
    this.onChange = options.onChange ?? (() => {});
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
    return { status: 200, body, listed: page.items.length };
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
    const fields = fieldsSpecOf(obj);
    const optional = fields?.optional ?? [];
    return {
      status: 200,
      body: {
        custom_fields: this.data.models[obj],
        optional_properties: typeof optional === 'function' ? fields?.allowed.filter(optional) : optional,
      },
    };
  }

  /** `GET` of a list, of one of its records and of its custom-field model, as the registry says. */
  private registerList(type: ResourceType): void {
    const entry: ListEntry = REGISTRY[type];
    const g = generatorOf(type);
    const spec = this.specs[type] as ListSpec<{ id: string }>;
    const table = this.data.table(type) as ReadonlyTable<{ id: string }>;
    const pattern = entry.path.replace(/^\/rest\/v2\//, '');
    const present = g.present;
    const shape = present
      ? (r: { id: string }) => present(this.data, r)
      : (r: { id: string }, f: ReadonlySet<string> | undefined) => project(r, spec.fields, f);
    const scope = g.scope;
    if (scope) {
      const parent = this.data.table(scope.parent);
      const what = generatorOf(scope.parent).entity ?? scope.parent;
      this.on('GET', pattern, ([id = ''], req) => {
        if (!parent.has(id)) throw notFound(what, id);
        const key = `${scope.parent}:${id}`;
        return this.list(spec, () => table.values(), req, { key, test: (r) => scope.test(r, id) }, shape);
      });
      return;
    }
    this.on('GET', pattern, (_p, req) => this.list(spec, () => table.values(), req, { key: '' }, shape));
    if (entry.customFieldModel) {
      this.on('GET', `${pattern}/model`, () => this.model(type as ModelObject));
      this.on('POST', `${pattern}/model/customFields`, (_p, req) => {
        const input = parseBody(customFieldSchema, req.body);
        return { status: 201, body: this.data.addCustomField(type as ModelObject, input) };
      });
    }
    const entity = g.entity;
    if (entity)
      this.on('GET', `${pattern}/{id}`, ([id = ''], req) =>
        this.one(table.get(id), entity, id, req, spec.fields),
      );
  }

  private register(): void {
    const d = this.data;
    const s = this.specs;
    for (const type of RESOURCE_TYPES) this.registerList(type);

    // Writes, and a contact's notes
    this.on('POST', 'contacts', (_p, req) => this.upsertContact(req));
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
      return this.one(note?.contact_id === id ? note : undefined, 'Note', noteId, req, s.notes.fields);
    });
    this.on('POST', 'tags/{id}/contacts:applyTags', ([id = ''], req) => {
      if (!d.tags.has(id)) throw notFound('Tag', id);
      const body = parseBody(applySchema, req.body);
      const results = d.applyTag(id, body.contact_ids, req.now);
      const applied = Object.keys(results).filter((c) => results[c] === 'SUCCESS');
      this.onChange(
        'tagApplications',
        'applied',
        applied.map((c) => `${id}:${c}`),
        req.now,
      );
      return { status: 200, body: { results } };
    });
    this.on('POST', 'tags/{id}/contacts:removeTags', ([id = ''], req) => {
      if (!d.tags.has(id)) throw notFound('Tag', id);
      const body = parseBody(applySchema, req.body);
      const removed = body.contact_ids.filter((c) => d.tagApplications.has(`${id}:${c}`));
      d.removeTag(id, body.contact_ids);
      this.onChange(
        'tagApplications',
        'removed',
        [...new Set(removed)].map((c) => `${id}:${c}`),
        req.now,
      );
      return { status: 204 };
    });
  }

  private upsertContact(req: Request): Reply {
    const option = req.query.get('duplicate_option');
    if (option !== null && !(DUPLICATE_OPTIONS as readonly string[]).includes(option))
      throw new ApiError(400, `Invalid duplicate_option "${option}": use ${DUPLICATE_OPTIONS.join(', ')}.`, [
        { domain: 'duplicate_option', resource: option },
      ]);
    const fields = parseFields(req.query, this.specs.contacts.fields);
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
    this.onChange('contacts', created ? 'add' : 'edit', [contact.id], req.now);
    return {
      status: created ? 201 : 200,
      body: project<Contact>(contact, this.specs.contacts.fields, fields),
    };
  }

  private createNote(contactId: string, req: Request): Reply {
    if (!this.data.contacts.has(contactId)) throw notFound('Contact', contactId);
    const fields = parseFields(req.query, this.specs.notes.fields);
    const input = parseBody(noteSchema, req.body);
    if (!input.title && !input.type)
      throw new ApiError(400, 'A note needs a title or a type.', [{ domain: 'body', resource: 'title' }]);
    if (!this.data.users.has(input.user_id))
      throw new ApiError(400, `Unknown user_id ${input.user_id}.`, [{ domain: 'body', resource: 'user_id' }]);
    const note = this.data.createNote(contactId, input, req.now);
    this.onChange('notes', 'add', [note.id], req.now);
    return { status: 201, body: project(note, this.specs.notes.fields, fields) };
  }
}

function match(pattern: readonly string[], parts: readonly string[]): string[] | undefined {
  if (pattern.length !== parts.length) return undefined;
  const params: string[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i] ?? '';
    const v = parts[i] ?? '';
    if (p.startsWith('{') && p.endsWith('}')) params.push(v);
    else if (p !== v) return undefined;
  }
  return params;
}
