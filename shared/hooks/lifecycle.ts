// Use case: the REST hook lifecycle of one account: register the hooks its synced lists need (one per
// event key, all on the account's tokenised URL), list, verify and remove them, and the scheduled
// check that finds hooks Keap turned Inactive (after 4 failed deliveries or a 410), re-verifies them
// and names the lists whose changes may have been missed meanwhile (the caller runs a catch-up sync).
// Every Keap call goes through the client it is given (in the pipeline: the ledger-guarded one).
import type { AccountConfig } from '../config/app-config.ts';
import type { SyncResource } from '../keap/registry.ts';
import type { RestHook } from '../keap/resources.ts';
import { type HookEndpoint, hookUrl } from './endpoints.ts';
import { HOOK_EVENTS, type HookResource, hookEventOf } from './events.ts';

/** The part of the Keap client the lifecycle uses (v1 `/hooks`). */
export interface HooksApi {
  listHooks(): Promise<RestHook[]>;
  createHook(hook: { eventKey: string; hookUrl: string }): Promise<RestHook>;
  deleteHook(key: string): Promise<void>;
  verifyHook(key: string): Promise<RestHook>;
}

/** Where the account's endpoint (token, event keys, last check) is kept. */
export interface HookEndpointPort {
  get(account: string): Promise<HookEndpoint | undefined>;
  ensure(account: string, eventKeys?: readonly string[]): Promise<HookEndpoint>;
  setEventKeys(account: string, eventKeys: readonly string[]): Promise<HookEndpoint>;
  recordCheck(account: string, check: HookCheckRecord): Promise<void>;
}

/** What the last hook check found, kept on the endpoint item (the scheduler relaxes polling on it). */
export interface HookCheckRecord {
  checkedAt: string;
  /** Every event key registered with our URL was Verified (after re-verification). */
  healthy: boolean;
  /** Status per event key. */
  statuses: Record<string, string>;
}

/** The hooks of the account's synced lists, as event keys (every event the registry gives each list). */
export function hookEventKeysFor(account: AccountConfig, extra: readonly string[] = []): string[] {
  const configured = new Set<string>(Object.keys(account.resources));
  const keys = [...HOOK_EVENTS.entries()].filter(([, e]) => configured.has(e.resource)).map(([key]) => key);
  return [...new Set([...keys, ...extra])].sort();
}

/** A hook Keap holds for this account's receiver (its URL carries `/hooks/<account>/`). */
export function isOurHook(hook: { hookUrl: string }, account: string): boolean {
  return hook.hookUrl.includes(`/hooks/${account}/`);
}

/** The synced lists an event key announces (tag events also touch tag applications). */
export function resourcesOfEventKeys(keys: readonly string[]): HookResource[] {
  return [...new Set(keys.map((k) => hookEventOf(k)?.resource).filter((r) => r !== undefined))];
}

export interface RegisterResult {
  created: RestHook[];
  kept: RestHook[];
  /** Ours, but on another URL (another base or an old token): deleted and registered again. */
  replaced: string[];
}

/**
 * Registers a hook for each event key on `<baseUrl>/hooks/<account>/<token>`. The endpoint item is
 * written first, so the receiver already accepts Keap's verification handshake when the hook is
 * created. A hook already on exactly that URL is kept (registering twice is harmless).
 */
export async function registerHooks(o: {
  api: HooksApi;
  endpoints: HookEndpointPort;
  account: string;
  baseUrl: string;
  eventKeys: readonly string[];
}): Promise<RegisterResult> {
  const endpoint = await o.endpoints.ensure(o.account, o.eventKeys);
  const url = hookUrl(o.baseUrl, o.account, endpoint.token);
  const existing = (await o.api.listHooks()).filter((h) => isOurHook(h, o.account));
  const result: RegisterResult = { created: [], kept: [], replaced: [] };
  for (const eventKey of o.eventKeys) {
    const mine = existing.filter((h) => h.eventKey === eventKey);
    const same = mine.find((h) => h.hookUrl === url);
    for (const stale of mine.filter((h) => h !== same)) {
      await o.api.deleteHook(stale.key);
      result.replaced.push(eventKey);
    }
    if (same) result.kept.push(same);
    else {
      const created = await o.api.createHook({ eventKey, hookUrl: url });
      // Keap may answer the create before its handshake: ask for the verification now.
      result.created.push(created.status === 'Verified' ? created : await o.api.verifyHook(created.key));
    }
  }
  return result;
}

