// Integration: the client against the Keap sandbox (gateway rules, x-keap-* headers, Keap's bodies and
// faults) with the quota ledger on dynalite: full reads are exact, incremental reads miss nothing,
// every error class comes from the sandbox's faults, retries and timeouts work, headers reach the ledger.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  RESOURCE_TYPES,
  type ResourceType,
  type RunningSandbox,
  startSandbox,
} from '#harness/sandbox/index.ts';
import {
  KeapClient,
  type KeapClientSettingsInput,
  KeyRejectedError,
  NotFoundError,
  RateLimitedError,
  type ResourceName,
  RetryableError,
  UnexpectedResponseError,
  ValidationError,
} from '#shared/keap/index.ts';
import type { QuotaLedger } from '#shared/quota/index.ts';
import { type LedgerHost, startLedgerHost, uniqueTenant } from './support.ts';

const RELAXED = {
  spikeIntervalMs: 5,
  minuteLimit: 100_000,
  tenantMinuteLimit: 100_000,
  dayLimit: 10_000_000,
  tenantDayLimit: 10_000_000,
};
const TYPES: readonly ResourceType[] = RESOURCE_TYPES;

let host: LedgerHost;
let sb: RunningSandbox;

beforeAll(async () => {
  host = await startLedgerHost();
  sb = await startSandbox({ seed: 7, contacts: 100, limits: RELAXED });
});
afterAll(async () => {
  await sb.close();
  await host.close();
});

function makeClient(
  settings: KeapClientSettingsInput = {},
  o: { key?: string; ledger?: QuotaLedger } = {},
): { client: KeapClient; ledger: QuotaLedger } {
  const ledger = o.ledger ?? host.ledger();
  const client = new KeapClient({
    apiKey: o.key ?? sb.keys[0]?.key ?? '',
    tenant: uniqueTenant(),
    ledger,
    settings: { baseUrl: sb.baseUrl, backoffBaseMs: 5, backoffMaxMs: 20, ...settings },
  });
  return { client, ledger };
}

/** Every record of `type` through the client, as dataset ids (tag applications: `tag:contact`). */
async function readIds(
  client: KeapClient,
  type: ResourceType,
  options: { pageSize?: number; since?: string } = {},
): Promise<{ ids: string[]; highWaterMark: string | undefined; requests: number }> {
  if (type !== 'tagApplications') {
    const r = await client.readAll(type as ResourceName as 'contacts', options);
    return { ids: r.records.map((x) => x.id), highWaterMark: r.highWaterMark, requests: r.requests };
  }
  const tags = await client.readAll('tags');
  const ids: string[] = [];
  let requests = tags.requests;
  let hwm: string | undefined;
  for (const tag of tags.records) {
    const r = await client.readAll('tagApplications', { ...options, tagId: tag.id });
    ids.push(...r.records.map((x) => `${tag.id}:${x.id}`));
    requests += r.requests;
    if (r.highWaterMark && (!hwm || r.highWaterMark > hwm)) hwm = r.highWaterMark;
  }
  return { ids, highWaterMark: hwm, requests };
}

function datasetIds(type: ResourceType): string[] {
  return sb.dataset
    .table(type)
    .values()
    .map((r) => r.id);
}

const sorted = (ids: Iterable<string>): string[] => [...ids].sort();

