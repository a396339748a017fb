// Unit: `keap-sync estimate` accounts for Keap's page latency: a list read one page after another is
// bound by latency once pages take long enough, and back by the quota when read in id ranges; with no latency
// given the quota's bound is the answer, and a configuration without accounts estimates every list.
import { describe, expect, it } from 'vitest';
import { estimateSync } from '#harness/cli/operator.ts';
import { parseAppConfig } from '#shared/config/app-config.ts';
import { SYNC_RESOURCES } from '#shared/jobs/schema.ts';

const oneAccountInput = {
  accounts: [
    {
      id: 'acme',
      tenant: 'ab103',
      secretId: 'keap-sync/acme',
      resources: { contacts: { everyMinutes: 5 }, tags: { everyMinutes: 60 } },
    },
  ],
};
const oneAccount = parseAppConfig(oneAccountInput);

describe('keap-sync estimate', () => {
  it('is bound by the quota when pages are instant', () => {
    const e = estimateSync(oneAccount, 1_000_000, 100);
    expect(e.fullSync.boundBy).toBe('quota');
    expect(e.fullSync.seconds).toBe(e.fullSync.quotaSeconds);
    expect(e.fullSync.latencySeconds).toBe(0);
  });

  it('is bound by latency when a big list is read one slow page after another', () => {
    const sequential = parseAppConfig({ ...oneAccountInput, worker: { partitions: 1 } });
    const e = estimateSync(sequential, 1_000_000, 100, 2_000);
    const contacts = e.perResource.find((r) => r.resource === 'contacts');
    expect(e.fullSync.boundBy).toBe('latency');
    // 1,000 pages of contacts at 2 s each, whatever the quota allows.
    expect(contacts?.calls).toBe(1_000);
    expect(e.fullSync.latencySeconds).toBe(((contacts?.calls ?? 0) * 2_000) / 1000);
    expect(e.fullSync.seconds).toBeGreaterThan(e.fullSync.quotaSeconds);
  });

  it('is bound by the quota again when the big list is read in parallel id ranges', () => {
    const e = estimateSync(oneAccount, 1_000_000, 100, 2_000);
    const contacts = e.perResource.find((r) => r.resource === 'contacts');
    // The pages and the probe of the highest id; the first page, the probe, then 8 ranges at once.
    expect(contacts?.calls).toBe(1_001);
    expect(e.fullSync.latencySeconds).toBe((2 + Math.ceil(999 / 8)) * 2);
    expect(e.fullSync.boundBy).toBe('quota');
    expect(e.fullSync.seconds).toBe(e.fullSync.quotaSeconds);
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
