// Test support: mirror items and DynamoDB stream records (factories), and a local EventBridge stub the
// real SDK client talks to (JSON 1.1 over HTTP), deciding per entry whether to accept or reject it.
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { marshall } from '@aws-sdk/util-dynamodb';
import type { DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import type { ChangeDetail } from '#shared/events/index.ts';
import type { Log } from '#shared/pipeline/ports.ts';

export interface ItemInput {
  account?: string;
  resource?: string;
  id?: string;
  ut?: number;
  data?: Record<string, unknown>;
  deletedAt?: string;
}

/** A mirror item as MirrorStore writes it (plus `deletedAt` for a tombstone). */
export function mirrorItem(input: ItemInput = {}): Record<string, unknown> {
  const account = input.account ?? 'acme';
  const resource = input.resource ?? 'contacts';
  const ut = input.ut ?? 1_790_000_000_000;
  return {
    pk: `${account}#${resource}`,
    id: input.id ?? '4711',
    account,
    resource,
    ...(input.data === undefined && input.deletedAt ? {} : { data: input.data ?? { given_name: 'Ada' } }),
    ut,
    updateTime: new Date(ut).toISOString(),
    syncedAt: new Date(ut + 1000).toISOString(),
    ...(input.deletedAt ? { deletedAt: input.deletedAt } : {}),
  };
}

let sequence = 1000;

/** A stream record: INSERT (new only), MODIFY (both), REMOVE (old only). */
export function streamRecord(
  old: Record<string, unknown> | undefined,
  next: Record<string, unknown> | undefined,
): DynamoDBRecord {
  const eventName = old === undefined ? 'INSERT' : next === undefined ? 'REMOVE' : 'MODIFY';
  const any = (next ?? old) as Record<string, unknown>;
  const seq = String(++sequence).padStart(21, '0');
  const image = (item: Record<string, unknown> | undefined) =>
    item === undefined
      ? undefined
      : (marshall(item, { removeUndefinedValues: true }) as NonNullable<
          DynamoDBRecord['dynamodb']
        >['NewImage']);
  return {
    eventID: `e${seq}`,
    eventName,
    eventVersion: '1.1',
    eventSource: 'aws:dynamodb',
    awsRegion: 'eu-west-1',
    eventSourceARN: 'arn:aws:dynamodb:eu-west-1:111122223333:table/mirror/stream/2026-01-01T00:00:00.000',
    dynamodb: {
      Keys: marshall({ pk: any.pk, id: any.id }) as NonNullable<DynamoDBRecord['dynamodb']>['Keys'],
      ...(old ? { OldImage: image(old) } : {}),
      ...(next ? { NewImage: image(next) } : {}),
      SequenceNumber: seq,
      SizeBytes: 100,
      StreamViewType: 'NEW_AND_OLD_IMAGES',
    },
  };
}

export function streamEvent(records: DynamoDBRecord[]): DynamoDBStreamEvent {
  return { Records: records };
}

export interface PutEntry {
  Source: string;
  DetailType: string;
  Detail: string;
  EventBusName?: string;
}

export type EntryAnswer = 'ok' | { ErrorCode: string; ErrorMessage: string };

export interface EventBridgeStub {
  endpoint: string;
  /** Entries of each PutEvents call, in arrival order. */
  calls: PutEntry[][];
  /** Accepted entries' details, in the order accepted. */
  accepted: ChangeDetail[];
  client(options?: { maxAttempts?: number }): EventBridgeClient;
  close(): Promise<void>;
}

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * An EventBridge that answers PutEvents. `decide` says per entry whether it is accepted; `failCall`
 * (by call number, from 1) makes a whole call fail with an HTTP status instead.
 */
export async function startEventBridgeStub(
  options: {
    decide?: (entry: PutEntry, call: number) => EntryAnswer;
    failCall?: (call: number) => number | undefined;
  } = {},
): Promise<EventBridgeStub> {
  const calls: PutEntry[][] = [];
  const accepted: ChangeDetail[] = [];
  let eventSeq = 0;
  const server = createServer(async (req, res) => {
    const text = await body(req);
    const target = req.headers['x-amz-target'];
    if (target !== 'AWSEvents.PutEvents') {
      res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify({ __type: 'UnknownOperationException', message: String(target) }));
      return;
    }
    const { Entries } = JSON.parse(text) as { Entries: PutEntry[] };
    calls.push(Entries);
    const call = calls.length;
    const status = options.failCall?.(call);
    if (status !== undefined) {
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(
        JSON.stringify({
          __type: status === 400 ? 'ThrottlingException' : 'InternalException',
          message: 'stub',
        }),
      );
      return;
    }
    if (Entries.length > 10) {
      res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify({ __type: 'ValidationException', message: 'more than 10 entries' }));
      return;
    }
    let failed = 0;
    const answers = Entries.map((entry) => {
      const answer = options.decide?.(entry, call) ?? 'ok';
      if (answer === 'ok') {
        accepted.push(JSON.parse(entry.Detail) as ChangeDetail);
        return { EventId: `stub-${++eventSeq}` };
      }
      failed++;
      return answer;
    });
    res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
    res.end(JSON.stringify({ FailedEntryCount: failed, Entries: answers }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const clients: EventBridgeClient[] = [];
  return {
    endpoint,
    calls,
    accepted,
    client: (o = {}) => {
      const client = new EventBridgeClient({
        endpoint,
        region: 'eu-west-1',
        credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
        maxAttempts: o.maxAttempts ?? 4,
        retryMode: 'standard',
      });
      clients.push(client);
      return client;
    },
    close: async () => {
      for (const c of clients) c.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A log that keeps its lines for assertions. */
export function memoryLog(): Log & { lines: Array<{ level: string; message: string; fields?: unknown }> } {
  const lines: Array<{ level: string; message: string; fields?: unknown }> = [];
  const log = {
    lines,
    debug: (message: string, fields?: Record<string, unknown>) =>
      lines.push({ level: 'debug', message, fields }),
    info: (message: string, fields?: Record<string, unknown>) =>
      lines.push({ level: 'info', message, fields }),
    warn: (message: string, fields?: Record<string, unknown>) =>
      lines.push({ level: 'warn', message, fields }),
    error: (message: string, fields?: Record<string, unknown>) =>
      lines.push({ level: 'error', message, fields }),
    child: () => log,
  };
  return log;
}

/** A deterministic pseudo-random sequence in [0, 1) (mulberry32). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
