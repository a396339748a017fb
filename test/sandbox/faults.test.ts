import { afterEach, describe, expect, it } from 'vitest';
import {
  type RunningSandbox,
  SandboxConfigError,
  type SandboxOptions,
  startSandbox,
} from '#harness/sandbox/index.ts';
import { call, ManualClock, RELAXED } from './support.ts';

const T0 = Date.UTC(2026, 7, 3, 12, 0, 0);
const KEYS = [
  { key: 'key-a', tenant: 't1.infusionsoft.com' },
  { key: 'key-b', tenant: 't1.infusionsoft.com' },
];

let sb: RunningSandbox | undefined;
afterEach(async () => {
  await sb?.close();
  sb = undefined;
});

async function start(extra: SandboxOptions): Promise<RunningSandbox> {
  sb = await startSandbox({ contacts: 20, keys: KEYS, limits: RELAXED, ...extra });
  return sb;
}

async function statuses(s: RunningSandbox, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await call(s, '/rest/v2/tags?page_size=1')).status);
  return out;
}

describe('faults: server errors', () => {
  it('answers every call 500/502/503 at rate 1, with JSON and HTML bodies', async () => {
    const s = await start({ faults: { serverErrorRate: 1 } });
    const types = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const r = await call(s, '/rest/v2/tags');
      expect([500, 502, 503]).toContain(r.status);
      const type = r.headers.get('content-type') ?? '';
      types.add(type.split(';')[0] ?? '');
      if (type.startsWith('application/json')) expect(r.json).toMatchObject({ code: r.status });
      else expect(r.text).toMatch(/^<!DOCTYPE html>/);
    }
    expect(types).toEqual(new Set(['application/json', 'text/html']));
  });

  it('answers about the configured share with server errors, the same calls for the same seed', async () => {
    const a = await start({ faults: { serverErrorRate: 0.3 }, seed: 9 });
    const first = await statuses(a, 200);
    await a.close();
    const b = await start({ faults: { serverErrorRate: 0.3 }, seed: 9 });
    const second = await statuses(b, 200);
    const share = first.filter((s) => s >= 500).length / first.length;
    expect(share).toBeGreaterThan(0.2);
    expect(share).toBeLessThan(0.4);
    expect(second).toEqual(first);
  });
});

describe('faults: hangs', () => {
  it('never answers a hung call until the client aborts, and recovers when the fault is cleared', async () => {
    const s = await start({ faults: { hangRate: 1 } });
    await expect(call(s, '/rest/v2/tags', { signal: AbortSignal.timeout(150) })).rejects.toThrow();
    expect(s.arrivals.at(-1)?.status).toBe(0);
    s.setFaults({ hangRate: 0 });
    expect((await call(s, '/rest/v2/tags')).status).toBe(200);
  });

  it('closes while a call hangs, ending that call', async () => {
    const s = await start({ faults: { hangRate: 1 } });
    const pending = call(s, '/rest/v2/tags');
    while (s.arrivals.length === 0) await new Promise((r) => setTimeout(r, 5));
    await s.close();
    await expect(pending).rejects.toThrow();
  });
});

describe('faults: broken bodies', () => {
  it('answers HTML error pages with status 502/503 and text/html', async () => {
    const s = await start({ faults: { htmlErrorRate: 1 } });
    for (let i = 0; i < 10; i++) {
      const r = await call(s, '/rest/v2/contacts');
      expect([502, 503]).toContain(r.status);
      expect(r.headers.get('content-type')).toMatch(/^text\/html/);
      expect(r.text).toContain('<html>');
      expect(r.json).toBeUndefined();
    }
  });

  it('answers 200 with truncated JSON that does not parse', async () => {
    const s = await start({ faults: { malformedJsonRate: 1 } });
    for (let i = 0; i < 10; i++) {
      const r = await call(s, '/rest/v2/contacts?page_size=5');
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toMatch(/^application\/json/);
      expect(r.text.length).toBeGreaterThan(0);
      expect(() => JSON.parse(r.text)).toThrow();
    }
  });
});

describe('faults: slowness', () => {
  it('delays every response by at least slowMs', async () => {
    const s = await start({ faults: { slowMs: 150 } });
    const started = performance.now();
    const r = await call(s, '/rest/v2/tags');
    expect(r.status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(145);
  });
});

describe('faults: 429 storm', () => {
  it('answers every call in [from, until) with 429, counting none of them', async () => {
    const clock = new ManualClock(T0);
    const s = await start({
      clock: clock.read,
      limits: {},
      faults: { storm429: { from: T0 + 1000, until: T0 + 2000 } },
    });
    expect((await call(s, '/rest/v2/tags')).status).toBe(200);
    for (const t of [1000, 1500, 1999]) {
      clock.now = T0 + t;
      const r = await call(s, '/rest/v2/tags');
      expect(r.status).toBe(429);
      expect(r.json).toMatchObject({ fault: { detail: { errorcode: 'policies.ratelimit.QuotaViolation' } } });
    }
    clock.now = T0 + 2000;
    const after = await call(s, '/rest/v2/tags');
    expect(after.status).toBe(200);
    expect(after.headers.get('x-keap-product-throttle-used')).toBe('2');
    expect(s.arrivals.filter((a) => a.rule === 'storm')).toHaveLength(3);
  });
});

describe('faults: revoked keys', () => {
  it('answers a revoked key 401 from its time on, leaving other keys working', async () => {
    const clock = new ManualClock(T0);
    const s = await start({
      clock: clock.read,
      faults: { revokedKeys: [{ key: 'key-a', from: T0 + 5000 }] },
    });
    expect((await call(s, '/rest/v2/tags', { key: 'key-a' })).status).toBe(200);
    clock.now = T0 + 5000;
    const revoked = await call(s, '/rest/v2/tags', { key: 'key-a' });
    expect(revoked.status).toBe(401);
    expect(revoked.json).toEqual({
      fault: { faultstring: 'Invalid access token', detail: { errorcode: 'oauth.v2.InvalidAccessToken' } },
    });
    expect((await call(s, '/rest/v2/tags', { key: 'key-b' })).status).toBe(200);
  });
});

describe('faults: settings', () => {
  it('changes faults at runtime through the admin route; null clears one', async () => {
    const s = await start({});
    const set = await call(s, '/__admin/faults', { method: 'POST', body: { serverErrorRate: 1 }, key: null });
    expect(set.status).toBe(200);
    expect((await call(s, '/rest/v2/tags')).status).toBeGreaterThanOrEqual(500);
    await call(s, '/__admin/faults', { method: 'POST', body: { serverErrorRate: null }, key: null });
    expect((await call(s, '/rest/v2/tags')).status).toBe(200);
    const bad = await call(s, '/__admin/faults', { method: 'POST', body: { hangRate: 2 }, key: null });
    expect(bad.status).toBe(400);
  });

  it('rejects an out-of-range fault setting, naming it', async () => {
    const s = await start({});
    expect(() => s.setFaults({ htmlErrorRate: 1.5 })).toThrow(SandboxConfigError);
    const err = (() => {
      try {
        s.setFaults({ slowMs: -1 });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(SandboxConfigError);
    expect((err as SandboxConfigError).option).toBe('faults.slowMs');
    await expect(startSandbox({ faults: { hangRate: -0.1 } })).rejects.toThrow(/faults\.hangRate/);
  });
});
