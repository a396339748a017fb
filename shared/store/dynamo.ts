// Adapter: plumbing shared by the store's DynamoDB adapters: the document client, the SDK retry settings
// for throttling and transient errors, and the mapping of SDK errors to the store's errors.
import {
  ConditionalCheckFailedException,
  type DynamoDBClient,
  type DynamoDBClientConfig,
} from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { ConfiguredRetryStrategy } from '@smithy/core/retry';
import { z } from 'zod';
import { StoreConfigError, StoreUnavailableError } from './errors.ts';

/** A document client that writes plain JS values as native DynamoDB maps and drops undefined values. */
export function documentClient(client: DynamoDBClient): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true },
    unmarshallOptions: { wrapNumbers: false },
  });
}

const TRANSIENT_NAMES = new Set([
  'ProvisionedThroughputExceededException',
  'ThrottlingException',
  'RequestLimitExceeded',
  'InternalServerError',
  'InternalFailure',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
]);

const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
]);

/** Whether retrying the same call later may succeed: throttling, 5xx, timeouts, dropped connections. */
export function isTransient(err: unknown): boolean {
  if (!(err instanceof Error) || err instanceof ConditionalCheckFailedException) return false;
  if (TRANSIENT_NAMES.has(err.name)) return true;
  const e = err as Error & { code?: unknown; $retryable?: unknown; $metadata?: { httpStatusCode?: unknown } };
  if (e.$retryable) return true;
  if (typeof e.code === 'string' && TRANSIENT_CODES.has(e.code)) return true;
  const status = e.$metadata?.httpStatusCode;
  return typeof status === 'number' && status >= 500;
}

/** Whether DynamoDB refused an item for exceeding its 400 KB limit (it has no dedicated error code). */
export function isItemTooLarge(err: unknown): boolean {
  return err instanceof Error && err.name === 'ValidationException' && /item size/i.test(err.message);
}

export function isConditionFailure(err: unknown): err is ConditionalCheckFailedException {
  return err instanceof ConditionalCheckFailedException;
}

/**
 * Runs one DynamoDB call and classifies its failure; retries are the SDK's (dynamoRetryConfig, set where
 * the client is built). A conditional-check failure passes through untouched (the caller decides; the
 * SDK never retries it); anything else becomes a StoreUnavailableError naming the table, the operation
 * and the attempts the SDK made.
 */
export async function callDynamo<T>(table: string, operation: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isConditionFailure(err)) throw err;
    throw new StoreUnavailableError(table, operation, attemptsOf(err), isTransient(err), err);
  }
}

function attemptsOf(err: unknown): number {
  const attempts = (err as { $metadata?: { attempts?: unknown } } | undefined)?.$metadata?.attempts;
  return typeof attempts === 'number' && attempts > 0 ? attempts : 1;
}

const retrySettingsSchema = z
  .object({
    /** Attempts per DynamoDB call on throttling and transient errors (conditional failures are never retried). */
    maxAttempts: z.number().int().positive().max(20).default(8),
    /** First backoff delay; doubles per attempt, with full jitter. */
    backoffBaseMs: z.number().int().positive().default(50),
    /** Largest backoff delay. */
    backoffMaxMs: z.number().int().positive().default(3_000),
    /**
     * One attempt's limit, from sending to the whole answer. The SDK sets none: a request whose answer
     * never comes (a dropped connection with no reset, a stalled endpoint) would hold the invocation to
     * its timeout. Timed out, the attempt is retried like any transient error.
     */
    requestTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
    /** One attempt's limit to open the connection. */
    connectTimeoutMs: z.number().int().min(100).max(60_000).default(3_000),
  })
  .strict();

export type DynamoRetrySettingsInput = z.input<typeof retrySettingsSchema>;
export type DynamoRetrySettings = z.output<typeof retrySettingsSchema>;

/** Validates the store's retry settings; a bad one is named in a StoreConfigError. */
export function parseDynamoRetrySettings(input?: DynamoRetrySettingsInput): DynamoRetrySettings {
  const parsed = retrySettingsSchema.safeParse(input ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key =
      issue && issue.code === 'unrecognized_keys' ? issue.keys[0] : issue ? issue.path.join('.') : undefined;
    throw new StoreConfigError(key || '(retry settings)', `${issue?.message ?? 'invalid value'}.`);
  }
  const s = parsed.data;
  if (s.backoffMaxMs < s.backoffBaseMs) {
    throw new StoreConfigError('backoffMaxMs', `must be at least backoffBaseMs (${s.backoffBaseMs}).`);
  }
  return s;
}

/**
 * The retry part of a DynamoDBClient's configuration for the mirror and state stores: the SDK's
 * standard strategy (it retries throttling and transient errors, never a conditional-check failure)
 * with `maxAttempts` in all and full-jitter exponential backoff, and a time limit per attempt
 * (`requestTimeoutMs`, `connectTimeoutMs`). Spread it where the client is built.
 */
export function dynamoRetryConfig(
  input?: DynamoRetrySettingsInput,
): Pick<DynamoDBClientConfig, 'maxAttempts' | 'retryStrategy' | 'requestHandler'> {
  const { maxAttempts, backoffBaseMs, backoffMaxMs, requestTimeoutMs, connectTimeoutMs } =
    parseDynamoRetrySettings(input);
  return {
    maxAttempts,
    requestHandler: {
      requestTimeout: requestTimeoutMs,
      connectionTimeout: connectTimeoutMs,
      // Without it the SDK only logs a warning when the limit passes and keeps waiting.
      throwOnRequestTimeout: true,
    },
    retryStrategy: new ConfiguredRetryStrategy(
      maxAttempts,
      (attempt) => Math.random() * Math.min(backoffMaxMs, backoffBaseMs * 2 ** (attempt - 1)),
    ),
  };
}
