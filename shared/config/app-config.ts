// Domain: keap-sync's one configuration file (accounts, resources, schedules, limits, concurrency),
// validated once at start-up with errors that name the setting and say what is allowed. The local
// runtime, the Lambdas and the CDK stack all read this same shape.
import { z } from 'zod';
import { SYNC_RESOURCES } from '../jobs/schema.ts';
import { parseKeapClientSettings, timeoutLeavesNoRetry } from '../keap/settings.ts';
import { ledgerSettingsSchema, parseLedgerSettings } from '../quota/config.ts';

const resourceScheduleSchema = z
  .object({
    /** Minutes between incremental syncs of this resource. */
    everyMinutes: z.number().int().min(1).max(10_080),
    /** Run a full refresh instead of an incremental read (for lists Keap cannot filter, say). */
    mode: z.enum(['incremental', 'full']).default('incremental'),
  })
  .strict();

export const accountSchema = z
  .object({
    /** Your name for the account: 1-40 lower-case letters, digits, dashes. Used in keys and logs. */
    id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,39}$/, 'use 1-40 lower-case letters, digits and dashes'),
    /** Keap tenant (application) id, e.g. "ab103" or the x-keap-tenant-id value. */
    tenant: z
      .string()
      .regex(/^[A-Za-z0-9._:@-]{1,100}$/, 'use the Keap tenant id, e.g. ab103.infusionsoft.com'),
    /** Secrets Manager secret (name or ARN) whose value is the key, or JSON {"apiKey": "..."}. */
    secretId: z.string().min(1).max(2048),
    resources: z
      .partialRecord(z.enum(SYNC_RESOURCES), resourceScheduleSchema)
      .refine((r) => Object.keys(r).length > 0, 'list at least one resource to sync'),
  })
  .strict();

