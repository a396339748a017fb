// Unit: every call passes through the quota ledger: acquire first, headers reported back, deferral
// surfaced as QuotaDeferredError (with held slots when asked), priorities per call kind.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { KeapClient, QuotaDeferredError } from '#shared/keap/index.ts';
import {
  type LedgerHost,
  quotaHeaders,
  SECRET_KEY,
  type Stub,
  sendJson,
  startLedgerHost,
  startStub,
  uniqueTenant,
} from './support.ts';

let host: LedgerHost;
let stub: Stub;
const KEAP_DEFAULTS = {
  minuteLimit: 240,
  tenantMinuteLimit: 10_000,
  dayLimit: 30_000,
  tenantDayLimit: 250_000,
};

beforeAll(async () => {
  host = await startLedgerHost();
  stub = await startStub((_req, res) => sendJson(res, 200, { custom_fields: [] }, quotaHeaders()));
});
afterAll(async () => {
  await stub.close();
  await host.close();
});

describe('ledger feedback', () => {
  it("reports every response's x-keap-* headers, lowering the ledger's caps to what Keap says is left", async () => {
    const ledger = host.ledger(KEAP_DEFAULTS);
    const tenant = uniqueTenant();
    const client = new KeapClient({
      apiKey: SECRET_KEY,
      tenant,
      ledger,
      settings: { baseUrl: stub.baseUrl },
    });
    const report = vi.spyOn(ledger, 'reportResponse');
    stub.setHandler((_q, res) =>
      sendJson(res, 200, { custom_fields: [] }, quotaHeaders({ minuteAvailable: 10, dayAvailable: 100 })),
    );
    await client.getModel('contacts');
    await client.getModel('companies');
    stub.setHandler((_q, res) =>
      sendJson(res, 404, { message: 'nope' }, quotaHeaders({ minuteAvailable: 10, dayAvailable: 100 })),
    );
    await client.getModel('orders').catch(() => undefined);
    expect(report).toHaveBeenCalledTimes(3);
    expect(report.mock.calls[0]?.[3]).toMatchObject({
      productMinute: { limit: 240, available: 10 },
      productDay: { limit: 30_000, available: 100 },
    });
    const snap = await ledger.snapshot(tenant);
    // Keap says 230 of 240 are used this minute, and we made only a few of them: far less is left.
    expect(snap.minute.limit).toBeLessThan(20);
    expect(snap.day.limit).toBeLessThan(110);
  });

  it('leaves the caps alone when Keap reports plenty left', async () => {
    const ledger = host.ledger(KEAP_DEFAULTS);
    const tenant = uniqueTenant();
    const client = new KeapClient({
      apiKey: SECRET_KEY,
      tenant,
      ledger,
      settings: { baseUrl: stub.baseUrl },
    });
    stub.setHandler((_q, res) =>
      sendJson(res, 200, { custom_fields: [] }, quotaHeaders({ minuteAvailable: 239 })),
    );
    await client.getModel('contacts');
    const snap = await ledger.snapshot(tenant);
    expect(snap.minute.limit).toBe(240);
  });
});

