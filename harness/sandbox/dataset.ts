// Domain: the sandbox's deterministic Keap dataset (seeded), its writes and its scripted changes. What
// each list's records look like and how they change is its generator's (generators.ts); this class runs
// them the same way for every list.
import { type ListEntry, type ModelObject, REGISTRY } from '#shared/keap/registry.ts';
import { SandboxError, SandboxMutationError } from './errors.ts';
import {
  buildModels,
  DAY_MS,
  type GenContext,
  generatorOf,
  iso,
  primaryEmail,
  RESOURCE_TYPES,
  type RecordTypes,
  type ResourceType,
  SEED_ORDER,
  UPDATE_FIELD,
  userRef,
} from './generators.ts';
import { Prng } from './prng.ts';
import type {
  Company,
  Contact,
  CustomFieldMetaData,
  CustomFieldValue,
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
import { type ReadonlyTable, RecordTable } from './tables.ts';

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

/**
 * The live, in-memory Keap records of one sandbox. Read the tables freely; change them only through
 * the methods here (the REST routes and `mutate` do), so dependent records stay consistent.
 */
export class SandboxDataset implements GenContext {
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
    this.t = Object.fromEntries(RESOURCE_TYPES.map((type) => [type, new RecordTable(bump)])) as {
      [K in ResourceType]: RecordTable<RecordTypes[K]>;
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

  /** A list's table with its record type erased, for the code that treats every list alike. */
  private anyTable(type: ResourceType): RecordTable<{ id: string }> {
    return this.t[type] as RecordTable<{ id: string }>;
  }

  // ---------------------------------------------------------------- generation

  /**
   * Seeds every list in `SEED_ORDER` from one generator, so the same seed gives the same records:
   * a counted list gets `max(min, round(contacts * estimateShare))` records, each with a create time
   * in the history and an update time after it, both before the data end.
   */
  private generate(rng: Prng, n: number): void {
    const end = this.dataEnd;
    const start = end - HISTORY_DAYS * DAY_MS;
    const times = (): [number, number] => {
      const created = start + Math.floor(rng.next() * (end - start - DAY_MS));
      const updated = created + Math.floor(rng.next() * (end - created - 1));
      return [created, updated];
    };
    for (const type of SEED_ORDER) {
      const g = generatorOf(type);
      if ('custom' in g.seed) {
        g.seed.custom(this, rng, end);
        continue;
      }
      if (!('make' in g)) continue;
      const share = (REGISTRY[type] as ListEntry).sync?.estimateShare;
      if (share === undefined)
        throw new SandboxError(
          `The ${type} generator seeds by count, but the registry gives ${type} no estimateShare.`,
        );
      const count = Math.max(g.seed.min, Math.round(n * share));
      const table = this.anyTable(type);
      for (let i = 0; i < count; i++) {
        const id = table.nextId();
        const [created, updated] = times();
        table.put(g.make(this, rng, id, created, updated, i));
      }
    }
  }

  // ---------------------------------------------------------------- writes (REST routes)

  /** Applies a tag to a contact, keeping the contact's `tag_ids` in step (generators use it too). */
  putApplication(tagId: string, contactId: string, appliedTime: string): void {
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

  dropApplication(tagId: string, contactId: string): boolean {
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

  /**
   * `POST /rest/v2/{object}/model/customFields`: adds a field to an object's model (lists sharing a
   * model, notes and tasks, both get it). Its id is new across every model; its `field_name` is the
   * label in camel case, numbered when taken (Keap's own names look like `favoriteColor1`).
   */
  addCustomField(
    obj: ModelObject,
    input: { label: string; field_type: CustomFieldMetaData['field_type'] },
  ): CustomFieldMetaData {
    const model = this.models[obj] as CustomFieldMetaData[];
    const all = Object.values(this.models).flat();
    const id = String(Math.max(0, ...all.map((f) => Number(f.id) || 0)) + 1);
    const words = input.label
      .replace(/[^A-Za-z0-9 ]/g, ' ')
      .trim()
      .split(/\s+/)
      .filter(Boolean);
    const base =
      words
        .map((w, i) => (i === 0 ? w.toLowerCase() : w[0]?.toUpperCase() + w.slice(1).toLowerCase()))
        .join('') || 'customField';
    const taken = new Set(model.map((f) => f.field_name));
    let name = base;
    for (let n = 1; taken.has(name); n++) name = `${base}${n}`;
    const field: CustomFieldMetaData = {
      id,
      label: input.label,
      field_name: name,
      field_type: input.field_type,
      record_type: model[0]?.record_type ?? 'CONTACT',
    };
    model.push(field);
    this.version++;
    return field;
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
      assigned_to_user: userRef(this, input.user_id),
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
    const table = this.anyTable(type);
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
    const mark = ` (rev ${rng.int(1, 9999)})`;
    const table = this.anyTable(type);
    const r = table.get(id);
    if (r) table.put({ ...r, ...generatorOf(type).touch(r, mark, rng), [UPDATE_FIELD[type]]: iso(now) });
  }

  private createOne(type: ResourceType, now: number, rng: Prng): string | undefined {
    const g = generatorOf(type);
    for (const what of g.needs ?? [])
      if (this.t[what].size === 0)
        throw new SandboxMutationError(`Cannot create ${type}: there are no ${what}.`);
    if ('create' in g) return g.create(this, rng, now);
    const table = this.anyTable(type);
    const r = g.make(this, rng, table.nextId(), now, now);
    table.put(r);
    return r.id;
  }

  private deleteOne(type: ResourceType, id: string): void {
    const table = this.anyTable(type);
    const r = table.get(id);
    if (r) generatorOf(type).onDelete?.(this, r);
    table.delete(id);
  }
}