describe('reading the sandbox', () => {
  it('pages every list to the end, each record exactly once, through many page boundaries', async () => {
    const { client } = makeClient();
    for (const type of TYPES) {
      const { ids } = await readIds(client, type, { pageSize: 7 });
      expect(new Set(ids).size, type).toBe(ids.length);
      expect(sorted(ids), type).toEqual(sorted(datasetIds(type)));
    }
    expect(sb.arrivals.filter((a) => a.status === 429)).toEqual([]);
  });

  it('reads contacts at page size 1000 with update_time and custom fields', async () => {
    const { client } = makeClient();
    const before = sb.arrivals.length;
    const r = await client.readAll('contacts');
    expect(r.records).toHaveLength(sb.dataset.contacts.size);
    expect(r.requests).toBe(1);
    expect(r.records.every((c) => typeof c.update_time === 'string' && Array.isArray(c.custom_fields))).toBe(
      true,
    );
    const maxTime = Math.max(...sb.dataset.contacts.values().map((c) => Date.parse(c.update_time)));
    expect(r.highWaterMark).toBe(new Date(maxTime).toISOString());
    expect(sb.arrivals.length - before).toBe(1);
  });

  it('reads the custom-field models', async () => {
    const { client } = makeClient();
    const m = await client.getModel('contacts');
    expect(m.custom_fields.map((f) => f.id)).toEqual(sb.dataset.models.contacts.map((f) => String(f.id)));
  });
});

describe('incremental reads after changes', () => {
  it.each(TYPES.filter((t) => t !== 'users'))(
    'finds every changed %s since the cursor, across page boundaries',
    async (type) => {
      const { client } = makeClient();
      const base = await readIds(client, type, { pageSize: 1000 });
      const change = sb.mutate(type, { update: 6, create: 3 });
      const changed = [...change.updated, ...change.created];
      expect(changed.length).toBeGreaterThan(0);
      const inc = await readIds(client, type, { pageSize: 2, since: base.highWaterMark });
      const got = new Set(inc.ids);
      expect(
        changed.filter((id) => !got.has(id)),
        type,
      ).toEqual([]);
      // Anything else it returned falls inside the overlap before the cursor.
      const since = Date.parse(base.highWaterMark ?? '') - client.settings.overlapMs;
      const table = sb.dataset.table(type);
      for (const id of inc.ids) {
        const rec = table.get(id) as unknown as Record<string, string> | undefined;
        const t = rec?.update_time ?? rec?.modification_time ?? rec?.last_updated_time ?? rec?.applied_time;
        expect(Date.parse(t ?? '')).toBeGreaterThanOrEqual(since);
      }
      expect(inc.highWaterMark && base.highWaterMark && inc.highWaterMark > base.highWaterMark).toBe(true);
    },
  );

  it('reads newest-first lists only until past the cursor (few calls for few changes)', async () => {
    const { client } = makeClient({ overlapMs: 0 });
    const base = await client.readAll('opportunities');
    sb.mutate('opportunities', { update: 5 });
    const inc = await client.readAll('opportunities', { pageSize: 3, since: base.highWaterMark });
    const since = Date.parse(base.highWaterMark ?? '');
    const due = sb.dataset.opportunities.values().filter((o) => Date.parse(o.last_updated_time) >= since);
    expect(sorted(inc.records.map((o) => o.id))).toEqual(sorted(due.map((o) => o.id)));
    // Pages holding what changed, plus the one that crosses the cursor; never the whole list.
    expect(inc.requests).toBeLessThanOrEqual(Math.floor(due.length / 3) + 1);
    expect(inc.requests).toBeLessThan(Math.ceil(sb.dataset.opportunities.size / 3));
  });

  it('misses nothing changed while a run is paging: the next run from its high-water mark finds it', async () => {
    const { client } = makeClient();
    const base = await client.readAll('contacts');
    const first = sb.mutate('contacts', { update: 20 });
    const seen = new Set<string>();
    let midRun: string[] = [];
    let hwm: string | undefined;
    for await (const page of client.pages('contacts', { pageSize: 4, since: base.highWaterMark })) {
      for (const r of page.records) seen.add(r.id);
      if (page.index === 1) {
        const m = sb.mutate('contacts', { update: 10, create: 2 });
        midRun = [...m.updated, ...m.created];
      }
      hwm = page.highWaterMark;
    }
    const next = await client.readAll('contacts', { pageSize: 4, since: hwm });
    for (const r of next.records) seen.add(r.id);
    const all = [...first.updated, ...midRun];
    expect(all.filter((id) => !seen.has(id))).toEqual([]);
  });

  it('includes a record updated exactly at the cursor (no overlap)', async () => {
    const { client } = makeClient({ overlapMs: 0 });
    const m = sb.mutate('notes', { update: 1 });
    const id = m.updated[0] ?? '';
    const at = sb.dataset.notes.get(id)?.update_time;
    const r = await client.readAll('notes', { since: at, pageSize: 1 });
    expect(r.records.map((n) => n.id)).toContain(id);
  });
});

