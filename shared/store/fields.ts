// Domain: the field schemas of the state and mirror tables' items (zod), used both to check a caller's
// arguments before anything is written and to read stored items back. A bad argument is a
// StoreInputError naming the field; a bad stored item is the table helper's MalformedStoreItemError.
import { z } from 'zod';
import { StoreInputError } from './errors.ts';

/** Joins account and resource in partition keys; neither may contain it. */
export const KEY_SEPARATOR = '#';

const must = (error: string) => ({ error });

const NAME = 'must be a non-empty string of at most 200 characters.';
/** Account or resource name: non-empty, at most 200 characters, no `#`. */
export const nameField = z
  .string(must(NAME))
  .min(1, must(NAME))
  .max(200, must(NAME))
  .refine((v) => !v.includes(KEY_SEPARATOR), {
    error: `must not contain "${KEY_SEPARATOR}" (it separates key parts).`,
  });

const ID = 'must be a non-empty string of at most 1024 characters.';
/** Free-form key part (record id, run id, owner, idempotency key): non-empty, at most 1024 characters. */
export const idField = z.string(must(ID)).min(1, must(ID)).max(1024, must(ID));

const safeInt = (problem: string, min: 0 | 1) =>
  z.custom<number>((v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= min, {
    error: (issue) => `${problem}, got ${String(issue.input)}.`,
  });

/** Epoch milliseconds. */
export const epochMsField = safeInt('must be epoch milliseconds (a non-negative integer)', 0);
/** A positive number of milliseconds. */
export const durationMsField = safeInt('must be a positive number of milliseconds', 1);
/** A non-negative integer count. */
export const countField = safeInt('must be a non-negative integer', 0);

const TOKEN = 'must be null or a non-empty string of at most 32768 characters.';
/** A Keap page token, or null for the first page. */
export const pageTokenField = z.string(must(TOKEN)).min(1, must(TOKEN)).max(32_768, must(TOKEN)).nullable();

/** Free text stored for operators (reasons, error messages): cut to this length. */
export const MAX_TEXT = 2_000;

/** An optional stored attribute: absent and null both read as null. */
export const nullable = <T extends z.ZodType>(schema: T) => schema.nullish().transform((v) => v ?? null);

/** Checks one argument against its field schema; a failure is a StoreInputError naming `field`. */
export function checkInput<S extends z.ZodType>(schema: S, field: string, value: unknown): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw new StoreInputError(field, parsed.error.issues[0]?.message ?? 'is invalid.');
}

/** Epoch seconds, as DynamoDB's TTL attribute wants them. */
export function epochSeconds(ms: number): number {
  return Math.ceil(ms / 1000);
}

export const iso = (ms: number) => new Date(ms).toISOString();
