// Test support for the drills: a drill's failed checks, so a failure names what went wrong.
import type { DrillReport } from '#harness/drills/drills.ts';

export function failedChecks(r: DrillReport): string[] {
  return r.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
}

/** Short outages for `npm test` (the drill script runs 60 s ones). */
export const TEST_OUTAGES = [{ outageMs: 8_000 }] as const;
