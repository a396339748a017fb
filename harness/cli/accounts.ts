// Use case (CLI): `keap-sync accounts add|list|show|pause|resume|remove`: the account registry of the
// local system (running, or its data folder) or of a deployed stack (--aws). Every account is validated
// with the configuration file's schema and must name its secret under secrets.prefix. Nothing here
// redeploys anything: the scheduler reads the registry at its next run.
import { join, resolve } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  ResourceExistsException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { type AccountConfig, type AppConfig, parseAccountConfig } from '#shared/config/app-config.ts';
import {
  AccountExistsError,
  createStateTable,
  type DynamoAccountRegistry,
  openStateStores,
  type RegisteredAccount,
} from '#shared/store/index.ts';
import { localDynamoClient, startDynalite } from '../emulators/dynamo.ts';
import { provisionLocalAccount } from '../local/accounts.ts';
import { localSecretsClient } from '../local/secrets.ts';
import { LOCAL_TABLES } from '../local/stack.ts';
import { UsageError } from './commander.ts';
import { AWS_TARGET_VARIABLES, type Target } from './operator.ts';
import { runningEndpoints } from './run.ts';
import { formatTable } from './table.ts';

interface RegistryConnection {
  registry: DynamoAccountRegistry;
  where: string;
  /** Stores the key (or, on the local sandbox, mints one) so the account's first sync can run. */
  storeKey?: (account: AccountConfig, apiKey: string | undefined) => Promise<string>;
  close(): Promise<void>;
}

async function connectRegistry(
  target: Target,
  env: NodeJS.ProcessEnv = process.env,
): Promise<RegistryConnection> {
  if (target.aws) {
    const table = env.STATE_TABLE;
    if (!table) {
      throw new UsageError(
        `--aws needs STATE_TABLE (the KeapSyncData output ${AWS_TARGET_VARIABLES.STATE_TABLE}). ` +
          'Set it from "aws cloudformation describe-stacks --stack-name KeapSyncData".',
      );
    }
    const dynamo = new DynamoDBClient({});
    const secrets = new SecretsManagerClient({});
    return {
      registry: openStateStores(dynamo, table).registry,
      where: `table ${table}`,
      storeKey: async (account, apiKey) => {
        if (apiKey === undefined) return `the key must already be stored in secret ${account.secretId}`;
        await storeSecret(secrets, account.secretId, apiKey);
        return `key stored in secret ${account.secretId}`;
      },
      close: async () => {
        dynamo.destroy();
        secrets.destroy();
      },
    };
  }
  const endpoints = runningEndpoints(target.dataDir);
  if (endpoints) {
    const dynamo = localDynamoClient(endpoints.dynamo);
    const secrets = localSecretsClient(endpoints.secrets);
    return {
      registry: openStateStores(dynamo, LOCAL_TABLES.state).registry,
      where: `the running local system (${resolve(target.dataDir)})`,
      storeKey: async (account, apiKey) => {
        await provisionLocalAccount(account, {
          keapBaseUrl: endpoints.keapBaseUrl,
          secrets,
          ...(apiKey === undefined ? {} : { apiKey }),
        });
        return apiKey === undefined ? 'a sandbox key was issued for its tenant' : 'key stored locally';
      },
      close: async () => {
        dynamo.destroy();
        secrets.destroy();
      },
    };
  }
  // Not running: the data folder's tables directly; `keap-sync run` issues keys when it starts.
  const db = await startDynalite({ path: join(resolve(target.dataDir), 'dynamo') });
  await createStateTable(db.client, LOCAL_TABLES.state);
  return {
    registry: openStateStores(db.client, LOCAL_TABLES.state).registry,
    where: `the data folder ${resolve(target.dataDir)}`,
    close: () => db.close(),
  };
}

async function storeSecret(client: SecretsManagerClient, name: string, value: string): Promise<void> {
  try {
    await client.send(new CreateSecretCommand({ Name: name, SecretString: value }));
  } catch (err) {
    if (!(err instanceof ResourceExistsException)) throw err;
    await client.send(new PutSecretValueCommand({ SecretId: name, SecretString: value }));
  }
}

export interface AddOptions {
  /** A JSON account (or array of accounts), as in the configuration file's `accounts`. */
  json?: string;
  id?: string;
  tenant?: string;
  secretId?: string;
  /** `contacts=5,tags=60` (minutes between syncs per list). */
  resources?: string;
  /** The Keap key, read from --key-file (never printed). */
  apiKey?: string;
  replace?: boolean;
}

/** Parses `contacts=5,tags=60:full` into the resources map of an account. */
export function parseResourcesFlag(text: string): Record<string, { everyMinutes: number; mode?: string }> {
  const out: Record<string, { everyMinutes: number; mode?: string }> = {};
  for (const part of text
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const m = /^([a-z]+)=(\d+)(?::(incremental|full))?$/.exec(part);
    if (!m?.[1] || !m[2]) {
      throw new UsageError(
        `--resources: "${part}" is not <list>=<minutes>[:full], e.g. contacts=5,tags=60 or products=60:full.`,
      );
    }
    out[m[1]] = { everyMinutes: Number(m[2]), ...(m[3] ? { mode: m[3] } : {}) };
  }
  return out;
}

