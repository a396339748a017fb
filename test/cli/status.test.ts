// `keap-sync status` shows what the workers' sends looked like: lateness, refusals, hand-over gaps.
import { describe, test } from 'vitest';
import { formatStatus, type StatusReport } from '#harness/cli/status.ts';

function report(timing: StatusReport['accounts'][number]['quota']['timing']): StatusReport {
  return {
    at: '2026-12-02T12:00:00.000Z',
    accounts: [
      {
        id: 'demo',
        tenant: 't',
        key: 'active',
        keyRejectedReason: null,
        resources: [],
        quota: {
          minute: { limit: 240, used: 10, left: 230, heldAhead: 0, freesAt: null },
          day: { limit: 30000, used: 10, left: 29990, resetsAt: '2026-12-03T00:00:00.250Z' },
          coolDownUntil: null,
          timing,
        },
      },
    ],
    queue: null,
    deadLetters: null,
    inSync: true,
  };
}

describe('status: send timing', () => {
  test('prints lateness p99 and max against the tolerance, refusals and the smallest hand-over gap', ({
    expect,
  }) => {
    const out = formatStatus(
      report({
        since: '2026-12-02T11:57:00.000Z',
        sendLatenessP99Ms: 12,
        sendLatenessMaxMs: 31,
        refused: 2,
        handoverGapMinMs: 252,
        toleranceMs: 50,
        spikeMarginMs: 150,
      }),
    );
    expect(out).toMatch(
      /sends {2}lateness p99 12 ms, max 31 ms \(tolerance 50, spike margin 150\) {3}refused 2 {3}hand-over gap min 252 ms {3}since 11:57:00/,
    );
  });

  test('prints no sends line when no worker reported timing in the last minutes', ({ expect }) => {
    expect(formatStatus(report(null))).not.toMatch(/sends/);
  });
});
