import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { GatewayLimits } from '#harness/gateway/rules.ts';
import { type RunningSandbox, type SandboxOptions, startSandbox } from '#harness/sandbox/index.ts';
import { call, ManualClock } from './support.ts';

const T0 = Date.UTC(2026, 7, 3, 12, 0, 0);
const KEYS = [
  { key: 'key-a', tenant: 't1.infusionsoft.com' },
  { key: 'key-b', tenant: 't1.infusionsoft.com' },
  { key: 'key-c', tenant: 't2.infusionsoft.com' },
];
const SPIKE_BODY = {
  fault: {
    faultstring: expect.stringMatching(/^Spike arrest violation/),
    detail: { errorcode: 'policies.ratelimit.SpikeArrestViolation' },
  },
};
const QUOTA_BODY = {
  fault: {
    faultstring: expect.stringMatching(/^Rate limit quota violation\. Quota limit exceeded/),
    detail: { errorcode: 'policies.ratelimit.QuotaViolation' },
  },
};
const TENANT_BODY = { code: '429', message: 'Quota Exceeded', status: 'Request Throttled' };

let sb: RunningSandbox | undefined;
afterEach(async () => {
  await sb?.close();
  sb = undefined;
});

async function start(limits: Partial<GatewayLimits>, clock: ManualClock, extra: SandboxOptions = {}) {
  sb = await startSandbox({ contacts: 20, keys: KEYS, limits, clock: clock.read, ...extra });
  return sb;
}

/** Calls a cheap endpoint with `key` at the clock's current time. */
async function hit(s: RunningSandbox, key: string | null) {
  return call(s, '/rest/v2/tags?page_size=1', { key });
}

describe('gateway: spike arrest', () => {
  it('rejects a second call of one key under 100 ms after the last accepted one, but not another key', async () => {
    const clock = new ManualClock(T0);
    const s = await start({}, clock);
    expect((await hit(s, 'key-a')).status).toBe(200);
    clock.advance(50);
    const spiked = await hit(s, 'key-a');
    expect(spiked.status).toBe(429);
    expect(spiked.json).toEqual(SPIKE_BODY);
    expect(spiked.headers.get('retry-after')).toBeNull();
    expect((await hit(s, 'key-b')).status).toBe(200);
    clock.advance(50);
    expect((await hit(s, 'key-a')).status).toBe(200);
    expect(s.arrivals.map((a) => [a.status, a.rule])).toEqual([
      [200, undefined],
      [429, 'spike'],
      [200, undefined],
      [200, undefined],
    ]);
  });
});

describe('gateway: rolling minute', () => {
  it('holds the limit in every rolling window, and a rejected call counts against nothing', async () => {
    const clock = new ManualClock(T0);
    const s = await start({ minuteLimit: 5, minuteWindowMs: 1000, spikeIntervalMs: 10 }, clock);
    for (let i = 0; i < 5; i++) {
      clock.now = T0 + i * 20;
      expect((await hit(s, 'key-a')).status).toBe(200);
    }
    for (let t = 100; t < 1000; t += 100) {
      clock.now = T0 + t;
      const r = await hit(s, 'key-a');
      expect(r.status).toBe(429);
      expect(r.json).toEqual(QUOTA_BODY);
    }
    // The call at T0 leaves the window; nine rejected calls did not take its place.
    clock.now = T0 + 1000;
    expect((await hit(s, 'key-a')).status).toBe(200);
    clock.now = T0 + 1010;
    expect((await hit(s, 'key-a')).status).toBe(429);
    clock.now = T0 + 1020;
    expect((await hit(s, 'key-a')).status).toBe(200);
    expect(s.arrivals.filter((a) => a.rule === 'minute')).toHaveLength(10);
  });

  it('counts the minute per tenant by default and per key when quotaScope is "key"', async () => {
    const clock = new ManualClock(T0);
    const tenantScoped = await start({ minuteLimit: 2 }, clock);
    for (const key of ['key-a', 'key-a']) {
      expect((await hit(tenantScoped, key)).status).toBe(200);
      clock.advance(200);
    }
    expect((await hit(tenantScoped, 'key-b')).status).toBe(429);
    await tenantScoped.close();

    const keyScoped = await start({ minuteLimit: 2, quotaScope: 'key' }, clock);
    for (const key of ['key-a', 'key-a']) {
      expect((await hit(keyScoped, key)).status).toBe(200);
      clock.advance(200);
    }
    expect((await hit(keyScoped, 'key-a')).status).toBe(429);
    expect((await hit(keyScoped, 'key-b')).status).toBe(200);
  });
});

