// Integration: the publisher handler against a local EventBridge stub (the real SDK client over HTTP,
// with its retries) and the embedded SQS (fauxqs) as the dead-letter queue.
import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { type RunningSqs, startSqs } from '#harness/local/index.ts';
import {
  type ChangeDetail,
  createPublisherHandler,
  type EventDeadLetter,
  type EventMetricName,
  MAX_ENTRY_BYTES,
  type PublisherDeps,
} from '#shared/events/index.ts';
import { drain, freshQueues } from '../local/support.ts';
import {
  type EntryAnswer,
  type EventBridgeStub,
  memoryLog,
  mirrorItem,
  type PutEntry,
  seeded,
  startEventBridgeStub,
  streamEvent,
  streamRecord,
} from './support.ts';

const CONTEXT = { getRemainingTimeInMillis: () => 60_000, awsRequestId: 'test' } as unknown as Context;

let sqs: RunningSqs;
beforeAll(async () => {
  sqs = await startSqs();
});
afterAll(async () => {
  await sqs?.close();
});

interface Setup {
  stub: EventBridgeStub;
  deps: PublisherDeps;
  metrics: Map<EventMetricName, number>;
  deadLetters: () => Promise<EventDeadLetter[]>;
}

async function setup(
  ctx: TestContext,
  stubOptions: Parameters<typeof startEventBridgeStub>[0] = {},
  options: { maxAttempts?: number; maxEntryBytes?: number } = {},
): Promise<Setup> {
  const stub = await startEventBridgeStub(stubOptions);
  ctx.onTestFinished(() => stub.close());
  const dlq = await freshQueues(sqs);
  const metrics = new Map<EventMetricName, number>();
  const deps: PublisherDeps = {
    events: stub.client({ maxAttempts: options.maxAttempts ?? 4 }),
    sqs: sqs.client,
    deadLetterQueueUrl: dlq.queueUrl,
    eventBusName: 'KeapSync-changes',
    tableName: 'keap-sync-mirror',
    log: memoryLog(),
    metrics: { add: (name, value) => metrics.set(name, (metrics.get(name) ?? 0) + value) },
    sleep: async () => undefined,
    ...(options.maxEntryBytes ? { maxEntryBytes: options.maxEntryBytes } : {}),
  };
  return {
    stub,
    deps,
    metrics,
    deadLetters: async () =>
      (await drain(sqs.client, dlq.queueUrl)).map((b) => JSON.parse(b) as EventDeadLetter),
  };
}

/** Versions 1..n of each of `records` contacts, interleaved as the stream would carry them. */
function versions(records: number, n: number) {
  const out = [];
  for (let v = 1; v <= n; v++) {
    for (let r = 0; r < records; r++) {
      const item = (version: number) =>
        mirrorItem({ id: String(r), ut: version * 1000, data: { given_name: `v${version}`, r } });
      out.push(streamRecord(v === 1 ? undefined : item(v - 1), item(v)));
    }
  }
  return out;
}

function byRecord(details: ChangeDetail[]): Map<string, number[]> {
  const map = new Map<string, number[]>();
  for (const d of details) map.set(d.id, [...(map.get(d.id) ?? []), d.updateTimeMs]);
  return map;
}

