// Adapter (local runtime and tests): the SQS -> Lambda event source mapping with ReportBatchItemFailures,
// emulated. Receives batches, invokes the handler with a faithful SQSEvent and a Lambda-like Context,
// deletes what succeeded and leaves the rest to the queue's visibility timeout and redrive policy.
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  type Message,
  type MessageAttributeValue,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type {
  Context,
  SQSBatchResponse,
  SQSEvent,
  SQSMessageAttributes,
  SQSRecord,
  SQSRecordAttributes,
} from 'aws-lambda';
import { jsonLog, type Log } from '#shared/log/index.ts';
import {
  InvalidBatchResponseError,
  InvocationKilledError,
  InvocationTimeoutError,
  PollerConfigError,
  PollerIdleTimeoutError,
  PollerStateError,
} from './errors.ts';
import { queueDepth } from './sqs.ts';

/** An SQS-triggered handler as nodejs24.x runs it: async, no callback. The result type is aws-lambda's. */
// biome-ignore lint/suspicious/noConfusingVoidType: the same result type as aws-lambda's SQSHandler.
export type SqsLambdaHandler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse | void>;

/** Where an error reached the poller's `onError` hook. */
export type PollerPhase = 'receive' | 'handler' | 'timeout' | 'killed' | 'response' | 'delete' | 'poller';

/** How one invocation ended, and what the poller did with its messages. */
export interface InvocationResult {
  awsRequestId: string;
  outcome: 'succeeded' | 'partial' | 'threw' | 'timed-out' | 'killed' | 'invalid-response';
  /** Message IDs of the batch, in event order. */
  messageIds: string[];
  /** Messages the poller deleted (DeleteMessageBatch reported success). */
  deleted: string[];
  /** Messages left on the queue; they return after the visibility timeout (or go to the DLQ). */
  retried: string[];
  error?: unknown;
}

export interface PollerStats {
  /** Handler invocations started. */
  invocations: number;
  messagesReceived: number;
  deleted: number;
  /** Messages the handler named in a valid `batchItemFailures`. */
  failedItems: number;
  /** Messages left on the queue for any reason (failures, errors, timeouts, kills, delete errors). */
  retried: number;
  /** Invocations whose handler threw or rejected. */
  handlerErrors: number;
  timeouts: number;
  killed: number;
  invalidResponses: number;
  deleteErrors: number;
  receiveErrors: number;
  /** Invocations running now (abandoned ones excluded). */
  inFlight: number;
  /** Most invocations that ran at once. */
  peakConcurrency: number;
}

export interface SqsLambdaPollerOptions {
  client: SQSClient;
  queueUrl: string;
  /** The queue's ARN: the records' `eventSourceARN`; its region is their `awsRegion`. */
  queueArn: string;
  handler: SqsLambdaHandler;
  /** Messages per invocation, 1-10 (the ReceiveMessage limit). Default 10. */
  batchSize?: number;
  /** Parallel invocations (one receive loop each). Default 1. */
  concurrency?: number;
  /** ReceiveMessage long-poll wait, 0-20 s. Also bounds how long stop() waits for a poll. Default 1. */
  waitTimeSeconds?: number;
  /** Function timeout: the invocation is abandoned after it. Must not exceed the queue's visibility timeout. Default 3000 (Lambda's default). */
  functionTimeoutMs?: number;
  functionName?: string;
  memoryLimitInMB?: number;
  /** Kill every invocation that runs longer than this: a worker crashing mid-job. */
  killAfterMs?: number;
  /** Called just before each invocation with a copy of the event and the invocation's context. */
  onInvoke?: (event: SQSEvent, context: Context) => void;
  /** Called after each invocation once its messages were deleted or left. */
  onResult?: (result: InvocationResult) => void;
  /** Called with every error (after it is logged). */
  onError?: (error: unknown, phase: PollerPhase) => void;
  /** Where errors are logged (name and message only). Default: JSON lines on standard error. */
  log?: Log;
}

type Settled =
  | { kind: 'returned'; value: unknown }
  | { kind: 'threw'; error: unknown }
  | { kind: 'timed-out'; error: InvocationTimeoutError }
  | { kind: 'killed'; error: InvocationKilledError };

