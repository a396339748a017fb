// Drill: worker processes SIGKILLed at random moments during a backfill mixed with write jobs (5 kills
// here; `npm run drill -- worker-kills` does 20): afterwards the mirror equals Keap record for record
// and no create was made twice.
import { describe, expect, test } from 'vitest';
import { workerKills } from '#harness/drills/drills.ts';
import { failedChecks } from './support.ts';

describe.each([{ kills: 5, outageMs: 5_000 }])('$kills worker processes SIGKILLed', ({ kills, outageMs }) => {
  test('the mirror equals Keap record for record and no create is made twice', async () => {
    const r = await workerKills({ kills, outageMs, contacts: 300 });
    expect(failedChecks(r)).toEqual([]);
    expect(r.figures.SIGKILLs).toBe(kills);
  }, 150_000);
});