/** The accounts an `add` names, each validated as the configuration file's accounts are. */
export function accountsToAdd(config: AppConfig, o: AddOptions): AccountConfig[] {
  let raw: unknown[];
  if (o.json !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(o.json);
    } catch (err) {
      throw new UsageError(
        `The input is not JSON (${(err as Error).message}). Give one account object or an array.`,
      );
    }
    raw = Array.isArray(parsed) ? parsed : [parsed];
  } else {
    if (!o.id || !o.tenant || !o.resources) {
      throw new UsageError(
        'accounts add needs --id, --tenant and --resources (or a JSON file, or - for standard input).',
      );
    }
    raw = [
      {
        id: o.id,
        tenant: o.tenant,
        secretId: o.secretId ?? `${config.secrets.prefix}${o.id}`,
        resources: parseResourcesFlag(o.resources),
      },
    ];
  }
  if (raw.length === 0) throw new UsageError('The input holds no account.');
  return raw.map((a, i) =>
    parseAccountConfig(a, config.secrets.prefix, raw.length > 1 ? `account ${i + 1}` : 'account'),
  );
}

export async function accountsAdd(config: AppConfig, target: Target, o: AddOptions): Promise<string> {
  const accounts = accountsToAdd(config, o);
  if (o.apiKey !== undefined && accounts.length > 1) {
    throw new UsageError('--key-file stores one key: add one account at a time with it.');
  }
  const c = await connectRegistry(target);
  try {
    const lines: string[] = [];
    for (const account of accounts) {
      const keyNote = c.storeKey
        ? await c.storeKey(account, o.apiKey)
        : 'keys are issued when keap-sync run starts';
      try {
        await c.registry.add(account, { source: 'cli', replace: o.replace ?? false });
      } catch (err) {
        if (err instanceof AccountExistsError) throw new UsageError(`${err.message} (or pass --replace)`);
        throw err;
      }
      lines.push(
        `Registered ${account.id} (tenant ${account.tenant}, ${Object.keys(account.resources).length} lists) in ${c.where}; ` +
          `${keyNote}. It is synced from the scheduler's next run.`,
      );
    }
    return lines.join('\n');
  } finally {
    await c.close();
  }
}

function row(e: RegisteredAccount): string[] {
  return [
    e.account.id,
    e.account.tenant,
    e.paused ? 'paused' : 'active',
    Object.entries(e.account.resources)
      .map(([r, s]) => `${r}/${s?.everyMinutes}m`)
      .join(' '),
    e.account.secretId,
  ];
}

export async function accountsList(target: Target, json: boolean): Promise<string> {
  const c = await connectRegistry(target);
  try {
    const entries = await c.registry.list();
    if (json) return JSON.stringify(entries, null, 2);
    if (entries.length === 0) return `No account is registered in ${c.where}.`;
    return formatTable(['account', 'tenant', 'state', 'lists', 'secret'], entries.map(row), {
      align: ['left', 'left', 'left', 'left', 'left'],
    });
  } finally {
    await c.close();
  }
}

export async function accountsShow(target: Target, id: string, json: boolean): Promise<string> {
  const c = await connectRegistry(target);
  try {
    const entry = await c.registry.get(id);
    if (!entry) throw new UsageError(`The account "${id}" is not registered in ${c.where}.`);
    if (json) return JSON.stringify(entry, null, 2);
    return [
      `account ${entry.account.id}${entry.paused ? '  PAUSED' : ''}`,
      `  tenant: ${entry.account.tenant}`,
      `  secret: ${entry.account.secretId}`,
      `  added: ${entry.addedAt} (${entry.source}), updated ${entry.updatedAt}`,
      ...Object.entries(entry.account.resources).map(
        ([r, s]) => `  ${r}: every ${s?.everyMinutes} min (${s?.mode ?? 'incremental'})`,
      ),
    ].join('\n');
  } finally {
    await c.close();
  }
}

export async function accountsChange(
  target: Target,
  id: string,
  action: 'pause' | 'resume' | 'remove',
): Promise<string> {
  const c = await connectRegistry(target);
  try {
    const exists = await c.registry.get(id);
    if (!exists) throw new UsageError(`The account "${id}" is not registered in ${c.where}.`);
    if (action === 'remove') {
      await c.registry.remove(id);
      return (
        `Removed ${id} from the registry: it is no longer scheduled, and its queued jobs are dead-lettered as ` +
        'unknown-account. Its mirror, cursors and secret are kept (delete them yourself if you mean to). ' +
        'An account of the configuration file comes back at the next start unless you remove it there too.'
      );
    }
    await c.registry.setPaused(id, action === 'pause');
    return action === 'pause'
      ? `Paused ${id}: the scheduler enqueues nothing for it from its next run; jobs already queued finish.`
      : `Resumed ${id}: it is synced from the scheduler's next run.`;
  } finally {
    await c.close();
  }
}
