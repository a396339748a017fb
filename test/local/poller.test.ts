// Integration: the SQS -> Lambda poller against fauxqs (real visibility timeouts, delays and redrive).
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import {
  abortSignalOf,
  InvalidBatchResponseError,
  InvocationKilledError,
  InvocationTimeoutError,
  PollerConfigError,
  PollerIdleTimeoutError,
  PollerStateError,
  parseBatchResponse,
  queueDepth,
  type RunningSqs,
  SqsLambdaPoller,
  startSqs,
} from '#harness/local/index.ts';
import { deferred, drain, freshQueues, type Harness, harness, receiveCounts, send } from './support.ts';

let sqs: RunningSqs;
beforeAll(async () => {
  sqs = await startSqs();
});
afterAll(async () => {
  await sqs?.close();
});

/** Starts the harness's poller and stops it when the test ends. */
async function run(ctx: TestContext, h: Harness): Promise<Harness> {
  await h.poller.start();
  ctx.onTestFinished(() => h.poller.stop());
  return h;
}

// Each test has its own queues, so they run concurrently: most of their time is visibility timeouts.
describe.concurrent('SqsLambdaPoller', () => {
  it('deletes a batch whose handler succeeds', async (ctx) => {
    const queues = await freshQueues(sqs);
    await send(sqs.client, queues.queueUrl, ['a', 'b', 'c', 'd', 'e']);

    const h = await run(ctx, harness(sqs, queues, { handler: async () => {} }));
    await h.poller.whenIdle();

    expect(h.seen.map((r) => r.body).sort()).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(h.results.every((r) => r.outcome === 'succeeded' && r.retried.length === 0)).toBe(true);
    expect(h.poller.stats).toMatchObject({ messagesReceived: 5, deleted: 5, failedItems: 0, retried: 0 });
  });

  it('builds records and a context the way Lambda does', async (ctx) => {
    const queues = await freshQueues(sqs);
    const [id] = await send(sqs.client, queues.queueUrl, [
      {
        body: '{"job":1}',
        attributes: {
          tenant: { DataType: 'String', StringValue: 't-1' },
          attempt: { DataType: 'Number', StringValue: '3' },
          blob: { DataType: 'Binary', BinaryValue: new Uint8Array([1, 2, 3]) },
        },
      },
    ]);
    const contexts: Context[] = [];

    const h = await run(
      ctx,
      harness(sqs, queues, {
        functionName: 'sync-worker',
        handler: async (_event, context) => {
          contexts.push(context);
        },
      }),
    );
    await h.poller.whenIdle();

    const [record] = h.seen;
    expect(record).toMatchObject({
      messageId: id,
      body: '{"job":1}',
      md5OfBody: createHash('md5').update('{"job":1}').digest('hex'),
      eventSource: 'aws:sqs',
      eventSourceARN: queues.queueArn,
      awsRegion: 'us-east-1',
      messageAttributes: {
        tenant: { stringValue: 't-1', stringListValues: [], binaryListValues: [], dataType: 'String' },
        attempt: { stringValue: '3', stringListValues: [], binaryListValues: [], dataType: 'Number' },
        blob: { binaryValue: 'AQID', stringListValues: [], binaryListValues: [], dataType: 'Binary' },
      },
    });
    expect(record?.receiptHandle).toEqual(expect.any(String));
    expect(record?.md5OfMessageAttributes).toMatch(/^[0-9a-f]{32}$/);
    expect(record?.attributes).toEqual({
      ApproximateReceiveCount: '1',
      SentTimestamp: expect.stringMatching(/^\d+$/),
      SenderId: expect.any(String),
      ApproximateFirstReceiveTimestamp: expect.stringMatching(/^\d+$/),
    });
    const [context] = contexts;
    expect(context).toMatchObject({
      functionName: 'sync-worker',
      functionVersion: '$LATEST',
      invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:sync-worker',
      logGroupName: '/aws/lambda/sync-worker',
      awsRequestId: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
    expect(() => context?.succeed('x')).toThrow(PollerStateError);
  });

  it('deletes only the successes of a partial failure; the failure returns with ApproximateReceiveCount 2', async (ctx) => {
    const queues = await freshQueues(sqs);
    const [, idB] = await send(sqs.client, queues.queueUrl, ['a', 'b', 'c']);

    const h = await run(
      ctx,
      harness(sqs, queues, {
        handler: async (event) => ({
          batchItemFailures: event.Records.filter(
            (r) => r.body === 'b' && r.attributes.ApproximateReceiveCount === '1',
          ).map((r) => ({ itemIdentifier: r.messageId })),
        }),
      }),
    );
    await h.poller.whenIdle();

    expect(h.results[0]).toMatchObject({ outcome: 'partial', retried: [idB] });
    expect(h.results[0]?.deleted).toHaveLength(2);
    expect(receiveCounts(h.seen)).toEqual(
      new Map([
        ['a', ['1']],
        ['b', ['1', '2']],
        ['c', ['1']],
      ]),
    );
    expect(h.poller.stats).toMatchObject({ failedItems: 1, deleted: 3, retried: 1, handlerErrors: 0 });
  });

  it('leaves a message the handler fails maxReceiveCount times to the queue, which moves it to the DLQ', async (ctx) => {
    const queues = await freshQueues(sqs, { maxReceiveCount: 2 });
    await send(sqs.client, queues.queueUrl, ['poison', 'fine']);

    const h = await run(
      ctx,
      harness(sqs, queues, {
        handler: async (event) => ({
          batchItemFailures: event.Records.filter((r) => r.body === 'poison').map((r) => ({
            itemIdentifier: r.messageId,
          })),
        }),
      }),
    );
    await h.poller.whenIdle();

    expect(receiveCounts(h.seen).get('poison')).toEqual(['1', '2']);
    expect(receiveCounts(h.seen).get('fine')).toEqual(['1']);
    expect(await drain(sqs.client, queues.dlqUrl)).toEqual(['poison']);
  });

  it('logs an error it meets to its log, by name and message only', async (ctx) => {
    const queues = await freshQueues(sqs);
    await send(sqs.client, queues.queueUrl, ['a']);

    const h = await run(
      ctx,
      harness(sqs, queues, {
        functionName: 'logging-fn',
        handler: async (event) => {
          if (event.Records.some((r) => r.attributes.ApproximateReceiveCount === '1')) {
            throw new TypeError('downstream unavailable');
          }
        },
      }),
    );
    await h.poller.whenIdle();

    expect(h.log.lines).toEqual([
      {
        level: 'error',
        message: 'The local SQS poller met an error',
        functionName: 'logging-fn',
        phase: 'handler',
        error: 'TypeError',
        detail: 'downstream unavailable',
      },
    ]);
  });

  it('deletes nothing when the handler throws; the whole batch comes back', async (ctx) => {
    const queues = await freshQueues(sqs);
    await send(sqs.client, queues.queueUrl, ['a', 'b']);
    const boom = new Error('downstream unavailable');

    const h = await run(
      ctx,
      harness(sqs, queues, {
        handler: async (event) => {
          if (event.Records.some((r) => r.attributes.ApproximateReceiveCount === '1')) throw boom;
        },
      }),
    );
    await h.poller.whenIdle();

    expect(h.results[0]).toMatchObject({ outcome: 'threw', deleted: [], error: boom });
    expect(h.results[0]?.retried).toHaveLength(2);
    expect(receiveCounts(h.seen)).toEqual(
      new Map([
        ['a', ['1', '2']],
        ['b', ['1', '2']],
      ]),
    );
    expect(h.errors).toEqual([{ error: boom, phase: 'handler' }]);
    expect(h.poller.stats).toMatchObject({ handlerErrors: 1, deleted: 2, retried: 2 });
  });

  it('retries the whole batch when an itemIdentifier is not a message of the batch', async (ctx) => {
    const queues = await freshQueues(sqs);
    await send(sqs.client, queues.queueUrl, ['a', 'b']);

    const h = await run(
      ctx,
      harness(sqs, queues, {
        handler: async (event) =>
          event.Records[0]?.attributes.ApproximateReceiveCount === '1'
            ? { batchItemFailures: [{ itemIdentifier: 'not-in-this-batch' }] }
            : undefined,
      }),
    );
    await h.poller.whenIdle();

    expect(h.results[0]).toMatchObject({ outcome: 'invalid-response', deleted: [] });
    expect(receiveCounts(h.seen).get('a')).toEqual(['1', '2']);
    expect(receiveCounts(h.seen).get('b')).toEqual(['1', '2']);
    expect(h.errors[0]?.error).toBeInstanceOf(InvalidBatchResponseError);
    expect(h.poller.stats).toMatchObject({ invalidResponses: 1, failedItems: 0 });
  });

  it('redelivers the batch of an invocation killed mid-job and ignores its late result', async (ctx) => {
    const queues = await freshQueues(sqs);
    await send(sqs.client, queues.queueUrl, ['job']);
    const reasons: unknown[] = [];

    const h: Harness = harness(sqs, queues, {
      handler: async (event, context) => {
        if (event.Records[0]?.attributes.ApproximateReceiveCount !== '1') return;
        const signal = abortSignalOf(context);
        h.poller.abandon(context.awsRequestId);
        await new Promise((resolve) => signal?.addEventListener('abort', resolve));
        reasons.push(signal?.reason);
        // A crashed worker's "success" must not delete anything.
      },
    });
    await run(ctx, h);
    await h.poller.whenIdle();

    expect(h.results.map((r) => r.outcome)).toEqual(['killed', 'succeeded']);
    expect(receiveCounts(h.seen).get('job')).toEqual(['1', '2']);
    expect(reasons[0]).toBeInstanceOf(InvocationKilledError);
    expect(h.poller.stats).toMatchObject({ killed: 1, deleted: 1, retried: 1 });
  });

  it('kills invocations that outlive killAfterMs, and the queue redelivers them', async (ctx) => {
    const queues = await freshQueues(sqs);
    await send(sqs.client, queues.queueUrl, ['job']);

    const h = await run(
      ctx,
      harness(sqs, queues, {
        killAfterMs: 50,
        handler: async (event, context) => {
          if (event.Records[0]?.attributes.ApproximateReceiveCount !== '1') return;
          const signal = abortSignalOf(context);
          await new Promise((resolve) => signal?.addEventListener('abort', resolve));
        },
      }),
    );
    await h.poller.whenIdle();

    expect(h.results.map((r) => r.outcome)).toEqual(['killed', 'succeeded']);
    expect(receiveCounts(h.seen).get('job')).toEqual(['1', '2']);
  });

  it('abandons an invocation that exceeds the function timeout; the remaining time counts down from it', async (ctx) => {
    const queues = await freshQueues(sqs);
    await send(sqs.client, queues.queueUrl, ['slow']);
    const remaining: number[] = [];

    const h = await run(
      ctx,
      harness(sqs, queues, {
        functionTimeoutMs: 200,
        handler: async (event, context) => {
          remaining.push(context.getRemainingTimeInMillis());
          if (event.Records[0]?.attributes.ApproximateReceiveCount !== '1') return;
          const signal = abortSignalOf(context);
          await new Promise((resolve) => signal?.addEventListener('abort', resolve));
          remaining.push(context.getRemainingTimeInMillis());
        },
      }),
    );
    await h.poller.whenIdle();

    expect(h.results.map((r) => r.outcome)).toEqual(['timed-out', 'succeeded']);
    expect(h.errors[0]?.error).toBeInstanceOf(InvocationTimeoutError);
    expect(remaining[0]).toBeLessThanOrEqual(200);
    expect(remaining[0]).toBeGreaterThan(0);
    expect(remaining[1]).toBe(0);
    expect(h.poller.stats).toMatchObject({ timeouts: 1, handlerErrors: 0 });
  });

  it('runs up to `concurrency` invocations at once', async (ctx) => {
    const queues = await freshQueues(sqs);
    await send(sqs.client, queues.queueUrl, ['1', '2', '3', '4', '5', '6']);
    let active = 0;
    let peak = 0;
    const threeAtOnce = deferred();

    const h = await run(
      ctx,
      harness(sqs, queues, {
        batchSize: 1,
        concurrency: 3,
        handler: async () => {
          active++;
          peak = Math.max(peak, active);
          if (active === 3) threeAtOnce.resolve();
          // Wait for the others (bounded, so a regression fails the assertion instead of hanging).
          await Promise.race([threeAtOnce.promise, sleep(5_000)]);
          active--;
        },
      }),
    );
    await h.poller.whenIdle();

    expect(peak).toBe(3);
    expect(h.poller.stats).toMatchObject({ invocations: 6, deleted: 6, peakConcurrency: 3 });
  });

  it('does not receive a message before its DelaySeconds have passed', async (ctx) => {
    const queues = await freshQueues(sqs);
    await send(sqs.client, queues.queueUrl, [{ body: 'later', delaySeconds: 1 }, 'now']);

    const h = await run(ctx, harness(sqs, queues, { handler: async () => {} }));
    await h.poller.whenIdle();

    expect(h.seen.map((r) => r.body)).toEqual(['now', 'later']);
    const later = h.seen[1]?.attributes;
    expect(
      Number(later?.ApproximateFirstReceiveTimestamp) - Number(later?.SentTimestamp),
    ).toBeGreaterThanOrEqual(1_000);
  });

  it('whenIdle waits for work the handler enqueues, not just the first batch', async (ctx) => {
    const queues = await freshQueues(sqs);
    await send(sqs.client, queues.queueUrl, ['5']);

    const h = await run(
      ctx,
      harness(sqs, queues, {
        handler: async (event) => {
          for (const r of event.Records) {
            const n = Number(r.body);
            if (n > 0) {
              await sqs.client.send(
                new SendMessageCommand({ QueueUrl: queues.queueUrl, MessageBody: String(n - 1) }),
              );
            }
          }
        },
      }),
    );
    await h.poller.whenIdle();

    expect(h.seen.map((r) => r.body)).toEqual(['5', '4', '3', '2', '1', '0']);
    expect(await queueDepth(sqs.client, queues.queueUrl)).toEqual({ visible: 0, notVisible: 0, delayed: 0 });
  });

  it('whenIdle rejects after timeoutMs while messages wait and the poller is not running', async () => {
    const queues = await freshQueues(sqs);
    await send(sqs.client, queues.queueUrl, ['stuck']);
    const poller = new SqsLambdaPoller({
      client: sqs.client,
      queueUrl: queues.queueUrl,
      queueArn: queues.queueArn,
      handler: async () => {},
      functionTimeoutMs: 1_000,
    });

    const error = await poller.whenIdle({ timeoutMs: 100 }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(PollerIdleTimeoutError);
    expect((error as PollerIdleTimeoutError).depth.visible).toBe(1);
    expect((error as Error).message).toContain('call start() first');
  });

  it('stop() waits for in-flight invocations, then receives nothing more', async () => {
    const queues = await freshQueues(sqs);
    await send(sqs.client, queues.queueUrl, ['first']);
    const entered = deferred();
    const release = deferred();

    const h = harness(sqs, queues, {
      handler: async () => {
        entered.resolve();
        await release.promise;
      },
    });
    await h.poller.start();
    await entered.promise;
    const stopped: string[] = [];
    const stopping = h.poller.stop().then(() => stopped.push('first stop()'));
    const stoppingAgain = h.poller.stop().then(() => stopped.push('second stop()'));
    await sleep(50);
    const stoppedBeforeRelease = [...stopped];
    release.resolve();
    await Promise.all([stopping, stoppingAgain]);
    await send(sqs.client, queues.queueUrl, ['second']);

    expect(stoppedBeforeRelease).toEqual([]);
    expect(h.poller.running).toBe(false);
    expect(h.poller.stats).toMatchObject({ invocations: 1, deleted: 1, inFlight: 0 });
    expect(await queueDepth(sqs.client, queues.queueUrl)).toMatchObject({ visible: 1, notVisible: 0 });
  });

  it('refuses a second start() while running', async (ctx) => {
    const queues = await freshQueues(sqs);
    const h = await run(ctx, harness(sqs, queues, { handler: async () => {} }));

    await expect(h.poller.start()).rejects.toBeInstanceOf(PollerStateError);
    expect(h.poller.running).toBe(true);
  });

  it('refuses to start when the queue visibility timeout is shorter than the function timeout', async () => {
    const queues = await freshQueues(sqs, { visibilityTimeoutSec: 1 });
    const poller = new SqsLambdaPoller({
      client: sqs.client,
      queueUrl: queues.queueUrl,
      queueArn: queues.queueArn,
      handler: async () => {},
      functionTimeoutMs: 5_000,
    });

    const error = await poller.start().catch((e: unknown) => e);

    expect(error).toBeInstanceOf(PollerConfigError);
    expect(error).toMatchObject({ option: 'functionTimeoutMs' });
    expect(poller.running).toBe(false);
  });

  it('refuses a queueArn that is not the queue’s own', async () => {
    const queues = await freshQueues(sqs);
    const poller = new SqsLambdaPoller({
      client: sqs.client,
      queueUrl: queues.queueUrl,
      queueArn: queues.dlqArn,
      handler: async () => {},
      functionTimeoutMs: 1_000,
    });

    await expect(poller.start()).rejects.toMatchObject({ name: 'PollerConfigError', option: 'queueArn' });
  });

  it.each([
    ['batchSize', { batchSize: 11 }],
    ['batchSize', { batchSize: 0 }],
    ['concurrency', { concurrency: 0 }],
    ['waitTimeSeconds', { waitTimeSeconds: 21 }],
    ['functionTimeoutMs', { functionTimeoutMs: 0 }],
    ['queueArn', { queueArn: 'http://not-an-arn' }],
  ])('rejects an out-of-range %s at construction', (option, overrides) => {
    const make = () =>
      new SqsLambdaPoller({
        client: sqs.client,
        queueUrl: 'http://127.0.0.1:1/000000000000/q',
        queueArn: 'arn:aws:sqs:us-east-1:000000000000:q',
        handler: async () => {},
        ...overrides,
      });

    expect(make).toThrow(PollerConfigError);
    expect(make).toThrow(expect.objectContaining({ option }));
  });
});

describe('parseBatchResponse (Lambda’s ReportBatchItemFailures rules)', () => {
  const batch = new Set(['m1', 'm2']);

  it.each([
    ['no response', undefined],
    ['null', null],
    ['an empty object', {}],
    ['null batchItemFailures', { batchItemFailures: null }],
    ['empty batchItemFailures', { batchItemFailures: [] }],
  ])('treats %s as full success', (_label, response) => {
    expect(parseBatchResponse(response, batch)).toEqual(new Set());
  });

  it('returns the named failures, once each', () => {
    const response = { batchItemFailures: [{ itemIdentifier: 'm2' }, { itemIdentifier: 'm2' }] };

    expect(parseBatchResponse(response, batch)).toEqual(new Set(['m2']));
  });

  it.each([
    ['an itemIdentifier not in the batch', { batchItemFailures: [{ itemIdentifier: 'm9' }] }],
    ['an empty itemIdentifier', { batchItemFailures: [{ itemIdentifier: '' }] }],
    ['a null itemIdentifier', { batchItemFailures: [{ itemIdentifier: null }] }],
    ['a misspelt key', { batchItemFailures: [{ itemIdentifer: 'm1' }] }],
    ['batchItemFailures that is not an array', { batchItemFailures: 'm1' }],
    ['a response that is not an object', 'ok'],
  ])('fails the whole batch for %s', (_label, response) => {
    expect(parseBatchResponse(response, batch)).toEqual(expect.any(String));
  });
});
