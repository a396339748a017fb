// Adapter: the (account, resource) lease in the state table (`<account>#<resource>`, `lease`). One
// token owns it: the run id of the sync it was taken for. The scheduler takes it when it enqueues a
// sync, the sync renews it while it pages, continues or waits, and frees it when it finishes; the
// checkpoint of a run is taken over only once the run no longer holds a live lease (runs.ts).
import { z } from 'zod';
import { checkInput, durationMsField, epochMsField, epochSeconds, idField, iso } from './fields.ts';
import { itemId, type StateTable } from './table.ts';
import { STATE_TABLE, stateKey } from './tables.ts';

export interface Lease {
  account: string;
  resource: string;
  /** The run id that holds it. */
  owner: string;
  expiresAtMs: number;
  acquiredAt: string;
  /** The job attempt whose invocation holds the run now (claimInvocation), and until when at most. */
  heldAttempt?: number;
  heldUntilMs?: number;
}

const leaseItemSchema = z.object({
  account: z.string(),
  resource: z.string(),
  owner: z.string(),
  expiresAtMs: z.number(),
  acquiredAt: z.string(),
  heldAttempt: z.number().optional(),
  heldUntilMs: z.number().optional(),
});

/**
 * What claimInvocation found: `claimed`; `busy` (another run holds a live lease); `stale` (a later
 * attempt of this run has already run: this message is an old copy); `duplicate` (this very attempt
 * is being run by another invocation now, until `heldUntilMs` at most: SQS delivered it twice).
 */
export type InvocationClaim =
  | { status: 'claimed' }
  | { status: 'busy'; owner: string }
  | { status: 'stale'; heldAttempt: number }
  | { status: 'duplicate'; heldUntilMs: number };

/** The arguments every lease change takes, checked the same way. */
function checkLeaseArgs(owner: string, ttlMs: number, nowMs: number): void {
  checkInput(idField, 'owner', owner);
  checkInput(durationMsField, 'ttlMs', ttlMs);
  checkInput(epochMsField, 'nowMs', nowMs);
}

export class DynamoLeaseStore {
  private readonly table: StateTable;
  private readonly retentionMs: number;
  private readonly now: () => number;

  /** `retentionMs`: expired leases carry a TTL attribute this long after their expiry. */
  constructor(table: StateTable, retentionMs: number, now: () => number) {
    this.table = table;
    this.retentionMs = retentionMs;
    this.now = now;
  }

  /**
   * Takes the lease of (account, resource) for `owner` until nowMs + ttlMs, if it is free, expired, or
   * already `owner`'s. True when `owner` holds it now; false when another owner holds a live lease.
   */
  async acquire(
    account: string,
    resource: string,
    owner: string,
    ttlMs: number,
    nowMs: number = this.now(),
  ): Promise<boolean> {
    const key = stateKey.lease(account, resource);
    checkLeaseArgs(owner, ttlMs, nowMs);
    const item = {
      account,
      resource,
      owner,
      expiresAtMs: nowMs + ttlMs,
      acquiredAt: iso(nowMs),
      [STATE_TABLE.ttlAttribute]: epochSeconds(nowMs + ttlMs + this.retentionMs),
    };
    return this.table.put('acquireLease', key, item, {
      ConditionExpression: 'attribute_not_exists(#pk) OR #expires <= :now OR #owner = :owner',
      ExpressionAttributeNames: { '#pk': 'pk', '#expires': 'expiresAtMs', '#owner': 'owner' },
      ExpressionAttributeValues: { ':now': nowMs, ':owner': owner },
    });
  }

  /** Extends `owner`'s live lease to nowMs + ttlMs. False when it expired or another owner holds it. */
  async renew(
    account: string,
    resource: string,
    owner: string,
    ttlMs: number,
    nowMs: number = this.now(),
  ): Promise<boolean> {
    const key = stateKey.lease(account, resource);
    checkLeaseArgs(owner, ttlMs, nowMs);
    return this.table.update('renewLease', key, {
      UpdateExpression: 'SET #expires = :expires, #ttl = :ttl',
      ConditionExpression: '#owner = :owner AND #expires > :now',
      ExpressionAttributeNames: {
        '#owner': 'owner',
        '#expires': 'expiresAtMs',
        '#ttl': STATE_TABLE.ttlAttribute,
      },
      ExpressionAttributeValues: {
        ':owner': owner,
        ':now': nowMs,
        ':expires': nowMs + ttlMs,
        ':ttl': epochSeconds(nowMs + ttlMs + this.retentionMs),
      },
    });
  }

