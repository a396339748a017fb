// Infrastructure (configuration): what a deployment is built from. The app configuration is the same
// keap-sync.config.json the Lambdas and the local runtime read, validated at synth with the same
// schema; the deployment settings (alarm thresholds, log retention, memory) come from CDK context
// and have documented defaults. Both fail synth with a message naming the setting.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { Node } from 'constructs';
import { z } from 'zod';
import {
  type AppConfig,
  ConfigError,
  globalSettingsJson,
  parseAppConfigJson,
  secretOutsidePrefix,
} from '../shared/config/app-config.ts';
import { parseLedgerSettings } from '../shared/quota/config.ts';

/** Lambda allows 4 KB of environment variables per function (names and values together). */
const LAMBDA_ENVIRONMENT_BYTES = 4096;
/** Room kept for the other variables: three table names, two queue URLs, log level, namespace, NODE_OPTIONS. */
const OTHER_VARIABLES_BYTES = 1024;
/** Most bytes the minified configuration may take in KEAP_SYNC_CONFIG. */
export const MAX_CONFIG_BYTES = LAMBDA_ENVIRONMENT_BYTES - OTHER_VARIABLES_BYTES;

/** The validated app configuration plus the exact text the Lambdas receive. */
export interface LoadedConfig {
  config: AppConfig;
  /**
   * The file's global settings, minified, without its accounts: the value of KEAP_SYNC_CONFIG. The
   * accounts live in the registry (`keap-sync accounts add <file> --aws` seeds it from the file).
   */
  json: string;
  /** Where it came from, for messages. */
  source: string;
}

/** Secrets Manager names: letters, digits and / _ + = . @ - (no wildcards, so a grant can never widen). */
const SECRET_NAME = /^[A-Za-z0-9/_+=.@-]{1,512}$/;
/** A complete secret ARN ends with the dash and six characters Secrets Manager appends. */
const COMPLETE_SECRET_SUFFIX = /-[A-Za-z0-9]{6}$/;

export type SecretReference =
  | { kind: 'name'; secretId: string; name: string }
  | { kind: 'completeArn' | 'partialArn'; secretId: string; name: string };

/**
 * Validates configuration text (a file's content) as the Lambdas will, plus what only a deployment
 * needs: secret ids that cannot widen an IAM grant, and a size that fits Lambda's environment.
 */
export function parseConfigText(text: string, source: string): LoadedConfig {
  const config = parseAppConfigJson(text, source);
  checkSecretsPrefix(config.secrets.prefix);
  config.accounts.forEach((account, i) => {
    secretReference(account.secretId, source, `accounts.${i}.secretId`);
    const outside = secretOutsidePrefix(account.secretId, config.secrets.prefix);
    if (outside)
      throw new ConfigError(`accounts.${i}.secretId`, [`${source}: accounts.${i}.secretId: ${outside}`]);
  });
  // The input is passed on (not the parsed output), so the Lambdas apply the same defaults themselves;
  // without the accounts, which no Lambda environment carries.
  const json = globalSettingsJson(text);
  const bytes = Buffer.byteLength(json, 'utf8');
  if (bytes > MAX_CONFIG_BYTES) {
    throw new ConfigError('(file)', [
      `${source}'s settings are ${bytes} bytes minified; the Lambdas receive it in the environment variable ` +
        `KEAP_SYNC_CONFIG without its accounts, and Lambda allows 4 KB of variables in all, so its ` +
        `settings may take at most ${MAX_CONFIG_BYTES} bytes (leave out settings that keep their defaults)`,
    ]);
  }
  return { config, json, source };
}

