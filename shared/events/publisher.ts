// Use case: publish the mirror's changes (a batch of its DynamoDB stream) to EventBridge. One event per
// real change, in stream order per record; PutEvents at most 10 entries and 256 KB a call; entries
// EventBridge rejects are retried on their own, bounded and backed off like the SDK's retries, and
// what still fails goes to the dead-letter queue with the reason. A failure that cannot be resolved
// here (EventBridge or SQS unreachable after the SDK's own retries) fails that record and every later
// one, so Lambda retries from it (bisecting) and a later version is never published before it.
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import {
  type EventBridgeClient,
  PutEventsCommand,
  type PutEventsResultEntry,
} from '@aws-sdk/client-eventbridge';
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { Context, DynamoDBBatchResponse, DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import type { Log } from '../pipeline/ports.ts';
import { mirrorPartitionKey } from '../store/tables.ts';
import {
  type BuiltEvent,
  buildChangeEvent,
  type ChangeDetail,
  ChangeEventError,
  MAX_ENTRIES_PER_REQUEST,
  MAX_ENTRY_BYTES,
} from './change.ts';
import { streamChange } from './stream.ts';

export type EventMetricName =
  | 'EventsPublished'
  | 'EventsSkipped'
  | 'EventEntriesRetried'
  | 'EventsDeadLettered'
  | 'EventsOversize';

/**
 * Metrics of the publisher. Only skips and dead letters carry a dimension (reason): each metric and
 * dimension combination is a CloudWatch custom metric billed monthly.
 */
export interface EventMetrics {
  add(name: EventMetricName, value: number, dimensions?: Record<string, string>): void;
}

export interface PublisherDeps {
  events: EventBridgeClient;
  sqs: SQSClient;
  /** Where entries that still fail, and mirror items that cannot be published, go. */
  deadLetterQueueUrl: string;
  eventBusName: string;
  /** The mirror table, named in pointers to records too large for an event. */
  tableName: string;
  log: Log;
  metrics: EventMetrics;
  /** Waits between retries of rejected entries (tests pass a fast one). */
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  /** Largest entry (default 256 KB; smaller in tests). */
  maxEntryBytes?: number;
}

/** The SDK's standard retry strategy's delays (@smithy/util-retry): base, base for throttling, cap. */
const RETRY_BASE_MS = 100;
const THROTTLING_RETRY_BASE_MS = 500;
const MAX_RETRY_DELAY_MS = 20_000;

/** Per-entry error codes worth another attempt; any other (MalformedDetail, AccessDenied...) never succeeds. */
const RETRYABLE_ENTRY_ERRORS = new Set(['ThrottlingException', 'InternalFailure', 'InternalException']);

/** SQS's message size limit (256 KB, body and attributes); a dead letter must fit it. */
const MAX_DEAD_LETTER_BYTES = 256 * 1024 - 2048;

/** A dead letter: why an event was not published, and the entry itself, to look at or put again. */
export interface EventDeadLetter {
  reason: string;
  message: string;
  attempts: number;
  eventId?: string;
  account?: string;
  list?: string;
  id?: string;
  updateTimeMs?: number;
  /** The entry as it was put (Detail may hold a pointer instead of the record to fit SQS). */
  entry?: BuiltEvent['entry'];
  /** For a stream record that could not be read: its keys and sequence number. */
  streamRecord?: { eventID?: string; sequenceNumber?: string; keys?: unknown };
}

export interface PublishResult {
  published: number;
  skipped: number;
  deadLettered: number;
  retried: number;
  /** Index of the first stream record that failed (it and every later one are to be retried). */
  failedFrom: number | undefined;
  /** Why, when failedFrom is set. */
  failure?: Error;
  /** Event ids in the order they were accepted (tests, logs). */
  publishedIds: string[];
}

interface Pending {
  index: number;
  built: BuiltEvent;
}

interface Chunk {
  /** Index of the first stream record whose outcome depends on this chunk. */
  firstIndex: number;
  events: Pending[];
  bytes: number;
  keys: Set<string>;
  /** Stream records that cannot be published at all, dead-lettered with this chunk to keep the order. */
  poison: EventDeadLetter[];
}

/** The part of a batch that must be retried by Lambda failed for a reason outside this record. */
export class PublishFailedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PublishFailedError';
  }
}

