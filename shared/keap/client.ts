// Use case: the Keap REST client. Typed reads (paged, incremental) and writes on REST v2, v1 only for
// REST hooks. It cannot exist without a quota ledger, a tenant and a key; the key never leaves it.
import { createHash } from 'node:crypto';
import { inspect } from 'node:util';
import { z } from 'zod';
import type { Log } from '../log/index.ts';
import type { Priority } from '../quota/index.ts';
import {
  KeapArgumentError,
  KeapConfigError,
  NotFoundError,
  type RequestContext,
  UnexpectedResponseError,
} from './errors.ts';
import { type Page, type PageOptionsFor, type ReadResult, readPages } from './paging.ts';
import { type ListEntry, REGISTRY } from './registry.ts';
import {
  applyTagsResponseSchema,
  type Contact,
  fieldsQuery,
  MODEL_OBJECTS,
  type ModelObject,
  type Note,
  type ObjectModel,
  objectModelSchema,
  type RecordTypes,
  type ResourceName,
  type RestHook,
  restHookSchema,
} from './resources.ts';
import {
  type KeapClientSettings,
  type KeapClientSettingsInput,
  parseKeapClientSettings,
} from './settings.ts';
import {
  type CallResult,
  type CallSpec,
  type QuotaLedgerPort,
  SlotPool,
  silentLogger,
  Transport,
  type TransportStats,
} from './transport.ts';

export interface KeapClientOptions {
  /** The Personal Access Token or Service Account Key. Kept in a private field; never logged or serialized. */
  apiKey: string;
  /** Keap tenant (application) the key belongs to, as the ledger names it. */
  tenant: string;
  /** Every request passes through it. */
  ledger: QuotaLedgerPort;
  settings?: KeapClientSettingsInput;
  /** Where retries, 429s and ledger trouble are reported. Default: nowhere (pass one in production). */
  logger?: Log;
  /** Key id for the ledger, logs and errors; default `k` + 16 hex of the key's SHA-256. */
  keyId?: string;
}

/** Per-call ledger options. */
export interface CallOptions {
  /** Default: `writePriority` for writes, `readPriority` for reads. */
  priority?: Priority;
  waitBudgetMs?: number;
}

/** Lists whose records can be read by id (every list but tag applications, which are read per tag). */
export type ByIdResource = Exclude<ResourceName, 'tagApplications'>;

export interface ByIdResult<T> {
  /** The records Keap still has, in the order it returned them. */
  records: T[];
  /** Requested ids Keap no longer has (deleted, or never existed). */
  missing: string[];
  /** HTTP requests the read took, retries included. */
  requests: number;
}

export type DuplicateOption = 'Email' | 'EmailAndName' | 'EmailAndNameAndCompany';

/** Contact body for create/update (v2 `CreateUpdateContactRequest`); arrays replace wholesale. */
export interface ContactInput {
  given_name?: string;
  family_name?: string;
  email_addresses?: Array<{ email: string; field: string; [k: string]: unknown }>;
  phone_numbers?: Array<{ number: string; field: string; [k: string]: unknown }>;
  addresses?: Array<Record<string, unknown>>;
  company?: { id: string };
  custom_fields?: Array<{ id: string; content: unknown }>;
  [field: string]: unknown;
}

export interface NoteInput {
  /** The Keap user the note is recorded for (required). */
  user_id: string;
  /** `title` or `type` is required. */
  title?: string;
  type?: string;
  text?: string;
  is_pinned?: boolean;
  custom_fields?: Array<{ id: string; content: unknown }>;
}

export interface TagChangeResult {
  /** Per contact id, Keap's result (apply only; remove answers 204). */
  results: Record<string, string>;
  batches: number;
  contacts: number;
}

const TENANT_RE = /^[A-Za-z0-9._:@-]{1,100}$/;
const KEY_ID_RE = /^[A-Za-z0-9._:@-]{1,24}$/;
/** A header value: visible ASCII only (anything else would make fetch echo it in an error). */
const API_KEY_RE = /^[\x21-\x7e]{8,4096}$/;

/** The ledger's id for a key: `k` + the first 16 hex digits of its SHA-256. Never the key itself. */
export function deriveKeyId(apiKey: string): string {
  return `k${createHash('sha256').update(apiKey).digest('hex').slice(0, 16)}`;
}