/** Reads and validates the configuration file; a missing file fails with what to do. */
export function loadConfigFile(file: string, cwd: string = process.cwd()): LoadedConfig {
  const full = path.resolve(cwd, file);
  let text: string;
  try {
    text = readFileSync(full, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError('(file)', [
      `${file} could not be read (${code ?? (err as Error).message}); create it from the README's ` +
        '"Configuration" section, or point the context setting configFile at it (cdk synth -c configFile=...)',
    ]);
  }
  return parseConfigText(text, file);
}

/**
 * The secrets prefix the functions' one grant is written for (`<prefix>*`, which also matches the
 * `-??????` suffix Secrets Manager appends): a name prefix ending with / or -, no wildcards.
 */
export function checkSecretsPrefix(prefix: string): string {
  if (!SECRET_NAME.test(prefix) || !/[/-]$/.test(prefix)) {
    throw new ConfigError('secrets.prefix', [
      `secrets.prefix: "${prefix}" must be a secret name prefix ending with / or - (no wildcards)`,
    ]);
  }
  return prefix;
}

/** How an account's secretId is imported: by name, by complete ARN, or by partial ARN. */
export function secretReference(secretId: string, source: string, setting: string): SecretReference {
  const fail = (problem: string): never => {
    throw new ConfigError(setting, [`${source}: ${setting}: ${problem}`]);
  };
  if (secretId.startsWith('arn:')) {
    const parts = secretId.split(':');
    const name = parts.slice(6).join(':');
    if (
      parts.length < 7 ||
      parts[2] !== 'secretsmanager' ||
      parts[5] !== 'secret' ||
      !SECRET_NAME.test(name)
    ) {
      fail(
        `"${secretId}" is not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)`,
      );
    }
    return { kind: COMPLETE_SECRET_SUFFIX.test(name) ? 'completeArn' : 'partialArn', secretId, name };
  }
  if (!SECRET_NAME.test(secretId)) {
    fail(
      `"${secretId}" is not a Secrets Manager secret name: use letters, digits and / _ + = . @ - ` +
        '(no wildcards), or the secret ARN',
    );
  }
  return { kind: 'name', secretId, name: secretId };
}

// ---------------------------------------------------------------------------------------------------
// Deployment settings (CDK context)

/** A CDK context setting is invalid. */
export class DeploySettingError extends Error {
  readonly setting: string;
  constructor(setting: string, problem: string) {
    super(
      `Invalid deployment setting "${setting}": ${problem}. Set it in cdk.json "context" or with ` +
        `cdk deploy -c ${setting}=<value> (see infra/settings.ts for every setting and its default).`,
    );
    this.name = 'DeploySettingError';
    this.setting = setting;
  }
}

const FINITE_RETENTION = Object.values(RetentionDays).filter(
  (d): d is RetentionDays => typeof d === 'number' && d !== RetentionDays.INFINITE,
);

/** Context values come as JSON from cdk.json and as strings from `-c key=value`. */
const num = (schema: z.ZodNumber) =>
  z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' ? Number(v) : v), schema);
const optionalText = z.preprocess((v) => (v === '' || v === 'none' ? undefined : v), z.string().optional());

/**
 * Every deployment setting, its default and what it allows. Defaults that depend on the app
 * configuration (the day quota) are filled in by resolveSettings.
 */
const settingsSchema = z.object({
  /** The app configuration file, relative to the directory cdk runs in. */
  configFile: z.string().min(1).default('keap-sync.config.json'),
  /** Prefix of the two stack names (<prefix>Data, <prefix>App); another prefix is another deployment. */
  stackPrefix: z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9-]{0,100}$/, 'use a letter, then letters, digits and dashes')
    .default('KeapSync'),
  /** Email address that receives alarm notifications (an encrypted SNS topic is created for it). */
  alarmEmail: optionalText.pipe(z.email('use an email address').optional()),
  /** Days the functions' logs are kept. */
  logRetentionDays: num(z.number().int())
    .refine((d) => FINITE_RETENTION.includes(d as RetentionDays), {
      message: `use one of ${FINITE_RETENTION.join(', ')}`,
    })
    .default(RetentionDays.ONE_MONTH),
  /** Log level of both functions. */
  logLevel: z.enum(['DEBUG', 'INFO', 'WARN', 'ERROR']).default('INFO'),
  /**
   * Worker memory, MB. Lambda's CPU scales with memory and reaches one full vCPU at 1,769 MB; below
   * it the function is throttled in slices, which stalls the event loop for tens of ms at a time
   * between the ledger's slot and the request. The default buys a whole vCPU so such stalls are rare.
   */
  workerMemoryMb: num(z.number().int().min(128).max(10_240)).default(1_769),
  /** Scheduler memory, MB. */
  schedulerMemoryMb: num(z.number().int().min(128).max(10_240)).default(256),
  /** Scheduler timeout, seconds (it reads state and enqueues; it never calls Keap). */
  schedulerTimeoutSeconds: num(z.number().int().min(10).max(900)).default(60),
  /** Longest the event source waits to fill a batch, seconds (0: invoke as soon as a message arrives). */
  workerMaxBatchingWindowSeconds: num(z.number().int().min(0).max(300)).default(0),
  /** Alarm when a function has more than this many errors in 5 minutes. */
  functionErrorsAlarmThreshold: num(z.number().int().min(0)).default(0),
  /** Alarm when an account's day budget has fewer calls left than this (default: 10% of the day limit). */
  quotaDayLeftAlarmBelow: num(z.number().int().min(1)).optional(),
  /** Alarm when a finished sync reports a lag (SyncLagMs) above this many minutes. */
  syncLagAlarmMinutes: num(z.number().int().min(1).max(525_600)).default(1_440),
  /**
   * An existing EventBridge bus (its name) to publish the change events on; none: the data stack
   * creates `<stackPrefix>-changes`.
   */
  eventBusName: optionalText.pipe(
    z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,256}$/, 'use an event bus name: letters, digits, . _ - (not an ARN)')
      .optional(),
  ),
  /** Hook receiver memory, MB (it checks a token and queues; it never calls Keap). */
  hookReceiverMemoryMb: num(z.number().int().min(128).max(10_240)).default(256),
  /** Hook receiver timeout, seconds (Keap counts a delivery failed after 30 s). */
  hookReceiverTimeoutSeconds: num(z.number().int().min(3).max(25)).default(10),
  /**
   * Concurrent receiver invocations at most (reserved concurrency), so a flood of requests to the public
   * URL cannot take the account's Lambda concurrency; 0: no reservation.
   */
  hookReceiverReservedConcurrency: num(z.number().int().min(0).max(1_000)).default(0),
  /** Largest hook body accepted, bytes (a bigger one is answered 413 and nothing is queued). */
  hookMaxBodyBytes: num(z.number().int().min(1_024).max(6_000_000)).default(524_288),
  /** Alarm when more than this many hook requests are refused in 5 minutes (wrong token, bad body, ...). */
  hookRejectionsAlarmThreshold: num(z.number().int().min(0)).default(10),
  /** Publisher memory, MB. */
  publisherMemoryMb: num(z.number().int().min(128).max(10_240)).default(256),
  /** Publisher timeout, seconds. */
  publisherTimeoutSeconds: num(z.number().int().min(10).max(900)).default(60),
  /** Stream records per publisher invocation (DynamoDB streams allow 1-10000). */
  publisherBatchSize: num(z.number().int().min(1).max(10_000)).default(100),
  /** Retries of a failed stream batch (it is bisected each time) before it goes to the dead-letter queue. */
  publisherRetryAttempts: num(z.number().int().min(0).max(10_000)).default(10),
  /** Oldest stream record the publisher still publishes, hours (the stream keeps records 24 hours). */
  publisherMaxRecordAgeHours: num(z.number().int().min(1).max(24)).default(24),
});

