// Adapter (local runtime): what an account registered while keap-sync runs locally against the Keap
// sandbox needs before its first sync: a sandbox key for its tenant (the sandbox accepts only the keys
// it was given) and that key in the Secrets Manager stub under the account's secretId. AWS needs
// neither: there the operator stores the real key (see "Accounts" in the README).
import { createHash } from 'node:crypto';
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  ResourceExistsException,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import type { AccountConfig } from '#shared/config/app-config.ts';

/** The sandbox key of an account: derived from its id and tenant, so every process derives the same. */
export function sandboxKeyFor(account: Pick<AccountConfig, 'id' | 'tenant'>): string {
  const hash = createHash('sha256').update(`keap-sync-local:${account.id}:${account.tenant}`).digest('hex');
  return `KeapAK-${hash.slice(0, 40)}`;
}

/** The sandbox refused to add a key (it is not the sandbox, or it is not running). */
export class SandboxKeyError extends Error {
  constructor(baseUrl: string, detail: string) {
    super(
      `Could not give the Keap sandbox at ${baseUrl} a key for the new account (${detail}). With a real ` +
        "Keap, store the account's key with --key-file instead.",
    );
    this.name = 'SandboxKeyError';
  }
}

/**
 * Gives the sandbox at `keapBaseUrl` a key for `account`'s tenant and stores it as the account's secret
 * (unless `apiKey` is given: then only the secret is stored, for a real Keap).
 */
export async function provisionLocalAccount(
  account: AccountConfig,
  o: { keapBaseUrl: string; secrets: SecretsManagerClient; apiKey?: string },
): Promise<void> {
  let key = o.apiKey;
  if (key === undefined) {
    key = sandboxKeyFor(account);
    let res: Response;
    try {
      res = await fetch(`${o.keapBaseUrl}/__admin/keys`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ key, tenant: account.tenant }),
      });
    } catch (err) {
      throw new SandboxKeyError(o.keapBaseUrl, (err as Error).message);
    }
    if (!res.ok) throw new SandboxKeyError(o.keapBaseUrl, `HTTP ${res.status}`);
  }
  try {
    await o.secrets.send(new CreateSecretCommand({ Name: account.secretId, SecretString: key }));
  } catch (err) {
    if (!(err instanceof ResourceExistsException)) throw err;
    await o.secrets.send(new PutSecretValueCommand({ SecretId: account.secretId, SecretString: key }));
  }
}