/** Publishes the changes in `records` (one stream batch, in order). Never throws: see `failedFrom`. */
export async function publishChanges(
  records: readonly DynamoDBRecord[],
  deps: PublisherDeps,
): Promise<PublishResult> {
  const result: PublishResult = {
    published: 0,
    skipped: 0,
    deadLettered: 0,
    retried: 0,
    failedFrom: undefined,
    publishedIds: [],
  };
  const { chunks, planFailure } = plan(records, deps, result);
  for (const chunk of chunks) {
    try {
      const rejected = chunk.events.length > 0 ? await putWithRetries(chunk.events, deps, result) : [];
      await deadLetter([...chunk.poison, ...rejected], deps);
      result.deadLettered += chunk.poison.length + rejected.length;
    } catch (err) {
      result.failedFrom = chunk.firstIndex;
      result.failure = new PublishFailedError(
        `Publishing stopped at stream record ${chunk.firstIndex}: ${(err as Error).name}: ${(err as Error).message}`,
        { cause: err },
      );
      deps.log.error('Change events not published; Lambda retries from this record', {
        failedFrom: chunk.firstIndex,
        error: (err as Error).name,
        message: (err as Error).message,
      });
      return result;
    }
  }
  if (planFailure) {
    result.failedFrom = planFailure.index;
    result.failure = planFailure.error;
  }
  return result;
}

/**
 * Stream records to chunks of at most 10 entries and 256 KB, in order, with at most one entry per
 * record in a chunk (so a retried older version is always settled before a newer one is sent).
 */
function plan(
  records: readonly DynamoDBRecord[],
  deps: PublisherDeps,
  result: PublishResult,
): { chunks: Chunk[]; planFailure?: { index: number; error: Error } } {
  const max = deps.maxEntryBytes ?? MAX_ENTRY_BYTES;
  const chunks: Chunk[] = [];
  let open: Chunk | undefined;
  const skips = new Map<string, number>();
  const openChunk = (index: number): Chunk => {
    open = { firstIndex: index, events: [], bytes: 0, keys: new Set(), poison: [] };
    chunks.push(open);
    return open;
  };
  for (const [index, record] of records.entries()) {
    let built: ReturnType<typeof buildChangeEvent>;
    try {
      const { old, next } = streamChange(record);
      built = buildChangeEvent(old, next, {
        eventBusName: deps.eventBusName,
        tableName: deps.tableName,
        maxEntryBytes: max,
      });
    } catch (err) {
      if (!(err instanceof ChangeEventError)) {
        // Not a property of the record: let Lambda retry (and bisect) from here.
        return { chunks, planFailure: { index, error: err as Error } };
      }
      (open ?? openChunk(index)).poison.push({
        reason: err.reason,
        message: err.message,
        attempts: 0,
        streamRecord: {
          eventID: record.eventID,
          sequenceNumber: record.dynamodb?.SequenceNumber,
          keys: record.dynamodb?.Keys,
        },
      });
      continue;
    }
    if (built.kind === 'skip') {
      result.skipped++;
      skips.set(built.reason, (skips.get(built.reason) ?? 0) + 1);
      continue;
    }
    if (built.oversize) deps.metrics.add('EventsOversize', 1);
    let chunk: Chunk = open ?? openChunk(index);
    if (
      chunk.events.length >= MAX_ENTRIES_PER_REQUEST ||
      chunk.bytes + built.bytes > max ||
      chunk.keys.has(built.recordKey)
    ) {
      chunk = openChunk(index);
    }
    chunk.events.push({ index, built });
    chunk.bytes += built.bytes;
    chunk.keys.add(built.recordKey);
  }
  for (const [reason, count] of skips) deps.metrics.add('EventsSkipped', count, { reason });
  return { chunks };
}

/**
 * Puts one chunk; entries EventBridge rejects with a retryable code are put again (alone, with backoff),
 * up to the client's maxAttempts in all. Returns the dead letters of the entries that still failed.
 * A failed call (after the SDK's own retries) throws.
 */
