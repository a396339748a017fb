// Drill: DynamoDB unreachable in the middle of a sync (a short outage here; `npm run drill --
// dynamo-outage` runs 60 s): not one Keap call while it is down (the sandbox's arrival log), the jobs
// resume afterwards, the mirror equals Keap record for record, no write lost or made twice.
import { describe, expect, test } from 'vitest';
import { dynamoOutage } from '#harness/drills/drills.ts';
import { failedChecks, TEST_OUTAGES } from './support.ts';

describe.each(TEST_OUTAGES)('DynamoDB unreachable for $outageMs ms mid-sync', ({ outageMs }) => {
  test('no Keap call while it is down; jobs resume; nothing lost or duplicated', async () => {
    const r = await dynamoOutage({ outageMs, contacts: 300 });
    expect(failedChecks(r)).toEqual([]);
    expect(r.figures['Keap calls during the outage']).toBe(0);
    expect(r.figures['Keap calls before the cut']).toBeGreaterThan(0);
  }, 120_000);
});