describe('gateway: UTC day', () => {
  it('rejects past the day limit until the next UTC midnight, which the expiry header names', async () => {
    const midnight = Date.UTC(2026, 7, 4);
    const clock = new ManualClock(midnight - 1000);
    const s = await start({ dayLimit: 3 }, clock);
    for (let i = 0; i < 3; i++) {
      const r = await hit(s, 'key-a');
      expect(r.status).toBe(200);
      expect(r.headers.get('x-keap-product-quota-expiry-time')).toBe(String(midnight));
      clock.advance(200);
    }
    const over = await hit(s, 'key-a');
    expect(over.status).toBe(429);
    expect(over.json).toEqual(QUOTA_BODY);
    expect(over.headers.get('x-keap-product-quota-available')).toBe('0');
    clock.now = midnight;
    const next = await hit(s, 'key-a');
    expect(next.status).toBe(200);
    expect(next.headers.get('x-keap-product-quota-used')).toBe('1');
    expect(next.headers.get('x-keap-product-quota-expiry-time')).toBe(String(midnight + 86_400_000));
  });
});

describe('gateway: tenant caps', () => {
  it('caps a tenant per minute across all its keys, with the tenant throttle body', async () => {
    const clock = new ManualClock(T0);
    const s = await start({ tenantMinuteLimit: 4, minuteLimit: 100, quotaScope: 'key' }, clock);
    for (const key of ['key-a', 'key-b', 'key-a', 'key-b']) {
      expect((await hit(s, key)).status).toBe(200);
      clock.advance(100);
    }
    const capped = await hit(s, 'key-a');
    expect(capped.status).toBe(429);
    expect(capped.json).toEqual(TENANT_BODY);
    expect(capped.headers.get('x-keap-tenant-throttle-available')).toBe('0');
    expect((await hit(s, 'key-c')).status).toBe(200);
    expect(s.arrivals.find((a) => a.status === 429)?.rule).toBe('tenant-minute');
  });

  it('caps a tenant per UTC day across all its keys', async () => {
    const clock = new ManualClock(T0);
    const s = await start({ tenantDayLimit: 2 }, clock);
    expect((await hit(s, 'key-a')).status).toBe(200);
    clock.advance(100);
    expect((await hit(s, 'key-b')).status).toBe(200);
    clock.advance(100);
    const capped = await hit(s, 'key-a');
    expect(capped.status).toBe(429);
    expect(capped.json).toEqual(TENANT_BODY);
    expect((await hit(s, 'key-c')).status).toBe(200);
    expect(s.arrivals.map((a) => a.rule ?? '')).toEqual(['', '', 'tenant-day', '']);
  });
});

describe('gateway: headers', () => {
  it('reports used and available consistently on every call, and a 429 changes neither', async () => {
    const clock = new ManualClock(T0);
    const s = await start({}, clock);
    const ids = new Set<string>();
    for (let i = 1; i <= 5; i++) {
      const r = await hit(s, i % 2 === 0 ? 'key-b' : 'key-a');
      const h = (name: string) => r.headers.get(name);
      expect(r.status).toBe(200);
      expect(h('x-keap-product-throttle-used')).toBe(String(i));
      expect(h('x-keap-product-throttle-available')).toBe(String(240 - i));
      expect(h('x-keap-product-throttle-limit')).toBe('240');
      expect(h('x-keap-product-throttle-time-unit')).toBe('minute');
      expect(h('x-keap-product-throttle-interval')).toBe('1');
      expect(h('x-keap-product-quota-used')).toBe(String(i));
      expect(h('x-keap-product-quota-available')).toBe(String(30_000 - i));
      expect(h('x-keap-product-quota-limit')).toBe('30000');
      expect(h('x-keap-product-quota-time-unit')).toBe('day');
      expect(h('x-keap-product-quota-expiry-time')).toBe(String(Date.UTC(2026, 7, 4)));
      expect(h('x-keap-tenant-throttle-used')).toBe(String(i));
      expect(h('x-keap-tenant-throttle-available')).toBe(String(10_000 - i));
      expect(h('x-keap-tenant-id')).toBe('t1.infusionsoft.com');
      expect(h('x-keap-product-spike-limit')).toBe('10ps');
      ids.add(h('x-request-id') ?? '');
      clock.advance(150);
    }
    expect(ids.size).toBe(5);
    const first = await hit(s, 'key-a');
    const spiked = await hit(s, 'key-a');
    expect(spiked.status).toBe(429);
    expect(spiked.headers.get('x-keap-product-throttle-used')).toBe(
      first.headers.get('x-keap-product-throttle-used'),
    );
    expect(spiked.headers.get('x-keap-product-quota-used')).toBe('6');
  });

  it('derives the spike limit header from the spike setting', async () => {
    const clock = new ManualClock(T0);
    const s = await start({ spikeIntervalMs: 250 }, clock);
    expect((await hit(s, 'key-a')).headers.get('x-keap-product-spike-limit')).toBe('4ps');
  });
});

