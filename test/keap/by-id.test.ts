// Integration: KeapClient.getByIds against the Keap sandbox with the ledger on dynalite: every list is
// read by its own v2 id filter in batches of idBatchSize (companies, which has none, one GET per id),
// and ids Keap does not have come back as missing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningSandbox, startSandbox } from '#harness/sandbox/index.ts';
import { type ByIdResource, KeapClient } from '#shared/keap/index.ts';
import { REGISTRY } from '#shared/keap/registry.ts';
import { type LedgerHost, startLedgerHost, uniqueTenant } from './support.ts';

const RELAXED = {
  spikeIntervalMs: 5,
  minuteLimit: 100_000,
  tenantMinuteLimit: 100_000,
  dayLimit: 10_000_000,
  tenantDayLimit: 10_000_000,
};
const LISTS = (Object.keys(REGISTRY) as Array<keyof typeof REGISTRY>).filter(
  (r): r is ByIdResource => r !== 'tagApplications',
);
const UNKNOWN = ['999999991', '999999992'];

let host: LedgerHost;
let sb: RunningSandbox;

beforeAll(async () => {
  host = await startLedgerHost();
  sb = await startSandbox({ seed: 11, contacts: 200, limits: RELAXED });
});
afterAll(async () => {
  await sb.close();
  await host.close();
});

function client(): KeapClient {
  return new KeapClient({
    apiKey: sb.keys[0]?.key ?? '',
    tenant: uniqueTenant(),
    ledger: host.ledger(),
    settings: { baseUrl: sb.baseUrl, idBatchSize: 7, byIdConcurrency: 3 },
  });
}

describe('reading records by id', () => {
  it.each(LISTS)(
    '%s: the records Keap has, the ids it has not, in the calls its filter allows',
    async (list) => {
      const known = sb.dataset.table(list).ids().slice(0, 20);
      expect(known.length, list).toBeGreaterThan(0);
      const c = client();
      const mark = sb.arrivals.length;

      const r = await c.getByIds(list, [...known, ...UNKNOWN, known[0] ?? '']);

      expect(r.records.map((x) => x.id).sort(), list).toEqual([...known].sort());
      expect(r.missing.sort(), list).toEqual(UNKNOWN);
      const calls = sb.arrivals.slice(mark);
      const wanted = known.length + UNKNOWN.length;
      const entry = REGISTRY[list] as { idFilter?: string };
      expect(calls.length, list).toBe(entry.idFilter ? Math.ceil(wanted / 7) : wanted);
      expect(r.requests, list).toBe(calls.length);
      expect(c.stats.requests, list).toBe(calls.length);
      // Every record has its update time, as a page of the list has it.
      for (const rec of r.records as Array<Record<string, unknown>>) {
        const fields = REGISTRY[list].timeFields as readonly string[];
        expect(
          fields.some((f) => typeof rec[f] === 'string'),
          `${list} ${String(rec.id)}`,
        ).toBe(true);
      }
    },
  );

  it('refuses ids that are not Keap ids, and tag applications (read per tag)', async () => {
    const c = client();
    await expect(c.getByIds('contacts', ['1:2'])).rejects.toThrow(/not a Keap id/);
    await expect(c.getByIds('tagApplications' as ByIdResource, ['1'])).rejects.toThrow(
      /cannot be read by id/,
    );
  });
});
