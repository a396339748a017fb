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
    /**
     * Accounts to seed the account registry with (optional: the registry is the source of truth; see
     * `keap-sync accounts`). Never passed to a Lambda: the stack strips them from KEAP_SYNC_CONFIG.
     */
    accounts: z.array(accountSchema).default([]),
    secrets: z
      .object({
        /**
         * Every account's secret is named under this prefix (one IAM grant on `<prefix>*` covers every
         * account, present and future). Letters, digits and / _ + = . @ -, ending with / or -.
         */
        prefix: z
          .string()
          .regex(
            /^[A-Za-z0-9/_+=.@-]{1,200}[/-]$/,
            'use letters, digits and / _ + = . @ -, ending with / or -',
          )
          .default('keap-sync/'),
      })
      .strict()
      .prefault({}),
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
        /**
         * Pages a full read of a large list (contacts, orders, notes, tasks) reads at once, each reader on
         * its own id range (shared/pipeline/partitions.ts); 1 reads one page after another.
         */
        partitions: z.number().int().min(1).max(32).default(8),
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
    hooks: z
      .object({
        /**
         * Minutes between checks of an account's REST hooks (one GET /hooks, and a verify of each hook
         * Keap turned Inactive, then a catch-up sync of its lists); 0: never. Only accounts whose hooks
         * were registered (`keap-sync hooks register`) are checked.
         */
        checkEveryMinutes: z.number().int().min(0).max(1_440).default(15),
        /**
         * While every hook of an account was Verified at the last check, a list its hooks cover is
         * polled at most every this many minutes (its own everyMinutes if longer); 0: never relax.
         */
        healthyPollMinutes: z.number().int().min(0).max(10_080).default(60),
      })
      .strict()
      .prefault({}),
    sweep: z
      .object({
        /**
         * Hours between reconciliation sweeps of each list (every id read, the missing tombstoned); 0:
         * never. A sweep costs one call per page of ids and runs only inside the day's bulk share.
         */
        everyHours: z.number().int().min(0).max(720).default(24),
      })
      .strict()
      .prefault({}),
    customFields: z
      .object({
        /**
         * Minutes a list's stored custom-field model (`GET /rest/v2/<list>/model`) names records before
         * the next sync or hook job of the list reads it again from Keap (one call).
         */
        modelMaxAgeMinutes: z.number().int().min(1).max(43_200).default(1_440),
        /** A record with a custom field id the stored model lacks re-reads the model at most this often. */
        unknownIdRefreshSeconds: z.number().int().min(10).max(86_400).default(300),
      })
      .strict()
      .prefault({}),
    scheduler: z
      .object({
        /** Minutes between scheduler runs (EventBridge Scheduler rate; the local loop's interval). */
        everyMinutes: z.number().int().min(1).max(1_440).default(5),
        /** Keep at least this many calls of the day's bulk budget for incremental syncs. */
        reserveCallsForIncremental: z.number().int().min(0).default(200),
        /**
         * Full syncs (backfills) of one account queued or running at once; more wait for a later run.
         * Below worker.concurrency, so one account's backfill never holds every worker. Default: half
         * of worker.concurrency (at least 1); see bulkJobsPerAccount(). Applies when more than one
         * account is active (an account alone may use every worker).
         */
        bulkJobsPerAccount: z.number().int().min(1).max(100).optional(),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (
      c.scheduler.bulkJobsPerAccount !== undefined &&
      c.scheduler.bulkJobsPerAccount >= c.worker.concurrency
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['scheduler', 'bulkJobsPerAccount'],
        message: `must be below worker.concurrency (${c.worker.concurrency}), or one account's backfill can hold every worker`,
      });
    }
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

/** Full syncs of one account the scheduler keeps queued or running at once (fairness between accounts). */
export function bulkJobsPerAccount(config: AppConfig): number {
  return config.scheduler.bulkJobsPerAccount ?? Math.max(1, Math.floor(config.worker.concurrency / 2));
}

export function findAccount(config: AppConfig, id: string): AccountConfig | undefined {
  return config.accounts.find((a) => a.id === id);
}

/** The name part of a secret id (a name, or the name inside a Secrets Manager ARN). */
export function secretName(secretId: string): string {
  return secretId.startsWith('arn:') ? secretId.split(':').slice(6).join(':') : secretId;
}

/** Why `secretId` is not under `prefix` (the one IAM grant would not cover it), or undefined. */
export function secretOutsidePrefix(secretId: string, prefix: string): string | undefined {
  if (secretName(secretId).startsWith(prefix)) return undefined;
  return (
    `"${secretId}" is not named under the secrets prefix "${prefix}" (secrets.prefix): the deployment ` +
    `grants read access to "${prefix}*" only; store the key as a secret named ${prefix}<account>`
  );
}

/** One account, validated with the configuration file's schema (the registry's own check). */
export function parseAccountConfig(input: unknown, prefix: string, source = 'account'): AccountConfig {
  const parsed = accountSchema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues.slice(0, 8).map((i) => {
      const path = i.path.map(String).join('.');
      const extra = i.code === 'unrecognized_keys' ? `unknown setting(s) ${i.keys?.join(', ')}` : i.message;
      return `${source}: ${path || '(account)'}: ${extra}`;
    });
    const first = parsed.error.issues[0];
    throw new ConfigError(first ? first.path.map(String).join('.') || '(account)' : '(account)', problems);
  }
  const problem = secretOutsidePrefix(parsed.data.secretId, prefix);
  if (problem) throw new ConfigError('secretId', [`${source}: secretId: ${problem}`]);
  return parsed.data;
}

/** The configuration without its accounts: what the Lambdas receive (the registry holds the accounts). */
export function globalSettingsJson(text: string): string {
  const { accounts: _accounts, ...rest } = JSON.parse(text) as Record<string, unknown>;
  return JSON.stringify(rest);
}
