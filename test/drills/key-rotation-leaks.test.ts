// Drill and leak scan: a recognisable key is planted, revoked mid-run with Keap faults on, and a new
// (also planted) key stored; the account stops and resumes, and a scan of every log line, worker
// stderr, dead letter, queued job, ledger, state and mirror item, metric and the status view finds
// neither key, nor any 16-character piece of one.
import { describe, expect, test } from 'vitest';
import { keyRotation } from '#harness/drills/drills.ts';
import { countOccurrences } from '#harness/drills/leaks.ts';
import { plantedKey } from '#harness/drills/system.ts';
import { failedChecks } from './support.ts';

describe('a planted key, revoked then replaced mid-run with faults on', () => {
  test('the account stops, resumes on the new key, and the keys appear nowhere', async () => {
    const r = await keyRotation({
      outageMs: 3_000,
      contacts: 300,
      faults: { serverErrorRate: 0.05, htmlErrorRate: 0.03, malformedJsonRate: 0.03 },
    });
    expect(failedChecks(r)).toEqual([]);
    expect(r.leaks.found).toEqual({});
    // The scan read something everywhere it looks.
    for (const place of ['log lines', 'state items', 'mirror items', 'ledger items', 'metrics', 'live view'])
      expect(r.leaks.scanned[place], place).toBeGreaterThan(0);
  }, 120_000);

  test('the scan finds a whole key and a 16-character piece of one', () => {
    const key = plantedKey('probe');
    expect(countOccurrences([`x ${key} y`, 'clean', `cut ${key.slice(20, 40)}`], [key])).toBe(2);
    expect(countOccurrences(['clean', 'KeapAK-other'], [key])).toBe(0);
  });
});
