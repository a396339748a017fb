// Domain: the store's settings, validated once at construction (a bad one is named in the error).
import { z } from 'zod';
import { StoreConfigError } from './errors.ts';

const positiveInt = z.number().int().positive();

export const mirrorSettingsSchema = z
  .object({
    /** Conditional puts in flight at once per upsertMany call (BatchWriteItem cannot carry conditions). */
    writeConcurrency: positiveInt.max(256).default(16),
    /** Items per Query page when iterating or counting. */
    pageSize: positiveInt.max(1_000).default(500),
    /** Days a tombstone (a record Keap deleted) is kept before its TTL attribute lets DynamoDB remove it. */
    tombstoneDays: positiveInt.max(3_650).default(30),
  })
  .strict();

export const stateSettingsSchema = z
  .object({
    /**
     * An in-progress write record older than this is judged abandoned: an idempotent write may be taken
     * over, a create reports its outcome unknown. Keep it above the longest Lambda run (15 minutes).
     */
    writeTakeoverAfterMs: positiveInt.default(16 * 60_000),
    /** Write records carry a TTL attribute this far in the future (AWS deletes them some time after). */
    writeRetentionMs: positiveInt.default(30 * 86_400_000),
    /** Expired leases carry a TTL attribute this long after their expiry, so AWS may clean them up. */
    leaseRetentionMs: positiveInt.default(86_400_000),
  })
  .strict();

export type MirrorSettingsInput = z.input<typeof mirrorSettingsSchema>;
export type MirrorSettings = z.output<typeof mirrorSettingsSchema>;
export type StateSettingsInput = z.input<typeof stateSettingsSchema>;
export type StateSettings = z.output<typeof stateSettingsSchema>;

function parse<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const parsed = schema.safeParse(input ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key =
      issue && issue.code === 'unrecognized_keys' ? issue.keys[0] : issue ? issue.path.join('.') : undefined;
    throw new StoreConfigError(key || '(settings)', `${issue?.message ?? 'invalid value'}.`);
  }
  return parsed.data;
}

export function parseMirrorSettings(input: unknown): MirrorSettings {
  return parse(mirrorSettingsSchema, input);
}

export function parseStateSettings(input: unknown): StateSettings {
  return parse(stateSettingsSchema, input);
}
