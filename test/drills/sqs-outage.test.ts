// Drill: SQS unreachable in the middle of a sync (short here; `npm run drill -- sqs-outage` runs 60 s):
// the scheduler and the same workers recover without a restart, and no job is lost.
import { describe, expect, test } from 'vitest';
import { sqsOutage } from '#harness/drills/drills.ts';
import { failedChecks, TEST_OUTAGES } from './support.ts';

describe.each(TEST_OUTAGES)('SQS unreachable for $outageMs ms mid-sync', ({ outageMs }) => {
  test('the scheduler and workers recover without a restart and without losing a job', async () => {
    const r = await sqsOutage({ outageMs, contacts: 300 });
    expect(failedChecks(r)).toEqual([]);
  }, 120_000);
});