const signals = new WeakMap<Context, AbortSignal>();

/**
 * The AbortSignal of an invocation the poller started: it aborts when the invocation times out or is
 * killed, so a handler (or a test double) can stop its work. Undefined for contexts from elsewhere.
 */
export function abortSignalOf(context: Context): AbortSignal | undefined {
  return signals.get(context);
}

const RECEIVE_ERROR_BACKOFF_MS = 250;
const EMPTY_POLL_PAUSE_MS = 50;

/** Emulates the SQS -> Lambda event source mapping with `FunctionResponseTypes: ['ReportBatchItemFailures']`. */
export class SqsLambdaPoller {
  readonly queueUrl: string;
  readonly queueArn: string;
  readonly functionName: string;
  private readonly client: SQSClient;
  private readonly handler: SqsLambdaHandler;
  private readonly batchSize: number;
  private readonly concurrency: number;
  private readonly waitTimeSeconds: number;
  private readonly functionTimeoutMs: number;
  private readonly memoryLimitInMB: number;
  private readonly killAfterMs: number | undefined;
  private readonly region: string;
  private readonly accountId: string;
  private readonly hooks: Pick<SqsLambdaPollerOptions, 'onInvoke' | 'onResult' | 'onError'>;
  private readonly log: Log;
  private readonly counters: PollerStats = {
    invocations: 0,
    messagesReceived: 0,
    deleted: 0,
    failedItems: 0,
    retried: 0,
    handlerErrors: 0,
    timeouts: 0,
    killed: 0,
    invalidResponses: 0,
    deleteErrors: 0,
    receiveErrors: 0,
    inFlight: 0,
    peakConcurrency: 0,
  };
  private readonly killSwitches = new Map<string, () => void>();
  private state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  private slots: Promise<void>[] = [];
  private stopping: Promise<void> = Promise.resolve();

