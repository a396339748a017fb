// Use case: one REST hook request, from HTTP to the job queue. Finds the account's endpoint (the
// account is the URL's second-to-last segment, the token its last), runs the receiver core, and for an
// accepted delivery queues its jobs before answering 200: queue first, work later, so Keap's 30 s
// limit is never at risk and a delivery that could not be queued is answered 503 and retried by Keap.
// Anything without the right token is answered 4xx and does no work. The token is never logged.
import type { Log, Metrics } from '../pipeline/ports.ts';
import type { HookEndpoint } from './endpoints.ts';
import type { HookEventJob } from './job.ts';
import { createHookReceiver, type HookRequest, type HookResponse } from './receiver.ts';

/** Reads an account's endpoint (the state table, in AWS and locally). */
export interface HookEndpointLookup {
  get(account: string): Promise<HookEndpoint | undefined>;
}

/** Queues the jobs of one delivery; throws when any of them was not queued. */
export type HookJobSink = (jobs: readonly HookEventJob[]) => Promise<void>;

export interface HookIngressDeps {
  endpoints: HookEndpointLookup;
  enqueue: HookJobSink;
  log: Log;
  metrics: Metrics;
  /** Largest body accepted, bytes. */
  maxBodyBytes: number;
  /** How long an endpoint read from the store is reused; a wrong token re-reads it sooner. */
  cacheMs?: number;
  clock?: () => number;
}

/** An endpoint whose token just failed is re-read if it was cached longer ago than this. */
const REREAD_AFTER_MS = 5_000;
const ACCOUNT = /^[a-z0-9][a-z0-9-]{0,39}$/;

function reply(status: number, message: string): HookResponse {
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8' },
    body: JSON.stringify({ message }),
  };
}

/** The account named by `/hooks/<account>/<token>` (any prefix), or undefined. */
export function accountOfPath(path: string): string | undefined {
  const parts = (path.split('?')[0] ?? '').split('/').filter((s) => s !== '');
  const account = parts[parts.length - 2];
  return account !== undefined && ACCOUNT.test(account) ? account : undefined;
}

type Receiver = ReturnType<typeof createHookReceiver>;

/** Builds the request handler; endpoints are cached per account (successful reads only). */
export function createHookIngress(deps: HookIngressDeps): (req: HookRequest) => Promise<HookResponse> {
  const clock = deps.clock ?? Date.now;
  const cacheMs = deps.cacheMs ?? 60_000;
  const cache = new Map<string, { receiver: Receiver; readAt: number }>();

  async function receiverOf(account: string, fresh: boolean): Promise<Receiver | undefined> {
    const cached = cache.get(account);
    const now = clock();
    if (cached && !fresh && now - cached.readAt < cacheMs) return cached.receiver;
    const endpoint = await deps.endpoints.get(account);
    if (!endpoint) {
      cache.delete(account);
      return undefined;
    }
    const receiver = createHookReceiver({
      account,
      token: endpoint.token,
      eventKeys: endpoint.eventKeys,
      maxBodyBytes: deps.maxBodyBytes,
      clock,
    });
    cache.set(account, { receiver, readAt: now });
    return receiver;
  }

  return async (req) => {
    const account = accountOfPath(req.path);
    const refuse = (
      reason: string,
      status: number,
      message: string,
      fields: Record<string, unknown> = {},
    ) => {
      deps.metrics.add('HookDeliveriesRejected', 1, account ? { account, reason } : { reason });
      deps.log.warn('Hook request refused', { account, reason, status, ...fields });
      return reply(status, message);
    };
    if (!account) return refuse('no-account', 404, 'Not found.');
    let receiver = await receiverOf(account, false);
    if (!receiver) return refuse('no-endpoint', 404, 'Not found.');
    let outcome = receiver(req);
    if (outcome.kind === 'rejected' && outcome.reason === 'wrong-token') {
      const cached = cache.get(account);
      if (cached && clock() - cached.readAt >= REREAD_AFTER_MS) {
        receiver = await receiverOf(account, true);
        if (!receiver) return refuse('no-endpoint', 404, 'Not found.');
        outcome = receiver(req);
      }
    }
    if (outcome.kind === 'rejected')
      return refuse(outcome.reason, outcome.response.status, outcome.message.slice(0, 200));
    if (outcome.kind === 'handshake') {
      deps.log.info('Hook verification answered', { account });
      return outcome.response;
    }
    try {
      await deps.enqueue(outcome.jobs);
    } catch (err) {
      deps.metrics.add('HookEnqueueFailures', 1, { account });
      deps.log.error('Hook delivery not queued; Keap will retry it', {
        account,
        eventKey: outcome.eventKey,
        error: (err as Error).name,
        detail: (err as Error).message.slice(0, 300),
      });
      return reply(503, 'Not queued; retry later.');
    }
    const { resource, event } = outcome.jobs[0] ?? {};
    deps.metrics.add('HookDeliveries', 1, { account });
    deps.log.info('Hook delivery queued', {
      account,
      eventKey: outcome.eventKey,
      resource,
      event,
      objects: outcome.objects,
      jobs: outcome.jobs.length,
    });
    return outcome.response;
  };
}