describe('writes against the sandbox', () => {
  it('upserts a contact, tags and untags it, and notes it', async () => {
    const { client } = makeClient();
    const body = {
      given_name: 'Ada',
      email_addresses: [{ email: 'ada.keap-sync@example.com', field: 'EMAIL1' }],
    };
    const created = await client.upsertContact(body);
    const again = await client.upsertContact({ ...body, family_name: 'Lovelace' });
    expect(created.created).toBe(true);
    expect(again).toMatchObject({ created: false, contact: { id: created.contact.id } });
    expect(sb.dataset.contacts.get(created.contact.id)?.family_name).toBe('Lovelace');

    const tag = sb.dataset.tags.values()[0]?.id ?? '';
    const applied = await client.applyTags(tag, [created.contact.id]);
    expect(Object.keys(applied.results)).toEqual([created.contact.id]);
    expect(sb.dataset.tagApplications.has(`${tag}:${created.contact.id}`)).toBe(true);
    await client.removeTags(tag, [created.contact.id]);
    expect(sb.dataset.tagApplications.has(`${tag}:${created.contact.id}`)).toBe(false);

    const user = sb.dataset.users.values()[0]?.id ?? '';
    const note = await client.createNote(created.contact.id, { user_id: user, title: 'Synced' });
    expect(sb.dataset.notes.get(note.id)?.contact_id).toBe(created.contact.id);
  });
});

