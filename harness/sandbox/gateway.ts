// Domain: the sandbox's stand-in for Keap's API gateway: key check, GatewayRules, x-keap-* headers, 429 bodies.
import { createHash } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { type GatewayLimits, GatewayRules, type Violation } from '../gateway/rules.ts';

export interface SandboxKey {
  key: string;
  tenant: string;
}

export interface ArrivalRecord {
  /** Arrival time on the sandbox clock (after injected latency), epoch ms. */
  t: number;
  tenant: string;
  /** Key fingerprint ("k" + 12 hex of sha256), never the key; "-" when no key was sent. */
  keyId: string;
  method: string;
  path: string;
  /** Status sent; 0 for a request the sandbox left hanging. */
  status: number;
  /** Why a 429 was sent: a GatewayRules violation, or "storm" for an injected 429 storm. */
  rule?: string;
}

export type Rejection = Violation | 'storm';

export type GatewayDecision =
  | { kind: 'unauthorized'; tenant: string; keyId: string; body: unknown }
  | {
      kind: 'throttled';
      tenant: string;
      keyId: string;
      rule: Rejection;
      body: unknown;
      headers: Record<string, string>;
    }
  | { kind: 'admitted'; tenant: string; keyId: string; headers: Record<string, string> };

/** The fingerprint logged instead of a key. */
export function keyFingerprint(key: string): string {
  return `k${createHash('sha256').update(key).digest('hex').slice(0, 12)}`;
}

export const INVALID_TOKEN_BODY = {
  fault: { faultstring: 'Invalid access token', detail: { errorcode: 'oauth.v2.InvalidAccessToken' } },
};

/** Keap's throttle bodies: Apigee faults for the product limits, the tenant gateway's body for tenant caps. */
function throttleBody(rule: Rejection, spikeLimit: string, identifier: string): unknown {
  switch (rule) {
    case 'spike':
      return {
        fault: {
          faultstring: `Spike arrest violation. Allowed rate : ${spikeLimit}`,
          detail: { errorcode: 'policies.ratelimit.SpikeArrestViolation' },
        },
      };
    case 'tenant-minute':
    case 'tenant-day':
      return { code: '429', message: 'Quota Exceeded', status: 'Request Throttled' };
    default:
      return {
        fault: {
          faultstring: `Rate limit quota violation. Quota limit exceeded. Identifier : ${identifier}`,
          detail: { errorcode: 'policies.ratelimit.QuotaViolation' },
        },
      };
  }
}

/** Apigee's notation for a spike arrest rate: "10ps" for 100 ms spacing, "N pm" when below 1 per second. */
export function spikeLimitHeader(spikeIntervalMs: number): string {
  if (spikeIntervalMs <= 0) return '1000ps';
  const perSecond = 1000 / spikeIntervalMs;
  if (Number.isInteger(perSecond)) return `${perSecond}ps`;
  return `${Math.max(1, Math.round(60_000 / spikeIntervalMs))}pm`;
}

function windowUnit(ms: number): { unit: string; interval: string } {
  if (ms % 60_000 === 0) return { unit: 'minute', interval: String(ms / 60_000) };
  if (ms % 1000 === 0) return { unit: 'second', interval: String(ms / 1000) };
  return { unit: 'millisecond', interval: String(ms) };
}

/**
 * Judges each REST call: the key must be configured and not revoked (else 401, which counts against
 * nothing), an injected 429 storm rejects everything, and GatewayRules decides the rest. Arrivals are
 * stamped by the caller and never move backwards here (a clock stepping back is held at the last stamp).
 */
export class SandboxGateway {
  readonly rules: GatewayRules;
  private readonly keys: Map<string, SandboxKey>;
  private readonly spikeLimit: string;
  private lastArrival = Number.NEGATIVE_INFINITY;

  constructor(limits: Partial<GatewayLimits>, keys: readonly SandboxKey[]) {
    this.rules = new GatewayRules(limits);
    this.keys = new Map(keys.map((k) => [k.key, k]));
    this.spikeLimit = spikeLimitHeader(this.rules.limits.spikeIntervalMs);
  }

  get limits(): GatewayLimits {
    return this.rules.limits;
  }