describe('gateway: keys', () => {
  it("answers an unknown or missing key 401 in Keap's gateway shape, counting it against nothing", async () => {
    const clock = new ManualClock(T0);
    const s = await start({}, clock);
    for (const key of ['not-a-key', null]) {
      const r = await hit(s, key);
      expect(r.status).toBe(401);
      expect(r.json).toEqual({
        fault: { faultstring: 'Invalid access token', detail: { errorcode: 'oauth.v2.InvalidAccessToken' } },
      });
    }
    const ok = await hit(s, 'key-a');
    expect(ok.status).toBe(200);
    expect(ok.headers.get('x-keap-product-throttle-used')).toBe('1');
    expect(s.arrivals.map((a) => [a.status, a.keyId])).toEqual([
      [401, `k${createHash('sha256').update('not-a-key').digest('hex').slice(0, 12)}`],
      [401, '-'],
      [200, `k${createHash('sha256').update('key-a').digest('hex').slice(0, 12)}`],
    ]);
  });

  it('derives two default keys of one tenant from the seed', async () => {
    const a = await startSandbox({ contacts: 0, seed: 5 });
    const b = await startSandbox({ contacts: 0, seed: 5 });
    const c = await startSandbox({ contacts: 0, seed: 6 });
    try {
      expect(a.keys).toHaveLength(2);
      expect(a.keys).toEqual(b.keys);
      expect(a.keys).not.toEqual(c.keys);
      expect(new Set(a.keys.map((k) => k.tenant))).toEqual(new Set(['sandbox.infusionsoft.com']));
      expect((await call(a, '/rest/v2/tags', { key: a.keys[1]?.key })).status).toBe(200);
    } finally {
      await Promise.all([a.close(), b.close(), c.close()]);
    }
  });
});

describe('gateway: arrival log', () => {
  it('appends one JSON line per call with the key fingerprint, never the key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sandbox-log-'));
    try {
      const path = join(dir, 'arrivals.jsonl');
      const clock = new ManualClock(T0);
      const s = await start({}, clock, { arrivalLogPath: path });
      await hit(s, 'key-a');
      await hit(s, 'key-a');
      await hit(s, 'wrong-key');
      await s.close();
      const text = await readFile(path, 'utf8');
      expect(text).not.toContain('key-a');
      const lines = text
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as unknown);
      expect(lines).toEqual([...s.arrivals]);
      expect(lines).toEqual([
        {
          t: T0,
          tenant: 't1.infusionsoft.com',
          keyId: expect.stringMatching(/^k[0-9a-f]{12}$/),
          method: 'GET',
          path: '/crm/rest/v2/tags',
          status: 200,
        },
        {
          t: T0,
          tenant: 't1.infusionsoft.com',
          keyId: expect.any(String),
          method: 'GET',
          path: '/crm/rest/v2/tags',
          status: 429,
          rule: 'spike',
        },
        {
          t: T0,
          tenant: '',
          keyId: expect.any(String),
          method: 'GET',
          path: '/crm/rest/v2/tags',
          status: 401,
        },
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('stamps the arrival after the injected latency', async () => {
    sb = await startSandbox({ contacts: 0, latencyMs: { min: 40, max: 60 } });
    const before = Date.now();
    expect((await call(sb, '/rest/v2/tags')).status).toBe(200);
    const stamped = sb.arrivals[0]?.t ?? 0;
    expect(stamped - before).toBeGreaterThanOrEqual(39);
  });
});
