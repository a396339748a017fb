// Use-case wiring: everything a worker or the scheduler needs, passed in (Lambda and local alike).
import type { AccountConfig, AppConfig } from '../config/app-config.ts';
import type { HookEndpointPort } from '../hooks/lifecycle.ts';
import { deriveKeyId, KeapClient, KeyRejectedError, type QuotaLedgerPort } from '../keap/index.ts';
import type { QuotaLedger } from '../quota/index.ts';
import type { ModelStore } from './custom-fields.ts';
import type { AccountKey } from './keys.ts';
import { type Log, type Metrics, withFields } from './ports.ts';
import type {
  AccountDirectoryPort,
  AccountStore,
  KeySource,
  LeaseStore,
  Mirror,
  Queue,
  RunStore,
  SweepIdStore,
  WriteStore,
} from './stores.ts';

/** The ports the use cases take; compose.ts wires them (Lambda and local runtime alike). */
export interface PipelineDeps {
  config: AppConfig;
  ledger: QuotaLedger;
  runs: RunStore;
  leases: LeaseStore;
  accounts: AccountStore;
  /** The accounts to sync (the registry); `config.accounts` only seeds it. */
  directory: AccountDirectoryPort;
  writes: WriteStore;
  /** Each list's custom-field model (the state table). */
  models: ModelStore;
  mirror: Mirror;
  queue: Queue;
  keys: KeySource;
  log: Log;
  metrics: Metrics;
  /** Each account's REST hook endpoint (token, event keys, last check); absent: hooks are not used. */
  hookEndpoints?: HookEndpointPort;
  /** Where a sweep too long for one invocation keeps the ids it read (absent: such a sweep restarts). */
  sweeps?: SweepIdStore;
}

/** One Keap client per account and key version, built on first use. */
export class ClientCache {
  private readonly clients = new Map<string, KeapClient>();
  private readonly reported = new Map<KeapClient, { requests: number; rateLimited: number }>();
  /** Key versions Keap answered 401 in this process (account \u0000 version). */
  private readonly rejected = new Set<string>();
  private readonly deps: Pick<PipelineDeps, 'config' | 'ledger' | 'log'>;
  /** `log` is the function's own logger: every client's retry, 429 and ledger warnings go to it. */
  constructor(deps: Pick<PipelineDeps, 'config' | 'ledger' | 'log'>) {
    this.deps = deps;
  }

  /**
   * Keap rejected this key version: calls with it that are not sent yet (the other records of the batch,
   * concurrent invocations) stop at their ledger slot with KeyRejectedError instead of calling Keap.
   */
  markRejected(accountId: string, versionId: string): void {
    this.rejected.add(`${accountId}\u0000${versionId}`);
  }

  for(account: AccountConfig, key: AccountKey): KeapClient {
    const id = `${account.id}\u0000${key.versionId}`;
    let client = this.clients.get(id);
    if (!client) {
      const { config, ledger } = this.deps;
      const keyId = deriveKeyId(key.apiKey); // the id the client derives for itself
      const gated: QuotaLedgerPort = {
        acquire: (o) => ledger.acquire(o),
        waitForSlot: async (slot, item) => {
          const onTime = await ledger.waitForSlot(slot, item);
          if (this.rejected.has(id)) {
            ledger.release(account.tenant, keyId, [slot]).catch(() => undefined);
            throw new KeyRejectedError(
              { method: 'any', path: 'request', keyId, tenant: account.tenant, attempts: 0 },
              'an earlier request with this key was answered 401; this one was not sent',
            );
          }
          return onTime;
        },
        reportResponse: (tenant, k, slot, reading) => ledger.reportResponse(tenant, k, slot, reading),
        report429: (tenant, k, kind, retryAt) => ledger.report429(tenant, k, kind, retryAt),
        release: (tenant, k, slots) => ledger.release(tenant, k, slots),
        // The last check before each request is written: without it a stall after the wait goes unseen.
        admit: (tenant, k, slot) => ledger.admit(tenant, k, slot),
        now: () => ledger.now(),
      };
      client = new KeapClient({
        apiKey: key.apiKey,
        tenant: account.tenant,
        ledger: gated,
        // The client is shared by the account's concurrent jobs: its lines carry the account, not a job.
        logger: withFields(this.deps.log, { account: account.id }),
        settings: {
          baseUrl: config.keap.baseUrl,
          timeoutMs: config.keap.timeoutMs,
          waitBudgetMs: config.worker.waitBudgetMs,
        },
      });
      for (const [other, c] of this.clients)
        if (other.startsWith(`${account.id}\u0000`) && c !== client) this.clients.delete(other);
      this.clients.set(id, client);
    }
    return client;
  }

  /** Keap requests and 429s per account since the last call (clients are shared by concurrent jobs). */
  drainStats(): Array<{ account: string; requests: number; rateLimited: number }> {
    const out: Array<{ account: string; requests: number; rateLimited: number }> = [];
    for (const [id, client] of this.clients) {
      const seen = this.reported.get(client) ?? { requests: 0, rateLimited: 0 };
      const now = { requests: client.stats.requests, rateLimited: client.stats.rateLimited };
      this.reported.set(client, now);
      const account = id.split('\u0000')[0] ?? id;
      if (now.requests > seen.requests || now.rateLimited > seen.rateLimited) {
        out.push({
          account,
          requests: now.requests - seen.requests,
          rateLimited: now.rateLimited - seen.rateLimited,
        });
      }
    }
    return out;
  }
}
