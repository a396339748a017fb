// Use case (CLI): `keap-sync hooks register|list|verify|remove`: the REST hook lifecycle of each
// account (shared/hooks/lifecycle.ts), locally against the running system (its sandbox and local
// receiver) or with --aws against the deployed stack (its state table, its Function URL). Every Keap
// call goes through the ledger-guarded client the worker uses. The token is never printed.
import { type AppConfig, findAccount } from '#shared/config/app-config.ts';
import {
  type HooksApi,
  hookEventKeysFor,
  listHooks,
  registerHooks,
  removeHooks,
  verifyHooks,
} from '#shared/hooks/index.ts';
import type { RestHook } from '#shared/keap/resources.ts';
import { ClientCache } from '#shared/pipeline/deps.ts';
import { UsageError } from './commander.ts';
import { connect, type Target } from './operator.ts';
import { runningEndpoints } from './run.ts';
import { formatTable } from './table.ts';

export type HooksAction = 'register' | 'list' | 'verify' | 'remove';

export interface HooksOptions {
  account?: string;
  /** The receiver's base URL (--aws: the stack output HookReceiverUrl; locally: the running receiver's). */
  url?: string;
  eventKeys?: string[];
  json?: boolean;
}

/** A hook URL with its token masked, for output. */
export function maskHookUrl(url: string): string {
  return url.replace(/(\/hooks\/[a-z0-9-]+\/)[A-Za-z0-9_-]+$/, '$1<token>');
}

function rows(account: string, hooks: readonly RestHook[]) {
  return hooks.map((h) => ({
    account,
    key: h.key,
    eventKey: h.eventKey,
    status: h.status ?? '',
    url: maskHookUrl(h.hookUrl),
  }));
}

export async function hooksCommand(
  action: HooksAction,
  given: AppConfig,
  target: Target,
  o: HooksOptions,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  // Locally, Keap is whatever the running system talks to (its sandbox, unless it was given a key).
  const running = target.aws ? undefined : runningEndpoints(target.dataDir);
  const config: AppConfig = running
    ? { ...given, keap: { ...given.keap, baseUrl: running.keapBaseUrl } }
    : given;
  const accounts = o.account === undefined ? config.accounts : [findAccount(config, o.account)];
  if (accounts.some((a) => a === undefined))
    throw new UsageError(
      `No account "${o.account}" in the configuration (${config.accounts.map((a) => a.id).join(', ')}).`,
    );
  const baseUrl = o.url ?? (target.aws ? env.HOOK_RECEIVER_URL : running?.hookReceiverUrl);
  if (action === 'register' && !baseUrl)
    throw new UsageError(
      target.aws
        ? 'hooks register --aws needs --url <HookReceiverUrl> (the KeapSyncApp output), or HOOK_RECEIVER_URL.'
        : 'hooks register needs the local receiver: start the system with "npm start", or give --url.',
    );
  const c = await connect(config, target, true);
  try {
    const deps = c.deps;
    const endpoints = deps?.hookEndpoints;
    if (!deps || !endpoints) throw new UsageError('keap-sync is not running: start it with "npm start".');
    const clients = new ClientCache(deps);
    const out: ReturnType<typeof rows> = [];
    const notes: string[] = [];
    for (const account of accounts) {
      if (!account) continue;
      const api: HooksApi = clients.for(account, await deps.keys.get(account));
      const keys = o.eventKeys ?? hookEventKeysFor(account);
      if (action === 'register') {
        const r = await registerHooks({
          api,
          endpoints,
          account: account.id,
          baseUrl: baseUrl ?? '',
          eventKeys: keys,
        });
        notes.push(
          `${account.id}: ${r.created.length} created, ${r.kept.length} kept, ${r.replaced.length} replaced`,
        );
        out.push(...rows(account.id, [...r.created, ...r.kept]));
      } else if (action === 'list') {
        out.push(...rows(account.id, await listHooks(api, account.id)));
      } else if (action === 'verify') {
        out.push(...rows(account.id, await verifyHooks(api, account.id, true)));
      } else {
        const removed = await removeHooks({
          api,
          endpoints,
          account: account.id,
          ...(o.eventKeys ? { eventKeys: o.eventKeys } : {}),
        });
        notes.push(
          `${account.id}: removed ${removed.length} hook(s)${removed.length ? `: ${removed.join(', ')}` : ''}`,
        );
      }
    }
    if (o.json) return JSON.stringify({ hooks: out, notes }, null, 2);
    const table = out.length
      ? formatTable(
          ['account', 'key', 'event key', 'status', 'url'],
          out.map((r) => [r.account, r.key, r.eventKey, r.status, r.url]),
        )
      : '';
    return [...notes, table].filter((s) => s !== '').join('\n') || 'No hooks.';
  } finally {
    await c.close();
  }
}
