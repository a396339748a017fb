// The live view's backfill bar: pages and records done of the estimated total, and an ETA from the rate.
import { describe, test } from 'vitest';
import { BackfillMeter, formatProgress } from '#harness/cli/progress.ts';
import type { ResourceStatus, StatusReport } from '#harness/cli/status.ts';
import { formatTable } from '#harness/cli/table.ts';

function resource(r: Partial<ResourceStatus> & Pick<ResourceStatus, 'resource'>): ResourceStatus {
  return {
    state: 'never-synced',
    records: 0,
    highWater: null,
    lagMs: null,
    lastRunAt: null,
    lastRunMode: null,
    lastRunRecords: null,
    pagesThisRun: null,
    ...r,
  };
}

function report(resources: ResourceStatus[]): StatusReport {
  const quota = {
    minute: { limit: 240, used: 0, left: 240, heldAhead: 0, freesAt: null },
    day: { limit: 30000, used: 0, left: 30000, resetsAt: '2026-01-01T00:00:00.000Z' },
    coolDownUntil: null,
    timing: null,
  };
  return {
    at: '2026-01-01T00:00:00.000Z',
    accounts: [{ id: 'demo', tenant: 't', key: 'active', keyRejectedReason: null, resources, quota }],
    queue: null,
    deadLetters: null,
    inSync: false,
  };
}

describe('backfill progress', () => {
  test('counts pages and records of the estimate, and an ETA from the rate seen', ({ expect }) => {
    const meter = new BackfillMeter({ contacts: 5000, users: 20 });
    meter.sample(report([resource({ resource: 'contacts' }), resource({ resource: 'users' })]), 0);
    const p = meter.sample(
      report([
        resource({ resource: 'contacts', state: 'syncing', records: 2000, pagesThisRun: 2 }),
        resource({ resource: 'users', state: 'in-sync', records: 20, lastRunAt: '2026-01-01T00:00:00Z' }),
      ]),
      10_000,
    );
    expect(p?.records).toEqual({ done: 2020, total: 5020 });
    expect(p?.pages).toEqual({ done: 3, total: 6 });
    // 2,020 records in 10 s: the 3,000 left take about 14.9 s.
    expect(p?.etaMs).toBeCloseTo(3000 / 0.202, 0);
    expect(formatProgress(p as NonNullable<typeof p>)).toMatch(
      /^backfill [█░]{24} +40% {2}pages 3\/6 {2}records 2,020\/5,020 {2}ETA 15s$/,
    );
  });

  test('a list in sync counts what it holds; all in sync is done', ({ expect }) => {
    const meter = new BackfillMeter({ contacts: 5000 });
    meter.sample(report([resource({ resource: 'contacts' })]), 0);
    const p = meter.sample(
      report([resource({ resource: 'contacts', state: 'in-sync', records: 4200, lastRunAt: 'x' })]),
      5_000,
    );
    expect(p).toMatchObject({ finished: true, fraction: 1, records: { done: 4200, total: 4200 }, etaMs: 0 });
    expect(formatProgress(p as NonNullable<typeof p>)).toMatch(/100% .* done$/);
  });

  test('no bar when every list had finished a sync before the run started', ({ expect }) => {
    const meter = new BackfillMeter({ contacts: 5000 });
    const synced = resource({ resource: 'contacts', state: 'syncing', records: 10, lastRunAt: 'x' });
    expect(meter.sample(report([synced]), 0)).toBeUndefined();
  });
});

describe('the table formatter', () => {
  test('pads to the widest cell: the first column left, the others right, a rule under the head', ({
    expect,
  }) => {
    const t = formatTable(
      ['name', 'n'],
      [
        ['contacts', '5'],
        ['tags', '120'],
      ],
    );
    expect(t.split('\n')).toEqual(['name        n', '--------  ---', 'contacts    5', 'tags      120']);
  });
});
