// Tests (hook receiver Lambda, against dynalite and fauxqs): the deployed receiver as Keap calls it
// through its Function URL. The endpoint (token, event keys) comes from the state table; an accepted
// delivery is on the job queue before the 200; anything without the right token, or with a bad or
// oversized body, is 4xx and queues nothing; a queue that fails is 503 (Keap retries).
import { ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningDynamo, startDynalite } from '#harness/emulators/dynamo.ts';
import { type RunningSqs, startSqs } from '#harness/local/sqs.ts';
import {
  DynamoHookEndpointStore,
  hookEventJobSchema,
  hookPath,
  UnknownHookEventKeyError,
} from '#shared/hooks/index.ts';
import {
  buildHookReceiverRuntime,
  type HookReceiverRuntime,
  loadHookReceiverEnvironment,
} from '#shared/hooks/lambda.ts';
import { createStateTable } from '#shared/store/index.ts';
import { StateTable } from '#shared/store/table.ts';

let dynamo: RunningDynamo;
let sqs: RunningSqs;
let seq = 0;

beforeAll(async () => {
  [dynamo, sqs] = await Promise.all([startDynalite(), startSqs()]);
});
afterAll(async () => {
  await Promise.all([dynamo?.close(), sqs?.close()]);
});

/** A Function URL (payload 2.0) event, as Lambda hands it to the receiver. */
function urlEvent(o: {
  path: string;
  body?: string;
  headers?: Record<string, string>;
  method?: string;
  base64?: boolean;
}): APIGatewayProxyEventV2 {
  const body = o.body ?? '';
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: o.path,
    rawQueryString: '',
    headers: { 'content-type': 'application/json', ...o.headers },
    requestContext: {
      accountId: 'anonymous',
      apiId: 'url',
      domainName: 'x.lambda-url.eu-west-1.on.aws',
      domainPrefix: 'x',
      http: {
        method: o.method ?? 'POST',
        path: o.path,
        protocol: 'HTTP/1.1',
        sourceIp: '1.2.3.4',
        userAgent: 'Keap',
      },
      requestId: 'r',
      routeKey: '$default',
      stage: '$default',
      time: '',
      timeEpoch: 0,
    },
    body: o.base64 ? Buffer.from(body).toString('base64') : body,
    isBase64Encoded: o.base64 ?? false,
  };
}

const delivery = (eventKey: string, ids: number[]) =>
  JSON.stringify({
    event_key: eventKey,
    object_type: eventKey.split('.')[0],
    object_keys: ids.map((id) => ({ id, apiUrl: '', timestamp: '2026-12-02T04:00:00Z' })),
  });

async function drain(client: SQSClient, queueUrl: string): Promise<string[]> {
  const bodies: string[] = [];
  for (let empty = 0; empty < 2; ) {
    const r = await client.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
        VisibilityTimeout: 600,
      }),
    );
    if (!r.Messages?.length) empty++;
    for (const m of r.Messages ?? []) bodies.push(m.Body ?? '');
  }
  return bodies;
}

interface Fixture {
  receiver: HookReceiverRuntime;
  store: DynamoHookEndpointStore;
  queueUrl: string;
  token: string;
}

async function fixture(eventKeys: string[], maxBody = 64 * 1024, queueUrl?: string): Promise<Fixture> {
  const n = ++seq;
  const table = `state-${n}`;
  await createStateTable(dynamo.client, table);
  const q =
    queueUrl ??
    (await sqs.createQueuePair(`hooks-${n}`, { visibilityTimeoutSec: 30, maxReceiveCount: 5 })).queueUrl;
  const store = new DynamoHookEndpointStore(new StateTable(dynamo.client, table));
  const endpoint = await store.ensure('acme', eventKeys);
  const receiver = buildHookReceiverRuntime(
    {
      STATE_TABLE: table,
      JOB_QUEUE_URL: q,
      HOOK_MAX_BODY_BYTES: maxBody,
      LOG_LEVEL: 'ERROR',
      METRICS_NAMESPACE: 'Test',
    },
    { dynamo: dynamo.client, sqs: sqs.client },
  );
  return { receiver, store, queueUrl: q, token: endpoint.token };
}