  /**
   * `owner` holds the lease until nowMs + ttlMs: renewed when it holds it already (the scheduler took
   * it for this run), taken when it is free or expired (an on-demand job). False when another holds it.
   */
  async claim(account: string, resource: string, owner: string, ttlMs: number): Promise<boolean> {
    return (
      (await this.renew(account, resource, owner, ttlMs)) ||
      (await this.acquire(account, resource, owner, ttlMs))
    );
  }

  /**
   * Claims the lease for one invocation of attempt `attempt` of run `owner` (claim's rules), fenced by
   * the attempt: an invocation of the same attempt still within its time (`holdUntilMs`, the end of
   * its invocation) or of a later attempt keeps it, so two deliveries of one message never page one
   * list at once. After its invocation's end a crashed attempt's redelivery takes it over.
   */
  async claimInvocation(
    account: string,
    resource: string,
    owner: string,
    attempt: number,
    ttlMs: number,
    holdUntilMs: number,
    nowMs: number = this.now(),
  ): Promise<InvocationClaim> {
    const key = stateKey.lease(account, resource);
    checkLeaseArgs(owner, ttlMs, nowMs);
    checkInput(epochMsField, 'holdUntilMs', holdUntilMs);
    if (!Number.isSafeInteger(attempt) || attempt < 0) throw new TypeError('attempt must be a whole number');
    const names = {
      '#owner': 'owner',
      '#expires': 'expiresAtMs',
      '#ttl': STATE_TABLE.ttlAttribute,
      '#ha': 'heldAttempt',
      '#hu': 'heldUntilMs',
    };
    const renewed = await this.table.update('claimLease', key, {
      UpdateExpression: 'SET #expires = :expires, #ttl = :ttl, #ha = :attempt, #hu = :until',
      ConditionExpression:
        '#owner = :owner AND #expires > :now AND (attribute_not_exists(#ha) OR #ha < :attempt OR #hu <= :now)',
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: {
        ':owner': owner,
        ':now': nowMs,
        ':expires': nowMs + ttlMs,
        ':ttl': epochSeconds(nowMs + ttlMs + this.retentionMs),
        ':attempt': attempt,
        ':until': holdUntilMs,
      },
    });
    if (renewed) return { status: 'claimed' };
    const taken = await this.table.put(
      'acquireLease',
      key,
      {
        account,
        resource,
        owner,
        expiresAtMs: nowMs + ttlMs,
        acquiredAt: iso(nowMs),
        heldAttempt: attempt,
        heldUntilMs: holdUntilMs,
        [STATE_TABLE.ttlAttribute]: epochSeconds(nowMs + ttlMs + this.retentionMs),
      },
      {
        ConditionExpression: 'attribute_not_exists(#pk) OR #expires <= :now',
        ExpressionAttributeNames: { '#pk': 'pk', '#expires': 'expiresAtMs' },
        ExpressionAttributeValues: { ':now': nowMs },
      },
    );
    if (taken) return { status: 'claimed' };
    const lease = await this.get(account, resource);
    if (!lease) return { status: 'busy', owner: '' };
    if (lease.owner !== owner) return { status: 'busy', owner: lease.owner };
    if ((lease.heldAttempt ?? -1) > attempt) return { status: 'stale', heldAttempt: lease.heldAttempt ?? 0 };
    return { status: 'duplicate', heldUntilMs: lease.heldUntilMs ?? nowMs };
  }

  /** Releases the lease if `owner` holds it (live or expired). False when it is absent or another's. */
  async release(account: string, resource: string, owner: string): Promise<boolean> {
    const key = stateKey.lease(account, resource);
    checkInput(idField, 'owner', owner);
    return this.table.remove('releaseLease', key, {
      ConditionExpression: '#owner = :owner',
      ExpressionAttributeNames: { '#owner': 'owner' },
      ExpressionAttributeValues: { ':owner': owner },
    });
  }

  /** The stored lease (live or expired; compare expiresAtMs with the clock), or undefined. */
  async get(account: string, resource: string): Promise<Lease | undefined> {
    return this.table.get(stateKey.lease(account, resource), leaseItemSchema);
  }

  /** The leases of many (account, resource) pairs, in BatchGetItem calls of 100 (the scheduler's read). */
  async getMany(
    pairs: ReadonlyArray<{ account: string; resource: string }>,
  ): Promise<Array<Lease | undefined>> {
    const items = await this.table.getMany(
      pairs.map((p) => stateKey.lease(p.account, p.resource)),
      leaseItemSchema,
    );
    return pairs.map((p) => items.get(itemId(stateKey.lease(p.account, p.resource))));
  }

  /** Whether `owner` holds a live lease of (account, resource) at nowMs. */
  async isHeldBy(account: string, resource: string, owner: string, nowMs: number): Promise<boolean> {
    const lease = await this.get(account, resource);
    return lease !== undefined && lease.owner === owner && lease.expiresAtMs > nowMs;
  }
}