describe('deferral', () => {
  // Wide spacing and late tolerance: on a loaded machine a woken-late slot is spent, and with a budget
  // of one or two calls that alone would exhaust it.
  const SLOW = { spikeIntervalMs: 200, marginMs: 150, lateToleranceMs: 140 };

  it('throws QuotaDeferredError (minute) instead of sleeping when the ledger has no slot in the budget', async () => {
    const ledger = host.ledger({ ...SLOW, minuteLimit: 2 });
    const client = new KeapClient({
      apiKey: SECRET_KEY,
      tenant: uniqueTenant(),
      ledger,
      settings: { baseUrl: stub.baseUrl, waitBudgetMs: 1_000 },
    });
    stub.setHandler((_q, res) => sendJson(res, 200, { custom_fields: [] }, quotaHeaders()));
    const before = stub.requests.length;
    let err: unknown;
    for (let i = 0; i < 4 && err === undefined; i++) {
      err = await client.getModel('contacts').then(
        () => undefined,
        (e: unknown) => e,
      );
    }
    expect(err).toBeInstanceOf(QuotaDeferredError);
    const e = err as QuotaDeferredError;
    expect(e.reason).toBe('minute');
    // Past the wait budget: at the earliest, where the ledger stopped searching (its hold horizon).
    expect(e.retryAt).toBeGreaterThan(ledger.now() + 1_000);
    expect(e.message).toMatch(/Defer the job/);
    const sent = stub.requests.length - before;
    expect(sent).toBeGreaterThanOrEqual(1);
    expect(sent).toBeLessThanOrEqual(2);
  });

  it('reserves nothing for a deferred call, so a resumed (or duplicated) job must acquire again', async () => {
    const ledger = host.ledger({ ...SLOW, minuteLimit: 1, minuteWindowMs: 1_000, bucketMs: 250 });
    const tenant = uniqueTenant();
    const client = new KeapClient({
      apiKey: SECRET_KEY,
      tenant,
      ledger,
      settings: { baseUrl: stub.baseUrl, waitBudgetMs: 50 },
    });
    let err: unknown;
    for (let i = 0; i < 4 && err === undefined; i++) {
      err = await client.getModel('contacts').then(
        () => undefined,
        (e: unknown) => e,
      );
    }
    expect(err).toBeInstanceOf(QuotaDeferredError);
    // Nothing is held ahead for it: no slot exists outside the ledger that a message could carry.
    expect((await ledger.snapshot(tenant)).minute.heldAhead).toBe(0);
    const acquire = vi.spyOn(ledger, 'acquire');
    await sleep(Math.max(0, (err as QuotaDeferredError).retryAt - ledger.now()));
    const before = stub.requests.length;
    await client.getModel('contacts', { waitBudgetMs: 2_000 });
    expect(acquire).toHaveBeenCalled();
    expect(stub.requests.length - before).toBe(1);
  });
});

describe('priorities', () => {
  it("acquires reads as 'bulk' and writes as 'interactive' by default, overridable per call", async () => {
    const ledger = host.ledger();
    const client = new KeapClient({
      apiKey: SECRET_KEY,
      tenant: uniqueTenant(),
      ledger,
      settings: { baseUrl: stub.baseUrl },
    });
    const acquire = vi.spyOn(ledger, 'acquire');
    stub.setHandler((req, res) => {
      if (req.method === 'POST') sendJson(res, 200, { id: '1' }, quotaHeaders());
      else sendJson(res, 200, { custom_fields: [] }, quotaHeaders());
    });
    await client.getModel('contacts');
    await client.upsertContact({ email_addresses: [{ email: 'x@example.com', field: 'EMAIL1' }] });
    await client.getModel('contacts', { priority: 'interactive' });
    const priorities = acquire.mock.calls.map((c) => c[0].priority);
    expect(priorities[0]).toBe('bulk');
    expect(priorities).toContain('interactive');
    expect(priorities.at(-1)).toBe('interactive');
    expect(acquire.mock.calls.every((c) => c[0].key === client.keyId && c[0].key !== SECRET_KEY)).toBe(true);
  });
});

describe('unused reservations', () => {
  it('gives slots reserved for pages that are never read back to the ledger', async () => {
    const ledger = host.ledger({ ...KEAP_DEFAULTS, bulkShare: 1 });
    const tenant = uniqueTenant();
    const client = new KeapClient({
      apiKey: SECRET_KEY,
      tenant,
      ledger,
      settings: { baseUrl: stub.baseUrl, pageSize: 2, pageSlotBatch: 5 },
    });
    const release = vi.spyOn(ledger, 'release');
    let page = 0;
    // Two full pages then the last one: after each full page the client reserves 5 slots at once.
    stub.setHandler((_q, res) => {
      page++;
      const contacts = page < 3 ? [{ id: `${page}a` }, { id: `${page}b` }] : [{ id: 'last' }];
      sendJson(res, 200, { contacts, next_page_token: page < 3 ? `t${page}` : '' }, quotaHeaders());
    });
    const all = await client.readAll('contacts');
    expect(all.records).toHaveLength(5);
    expect(release).toHaveBeenCalled();
    const released = release.mock.calls.flatMap((c) => [...(c[2] ?? [])]);
    expect(released.length).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 700)); // the release rides a write within half a second
    const snap = await ledger.snapshot(tenant);
    // Only the three calls made still count against the budgets.
    expect(snap.day.used + snap.day.heldAhead).toBe(3);
  });
});
