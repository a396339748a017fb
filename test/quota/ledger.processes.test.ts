// Real concurrency: 3 OS processes x 16 acquirers with different clock offsets share one emulator;
// an independent judge applies the gateway rules to the actual send times plus random jitter.
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningDynamo, startDynalite } from '#harness/emulators/dynamo.ts';
import { judgeArrivals } from '#harness/gateway/rules.ts';
import { createLedgerTable, decodeState } from '#shared/quota/index.ts';
import { runFleet } from '../../bench/quota/fleet.ts';
import type { WorkerConfig } from '../../bench/quota/worker.ts';

const LIMITS = { spikeIntervalMs: 100, minuteLimit: 30, minuteWindowMs: 3_000, dayLimit: 100 };
const JITTER_MS = 40;

describe('quota ledger across OS processes', () => {
  let db: RunningDynamo;
  beforeAll(async () => {
    db = await startDynalite();
    await createLedgerTable(db.client, 'ledger');
  });
  afterAll(async () => {
    await db?.close();
  });

  it('3 processes x 16 acquirers with skewed clocks: zero violations, no lost reservations', {
    timeout: 90_000,
  }, async () => {
    const startAt = Date.now() + 3_000;
    const offsets = [-50, 5, 50];
    const configs: WorkerConfig[] = offsets.map((offsetMs, index) => ({
      system: 'keap-sync',
      index,
      totalWorkers: 48,
      acquirers: 16,
      endpoint: db.endpoint,
      tableName: 'ledger',
      tenant: 'acme',
      keys: ['a', 'b'],
      offsetMs,
      startAt,
      endAt: startAt + 16_000,
      k: 1,
      limits: LIMITS,
      ledger: { marginMs: 90, lateToleranceMs: 15, bucketMs: 100, holdHorizonMs: 20_000 },
      syncClock: true,
    }));
    const results = await runFleet(configs);
    expect(results.flatMap((r) => r.errors)).toEqual([]);
    if (process.env.LEDGER_STATS)
      console.log(
        results.map((r) => ({
          sends: r.sends.length,
          missed: r.missedSlots,
          corr: r.clockCorrectionMs,
          ddb: r.ddbRequests,
        })),
      );

    // Arrival = actual send time + random network jitter inside the margin.
    const jitters = fc.sample(fc.integer({ min: 0, max: JITTER_MS }), { numRuns: 10_000, seed: 42 });
    let j = 0;
    const arrivals = results.flatMap((r) =>
      r.sends.map((s) => ({ at: s.t + (jitters[j++ % jitters.length] ?? 0), tenant: 'acme', key: s.key })),
    );
    const verdict = judgeArrivals(arrivals, { ...LIMITS, quotaScope: 'tenant' });
    expect(verdict.byRule).toEqual({ spike: 0, minute: 0, day: 0, 'tenant-minute': 0, 'tenant-day': 0 });

    // Every reservation was handed to exactly one acquirer and either sent or (woken too late) released.
    const granted = results.reduce((n, r) => n + r.slotsGranted, 0);
    const sent = results.reduce((n, r) => n + r.sends.length, 0);
    const missed = results.reduce((n, r) => n + r.missedSlots, 0);
    expect(sent + missed).toBe(granted);
    const raw = await db.client.send(
      new GetItemCommand({
        TableName: 'ledger',
        Key: { pk: { S: 'quota#tenant#acme' } },
        ConsistentRead: true,
      }),
    );
    const bytes = raw.Item?.s?.B;
    if (!bytes) throw new Error('no ledger item');
    const counted = [...decodeState(bytes).days.values()].reduce((a, b) => a + b, 0);
    // What the ledger still counts is exactly what was sent: no reservation lost or counted twice.
    expect(counted).toBe(sent);
    // The day's budget is used to its last call.
    expect(sent).toBe(LIMITS.dayLimit);
  });
});
