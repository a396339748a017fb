// Integration: the embedded SQS (fauxqs in-process on 127.0.0.1) and its queue pairs.
import { GetQueueAttributesCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { LOCAL_AWS } from '#harness/emulators/dynamo.ts';
import { LocalHarnessError, queueDepth, type RunningSqs, startSqs } from '#harness/local/index.ts';

describe('embedded SQS', () => {
  let sqs: RunningSqs;
  beforeAll(async () => {
    sqs = await startSqs();
  });
  afterAll(async () => {
    await sqs?.close();
  });

  it('listens on 127.0.0.1 and names queues with 127.0.0.1 URLs and us-east-1 ARNs', async () => {
    const pair = await sqs.createQueuePair('orders', { visibilityTimeoutSec: 2, maxReceiveCount: 3 });

    expect(sqs.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(pair).toEqual({
      queueUrl: `${sqs.endpoint}/000000000000/orders`,
      dlqUrl: `${sqs.endpoint}/000000000000/orders-dlq`,
      queueArn: 'arn:aws:sqs:us-east-1:000000000000:orders',
      dlqArn: 'arn:aws:sqs:us-east-1:000000000000:orders-dlq',
    });
  });

  it('sets the visibility timeout and a redrive policy to the DLQ on the main queue', async () => {
    const pair = await sqs.createQueuePair('billing', { visibilityTimeoutSec: 2, maxReceiveCount: 4 });

    const { Attributes } = await sqs.client.send(
      new GetQueueAttributesCommand({ QueueUrl: pair.queueUrl, AttributeNames: ['All'] }),
    );

    expect(Attributes?.VisibilityTimeout).toBe('2');
    expect(JSON.parse(Attributes?.RedrivePolicy ?? '{}')).toEqual({
      deadLetterTargetArn: pair.dlqArn,
      maxReceiveCount: 4,
    });
  });

  it('is reachable by queue URL from a client configured only through AWS_ENDPOINT_URL_SQS', async () => {
    const pair = await sqs.createQueuePair('env-only', { visibilityTimeoutSec: 1, maxReceiveCount: 2 });
    vi.stubEnv('AWS_ENDPOINT_URL_SQS', sqs.endpoint);
    const client = new SQSClient({
      region: LOCAL_AWS.region,
      credentials: LOCAL_AWS.credentials,
      maxAttempts: 1,
    });
    try {
      await client.send(new SendMessageCommand({ QueueUrl: pair.queueUrl, MessageBody: 'hello' }));
    } finally {
      client.destroy();
      vi.unstubAllEnvs();
    }

    expect(await queueDepth(sqs.client, pair.queueUrl)).toEqual({ visible: 1, notVisible: 0, delayed: 0 });
  });

  it('refuses FIFO names for a standard queue pair', async () => {
    await expect(
      sqs.createQueuePair('jobs.fifo', { visibilityTimeoutSec: 1, maxReceiveCount: 2 }),
    ).rejects.toBeInstanceOf(LocalHarnessError);
  });
});
