// Adapter: plumbing shared by the store's DynamoDB adapters: the document client, bounded retries with
// backoff on throttling and transient errors, and the mapping of SDK errors to the store's errors.
import { ConditionalCheckFailedException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { StoreUnavailableError } from './errors.ts';

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

export interface RetryPolicy {
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Runs one DynamoDB call with bounded retries. Conditional-check failures pass through untouched (the
 * caller decides); transient errors are retried with full-jitter backoff; anything else, or the last
 * transient failure, becomes a StoreUnavailableError.
 */
export class DynamoCaller {
  private readonly table: string;
  private readonly policy: RetryPolicy;
  constructor(table: string, policy: RetryPolicy) {
    this.table = table;
    this.policy = policy;
  }

  async call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (isConditionFailure(err)) throw err;
        const transient = isTransient(err);
        if (!transient || attempt >= this.policy.maxAttempts) {
          throw new StoreUnavailableError(this.table, operation, attempt, transient, err);
        }
        const cap = Math.min(this.policy.backoffMaxMs, this.policy.backoffBaseMs * 2 ** (attempt - 1));
        await sleep(Math.random() * cap);
      }
    }
  }
}