  constructor(options: SqsLambdaPollerOptions) {
    this.client = options.client;
    this.queueUrl = options.queueUrl;
    this.queueArn = options.queueArn;
    this.handler = options.handler;
    this.batchSize = integerIn('batchSize', options.batchSize ?? 10, 1, 10);
    this.concurrency = integerIn('concurrency', options.concurrency ?? 1, 1, 1000);
    this.waitTimeSeconds = integerIn('waitTimeSeconds', options.waitTimeSeconds ?? 1, 0, 20);
    this.functionTimeoutMs = integerIn('functionTimeoutMs', options.functionTimeoutMs ?? 3_000, 1, 900_000);
    this.memoryLimitInMB = integerIn('memoryLimitInMB', options.memoryLimitInMB ?? 128, 128, 10_240);
    this.killAfterMs =
      options.killAfterMs === undefined
        ? undefined
        : integerIn('killAfterMs', options.killAfterMs, 0, 900_000);
    this.functionName = options.functionName ?? 'local-function';
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(this.functionName)) {
      throw new PollerConfigError(
        'functionName',
        `"${this.functionName}" is not a Lambda function name; use 1-64 letters, digits, hyphens or underscores.`,
      );
    }
    const arn = /^arn:aws[a-z-]*:sqs:([a-z0-9-]+):(\d{12}):[A-Za-z0-9_.-]+$/.exec(this.queueArn);
    if (!arn?.[1] || !arn[2]) {
      throw new PollerConfigError(
        'queueArn',
        `"${this.queueArn}" is not an SQS queue ARN; pass the QueueArn from GetQueueAttributes.`,
      );
    }
    this.region = arn[1];
    this.accountId = arn[2];
    this.hooks = { onInvoke: options.onInvoke, onResult: options.onResult, onError: options.onError };
    this.log = options.log ?? jsonLog((line) => process.stderr.write(`${line}\n`));
  }

  /** A snapshot of the counters. */
  get stats(): PollerStats {
    return { ...this.counters };
  }

  get running(): boolean {
    return this.state === 'running';
  }

  /**
   * Checks the queue as Lambda does when the mapping is created (it exists, its ARN matches, its
   * visibility timeout is at least the function timeout), then starts `concurrency` receive loops.
   */
  async start(): Promise<void> {
    if (this.state !== 'new' && this.state !== 'stopped') {
      throw new PollerStateError(`The poller is ${this.state}; call stop() and await it before start().`);
    }
    this.state = 'starting';
    try {
      const out = await this.client.send(
        new GetQueueAttributesCommand({
          QueueUrl: this.queueUrl,
          AttributeNames: ['QueueArn', 'VisibilityTimeout'],
        }),
      );
      const arn = out.Attributes?.QueueArn;
      if (arn !== this.queueArn) {
        throw new PollerConfigError(
          'queueArn',
          `${this.queueUrl} has ARN ${String(arn)}, not ${this.queueArn}; pass the queue's own ARN.`,
        );
      }
      const visibilitySec = Number(out.Attributes?.VisibilityTimeout);
      if (!(visibilitySec * 1000 >= this.functionTimeoutMs)) {
        throw new PollerConfigError(
          'functionTimeoutMs',
          `the queue's visibility timeout (${visibilitySec} s) is shorter than the function timeout ` +
            `(${this.functionTimeoutMs} ms), which Lambda refuses. Raise the queue's VisibilityTimeout ` +
            '(AWS advises 6x the function timeout) or lower functionTimeoutMs.',
        );
      }
    } catch (err) {
      this.state = 'new';
      throw err;
    }
    this.state = 'running';
    this.slots = Array.from({ length: this.concurrency }, () => this.runSlot());
  }

  /**
   * Stops receiving and resolves once every slot has finished: a poll already waiting completes (at
   * most `waitTimeSeconds`), and a batch it returns is still invoked, so no message is stranded.
   * Abandoned (timed-out or killed) invocations are not waited for.
   */
  stop(): Promise<void> {
    if (this.state === 'running') {
      this.state = 'stopping';
      this.stopping = Promise.all(this.slots).then(() => {
        this.slots = [];
        this.state = 'stopped';
      });
    }
    return this.stopping;
  }

  /**
   * Kills a running invocation by its `context.awsRequestId`, as if its worker crashed: its signal
   * aborts, its result is ignored and nothing of its batch is deleted. Returns false if none runs.
   */
  abandon(awsRequestId: string): boolean {
    const kill = this.killSwitches.get(awsRequestId);
    kill?.();
    return kill !== undefined;
  }

  /**
   * Resolves once the queue holds no visible, in-flight or delayed message and no invocation runs,
   * continuously for `quietMs`. Rejects with PollerIdleTimeoutError after `timeoutMs`.
   */
  async whenIdle(options: { quietMs?: number; timeoutMs?: number } = {}): Promise<void> {
    const quietMs = options.quietMs ?? 100;
    const timeoutMs = options.timeoutMs ?? 20_000;
    const deadline = Date.now() + timeoutMs;
    let idleSince: number | undefined;
    for (;;) {
      const depth = await queueDepth(this.client, this.queueUrl);
      const inFlight = this.counters.inFlight;
      const now = Date.now();
      if (depth.visible + depth.notVisible + depth.delayed === 0 && inFlight === 0) {
        idleSince ??= now;
        if (now - idleSince >= quietMs) return;
      } else {
        idleSince = undefined;
      }
      if (now >= deadline) {
        throw new PollerIdleTimeoutError(timeoutMs, depth, inFlight, this.state === 'running');
      }
      await sleep(Math.min(25, Math.max(1, quietMs)));
    }
  }

  private async runSlot(): Promise<void> {
    const logStreamName = `${new Date().toISOString().slice(0, 10).replaceAll('-', '/')}/[$LATEST]${randomBytes(16).toString('hex')}`;
    while (this.state === 'running') {
      let messages: Message[];
      try {
        const out = await this.client.send(
          new ReceiveMessageCommand({
            QueueUrl: this.queueUrl,
            MaxNumberOfMessages: this.batchSize,
            WaitTimeSeconds: this.waitTimeSeconds,
            MessageSystemAttributeNames: ['All'],
            MessageAttributeNames: ['All'],
          }),
        );
        messages = out.Messages ?? [];
      } catch (err) {
        if (this.state !== 'running') break;
        this.counters.receiveErrors++;
        this.report(err, 'receive');
        await sleep(RECEIVE_ERROR_BACKOFF_MS);
        continue;
      }
      if (messages.length === 0) {
        if (this.waitTimeSeconds === 0) await sleep(EMPTY_POLL_PAUSE_MS);
        continue;
      }
      // A batch received while stopping is still invoked: its messages are already in flight.
      try {
        await this.invoke(messages, logStreamName);
      } catch (err) {
        // A throwing test hook or a malformed message; the batch is left to the visibility timeout.
        this.report(err, 'poller');
      }
    }
  }

  private async invoke(messages: Message[], logStreamName: string): Promise<void> {
    const records = messages.map((message) => this.toRecord(message));
    const event: SQSEvent = { Records: records };
    const awsRequestId = randomUUID();
    const messageIds = records.map((r) => r.messageId);
    const handles = new Map(records.map((r) => [r.messageId, r.receiptHandle]));
    const controller = new AbortController();
    const clock = { deadline: Date.now() + this.functionTimeoutMs };
    const context = this.context(awsRequestId, logStreamName, clock);
    signals.set(context, controller.signal);

    this.counters.invocations++;
    this.counters.messagesReceived += records.length;
    this.counters.inFlight++;
    this.counters.peakConcurrency = Math.max(this.counters.peakConcurrency, this.counters.inFlight);
    try {
      this.hooks.onInvoke?.(structuredClone(event), context);
      const settled = await this.run(structuredClone(event), context, { controller, clock, awsRequestId });
      const result = this.judge(settled, awsRequestId, messageIds);
      if (result.error !== undefined) {
        this.report(result.error, phaseOf(result.outcome));
      }
      const toDelete = messageIds.filter((id) => !result.retried.has(id));
      const deleted = await this.deleteMessages(toDelete, handles);
      const retried = messageIds.filter((id) => !deleted.has(id));
      this.counters.deleted += deleted.size;
      this.counters.retried += retried.length;
      this.hooks.onResult?.({
        awsRequestId,
        outcome: result.outcome,
        messageIds,
        deleted: messageIds.filter((id) => deleted.has(id)),
        retried,
        ...(result.error === undefined ? {} : { error: result.error }),
      });
    } finally {
      this.counters.inFlight--;
    }
  }

  /** Runs the handler, racing it against the function timeout and the kill switches. */
  private async run(
    event: SQSEvent,
    context: Context,
    invocation: { controller: AbortController; clock: { deadline: number }; awsRequestId: string },
  ): Promise<Settled> {
    const { controller, clock, awsRequestId } = invocation;
    const handlerRun: Promise<Settled> = Promise.resolve()
      .then(() => this.handler(event, context))
      .then(
        (value): Settled => ({ kind: 'returned', value }),
        (error: unknown): Settled => ({ kind: 'threw', error }),
      );
    const timers: NodeJS.Timeout[] = [];
    const abandoned = new Promise<Settled>((resolve) => {
      timers.push(
        setTimeout(
          () =>
            resolve({
              kind: 'timed-out',
              error: new InvocationTimeoutError(awsRequestId, this.functionTimeoutMs),
            }),
          this.functionTimeoutMs,
        ),
      );
      if (this.killAfterMs !== undefined) {
        const after = this.killAfterMs;
        timers.push(
          setTimeout(
            () =>
              resolve({
                kind: 'killed',
                error: new InvocationKilledError(awsRequestId, `killAfterMs ${after}`),
              }),
            after,
          ),
        );
      }
      this.killSwitches.set(awsRequestId, () =>
        resolve({ kind: 'killed', error: new InvocationKilledError(awsRequestId, 'abandon() was called') }),
      );
    });
    try {
      const settled = await Promise.race([handlerRun, abandoned]);
      if (settled.kind === 'timed-out' || settled.kind === 'killed') {
        clock.deadline = 0; // an abandoned invocation has no time left, whatever the clock says
        controller.abort(settled.error);
      }
      return settled;
    } finally {
      for (const timer of timers) clearTimeout(timer);
      this.killSwitches.delete(awsRequestId);
    }
  }

  /** Applies Lambda's ReportBatchItemFailures rules to how the invocation ended. */
  private judge(
    settled: Settled,
    awsRequestId: string,
    messageIds: string[],
  ): { outcome: InvocationResult['outcome']; retried: Set<string>; error?: unknown } {
    const all = new Set(messageIds);
    switch (settled.kind) {
      case 'threw':
        this.counters.handlerErrors++;
        return { outcome: 'threw', retried: all, error: settled.error };
      case 'timed-out':
        this.counters.timeouts++;
        return { outcome: 'timed-out', retried: all, error: settled.error };
      case 'killed':
        this.counters.killed++;
        return { outcome: 'killed', retried: all, error: settled.error };
      case 'returned': {
        const parsed = parseBatchResponse(settled.value, all);
        if (typeof parsed === 'string') {
          this.counters.invalidResponses++;
          return {
            outcome: 'invalid-response',
            retried: all,
            error: new InvalidBatchResponseError(awsRequestId, parsed),
          };
        }
        this.counters.failedItems += parsed.size;
        return { outcome: parsed.size === 0 ? 'succeeded' : 'partial', retried: parsed };
      }
    }
  }

  /** Deletes the given messages; returns the IDs SQS confirmed. */
  private async deleteMessages(ids: string[], handles: Map<string, string>): Promise<Set<string>> {
    const deleted = new Set<string>();
    if (ids.length === 0) return deleted;
    const entries = ids.map((id, i) => ({ Id: `m${i}`, ReceiptHandle: handles.get(id) ?? '' }));
    try {
      const out = await this.client.send(
        new DeleteMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: entries }),
      );
      for (const ok of out.Successful ?? []) {
        const id = ids[Number(ok.Id?.slice(1))];
        if (id !== undefined) deleted.add(id);
      }
      const failed = out.Failed ?? [];
      if (failed.length > 0) {
        this.counters.deleteErrors += failed.length;
        this.report(
          new Error(
            `DeleteMessageBatch failed for ${failed.length} message(s): ${failed.map((f) => f.Code).join(', ')}`,
          ),
          'delete',
        );
      }
    } catch (err) {
      this.counters.deleteErrors += ids.length;
      this.report(err, 'delete');
    }
    return deleted;
  }

  private toRecord(message: Message): SQSRecord {
    const { MessageId, ReceiptHandle, Body, MD5OfBody } = message;
    if (MessageId === undefined || ReceiptHandle === undefined || Body === undefined) {
      throw new PollerStateError(
        'ReceiveMessage returned a message without MessageId, ReceiptHandle or Body.',
      );
    }
    const a = message.Attributes ?? {};
    const attributes: SQSRecordAttributes = {
      ApproximateReceiveCount: a.ApproximateReceiveCount ?? '1',
      SentTimestamp: a.SentTimestamp ?? '',
      SenderId: a.SenderId ?? '',
      ApproximateFirstReceiveTimestamp: a.ApproximateFirstReceiveTimestamp ?? '',
    };
    if (a.AWSTraceHeader !== undefined) attributes.AWSTraceHeader = a.AWSTraceHeader;
    if (a.SequenceNumber !== undefined) attributes.SequenceNumber = a.SequenceNumber;
    if (a.MessageGroupId !== undefined) attributes.MessageGroupId = a.MessageGroupId;
    if (a.MessageDeduplicationId !== undefined) attributes.MessageDeduplicationId = a.MessageDeduplicationId;
    if (a.DeadLetterQueueSourceArn !== undefined)
      attributes.DeadLetterQueueSourceArn = a.DeadLetterQueueSourceArn;
    const record: SQSRecord = {
      messageId: MessageId,
      receiptHandle: ReceiptHandle,
      body: Body,
      attributes,
      messageAttributes: toLambdaAttributes(message.MessageAttributes ?? {}),
      md5OfBody: MD5OfBody ?? '',
      eventSource: 'aws:sqs',
      eventSourceARN: this.queueArn,
      awsRegion: this.region,
    };
    if (message.MD5OfMessageAttributes !== undefined)
      record.md5OfMessageAttributes = message.MD5OfMessageAttributes;
    return record;
  }

  private context(awsRequestId: string, logStreamName: string, clock: { deadline: number }): Context {
    const unsupported = (name: string) => () => {
      throw new PollerStateError(
        `context.${name}() is not available on nodejs24.x; return (or throw) from the async handler instead.`,
      );
    };
    return {
      callbackWaitsForEmptyEventLoop: true,
      functionName: this.functionName,
      functionVersion: '$LATEST',
      invokedFunctionArn: `arn:aws:lambda:${this.region}:${this.accountId}:function:${this.functionName}`,
      memoryLimitInMB: String(this.memoryLimitInMB),
      awsRequestId,
      logGroupName: `/aws/lambda/${this.functionName}`,
      logStreamName,
      getRemainingTimeInMillis: () => Math.max(0, clock.deadline - Date.now()),
      done: unsupported('done'),
      fail: unsupported('fail'),
      succeed: unsupported('succeed'),
    };
  }

  private report(error: unknown, phase: PollerPhase): void {
    this.log.error('The local SQS poller met an error', {
      functionName: this.functionName,
      phase,
      error: error instanceof Error ? error.name : 'unknown',
      detail: error instanceof Error ? error.message : String(error),
    });
    this.hooks.onError?.(error, phase);
  }
}