export type ContextSettings = z.output<typeof settingsSchema>;

/** The settings a deployment is built with, every default filled in. */
export interface DeploySettings extends Omit<ContextSettings, 'quotaDayLeftAlarmBelow' | 'logRetentionDays'> {
  quotaDayLeftAlarmBelow: number;
  logRetention: RetentionDays;
}

export const SETTING_NAMES = Object.keys(settingsSchema.shape) as Array<keyof ContextSettings>;

/** Reads the deployment settings from CDK context (`node.tryGetContext`), with defaults. */
export function readContextSettings(node: Node): ContextSettings {
  const raw: Record<string, unknown> = {};
  for (const name of SETTING_NAMES) {
    const value: unknown = node.tryGetContext(name);
    if (value !== undefined) raw[name] = value;
  }
  const parsed = settingsSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const setting = String(issue?.path[0] ?? '(context)');
    throw new DeploySettingError(
      setting,
      `${issue?.message ?? 'invalid'} (got ${JSON.stringify(raw[setting])})`,
    );
  }
  return parsed.data;
}

/** Fills the defaults that depend on the app configuration. */
export function resolveSettings(context: ContextSettings, config: AppConfig): DeploySettings {
  const { quotaDayLeftAlarmBelow, logRetentionDays, ...rest } = context;
  return {
    ...rest,
    logRetention: logRetentionDays as RetentionDays,
    quotaDayLeftAlarmBelow: quotaDayLeftAlarmBelow ?? Math.ceil(ledgerLimits(config).day * 0.1),
  };
}

/** The ledger's minute and day limits per scope (tenant or key), as the Lambdas compute them. */
export function ledgerLimits(config: AppConfig): { minute: number; day: number } {
  const ledger = parseLedgerSettings({ tableName: 'synth', ...config.limits });
  return { minute: ledger.itemMinuteLimit, day: ledger.itemDayLimit };
}