describe.concurrent('hook receiver Lambda', () => {
  it('fails its cold start naming a missing or bad variable', () => {
    expect(() => loadHookReceiverEnvironment({ JOB_QUEUE_URL: 'https://sqs.x/1/q' })).toThrow(
      /STATE_TABLE is not set/,
    );
    expect(() =>
      loadHookReceiverEnvironment({
        STATE_TABLE: 'state',
        JOB_QUEUE_URL: 'https://sqs.x/1/q',
        HOOK_MAX_BODY_BYTES: '10',
      }),
    ).toThrow(/HOOK_MAX_BODY_BYTES is invalid/);
  });

  it('keeps one unguessable token per account across registrations, and adds event keys', async () => {
    const f = await fixture(['contact.add']);
    const again = await f.store.ensure('acme', ['contact.delete']);
    expect(again.token).toBe(f.token);
    expect(f.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(again.eventKeys).toEqual(['contact.add', 'contact.delete']);
    await expect(f.store.ensure('acme', ['contact.nope'])).rejects.toBeInstanceOf(UnknownHookEventKeyError);
  });

  it('echoes X-Hook-Secret on the verification handshake and queues nothing', async () => {
    const f = await fixture(['contact.add']);
    const res = await f.receiver.handle(
      urlEvent({ path: hookPath('acme', f.token), headers: { 'x-hook-secret': 's3cret' } }),
    );
    expect(res.statusCode).toBe(200);
    expect(res.headers?.['X-Hook-Secret']).toBe('s3cret');
    expect(await drain(sqs.client, f.queueUrl)).toEqual([]);
  });

  it('queues an accepted delivery as hook jobs (a base64 body too) before answering 200', async () => {
    const f = await fixture(['contact.edit']);
    const ids = Array.from({ length: 250 }, (_, i) => i + 1);
    const res = await f.receiver.handle(
      urlEvent({ path: hookPath('acme', f.token), body: delivery('contact.edit', ids), base64: true }),
    );
    expect(res.statusCode).toBe(200);
    const jobs = (await drain(sqs.client, f.queueUrl)).map((b) => hookEventJobSchema.parse(JSON.parse(b)));
    expect(jobs.map((j) => [j.account, j.resource, j.event, j.ids.length])).toEqual([
      ['acme', 'contacts', 'edit', 100],
      ['acme', 'contacts', 'edit', 100],
      ['acme', 'contacts', 'edit', 50],
    ]);
    expect(jobs.flatMap((j) => j.ids).sort((a, b) => Number(a) - Number(b))).toEqual(ids.map(String));
  });

  it('refuses without work: another token, an unknown account, an unregistered key, bad or oversized bodies', async () => {
    const f = await fixture(['contact.add'], 2_048);
    const good = hookPath('acme', f.token);
    const cases: Array<[APIGatewayProxyEventV2, number]> = [
      [urlEvent({ path: hookPath('acme', 'x'.repeat(43)), body: delivery('contact.add', [1]) }), 403],
      [urlEvent({ path: hookPath('globex', f.token), body: delivery('contact.add', [1]) }), 404],
      [urlEvent({ path: '/', body: delivery('contact.add', [1]) }), 404],
      [urlEvent({ path: good, body: delivery('order.add', [1]) }), 422],
      [urlEvent({ path: good, body: '{not json' }), 400],
      [urlEvent({ path: good, body: JSON.stringify({ event_key: 'contact.add' }) }), 400],
      [
        urlEvent({
          path: good,
          body: delivery(
            'contact.add',
            Array.from({ length: 200 }, (_, i) => i),
          ),
        }),
        413,
      ],
      [urlEvent({ path: good, method: 'GET' }), 405],
    ];
    for (const [event, status] of cases) expect((await f.receiver.handle(event)).statusCode).toBe(status);
    expect(await drain(sqs.client, f.queueUrl)).toEqual([]);
  });

  it('answers 503 when the delivery could not be queued, so Keap delivers it again', async () => {
    const real = await sqs.createQueuePair(`hooks-gone-${++seq}`, {
      visibilityTimeoutSec: 30,
      maxReceiveCount: 5,
    });
    const f = await fixture(['contact.add'], 64 * 1024, real.queueUrl.replace(/[^/]+$/, 'no-such-queue'));
    const res = await f.receiver.handle(
      urlEvent({ path: hookPath('acme', f.token), body: delivery('contact.add', [1]) }),
    );
    expect(res.statusCode).toBe(503);
  });
});