describe.concurrent('publisher', () => {
  it('publishes every change exactly once when 20% of entries are rejected, in order per record', async (ctx) => {
    const random = seeded(7);
    const decide = (): EntryAnswer =>
      random() < 0.2 ? { ErrorCode: 'ThrottlingException', ErrorMessage: 'Rate exceeded' } : 'ok';
    const s = await setup(ctx, { decide }, { maxAttempts: 10 });
    const records = versions(40, 5);

    const response = await createPublisherHandler(s.deps)(streamEvent(records), CONTEXT);

    expect(response.batchItemFailures).toEqual([]);
    const ids = s.stub.accepted.map((d) => d.eventId);
    expect(ids).toHaveLength(200);
    expect(new Set(ids).size).toBe(200);
    for (const uts of byRecord(s.stub.accepted).values()) expect(uts).toEqual([1000, 2000, 3000, 4000, 5000]);
    expect(Math.max(...s.stub.calls.map((c) => c.length))).toBeLessThanOrEqual(10);
    expect(s.metrics.get('EventEntriesRetried')).toBeGreaterThan(20);
    expect(await s.deadLetters()).toEqual([]);
  });

  it('dead-letters an entry EventBridge keeps rejecting, with the reason, and publishes the rest', async (ctx) => {
    const decide = (entry: PutEntry): EntryAnswer =>
      (JSON.parse(entry.Detail) as ChangeDetail).id === '3'
        ? { ErrorCode: 'MalformedDetail', ErrorMessage: 'Detail is malformed.' }
        : 'ok';
    const s = await setup(ctx, { decide });
    const records = versions(6, 1);

    const response = await createPublisherHandler(s.deps)(streamEvent(records), CONTEXT);

    expect(response.batchItemFailures).toEqual([]);
    expect(s.stub.accepted.map((d) => d.id).sort()).toEqual(['0', '1', '2', '4', '5']);
    const letters = await s.deadLetters();
    expect(letters).toEqual([
      expect.objectContaining({
        reason: 'MalformedDetail',
        attempts: 1,
        id: '3',
        account: 'acme',
        list: 'contacts',
      }),
    ]);
    expect(JSON.parse(letters[0]?.entry?.Detail ?? '{}')).toMatchObject({ id: '3', change: 'created' });
  });

  it('dead-letters a throttled entry after the client maxAttempts, never sooner', async (ctx) => {
    const decide = (): EntryAnswer => ({ ErrorCode: 'ThrottlingException', ErrorMessage: 'Rate exceeded' });
    const s = await setup(ctx, { decide }, { maxAttempts: 3 });

    await createPublisherHandler(s.deps)(streamEvent(versions(1, 1)), CONTEXT);

    expect(s.stub.calls).toHaveLength(3);
    expect(await s.deadLetters()).toEqual([
      expect.objectContaining({ reason: 'ThrottlingException', attempts: 3 }),
    ]);
  });

  it('publishes a pointer to a record too large for an event', async (ctx) => {
    const s = await setup(ctx);
    const big = mirrorItem({ ut: 2000, data: { notes: 'x'.repeat(300 * 1024) } });

    await createPublisherHandler(s.deps)(streamEvent([streamRecord(mirrorItem({ ut: 1000 }), big)]), CONTEXT);

    expect(s.stub.accepted).toEqual([
      expect.objectContaining({
        change: 'updated',
        recordPointer: { table: 'keap-sync-mirror', pk: 'acme#contacts', id: '4711' },
        changedFields: ['given_name', 'notes'],
      }),
    ]);
    expect(s.stub.accepted[0]?.record).toBeUndefined();
    expect(s.metrics.get('EventsOversize')).toBe(1);
  });

  it('keeps each PutEvents call under 256 KB in all', async (ctx) => {
    const s = await setup(ctx);
    const records = Array.from({ length: 8 }, (_, i) =>
      streamRecord(undefined, mirrorItem({ id: String(i), data: { notes: 'y'.repeat(100 * 1024) } })),
    );

    await createPublisherHandler(s.deps)(streamEvent(records), CONTEXT);

    expect(s.stub.accepted).toHaveLength(8);
    for (const call of s.stub.calls) {
      const bytes = call.reduce((n, e) => n + Buffer.byteLength(e.Source + e.DetailType + e.Detail), 0);
      expect(bytes).toBeLessThanOrEqual(MAX_ENTRY_BYTES);
    }
  });

  it('publishes nothing for a write that changed nothing', async (ctx) => {
    const s = await setup(ctx);
    const v1 = mirrorItem({ ut: 1000, data: { given_name: 'Ada', phones: ['1'] } });
    const rewrite = {
      ...mirrorItem({ ut: 1000, data: { phones: ['1'], given_name: 'Ada' } }),
      syncedAt: 'x',
    };

    const response = await createPublisherHandler(s.deps)(streamEvent([streamRecord(v1, rewrite)]), CONTEXT);

    expect(response.batchItemFailures).toEqual([]);
    expect(s.stub.calls).toEqual([]);
    expect(s.metrics.get('EventsSkipped')).toBe(1);
  });

  it('never publishes an older version, and settles a rejected version before the next one', async (ctx) => {
    let rejectedOnce = false;
    const decide = (entry: PutEntry): EntryAnswer => {
      const d = JSON.parse(entry.Detail) as ChangeDetail;
      if (d.updateTimeMs === 1000 && !rejectedOnce) {
        rejectedOnce = true;
        return { ErrorCode: 'InternalFailure', ErrorMessage: 'try again' };
      }
      return 'ok';
    };
    const s = await setup(ctx, { decide });
    const at = (ut: number) => mirrorItem({ ut, data: { given_name: `v${ut}` } });
    const records = [
      streamRecord(undefined, at(1000)),
      streamRecord(at(1000), at(2000)),
      // an older version landing over a newer one (the mirror's newer-wins prevents it; the publisher too)
      streamRecord(at(2000), at(1500)),
      streamRecord(at(1500), at(3000)),
    ];

    await createPublisherHandler(s.deps)(streamEvent(records), CONTEXT);

    expect(s.stub.accepted.map((d) => d.updateTimeMs)).toEqual([1000, 2000, 3000]);
    expect(s.metrics.get('EventsSkipped')).toBe(1);
  });

  it('reports the records from a failed call on as batch failures, and dead-letters nothing', async (ctx) => {
    // The SDK retries the whole call (maxAttempts 2); the second chunk's calls all fail.
    const s = await setup(ctx, { failCall: (call) => (call >= 2 ? 500 : undefined) }, { maxAttempts: 2 });
    const records = versions(15, 1);

    const response = await createPublisherHandler(s.deps)(streamEvent(records), CONTEXT);

    expect(s.stub.accepted).toHaveLength(10);
    expect(response.batchItemFailures.map((f) => f.itemIdentifier)).toEqual(
      records.slice(10).map((r) => r.dynamodb?.SequenceNumber),
    );
    expect(s.stub.calls).toHaveLength(3);
    expect(await s.deadLetters()).toEqual([]);
  });

  it('fails the whole invocation when nothing could be published, so Lambda bisects the batch', async (ctx) => {
    const s = await setup(ctx, { failCall: () => 500 }, { maxAttempts: 1 });

    await expect(createPublisherHandler(s.deps)(streamEvent(versions(3, 1)), CONTEXT)).rejects.toThrow(
      /All records failed processing/,
    );
  });

  it('dead-letters a mirror item of an unknown list and publishes the rest of the batch', async (ctx) => {
    const s = await setup(ctx);
    const records = [
      streamRecord(undefined, mirrorItem({ id: '1' })),
      streamRecord(undefined, mirrorItem({ id: '2', resource: 'widgets' })),
      streamRecord(undefined, mirrorItem({ id: '3' })),
    ];

    const response = await createPublisherHandler(s.deps)(streamEvent(records), CONTEXT);

    expect(response.batchItemFailures).toEqual([]);
    expect(s.stub.accepted.map((d) => d.id)).toEqual(['1', '3']);
    expect(await s.deadLetters()).toEqual([
      expect.objectContaining({
        reason: 'unknown-list',
        streamRecord: expect.objectContaining({ sequenceNumber: records[1]?.dynamodb?.SequenceNumber }),
      }),
    ]);
  });
});