function phaseOf(outcome: InvocationResult['outcome']): PollerPhase {
  switch (outcome) {
    case 'timed-out':
      return 'timeout';
    case 'killed':
      return 'killed';
    case 'invalid-response':
      return 'response';
    default:
      return 'handler';
  }
}

/**
 * Lambda's rules: no response, an empty one, or a null/empty `batchItemFailures` mean full success; an
 * itemIdentifier that is missing, empty, not a string or not in the batch fails the whole batch, as does
 * a response that is not a JSON object. Returns the failed IDs, or a string saying what is invalid.
 */
export function parseBatchResponse(value: unknown, batch: ReadonlySet<string>): Set<string> | string {
  let json: unknown;
  try {
    // The response crosses the Lambda API as JSON: what does not serialise does not arrive.
    const text = JSON.stringify(value);
    json = text === undefined ? null : JSON.parse(text);
  } catch (err) {
    return `it cannot be serialised to JSON (${err instanceof Error ? err.message : String(err)})`;
  }
  if (json === null) return new Set();
  if (typeof json !== 'object' || Array.isArray(json)) return `it is ${describeJson(json)}, not an object`;
  const failures = (json as { batchItemFailures?: unknown }).batchItemFailures;
  if (failures === undefined || failures === null) return new Set();
  if (!Array.isArray(failures)) return `batchItemFailures is ${describeJson(failures)}, not an array`;
  const failed = new Set<string>();
  for (const item of failures as unknown[]) {
    const id =
      typeof item === 'object' && item !== null
        ? (item as { itemIdentifier?: unknown }).itemIdentifier
        : undefined;
    if (typeof id !== 'string' || id === '') {
      return `an entry of batchItemFailures has no itemIdentifier string: ${JSON.stringify(item)}`;
    }
    if (!batch.has(id)) return `itemIdentifier "${id}" is not a message of this batch`;
    failed.add(id);
  }
  return failed;
}

function describeJson(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'string' ? 'a string' : `${typeof value} ${JSON.stringify(value)}`;
}

function toLambdaAttributes(attrs: Record<string, MessageAttributeValue>): SQSMessageAttributes {
  const out: SQSMessageAttributes = {};
  for (const [name, attr] of Object.entries(attrs)) {
    out[name] = {
      ...(attr.StringValue === undefined ? {} : { stringValue: attr.StringValue }),
      ...(attr.BinaryValue === undefined
        ? {}
        : { binaryValue: Buffer.from(attr.BinaryValue).toString('base64') }),
      stringListValues: attr.StringListValues ?? [],
      binaryListValues: (attr.BinaryListValues ?? []).map((b) => Buffer.from(b).toString('base64')),
      dataType: attr.DataType ?? 'String',
    };
  }
  return out;
}

function integerIn(option: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new PollerConfigError(
      option,
      `${value} is out of range; use a whole number from ${min} to ${max}.`,
    );
  }
  return value;
}