const noteInputSchema = z
  .object({
    user_id: z.union([z.string().min(1), z.number()]).transform(String),
    title: z.string().optional(),
    type: z.string().optional(),
    text: z.string().optional(),
    is_pinned: z.boolean().optional(),
    custom_fields: z.array(z.object({ id: z.string(), content: z.unknown() })).optional(),
  })
  .refine((n) => Boolean(n.title || n.type), { message: 'a note needs a title or a type', path: ['title'] });

const hookInputSchema = z.object({
  eventKey: z.string().regex(/^[a-zA-Z]+\.[a-zA-Z]+$/, 'must look like "contact.add"'),
  // https, as Keap requires; plain http only to this machine (the local receiver and the sandbox).
  hookUrl: z
    .url()
    .refine(
      (u) => /^https:\/\//.test(u) || /^http:\/\/(127\.0\.0\.1|localhost)(:[0-9]+)?\//.test(u),
      'must be an https URL (plain http only to 127.0.0.1 or localhost)',
    ),
});

export class KeapClient {
  readonly #transport: Transport;
  readonly tenant: string;
  readonly keyId: string;
  readonly settings: KeapClientSettings;

  constructor(options: KeapClientOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new KeapConfigError('options', 'the client needs { apiKey, tenant, ledger }.');
    }
    const { apiKey, tenant, ledger } = options;
    if (typeof apiKey !== 'string' || apiKey.length === 0) {
      throw new KeapConfigError(
        'apiKey',
        'is required: pass the Personal Access Token or Service Account Key.',
      );
    }
    if (!API_KEY_RE.test(apiKey)) {
      throw new KeapConfigError(
        'apiKey',
        'must be 8 to 4096 visible ASCII characters with no spaces; check that the stored key was not truncated or wrapped.',
      );
    }
    if (typeof tenant !== 'string' || !TENANT_RE.test(tenant)) {
      throw new KeapConfigError('tenant', 'must be 1-100 characters of letters, digits and . _ : @ -');
    }
    if (
      typeof ledger !== 'object' ||
      ledger === null ||
      typeof ledger.acquire !== 'function' ||
      typeof ledger.waitForSlot !== 'function' ||
      typeof ledger.reportResponse !== 'function' ||
      typeof ledger.report429 !== 'function' ||
      typeof ledger.now !== 'function'
    ) {
      throw new KeapConfigError(
        'ledger',
        'is required: every Keap call must pass through the quota ledger (a QuotaLedger).',
      );
    }
    const keyId = options.keyId ?? deriveKeyId(apiKey);
    if (!KEY_ID_RE.test(keyId)) {
      throw new KeapConfigError('keyId', 'must be 1-24 characters of letters, digits and . _ : @ -');
    }
    if (options.keyId !== undefined && apiKey.includes(options.keyId) && options.keyId.length >= 8) {
      throw new KeapConfigError('keyId', 'must not be part of the API key itself.');
    }
    const logger = options.logger ?? silentLogger;
    for (const level of ['debug', 'info', 'warn', 'error'] as const) {
      if (typeof logger[level] !== 'function') {
        throw new KeapConfigError('logger', `must have a ${level}(message, fields) function.`);
      }
    }
    this.settings = parseKeapClientSettings(options.settings);
    this.tenant = tenant;
    this.keyId = keyId;
    this.#transport = new Transport({ apiKey, keyId, tenant, settings: this.settings, ledger, logger });
  }

  /** Requests sent, retries, 429s and ledger use so far. */
  get stats(): Readonly<TransportStats> {
    return { ...this.#transport.stats };
  }

  toJSON(): Record<string, unknown> {
    return { tenant: this.tenant, keyId: this.keyId, baseUrl: this.settings.baseUrl };
  }

  [inspect.custom](): string {
    return `KeapClient { tenant: '${this.tenant}', keyId: '${this.keyId}', baseUrl: '${this.settings.baseUrl}' }`;
  }

  // ---- Reads ------------------------------------------------------------------------------------

  /**
   * Pages through a list to its end (largest page size), or incrementally from `since`. Each page
   * carries its records, the token to resume from and the high-water mark (next cursor).
   */
  pages<R extends ResourceName>(
    resource: R,
    ...args: R extends 'tagApplications' ? [options: PageOptionsFor<R>] : [options?: PageOptionsFor<R>]
  ): AsyncGenerator<Page<RecordTypes[R]>, void, undefined> {
    const options = (args[0] ?? {}) as PageOptionsFor<R>;
    return readPages(this.#transport, resource, options);
  }

  /** Reads every page (see `pages`) and returns the records with the high-water mark. */
  async readAll<R extends ResourceName>(
    resource: R,
    ...args: R extends 'tagApplications' ? [options: PageOptionsFor<R>] : [options?: PageOptionsFor<R>]
  ): Promise<ReadResult<RecordTypes[R]>> {
    const options = (args[0] ?? {}) as PageOptionsFor<R>;
    const records: RecordTypes[R][] = [];
    let highWaterMark: string | undefined;
    let pages = 0;
    let requests = 0;
    for await (const page of readPages(this.#transport, resource, options)) {
      records.push(...page.records);
      highWaterMark = page.highWaterMark;
      pages++;
      requests += page.requests;
    }
    return { records, highWaterMark, pages, requests };
  }

  /**
   * Reads records by id: through the list's id filter (`ids`, `tag_ids`, ...; `idBatchSize` ids per
   * call) where Keap has one, otherwise one `GET {list}/{id}` each, `byIdConcurrency` at a time. Every
   * request goes through the ledger. Ids Keap does not return are reported as `missing`.
   */
  async getByIds<R extends ByIdResource>(
    resource: R,
    ids: readonly string[],
    options: CallOptions = {},
  ): Promise<ByIdResult<RecordTypes[R]>> {
    const entry = REGISTRY[resource] as ListEntry | undefined;
    if (!entry || (resource as string) === 'tagApplications') {
      throw new KeapArgumentError('resource', `"${String(resource)}" cannot be read by id.`);
    }
    if (!Array.isArray(ids)) throw new KeapArgumentError('ids', 'must be an array of ids.');
    const wanted = [...new Set(ids.map((i) => requireId('ids', i)))];
    for (const i of wanted)
      if (!/^[0-9]{1,20}$/.test(i)) throw new KeapArgumentError('ids', `holds "${i}", not a Keap id.`);
    const found = new Map<string, RecordTypes[R]>();
    let requests = 0;
    const idFilter = entry.idFilter;
    if (idFilter !== undefined) {
      const size = this.settings.idBatchSize;
      for (let i = 0; i < wanted.length; i += size) {
        const batch = wanted.slice(i, i + size);
        const pages = readPages(this.#transport, resource, {
          filter: { [idFilter]: batch.join(',') },
          pageSize: entry.maxPageSize,
          priority: options.priority,
          waitBudgetMs: options.waitBudgetMs,
        } as PageOptionsFor<R>);
        for await (const page of pages) {
          requests += page.requests;
          for (const r of page.records) found.set(r.id, r);
        }
      }
    } else {
      const schema = entry.schema as unknown as z.ZodType<RecordTypes[R]>;
      // The list's own `fields`, so the update time and custom fields come back as a page has them.
      const fields = fieldsQuery(entry.fields?.style ?? 'comma', entry.fields?.request);
      let next = 0;
      let failure: { error: unknown } | undefined;
      const worker = async () => {
        while (failure === undefined && next < wanted.length) {
          const id = wanted[next++] as string;
          const path = `${entry.path}/${encodeURIComponent(id)}`;
          try {
            const r = await this.#call(
              { method: 'GET', path, query: { fields }, retry: 'safe' },
              options,
              'read',
            );
            requests += r.attempts;
            found.set(id, this.#parse(schema, r, path, 'GET'));
          } catch (error) {
            if (error instanceof NotFoundError) {
              requests += error.attempts || 1;
              continue;
            }
            failure ??= { error };
          }
        }
      };
      const lanes = Math.min(this.settings.byIdConcurrency, wanted.length);
      await Promise.all(Array.from({ length: lanes }, worker));
      if (failure) throw failure.error;
    }
    const records = [...found.values()];
    return { records, missing: wanted.filter((i) => !found.has(i)), requests };
  }

  /** The custom-field model of an object (`GET /rest/v2/{object}/model`). */
  async getModel(object: ModelObject, options: CallOptions = {}): Promise<ObjectModel> {
    if (!(MODEL_OBJECTS as readonly string[]).includes(object)) {
      throw new KeapArgumentError('object', `must be one of ${MODEL_OBJECTS.join(', ')}.`);
    }
    const path = `/rest/v2/${object}/model`;
    const r = await this.#call({ method: 'GET', path, retry: 'safe' }, options, 'read');
    return this.#parse(objectModelSchema, r, path, 'GET');
  }

  // ---- Writes -----------------------------------------------------------------------------------

  /**
   * Creates or updates a contact, matched by `duplicateOption` (default Email): safe to retry, so it is
   * retried on transient failures. `created` is true when Keap answered 201.
   */
  async upsertContact(
    contact: ContactInput,
    options: CallOptions & { duplicateOption?: DuplicateOption; fields?: readonly string[] } = {},
  ): Promise<{ contact: Contact; created: boolean }> {
    const duplicateOption = options.duplicateOption ?? 'Email';
    if (!['Email', 'EmailAndName', 'EmailAndNameAndCompany'].includes(duplicateOption)) {
      throw new KeapArgumentError(
        'duplicateOption',
        'must be Email, EmailAndName or EmailAndNameAndCompany.',
      );
    }
    if (typeof contact !== 'object' || contact === null) {
      throw new KeapArgumentError('contact', 'must be an object.');
    }
    if (!contact.email_addresses?.some((e) => typeof e.email === 'string' && e.email !== '')) {
      throw new KeapArgumentError(
        'contact.email_addresses',
        `needs an email address: duplicate_option ${duplicateOption} matches on it (without one Keap would create a duplicate).`,
      );
    }
    const path = '/rest/v2/contacts';
    const r = await this.#call(
      {
        method: 'POST',
        path,
        query: { duplicate_option: duplicateOption, fields: options.fields?.join(',') },
        body: contact,
        retry: 'safe',
      },
      options,
      'write',
    );
    return { contact: this.#parse(REGISTRY.contacts.schema, r, path, 'POST'), created: r.status === 201 };
  }

  /** Applies a tag to contacts, `tagBatchSize` ids per call (repeatable, so retried on transient failures). */
  async applyTags(
    tagId: string,
    contactIds: readonly string[],
    options: CallOptions = {},
  ): Promise<TagChangeResult> {
    return this.#changeTags('applyTags', tagId, contactIds, options);
  }

  /** Removes a tag from contacts, `tagBatchSize` ids per call. */
  async removeTags(
    tagId: string,
    contactIds: readonly string[],
    options: CallOptions = {},
  ): Promise<TagChangeResult> {
    return this.#changeTags('removeTags', tagId, contactIds, options);
  }

  /**
   * Creates a note on a contact. Never retried on 5xx, network errors or timeouts (Keap takes no
   * idempotency key): such failures surface as RetryableError with `outcomeUnknown` true.
   */
  async createNote(contactId: string, note: NoteInput, options: CallOptions = {}): Promise<Note> {
    const id = requireId('contactId', contactId);
    const body = noteInputSchema.safeParse(note);
    if (!body.success) {
      const issue = body.error.issues[0];
      throw new KeapArgumentError(
        `note.${issue?.path.join('.') ?? ''}`,
        `${issue?.message ?? 'is invalid'}.`,
      );
    }
    const path = `/rest/v2/contacts/${encodeURIComponent(id)}/notes`;
    const r = await this.#call({ method: 'POST', path, body: body.data, retry: 'create' }, options, 'write');
    return this.#parse(REGISTRY.notes.schema, r, path, 'POST');
  }

  // ---- REST hooks (v1 only: v2 has none) ----------------------------------------------------------

  async listHooks(options: CallOptions = {}): Promise<RestHook[]> {
    const path = '/rest/v1/hooks';
    const r = await this.#call({ method: 'GET', path, retry: 'safe' }, options, 'read');
    return this.#parse(restHookSchema.array(), r, path, 'GET');
  }

  /** Subscribes `hookUrl` (https) to `eventKey` (e.g. `contact.add`). A create: never blindly retried. */
  async createHook(
    hook: { eventKey: string; hookUrl: string },
    options: CallOptions = {},
  ): Promise<RestHook> {
    const body = hookInputSchema.safeParse(hook);
    if (!body.success) {
      const issue = body.error.issues[0];
      throw new KeapArgumentError(
        `hook.${issue?.path.join('.') ?? ''}`,
        `${issue?.message ?? 'is invalid'}.`,
      );
    }
    const path = '/rest/v1/hooks';
    const r = await this.#call({ method: 'POST', path, body: body.data, retry: 'create' }, options, 'write');
    return this.#parse(restHookSchema, r, path, 'POST');
  }

  async deleteHook(key: string, options: CallOptions = {}): Promise<void> {
    const path = `/rest/v1/hooks/${encodeURIComponent(requireId('key', key))}`;
    await this.#call({ method: 'DELETE', path, retry: 'safe' }, options, 'write');
  }

  /** Asks Keap to verify the hook now (it sends X-Hook-Secret to the hook URL). */
  async verifyHook(key: string, options: CallOptions = {}): Promise<RestHook> {
    const path = `/rest/v1/hooks/${encodeURIComponent(requireId('key', key))}/verify`;
    const r = await this.#call({ method: 'POST', path, retry: 'safe' }, options, 'write');
    return this.#parse(restHookSchema, r, path, 'POST');
  }

  // ---- Internals --------------------------------------------------------------------------------

  async #changeTags(
    action: 'applyTags' | 'removeTags',
    tagId: string,
    contactIds: readonly string[],
    options: CallOptions,
  ): Promise<TagChangeResult> {
    const tag = requireId('tagId', tagId);
    if (!Array.isArray(contactIds)) throw new KeapArgumentError('contactIds', 'must be an array of ids.');
    const ids = [...new Set(contactIds.map((c) => requireId('contactIds', String(c))))];
    const path = `/rest/v2/tags/${encodeURIComponent(tag)}/contacts:${action}`;
    const size = this.settings.tagBatchSize;
    const pool = new SlotPool();
    const results: Record<string, string> = {};
    let batches = 0;
    try {
      for (let i = 0; i < ids.length; i += size) {
        const batch = ids.slice(i, i + size);
        const r = await this.#call(
          { method: 'POST', path, body: { contact_ids: batch }, retry: 'safe', pool },
          options,
          'write',
        );
        batches++;
        if (action === 'applyTags' && r.json !== undefined) {
          const parsed = this.#parse(applyTagsResponseSchema, r, path, 'POST');
          Object.assign(results, parsed.results ?? {});
        }
      }
    } finally {
      this.#transport.release(pool.slots.splice(0));
    }
    return { results, batches, contacts: ids.length };
  }

  #call(
    spec: Omit<CallSpec, 'priority' | 'waitBudgetMs'>,
    options: CallOptions,
    kind: 'read' | 'write',
  ): Promise<CallResult> {
    const s = this.settings;
    return this.#transport.call({
      ...spec,
      priority: options.priority ?? (kind === 'read' ? s.readPriority : s.writePriority),
      waitBudgetMs: options.waitBudgetMs ?? s.waitBudgetMs,
      pool: spec.pool ?? new SlotPool(),
    });
  }

  #parse<T>(schema: z.ZodType<T>, r: CallResult, path: string, method: string): T {
    const parsed = schema.safeParse(r.json);
    if (parsed.success) return parsed.data;
    const issue = parsed.error.issues[0];
    const ctx: RequestContext = {
      method,
      path,
      keyId: this.keyId,
      tenant: this.tenant,
      attempts: r.attempts,
      status: r.status,
      requestId: r.requestId,
    };
    const at = issue?.path.length ? issue.path.map(String).join('.') : 'the body';
    throw new UnexpectedResponseError(ctx, `${at}: ${issue?.message ?? 'unexpected shape'}`);
  }
}

function requireId(name: string, value: unknown): string {
  if (typeof value !== 'string' || value === '' || value.length > 200) {
    throw new KeapArgumentError(name, 'must be a non-empty id string.');
  }
  return value;
}
