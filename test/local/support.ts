// Test support: message factories and a poller harness over the embedded SQS (fauxqs), with the
// invocation results and errors each test inspects.
import { ReceiveMessageCommand, SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';
import {
  type InvocationResult,
  type PollerPhase,
  type QueuePair,
  type RunningSqs,
  SqsLambdaPoller,
  type SqsLambdaPollerOptions,
} from '#harness/local/index.ts';
import { MemoryLog } from '#shared/log/index.ts';

let queueSeq = 0;

/** A fresh queue pair with a unique name; small visibility timeout for fast redelivery. */
export function freshQueues(
  sqs: RunningSqs,
  opts: { visibilityTimeoutSec?: number; maxReceiveCount?: number } = {},
): Promise<QueuePair> {
  return sqs.createQueuePair(`q${++queueSeq}-${process.pid}`, {
    visibilityTimeoutSec: opts.visibilityTimeoutSec ?? 1,
    maxReceiveCount: opts.maxReceiveCount ?? 5,
  });
}

export interface OutgoingMessage {
  body: string;
  delaySeconds?: number;
  attributes?: Record<string, { DataType: string; StringValue?: string; BinaryValue?: Uint8Array }>;
}

/** Sends the messages (up to 10) in one SendMessageBatch; returns their message IDs in order. */
export async function send(
  client: SQSClient,
  queueUrl: string,
  messages: Array<string | OutgoingMessage>,
): Promise<string[]> {
  const out = await client.send(
    new SendMessageBatchCommand({
      QueueUrl: queueUrl,
      Entries: messages.map((m, i) => {
        const msg = typeof m === 'string' ? { body: m } : m;
        return {
          Id: `e${i}`,
          MessageBody: msg.body,
          DelaySeconds: msg.delaySeconds,
          MessageAttributes: msg.attributes,
        };
      }),
    }),
  );
  if ((out.Failed ?? []).length > 0)
    throw new Error(`SendMessageBatch failed: ${JSON.stringify(out.Failed)}`);
  return messages.map((_, i) => {
    const id = out.Successful?.find((s) => s.Id === `e${i}`)?.MessageId;
    if (!id) throw new Error(`no MessageId for entry ${i}`);
    return id;
  });
}

/** Drains whatever is visible in a queue now (e.g. a DLQ) and returns the bodies. */
export async function drain(client: SQSClient, queueUrl: string): Promise<string[]> {
  const bodies: string[] = [];
  for (;;) {
    const out = await client.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
    );
    const got = out.Messages ?? [];
    if (got.length === 0) return bodies;
    for (const m of got) bodies.push(m.Body ?? '');
  }
}

export interface Harness {
  poller: SqsLambdaPoller;
  results: InvocationResult[];
  errors: Array<{ error: unknown; phase: PollerPhase }>;
  /** The poller's log (errors it met, by name and message). */
  log: MemoryLog;
  /** Every record the handler saw, in invocation order. */
  seen: SQSRecord[];
}

/** A poller on `queues` whose results and errors are collected; the caller starts and stops it. */
export function harness(
  sqs: RunningSqs,
  queues: QueuePair,
  options: Omit<SqsLambdaPollerOptions, 'client' | 'queueUrl' | 'queueArn'>,
): Harness {
  const results: InvocationResult[] = [];
  const errors: Harness['errors'] = [];
  const seen: SQSRecord[] = [];
  const log = new MemoryLog();
  const poller = new SqsLambdaPoller({
    client: sqs.client,
    queueUrl: queues.queueUrl,
    queueArn: queues.queueArn,
    waitTimeSeconds: 1,
    functionTimeoutMs: 1_000,
    log,
    ...options,
    onInvoke: (event, context) => {
      seen.push(...event.Records);
      options.onInvoke?.(event, context);
    },
    onResult: (result) => {
      results.push(result);
      options.onResult?.(result);
    },
    onError: (error, phase) => {
      errors.push({ error, phase });
      options.onError?.(error, phase);
    },
  });
  return { poller, results, errors, log, seen };
}

/** How many times the handler saw each body, and the receive counts it saw them with. */
export function receiveCounts(seen: SQSRecord[]): Map<string, string[]> {
  const counts = new Map<string, string[]>();
  for (const r of seen)
    counts.set(r.body, [...(counts.get(r.body) ?? []), r.attributes.ApproximateReceiveCount]);
  return counts;
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve: (value: T) => void = () => {};
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