async function putWithRetries(
  events: Pending[],
  deps: PublisherDeps,
  result: PublishResult,
): Promise<EventDeadLetter[]> {
  const maxAttempts = await deps.events.config.maxAttempts();
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const random = deps.random ?? Math.random;
  const deadLetters: EventDeadLetter[] = [];
  let pending = events;
  let published = 0;
  for (let attempt = 1; pending.length > 0; attempt++) {
    const out = await deps.events.send(new PutEventsCommand({ Entries: pending.map((p) => p.built.entry) }));
    const answers: Array<PutEventsResultEntry | undefined> = out.Entries ?? [];
    const retry: Pending[] = [];
    let throttled = false;
    pending.forEach((p, i) => {
      const answer = answers[i];
      if (answer?.EventId && !answer.ErrorCode) {
        result.published++;
        published++;
        result.publishedIds.push(p.built.detail.eventId);
        return;
      }
      const code = answer?.ErrorCode ?? 'NoResult';
      const message = answer?.ErrorMessage ?? 'EventBridge returned no result for this entry.';
      if ((RETRYABLE_ENTRY_ERRORS.has(code) || code === 'NoResult') && attempt < maxAttempts) {
        throttled ||= code === 'ThrottlingException';
        retry.push(p);
        return;
      }
      deadLetters.push(toDeadLetter(p.built, code, message, attempt));
    });
    if (retry.length > 0) {
      result.retried += retry.length;
      deps.metrics.add('EventEntriesRetried', retry.length);
      const base = throttled ? THROTTLING_RETRY_BASE_MS : RETRY_BASE_MS;
      await sleep(Math.floor(random() * Math.min(MAX_RETRY_DELAY_MS, base * 2 ** (attempt - 1))));
    }
    pending = retry;
  }
  // One metric line per call, not per event (each is an EMF log line).
  if (published > 0) deps.metrics.add('EventsPublished', published);
  for (const d of deadLetters) {
    deps.log.warn('Change event dead-lettered', {
      reason: d.reason,
      eventId: d.eventId,
      account: d.account,
      list: d.list,
      id: d.id,
      attempts: d.attempts,
    });
  }
  return deadLetters;
}

function toDeadLetter(built: BuiltEvent, reason: string, message: string, attempts: number): EventDeadLetter {
  const { detail } = built;
  return {
    reason,
    message,
    attempts,
    eventId: detail.eventId,
    account: detail.account,
    list: detail.list,
    id: detail.id,
    updateTimeMs: detail.updateTimeMs,
    entry: built.entry,
  };
}

/** Sends dead letters, 10 per call; one that does not fit SQS carries a pointer instead of the record. */
async function deadLetter(letters: EventDeadLetter[], deps: PublisherDeps): Promise<void> {
  for (let i = 0; i < letters.length; i += 10) {
    const batch = letters.slice(i, i + 10);
    const out = await deps.sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: deps.deadLetterQueueUrl,
        Entries: batch.map((letter, j) => ({
          Id: String(j),
          MessageBody: deadLetterBody(letter, deps.tableName),
          MessageAttributes: { reason: { DataType: 'String', StringValue: letter.reason } },
        })),
      }),
    );
    if (out.Failed && out.Failed.length > 0) {
      const first = out.Failed[0];
      throw new PublishFailedError(
        `The dead-letter queue refused ${out.Failed.length} message(s) (${first?.Code}: ${first?.Message}).`,
      );
    }
    for (const letter of batch) deps.metrics.add('EventsDeadLettered', 1, { reason: letter.reason });
  }
}

function deadLetterBody(letter: EventDeadLetter, tableName: string): string {
  const body = JSON.stringify(letter);
  if (Buffer.byteLength(body, 'utf8') <= MAX_DEAD_LETTER_BYTES || !letter.entry) return body;
  const detail = JSON.parse(letter.entry.Detail) as ChangeDetail;
  const { record: _omitted, customFields: _named, customFieldInfo: _info, ...rest } = detail;
  const pointed: ChangeDetail = {
    ...rest,
    recordPointer: { table: tableName, pk: mirrorPartitionKey(detail.account, detail.list), id: detail.id },
  };
  return JSON.stringify({ ...letter, entry: { ...letter.entry, Detail: JSON.stringify(pointed) } });
}

export type PublisherHandler = (
  event: DynamoDBStreamEvent,
  context: Context,
) => Promise<DynamoDBBatchResponse>;

/**
 * The publisher Lambda's handler (event source: the mirror's stream with ReportBatchItemFailures).
 * Records from the first one that could not be settled are reported as failures; Lambda retries from
 * there (and bisects the batch when the whole invocation fails).
 */
export function createPublisherHandler(deps: PublisherDeps): PublisherHandler {
  return async (event, context) => {
    const result = await publishChanges(event.Records, deps);
    deps.log.info('Change events published', {
      records: event.Records.length,
      published: result.published,
      skipped: result.skipped,
      retried: result.retried,
      deadLettered: result.deadLettered,
      failedFrom: result.failedFrom,
    });
    // By sequence number: unique within a batch, and the identifier Lambda checkpoints on.
    const indexOf = new Map(event.Records.map((r, i) => [r.dynamodb?.SequenceNumber, i]));
    return processPartialResponse(
      event,
      async (record: DynamoDBRecord) => {
        const index = indexOf.get(record.dynamodb?.SequenceNumber) ?? 0;
        if (result.failedFrom !== undefined && index >= result.failedFrom) {
          throw result.failure ?? new PublishFailedError('An earlier record of this batch failed.');
        }
      },
      // One processor per invocation (see shared/pipeline/worker.ts).
      new BatchProcessor(EventType.DynamoDBStreams),
      { context },
    );
  };
}
