// `keap-sync status` shows what the workers' sends looked like: lateness, refusals, hand-over gaps.
import { describe, test } from 'vitest';
import { formatStatus, PacedRecordCounts, type StatusReport } from '#harness/cli/status.ts';

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

describe('status: record counts for a live view', () => {
  const lists = [
    { account: 'demo', resource: 'contacts' as const },
    { account: 'demo', resource: 'tags' as const },
  ];

  /** A counter whose counts and duration the test sets, on a clock the test moves. */
  function fakeCounter() {
    const clock = { ms: 0 };
    const state = { calls: 0, counts: [1, 2], takesMs: 100, fail: false };
    const release: Array<() => void> = [];
    const count = async () => {
      state.calls++;
      const counts = [...state.counts];
      const fail = state.fail;
      await new Promise<void>((resolve) => release.push(resolve));
      clock.ms += state.takesMs;
      if (fail) throw new Error('mirror unreachable');
      return counts;
    };
    const settle = async () => {
      for (const r of release.splice(0)) r();
      for (let i = 0; i < 5; i++) await Promise.resolve();
    };
    return { clock, state, count, settle };
  }

  /** Paced counts over a fake counter, after the first view's count (which it waits for). */
  async function pacedAfterFirstView() {
    const f = fakeCounter();
    const paced = new PacedRecordCounts(f.count, 20, () => f.clock.ms);
    const first = paced.counter(lists);
    await f.settle();
    return { f, paced, first: await first };
  }

  test('the first view waits for a count; later ones never wait and show the last counts', async ({
    expect,
  }) => {
    const { f, paced, first } = await pacedAfterFirstView();
    expect(first).toEqual([1, 2]);
    expect(f.state.calls).toBe(1);

    // 100 ms of counting: no recount for 20 x 100 ms after it ended.
    f.state.counts = [10, 20];
    f.clock.ms += 1_999;
    expect(await paced.counter(lists)).toEqual([1, 2]);
    expect(f.state.calls).toBe(1);

    f.clock.ms += 1;
    // Due: the recount starts in the background; this view shows the last counts without waiting.
    expect(await paced.counter(lists)).toEqual([1, 2]);
    expect(f.state.calls).toBe(2);
    // While it runs, no second recount starts.
    f.clock.ms += 60_000;
    expect(await paced.counter(lists)).toEqual([1, 2]);
    expect(f.state.calls).toBe(2);
    await f.settle();
    expect(await paced.counter(lists)).toEqual([10, 20]);
  });

  test('a slower count spaces recounts further apart; a failed one keeps the last counts', async ({
    expect,
  }) => {
    const { f, paced } = await pacedAfterFirstView();

    f.clock.ms += 2_000;
    f.state.takesMs = 1_000; // the mirror grew: counting now takes a second
    f.state.fail = true;
    await paced.counter(lists);
    await f.settle();
    expect(await paced.counter(lists)).toEqual([1, 2]);
    expect(f.state.calls).toBe(2);
    // 20 s after the slow count ended: still not due at 19.999 s, due at 20 s.
    f.clock.ms += 19_999;
    await paced.counter(lists);
    expect(f.state.calls).toBe(2);
    f.clock.ms += 1;
    f.state.fail = false;
    f.state.counts = [5, 6];
    await paced.counter(lists);
    expect(f.state.calls).toBe(3);
    await f.settle();
    expect(await paced.counter(lists)).toEqual([5, 6]);
  });

  test('settled() waits for a background recount (the run awaits it before closing the stores)', async ({
    expect,
  }) => {
    const { f, paced } = await pacedAfterFirstView();
    f.clock.ms += 2_000;
    f.state.fail = true;
    await paced.counter(lists); // a recount now runs in the background, and will fail
    let done = false;
    const settled = paced.settled().then(() => {
      done = true;
    });
    for (let i = 0; i < 5; i++) await Promise.resolve();
    expect(done).toBe(false);
    await f.settle();
    await settled; // a failed recount settles too: it never rejects
    expect(done).toBe(true);
    await expect(paced.settled()).resolves.toBeUndefined();
  });
});