  /** Accepts one more key (a tenant added while the sandbox runs); false when it is known already. */
  addKey(key: SandboxKey): boolean {
    if (this.keys.has(key.key)) return false;
    this.keys.set(key.key, key);
    return true;
  }

  /** Turns a clock reading into this call's arrival time (non-decreasing, as GatewayRules requires). */
  stamp(clockNow: number): number {
    this.lastArrival = Math.max(this.lastArrival, clockNow);
    return this.lastArrival;
  }

  judge(
    rawKey: string | undefined,
    arrival: number,
    revokedFrom: number | undefined,
    stormed: boolean,
  ): GatewayDecision {
    const keyId = rawKey ? keyFingerprint(rawKey) : '-';
    const known = rawKey === undefined ? undefined : this.keys.get(rawKey);
    if (!known || (revokedFrom !== undefined && arrival >= revokedFrom))
      return { kind: 'unauthorized', tenant: known?.tenant ?? '', keyId, body: INVALID_TOKEN_BODY };
    const tenant = known.tenant;
    if (stormed) {
      return {
        kind: 'throttled',
        tenant,
        keyId,
        rule: 'storm',
        body: throttleBody('storm', this.spikeLimit, keyId),
        headers: this.headers(arrival, known),
      };
    }
    const verdict = this.rules.admit(arrival, tenant, known.key);
    const headers = this.headers(arrival, known);
    if (!verdict.ok) {
      const identifier =
        verdict.rule.startsWith('tenant') || this.limits.quotaScope === 'tenant' ? tenant : keyId;
      return {
        kind: 'throttled',
        tenant,
        keyId,
        rule: verdict.rule,
        body: throttleBody(verdict.rule, this.spikeLimit, identifier),
        headers,
      };
    }
    return { kind: 'admitted', tenant, keyId, headers };
  }

  /** Keap's `x-keap-*` headers for `key` at `now`, after the call was counted (if it was). */
  headers(now: number, key: SandboxKey): Record<string, string> {
    const s = this.rules.state(now, key.tenant, key.key);
    const minute = windowUnit(this.limits.minuteWindowMs);
    return {
      'x-keap-product-quota-limit': String(s.productDay.limit),
      'x-keap-product-quota-available': String(s.productDay.available),
      'x-keap-product-quota-used': String(s.productDay.used),
      'x-keap-product-quota-time-unit': 'day',
      'x-keap-product-quota-interval': '1',
      'x-keap-product-quota-expiry-time': String(s.productDay.expiry),
      'x-keap-product-throttle-limit': String(s.productMinute.limit),
      'x-keap-product-throttle-available': String(s.productMinute.available),
      'x-keap-product-throttle-used': String(s.productMinute.used),
      'x-keap-product-throttle-time-unit': minute.unit,
      'x-keap-product-throttle-interval': minute.interval,
      'x-keap-tenant-throttle-limit': String(s.tenantMinute.limit),
      'x-keap-tenant-throttle-available': String(s.tenantMinute.available),
      'x-keap-tenant-throttle-used': String(s.tenantMinute.used),
      // Not in Keap's documentation (UNVERIFIED); sent so clients can see the tenant day cap.
      'x-keap-tenant-quota-limit': String(s.tenantDay.limit),
      'x-keap-tenant-quota-available': String(s.tenantDay.available),
      'x-keap-tenant-quota-used': String(s.tenantDay.used),
      'x-keap-tenant-id': key.tenant,
      'x-keap-product-spike-limit': this.spikeLimit,
    };
  }
}

/** Every arrival, in memory and (optionally) appended as JSON lines to a file. */
export class ArrivalLog {
  readonly records: ArrivalRecord[] = [];
  private readonly stream: WriteStream | undefined;

  constructor(path: string | undefined) {
    this.stream = path ? createWriteStream(path, { flags: 'a' }) : undefined;
  }

  add(rec: ArrivalRecord): void {
    this.records.push(rec);
    this.stream?.write(`${JSON.stringify(rec)}\n`);
  }

  async close(): Promise<void> {
    const s = this.stream;
    if (!s) return;
    await new Promise<void>((resolve) => s.end(resolve));
  }
}
