// Unit: `keap-sync estimate` accounts for Keap's page latency: a list is read one page after another,
// so a big list is bound by latency, not by the quota, once pages take long enough; with no latency
// given the quota's bound is the answer, and a configuration without accounts estimates every list.
import { describe, expect, it } from 'vitest';
import { estimateSync } from '#harness/cli/operator.ts';
import { parseAppConfig } from '#shared/config/app-config.ts';
import { SYNC_RESOURCES } from '#shared/jobs/schema.ts';

const oneAccount = parseAppConfig({
  accounts: [
    {
      id: 'acme',
      tenant: 'ab103',
      secretId: 'keap-sync/acme',
      resources: { contacts: { everyMinutes: 5 }, tags: { everyMinutes: 60 } },
    },
  ],
});

describe('keap-sync estimate', () => {
  it('is bound by the quota when pages are instant', () => {
    const e = estimateSync(oneAccount, 1_000_000, 100);
    expect(e.fullSync.boundBy).toBe('quota');
    expect(e.fullSync.seconds).toBe(e.fullSync.quotaSeconds);
    expect(e.fullSync.latencySeconds).toBe(0);
  });

  it('is bound by latency when a big list is read one slow page after another', () => {
    const e = estimateSync(oneAccount, 1_000_000, 100, 2_000);
    const contacts = e.perResource.find((r) => r.resource === 'contacts');
    expect(e.fullSync.boundBy).toBe('latency');
    // 1,000 pages of contacts at 2 s each, whatever the quota allows.
    expect(e.fullSync.latencySeconds).toBe(((contacts?.calls ?? 0) * 2_000) / 1000);
    expect(e.fullSync.seconds).toBeGreaterThan(e.fullSync.quotaSeconds);
  });

  it('estimates every synced list when the accounts live in the registry', () => {
    const e = estimateSync(parseAppConfig({}), 5_000, 100);
    expect(e.perResource.map((r) => r.resource).sort()).toEqual([...SYNC_RESOURCES].sort());
  });

  it('costs tag applications as the walk over every tag, and flags polling the day budget cannot serve', () => {
    const tagged = parseAppConfig({
      accounts: [
        {
          id: 'acme',
          tenant: 'ab103',
          secretId: 'keap-sync/acme',
          resources: { contacts: { everyMinutes: 5 }, tagApplications: { everyMinutes: 60 } },
        },
      ],
    });
    // 100,000 contacts: 2,000 tags (a call for the tag list, two pages), 300,000 applications.
    const e = estimateSync(tagged, 100_000, 100);
    const apps = e.perResource.find((r) => r.resource === 'tagApplications');
    expect(apps).toMatchObject({ records: 300_000, calls: 2 + 2_000 + 300, incrementalCalls: 2 + 2_000 });
    expect(apps?.sweepCalls).toBe(apps?.calls);
    // Hourly, the walk alone is 24 x 2,002 calls a day: more than the day's bulk budget (24,000).
    expect(e.polling.heaviest).toEqual({ resource: 'tagApplications', callsPerDay: 24 * 2_002 });
    expect(e.polling.callsPerDay).toBe(24 * 2_002 + 288);
    expect(e.polling.dayBudgetShare).toBeGreaterThan(1);
    // A small account polls well inside it.
    expect(estimateSync(tagged, 5_000, 100).polling.dayBudgetShare).toBeLessThan(0.2);
  });
});
