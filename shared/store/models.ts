// Adapter: each list's custom-field model in the state table (`<account>#<resource>`, `model`): the
// fields Keap's `GET /rest/v2/<list>/model` returned (id, field_name, label, type) and when. A write
// never replaces a model fetched later (two workers refreshing at once keep the newer one).
import { z } from 'zod';
import { checkInput, epochMsField, iso } from './fields.ts';
import type { StateTable } from './table.ts';
import { stateKey } from './tables.ts';

/** One custom field of a list's model. */
export interface CustomFieldDef {
  /** Keap's id, as records carry it in `custom_fields[].id`. */
  id: string;
  /** Keap's `field_name` (the database column name): the key of the named form. */
  name: string;
  label: string;
  /** Keap's `field_type` (TEXT, WHOLE_NUMBER, DROPDOWN, ...), when it gave one. */
  type: string | null;
}

/** A list's model as stored. */
export interface StoredModel {
  account: string;
  resource: string;
  fields: CustomFieldDef[];
  /** When it was read from Keap (epoch ms, and ISO). */
  fetchedAtMs: number;
  fetchedAt: string;
}

const defSchema = z.object({
  id: z.string().min(1),
  name: z.string().min(1),
  label: z.string(),
  type: z.string().nullable(),
});

const modelItemSchema = z.object({
  account: z.string(),
  resource: z.string(),
  fields: z.array(defSchema),
  fetchedAtMs: z.number(),
  fetchedAt: z.string(),
});

export class DynamoModelStore {
  private readonly table: StateTable;

  constructor(table: StateTable) {
    this.table = table;
  }

  /** The stored model of (account, resource), or undefined when none was ever stored. */
  async get(account: string, resource: string): Promise<StoredModel | undefined> {
    return this.table.get(stateKey.model(account, resource), modelItemSchema);
  }

  /**
   * Stores the model read from Keap at `fetchedAtMs`, unless the stored one was read later. True when
   * written; false when a newer one is kept.
   */
  async put(
    account: string,
    resource: string,
    fields: readonly CustomFieldDef[],
    fetchedAtMs: number,
  ): Promise<boolean> {
    const key = stateKey.model(account, resource);
    checkInput(epochMsField, 'fetchedAtMs', fetchedAtMs);
    const checked = checkInput(
      z.array(defSchema, { error: 'must be a list of {id, name, label, type}.' }),
      'fields',
      fields,
    );
    return this.table.put(
      'putModel',
      key,
      { account, resource, fields: checked, fetchedAtMs, fetchedAt: iso(fetchedAtMs) },
      {
        ConditionExpression: 'attribute_not_exists(#pk) OR #fetched <= :fetched',
        ExpressionAttributeNames: { '#pk': 'pk', '#fetched': 'fetchedAtMs' },
        ExpressionAttributeValues: { ':fetched': fetchedAtMs },
      },
    );
  }
}

/** A record's custom fields by name, as the mirror and the events carry them beside Keap's raw form. */
export interface NamedCustomFields {
  /** `{<field_name>: value}`: Keap's `content` of each field the model names. */
  values: Record<string, unknown>;
  /** `{<field_name>: {id, label}}` of the same fields. */
  info: Record<string, { id: string; label: string }>;
}
