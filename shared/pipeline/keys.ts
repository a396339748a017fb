// Adapter: reads each account's Keap key from Secrets Manager, caching it for a bounded time.
import {
  GetSecretValueCommand,
  type GetSecretValueCommandOutput,
  ResourceNotFoundException,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import type { AccountConfig } from '../config/app-config.ts';

export interface AccountKey {
  apiKey: string;
  /** The secret version the key came from (a rejected key is remembered by version). */
  versionId: string;
}

/** The key's secret is missing or unreadable. Not retryable until someone fixes the secret. */
export class KeySecretError extends Error {
  readonly account: string;
  constructor(account: string, secretId: string, problem: string) {
    super(
      `The Keap key of account "${account}" could not be read from Secrets Manager secret "${secretId}" ` +
        `(${problem}). Store the key with: aws secretsmanager put-secret-value --secret-id ${secretId} ` +
        '--secret-string "<your Keap key>"',
    );
    this.name = 'KeySecretError';
    this.account = account;
  }
}

interface Entry {
  key: AccountKey;
  fetchedAt: number;
}

export class KeyProvider {
  private readonly client: SecretsManagerClient;
  private readonly maxAgeMs: number;
  private readonly now: () => number;
  private readonly cache = new Map<string, Entry>();

  constructor(client: SecretsManagerClient, maxAgeMs: number, now: () => number = Date.now) {
    this.client = client;
    this.maxAgeMs = maxAgeMs;
    this.now = now;
  }

  /** The account's key, from the cache unless older than maxAgeMs or `fresh` is asked for. */
  async get(account: AccountConfig, options: { fresh?: boolean } = {}): Promise<AccountKey> {
    const hit = this.cache.get(account.id);
    if (hit && !options.fresh && this.now() - hit.fetchedAt < this.maxAgeMs) return hit.key;
    let out: GetSecretValueCommandOutput;
    try {
      out = await this.client.send(new GetSecretValueCommand({ SecretId: account.secretId }));
    } catch (err) {
      if (err instanceof ResourceNotFoundException) {
        throw new KeySecretError(account.id, account.secretId, 'no such secret');
      }
      throw err;
    }
    const apiKey = extractKey(out.SecretString);
    if (!apiKey) throw new KeySecretError(account.id, account.secretId, 'the secret holds no key');
    const key: AccountKey = { apiKey, versionId: out.VersionId ?? 'unversioned' };
    this.cache.set(account.id, { key, fetchedAt: this.now() });
    return key;
  }
}

/** The secret is the key itself, or JSON with `apiKey` (or `key`). */
function extractKey(secret: string | undefined): string | undefined {
  const text = secret?.trim();
  if (!text) return undefined;
  if (text.startsWith('{')) {
    try {
      const obj = JSON.parse(text) as Record<string, unknown>;
      const v = obj.apiKey ?? obj.key;
      return typeof v === 'string' && v.trim() ? v.trim() : undefined;
    } catch {
      return undefined;
    }
  }
  return text;
}