describe('sandbox faults', () => {
  const arrivalsOf = (client: KeapClient, from: number) =>
    sb.arrivals.slice(from).filter((a) => a.keyId === `k${client.keyId.slice(1, 13)}`);

  it('a revoked key and an unknown key both raise KeyRejectedError, without retrying', async () => {
    const revoked = sb.keys[1]?.key ?? '';
    sb.setFaults({ revokedKeys: [{ key: revoked, from: 0 }] });
    try {
      const { client } = makeClient({}, { key: revoked });
      await expect(client.getModel('contacts')).rejects.toBeInstanceOf(KeyRejectedError);
      const { client: stranger } = makeClient({}, { key: 'KeapAK-not-a-key-of-this-sandbox' });
      const before = sb.arrivals.length;
      await expect(stranger.readAll('tags')).rejects.toBeInstanceOf(KeyRejectedError);
      expect(sb.arrivals.length - before).toBe(1);
    } finally {
      sb.setFaults({ revokedKeys: undefined });
    }
  });

  it('a missing tag is NotFoundError; a bad order_by is ValidationError with details', async () => {
    const { client } = makeClient();
    await expect(client.readAll('tagApplications', { tagId: '999999' })).rejects.toBeInstanceOf(
      NotFoundError,
    );
    const err = await client.readAll('contacts', { orderBy: 'shoe_size asc' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).details[0]?.domain).toBe('order_by');
  });

  it('server errors on every call end in RetryableError after maxAttempts', async () => {
    sb.setFaults({ serverErrorRate: 1 });
    try {
      const { client } = makeClient({ maxAttempts: 3 });
      const before = sb.arrivals.length;
      const err = await client.readAll('tags').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RetryableError);
      expect((err as RetryableError).reason).toBe('server');
      expect(arrivalsOf(client, before).map((a) => a.status >= 500)).toEqual([true, true, true]);
    } finally {
      sb.setFaults({ serverErrorRate: undefined });
    }
  });

  it('HTML error pages are RetryableError; truncated JSON is UnexpectedResponseError', async () => {
    const { client } = makeClient({ maxAttempts: 2 });
    sb.setFaults({ htmlErrorRate: 1 });
    try {
      const err = await client.readAll('tags').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RetryableError);
      expect((err as Error).message).toMatch(/HTML/);
    } finally {
      sb.setFaults({ htmlErrorRate: undefined });
    }
    sb.setFaults({ malformedJsonRate: 1 });
    try {
      const err = await client.readAll('tags').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnexpectedResponseError);
    } finally {
      sb.setFaults({ malformedJsonRate: undefined });
    }
  });

  it('a hung request times out into RetryableError (timeout), each attempt aborted', async () => {
    sb.setFaults({ hangRate: 1 });
    try {
      const { client } = makeClient({ timeoutMs: 200, maxAttempts: 2 });
      const before = sb.arrivals.length;
      const err = await client.getModel('tasks').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RetryableError);
      expect((err as RetryableError).reason).toBe('timeout');
      expect(arrivalsOf(client, before).map((a) => a.status)).toEqual([0, 0]);
    } finally {
      sb.setFaults({ hangRate: undefined });
    }
  });

  it('retries through a mix of 5xx, HTML pages, broken JSON and hangs to read everything exactly once', async () => {
    sb.setFaults({ serverErrorRate: 0.15, htmlErrorRate: 0.1, malformedJsonRate: 0.1, hangRate: 0.05 });
    try {
      const { client } = makeClient({ timeoutMs: 250, maxAttempts: 8 });
      const r = await client.readAll('contacts', { pageSize: 9 });
      expect(sorted(r.records.map((c) => c.id))).toEqual(sorted(datasetIds('contacts')));
      expect(client.stats.retries).toBeGreaterThan(0);
      expect(r.requests).toBeGreaterThan(Math.ceil(sb.dataset.contacts.size / 9));
    } finally {
      sb.setFaults({
        serverErrorRate: undefined,
        htmlErrorRate: undefined,
        malformedJsonRate: undefined,
        hangRate: undefined,
      });
    }
  });

  it('a 429 storm is reported to the ledger each time, then surfaces as RateLimitedError (quota)', async () => {
    const now = Date.now();
    sb.setFaults({ storm429: { from: now - 1_000, until: now + 60_000 } });
    try {
      const { client, ledger } = makeClient({ max429Retries: 1 });
      const report429 = vi.spyOn(ledger, 'report429');
      const err = await client.readAll('tags').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RateLimitedError);
      expect((err as RateLimitedError).kind).toBe('quota');
      expect(report429).toHaveBeenCalledTimes(2);
      expect(report429.mock.calls.every((c) => c[2] === 'quota')).toBe(true);
    } finally {
      sb.setFaults({ storm429: undefined });
    }
  });
});

describe('header feedback', () => {
  it("lowers the ledger's minute cap by the traffic other keys of the tenant sent", async () => {
    const strict = await startSandbox({
      seed: 3,
      contacts: 20,
      limits: { spikeIntervalMs: 0, minuteLimit: 240, tenantMinuteLimit: 10_000 },
    });
    try {
      const other = strict.keys[1]?.key ?? '';
      for (let i = 0; i < 60; i++) {
        const res = await fetch(`${strict.baseUrl}/rest/v2/tags?page_size=1`, {
          headers: { 'X-Keap-API-Key': other },
        });
        await res.text();
      }
      const ledger = host.ledger({ minuteLimit: 240, tenantMinuteLimit: 10_000 });
      const tenant = uniqueTenant();
      const client = new KeapClient({
        apiKey: strict.keys[0]?.key ?? '',
        tenant,
        ledger,
        settings: { baseUrl: strict.baseUrl },
      });
      const report = vi.spyOn(ledger, 'reportResponse');
      await client.readAll('tags', { pageSize: 5 });
      const ours = strict.arrivals.filter((a) => a.keyId !== strict.arrivals[0]?.keyId).length;
      expect(report).toHaveBeenCalledTimes(ours);
      const snap = await ledger.snapshot(tenant);
      // Keap's headers said 60 calls of this minute were someone else's: the ledger's cap drops by them.
      expect(snap.minute.limit).toBe(240 - 60);
    } finally {
      await strict.close();
    }
  });
});
