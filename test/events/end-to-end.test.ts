// End to end: random creates, updates and deletes in the Keap sandbox, synced by the worker, published
// by the publisher handler from the mirror's (would-be) stream to a local EventBridge, and written to
// events.jsonl. Exactly one event per change (by event id), none out of order per record, none for a
// re-sync that changed nothing; and the fault drill: 20% of PutEvents entries rejected for a bounded
// window loses nothing and duplicates nothing. The same scenario as `npm run bench:events`, smaller.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_OPTIONS, type EventsBenchResult, runEventsBench } from '../../bench/events/scenario.ts';

describe('change events end to end, with a fault drill', () => {
  let result: EventsBenchResult;
  const dataDir = mkdtempSync(join(tmpdir(), 'events-e2e-'));
  beforeAll(async () => {
    result = await runEventsBench({
      ...DEFAULT_OPTIONS,
      changes: 500,
      roundSize: 125,
      contacts: 300,
      drillSeconds: 4,
      drillRoundSize: 60,
      rejectShare: 0.2,
      seed: 3,
      dataDir,
    });
  }, 240_000);
  afterAll(() => {
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('publishes exactly one event per create, update and delete, by event id', () => {
    const { main } = result;

    expect(main.changes.total).toBe(500);
    expect(main.changes.creates).toBeGreaterThan(0);
    expect(main.changes.deletes).toBeGreaterThan(0);
    expect(main.accepted).toBe(500);
    expect(main.distinct).toBe(500);
    expect(main.missing).toBe(0);
    expect(main.unexpected).toBe(0);
    expect(main.deadLettered).toBe(0);
  });

  it('never publishes a record out of order', () => {
    expect(result.main.outOfOrder).toBe(0);
  });

  it('publishes nothing for a full re-sync that wrote every record unchanged', () => {
    expect(result.unchanged.writes).toBeGreaterThan(300);
    expect(result.unchanged.events).toBe(0);
    expect(result.unchanged.localEvents).toBe(0);
  });

  it('writes the same events, once each, to events.jsonl', () => {
    expect(result.main.localLines).toBe(500);
    expect(result.main.localDistinct).toBe(500);
    expect(result.main.localMissing).toBe(0);
  });

  it('loses and duplicates nothing while 20% of PutEvents entries are rejected', () => {
    const drill = result.drill;

    expect(drill).toBeDefined();
    expect(drill?.entriesRejected).toBeGreaterThan(0);
    expect(drill?.missing).toBe(0);
    expect(drill?.duplicates).toBe(0);
    expect(drill?.unexpected).toBe(0);
    expect(drill?.outOfOrder).toBe(0);
    // What was not published after every attempt is in the dead-letter queue with its reason.
    expect(drill?.accepted ?? 0).toBe((drill?.changes.total ?? 0) - (drill?.deadLettered ?? 0));
    for (const reason of Object.keys(drill?.deadLetterReasons ?? {}))
      expect(reason).toBe('ThrottlingException');
  });
});
