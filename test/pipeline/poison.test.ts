// End to end: a batch mixing poison and valid messages dead-letters exactly the poison, each with its
// reason, while the valid ones succeed; and concurrent invocations report only their own failures.
import { randomUUID } from 'node:crypto';
import type { Context, SQSBatchResponse, SQSRecord } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  eventually,
  mirrorOf,
  receiveAll,
  sandboxKey,
  secretIdOf,
  sendRaw,
  startWorld,
  TENANT_A,
  type World,
} from './support.ts';

const ACCOUNT = 'acme';
const KEY = sandboxKey(TENANT_A, 0);

function record(body: string): SQSRecord {
  return {
    messageId: randomUUID(),
    receiptHandle: randomUUID(),
    body,
    attributes: {
      ApproximateReceiveCount: '1',
      SentTimestamp: String(Date.now()),
      SenderId: 'test',
      ApproximateFirstReceiveTimestamp: String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:keap-sync-jobs',
    awsRegion: 'us-east-1',
  };
}

function context(): Context {
  const deadline = Date.now() + 60_000;
  const unsupported = () => {
    throw new Error('not on nodejs24.x');
  };
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: 'keap-sync-worker',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:keap-sync-worker',
    memoryLimitInMB: '128',
    awsRequestId: randomUUID(),
    logGroupName: '/aws/lambda/keap-sync-worker',
    logStreamName: 'test',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: unsupported,
    fail: unsupported,
    succeed: unsupported,
  };
}

function failures(response: SQSBatchResponse): string[] {
  return (response.batchItemFailures ?? []).map((f) => f.itemIdentifier).sort();
}

describe('poison messages', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({
      contacts: 300,
      keys: [KEY],
      accounts: [
        { id: ACCOUNT, tenant: TENANT_A, key: KEY.key, resources: ['contacts', 'tags'] },
        // Configured, but its secret is deleted below: its jobs fail (retryably) with KeySecretError.
        { id: 'nokey', tenant: TENANT_A, key: KEY.key, resources: ['tags'] },
      ],
      worker: { batchSize: 10, maxReceiveCount: 3 },
    });
    w.stack.secrets.remove(secretIdOf('nokey'));
  });
  afterAll(async () => {
    await w?.close();
  });

  test('a batch dead-letters exactly its poison messages, with reasons, and runs the valid ones', async () => {
    const poison: Array<{ body: string; reason: string }> = [
      { body: '{"kind":"sync","account":', reason: 'invalid-json' },
      { body: 'null', reason: 'unknown-kind' },
      { body: JSON.stringify({ kind: 'frobnicate', account: ACCOUNT }), reason: 'unknown-kind' },
      {
        body: JSON.stringify({ kind: 'sync', account: ACCOUNT, resource: 'widgets' }),
        reason: 'invalid-job',
      },
      {
        body: JSON.stringify({
          kind: 'createNote',
          account: ACCOUNT,
          idempotencyKey: 'short',
          contactId: '1',
          note: {},
        }),
        reason: 'invalid-job',
      },
      {
        body: JSON.stringify({ kind: 'sync', account: 'ghost', resource: 'contacts' }),
        reason: 'unknown-account',
      },
    ];
    const upsertKey = `poison-batch-upsert-${randomUUID()}`;
    const valid = [
      JSON.stringify({ kind: 'sync', account: ACCOUNT, resource: 'contacts', mode: 'full' }),
      JSON.stringify({
        kind: 'upsertContact',
        account: ACCOUNT,
        idempotencyKey: upsertKey,
        contact: {
          given_name: 'Valid',
          email_addresses: [{ email: 'valid.one@example.com', field: 'EMAIL1' }],
        },
      }),
    ];
    // One SendMessageBatch, one receive of up to ten: the poison and the valid share an invocation.
    await sendRaw(w.stack, [...poison.map((p) => p.body), ...valid]);
    const poller = w.stack.poller({ concurrency: 1, batchSize: 10 });
    await poller.start();
    try {
      await poller.whenIdle({ timeoutMs: 30_000 });
    } finally {
      await poller.stop();
    }
    expect(poller.stats.invocations).toBe(1);
    expect(poller.stats.messagesReceived).toBe(poison.length + valid.length);
    expect(poller.stats.deleted).toBe(poison.length + valid.length);
    expect(poller.stats.failedItems).toBe(0);

    const dlq = await receiveAll(w.stack, w.stack.sqs.queue.dlqUrl);
    expect(dlq.map((m) => [m.body, m.attributes.reason]).sort()).toEqual(
      poison.map((p) => [p.body, p.reason]).sort(),
    );
    for (const m of dlq) {
      expect(m.attributes.error, m.body).toBeTruthy();
      expect(m.attributes.originalMessageId, m.body).toBeTruthy();
    }
    expect(w.metrics.sum('DeadLetters')).toBe(poison.length);
    expect(w.metrics.sum('DeadLetters', { reason: 'unknown-account' })).toBe(1);

    // The full sync and the upsert shared the invocation and ran side by side: whichever read came
    // first, the next incremental sync brings the mirror level with Keap.
    await sendRaw(w.stack, [JSON.stringify({ kind: 'sync', account: ACCOUNT, resource: 'contacts' })]);
    const again = w.stack.poller({ concurrency: 1, batchSize: 10 });
    await again.start();
    try {
      await again.whenIdle({ timeoutMs: 30_000 });
    } finally {
      await again.stop();
    }
    expect((await mirrorOf(w.stack, ACCOUNT, 'contacts')).size).toBe(w.sandbox.dataset.contacts.size);
    const outcome = await w.stack.deps.writes.getOutcome(upsertKey);
    expect(outcome?.state).toBe('done');
    expect(w.sandbox.dataset.contacts.get(String(outcome?.outcome?.contactId))?.given_name).toBe('Valid');
  }, 60_000);

  test('concurrent invocations each report their own failed records, and only those', async () => {
    // Invocation A: a job that fails at once (its account's secret is missing) and a slow valid one.
    // Invocation B starts after A's failure and finishes before A. A must still report its failure,
    // or the poller deletes a message that never ran.
    const failing = record(JSON.stringify({ kind: 'sync', account: 'nokey', resource: 'tags' }));
    const slow = record(
      JSON.stringify({
        kind: 'upsertContact',
        account: ACCOUNT,
        idempotencyKey: `slow-${randomUUID()}`,
        contact: {
          given_name: 'Slow',
          email_addresses: [{ email: 'slow.one@example.com', field: 'EMAIL1' }],
        },
      }),
    );
    const other = record('not json at all');
    w.sandbox.setFaults({ slowMs: 1_500 });
    try {
      const errorsBefore = w.log.lines.filter((l) => l.level === 'error').length;
      const a = w.stack.handler({ Records: [failing, slow] }, context());
      const failedFirst = await eventually(
        () => w.log.lines.filter((l) => l.level === 'error').length > errorsBefore,
        5_000,
      );
      expect(failedFirst).toBe(true);
      const b = await w.stack.handler({ Records: [other] }, context());
      expect(failures(b)).toEqual([]);
      expect(failures(await a)).toEqual([failing.messageId]);
    } finally {
      w.sandbox.setFaults({ slowMs: undefined });
    }
  });
});