/** The account's hooks (ours only). */
export async function listHooks(api: HooksApi, account: string): Promise<RestHook[]> {
  return (await api.listHooks()).filter((h) => isOurHook(h, account));
}

/** Asks Keap to verify each of our hooks that is not Verified (all of them with `all`). */
export async function verifyHooks(api: HooksApi, account: string, all = false): Promise<RestHook[]> {
  const out: RestHook[] = [];
  for (const hook of await listHooks(api, account))
    out.push(all || hook.status !== 'Verified' ? await api.verifyHook(hook.key) : hook);
  return out;
}

/** Deletes our hooks (of `eventKeys`, or all) and stops the receiver accepting their keys. */
export async function removeHooks(o: {
  api: HooksApi;
  endpoints: HookEndpointPort;
  account: string;
  eventKeys?: readonly string[];
}): Promise<string[]> {
  const removed: string[] = [];
  for (const hook of await listHooks(o.api, o.account)) {
    if (o.eventKeys && !o.eventKeys.includes(hook.eventKey)) continue;
    await o.api.deleteHook(hook.key);
    removed.push(hook.eventKey);
  }
  const endpoint = await o.endpoints.get(o.account);
  if (endpoint)
    await o.endpoints.setEventKeys(
      o.account,
      o.eventKeys ? endpoint.eventKeys.filter((k) => !o.eventKeys?.includes(k)) : [],
    );
  return removed;
}

export interface HookCheckResult {
  hooks: RestHook[];
  /** Event keys Keap had turned Inactive (or left Unverified). */
  inactive: string[];
  /** Of those, the ones Verified again. */
  reverified: string[];
  /** Event keys the endpoint accepts but Keap holds no hook of ours for (deleted on Keap's side). */
  missing: string[];
  /** The synced lists whose changes may have been missed: run an incremental catch-up of each. */
  catchUp: SyncResource[];
}

/**
 * The scheduled check: one `GET /hooks`, then a verify of each hook that is not Verified. Lists whose
 * hooks were not Verified (or are missing) need a catch-up; the result is recorded on the endpoint.
 */
export async function checkHooks(o: {
  api: HooksApi;
  endpoints: HookEndpointPort;
  account: AccountConfig;
  now: () => number;
}): Promise<HookCheckResult | undefined> {
  const endpoint = await o.endpoints.get(o.account.id);
  if (!endpoint || endpoint.eventKeys.length === 0) return undefined;
  const hooks = await listHooks(o.api, o.account.id);
  const inactive: string[] = [];
  const reverified: string[] = [];
  const statuses: Record<string, string> = {};
  const after: RestHook[] = [];
  for (const hook of hooks) {
    let current = hook;
    if (hook.status !== 'Verified') {
      inactive.push(hook.eventKey);
      current = await o.api.verifyHook(hook.key);
      if (current.status === 'Verified') reverified.push(hook.eventKey);
    }
    statuses[current.eventKey] = current.status ?? 'unknown';
    after.push(current);
  }
  const missing = endpoint.eventKeys.filter((k) => !hooks.some((h) => h.eventKey === k));
  const configured = new Set<string>(Object.keys(o.account.resources));
  const catchUp = resourcesOfEventKeys([...inactive, ...missing])
    .map((r): string => r)
    .filter((r): r is SyncResource => configured.has(r));
  const healthy = missing.length === 0 && endpoint.eventKeys.every((k) => statuses[k] === 'Verified');
  await o.endpoints.recordCheck(o.account.id, {
    checkedAt: new Date(o.now()).toISOString(),
    healthy,
    statuses,
  });
  return { hooks: after, inactive, reverified, missing, catchUp };
}