export const appConfigSchema = z
  .object({
    accounts: z.array(accountSchema).min(1, 'configure at least one account'),
    /** Quota ledger settings (every limit defaults to Keap's documented value). */
    limits: ledgerSettingsSchema.omit({ tableName: true }).partial().default({}),
    keap: z
      .object({
        /** Keap's API base; the sandbox's baseUrl locally. */
        baseUrl: z.url().default('https://api.infusionsoft.com/crm'),
        /** Per-request timeout; must leave room for a retry inside the client's 30 s retry budget. */
        timeoutMs: z.number().int().min(1_000).max(120_000).default(10_000),
      })
      .strict()
      .default({ baseUrl: 'https://api.infusionsoft.com/crm', timeoutMs: 10_000 }),
    worker: z
      .object({
        /** Lambda: SQS batch size; local: messages per receive. */
        batchSize: z.number().int().min(1).max(10).default(5),
        /** Lambda: maximum concurrency of the event source; local: parallel invocations per process. */
        concurrency: z.number().int().min(2).max(1_000).default(4),
        /** Lambda timeout, seconds (the queue's visibility timeout is 6x this). */
        timeoutSeconds: z.number().int().min(10).max(900).default(120),
        /** Stop paging when less than this much invocation time is left, and continue in a new message. */
        safetyMarginMs: z.number().int().min(1_000).default(15_000),
        /** Longest a worker waits for its ledger slot before deferring the job through the queue. */
        waitBudgetMs: z.number().int().min(0).max(10_000).default(2_000),
        /** How long a key read from Secrets Manager is trusted before it is read again. */
        secretMaxAgeMs: z.number().int().min(1_000).default(300_000),
        /** Lease on (account, resource) while a sync job is queued or running; expires if a worker dies. */
        leaseTtlMs: z.number().int().min(10_000).default(900_000),
        /** Receives after which a failing message goes to the dead-letter queue. */
        maxReceiveCount: z.number().int().min(1).max(1_000).default(5),
        /**
         * Transient failures in a row (Keap timeout, network, 5xx, unreadable body, ledger or store
         * unavailable) after which a job is dead-lettered (`retries-exhausted`); each one before that
         * comes back after an exponential backoff of seconds. 8 spans 1.5 to 3 minutes of backoff (1, 2,
         * 4 ... s, capped at 60 s, with jitter), so a dependency down for a minute is ridden out; 5 spanned
         * only 15-31 s, and the 60 s DynamoDB drill dead-lettered jobs with it.
         */
        maxRetries: z.number().int().min(0).max(50).default(8),
      })
      .strict()
      .prefault({}),
    mirror: z
      .object({
        /** Days a tombstone (a record Keap deleted) is kept before DynamoDB's TTL may remove it. */
        tombstoneDays: z.number().int().min(1).max(3_650).default(30),
      })
      .strict()
      .prefault({}),
    scheduler: z
      .object({
        /** Minutes between scheduler runs (EventBridge Scheduler rate; the local loop's interval). */
        everyMinutes: z.number().int().min(1).max(1_440).default(5),
        /** Keep at least this many calls of the day's bulk budget for incremental syncs. */
        reserveCallsForIncremental: z.number().int().min(0).default(200),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.accounts.forEach((a, i) => {
      if (seen.has(a.id)) {
        ctx.addIssue({
          code: 'custom',
          path: ['accounts', i, 'id'],
          message: `account id "${a.id}" is used twice`,
        });
      }
      seen.add(a.id);
    });
  });

export type AppConfig = z.output<typeof appConfigSchema>;
export type AppConfigInput = z.input<typeof appConfigSchema>;
export type AccountConfig = AppConfig['accounts'][number];

/** The configuration is invalid; `setting` is the dotted path of the first problem. */
export class ConfigError extends Error {
  readonly setting: string;
  readonly problems: string[];
  constructor(setting: string, problems: string[]) {
    super(
      `Invalid keap-sync configuration: ${problems.join('; ')}. Fix the setting and start again ` +
        '(see "Configuration" in the README for every setting and what it allows).',
    );
    this.name = 'ConfigError';
    this.setting = setting;
    this.problems = problems;
  }
}

/** Validates a parsed configuration; throws ConfigError naming each bad setting. */
export function parseAppConfig(input: unknown, source = 'configuration'): AppConfig {
  const parsed = appConfigSchema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues.slice(0, 8).map((i) => {
      const path = i.path.map(String).join('.');
      const name = path || (i.code === 'unrecognized_keys' ? (i.keys?.join(', ') ?? '') : '(root)');
      const extra = i.code === 'unrecognized_keys' ? `unknown setting(s) ${i.keys?.join(', ')}` : i.message;
      return `${source}: ${name}: ${extra}`;
    });
    const first = parsed.error.issues[0];
    throw new ConfigError(first ? first.path.map(String).join('.') || '(root)' : '(root)', problems);
  }
  const config = parsed.data;
  // The ledger validates its own numbers (margin below the spike interval, item size, ...).
  try {
    parseLedgerSettings({ tableName: 'check', ...config.limits });
  } catch (err) {
    const setting = (err as { setting?: string }).setting;
    throw new ConfigError(`limits.${setting ?? ''}`, [
      `${source}: limits.${setting}: ${(err as Error).message}`,
    ]);
  }
  // The Keap client's own settings must be coherent too (a timeout that leaves room for a retry).
  const noRetry = timeoutLeavesNoRetry(parseKeapClientSettings({ timeoutMs: config.keap.timeoutMs }));
  if (noRetry) throw new ConfigError('keap.timeoutMs', [`${source}: keap.timeoutMs: ${noRetry}`]);
  return config;
}

/** Reads JSON configuration text (a file's content or an environment variable). */
export function parseAppConfigJson(text: string, source: string): AppConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('(file)', [`${source} is not valid JSON (${(err as Error).message})`]);
  }
  return parseAppConfig(raw, source);
}

export function findAccount(config: AppConfig, id: string): AccountConfig | undefined {
  return config.accounts.find((a) => a.id === id);
}
