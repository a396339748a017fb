// Benchmark scenario (and the end-to-end events test's): random creates, updates and deletes in the Keap
// sandbox, synced by the real worker (incremental sync jobs for creates and updates, hook event jobs
// for deletes) into the local mirror; every mirror write's (old, new) pair goes, as the table's stream
// would carry it, to the publisher Lambda's handler in batches, which puts the events on a local
// EventBridge stub; the local runtime's events.jsonl is written too. Then it checks that every change
// gave exactly one event (by event id), none out of order per record, none for unchanged writes (a full
// re-sync), and measures change-to-event latency. The fault drill repeats it while the stub rejects a
// share of PutEvents entries for a bounded window.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeleteMessageBatchCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { marshall } from '@aws-sdk/util-dynamodb';
import type { Context, DynamoDBRecord } from 'aws-lambda';
import type { EventEnvelope } from '#harness/local/events.ts';
import { createQueuePair } from '#harness/local/sqs.ts';
import { LOCAL_TABLES, type LocalStack, startLocalStack } from '#harness/local/stack.ts';
import { type RunningSandbox, startSandbox, UPDATE_FIELD } from '#harness/sandbox/index.ts';
import { parseAppConfig } from '#shared/config/app-config.ts';
import {
  buildChangeEvent,
  type ChangeDetail,
  createPublisherHandler,
  type EventDeadLetter,
  type PublisherHandler,
  toMirrorImage,
} from '#shared/events/index.ts';
import { PUT_EVENTS_MAX_ATTEMPTS } from '#shared/events/lambda.ts';
import type { SyncResource } from '#shared/jobs/schema.ts';
import { MemoryLog, MemoryMetrics } from '#shared/pipeline/index.ts';
import type { MirrorWrite } from '#shared/store/index.ts';
import { type AcceptedEntry, type EventBridgeStub, startEventBridgeStub } from './eventbridge.ts';

export interface EventsBenchOptions {
  /** Changes in the main phase (creates + updates + deletes). */
  changes: number;
  /** Changes per round (one mutation of the sandbox, then one sync per list and the delete jobs). */
  roundSize: number;
  /** Contacts of the sandbox's dataset (the other lists scale from it). */
  contacts: number;
  /** Length of the fault drill; 0: none. */
  drillSeconds: number;
  /** Changes per round during the drill. */
  drillRoundSize: number;
  /** Share of PutEvents entries the stub rejects during the drill. */
  rejectShare: number;
  /** PutEvents attempts per entry (the publisher Lambda's client: PUT_EVENTS_MAX_ATTEMPTS). */
  putAttempts: number;
  /** Stream records per publisher invocation (the stack's publisherBatchSize). */
  batchSize: number;
  seed: number;
  /** Folder for events.jsonl. */
  dataDir: string;
  /** Progress lines (stderr in the CLI). */
  progress?: (line: string) => void;
}

export const DEFAULT_OPTIONS: Omit<EventsBenchOptions, 'dataDir'> = {
  changes: 10_000,
  roundSize: 500,
  contacts: 2_000,
  drillSeconds: 60,
  drillRoundSize: 100,
  rejectShare: 0.2,
  putAttempts: PUT_EVENTS_MAX_ATTEMPTS,
  batchSize: 100,
  seed: 1,
};

/** Which lists change, and in what shares (the rest of the sandbox's lists stay as seeded). */
const LISTS: ReadonlyArray<{ list: 'contacts' | 'companies'; share: number }> = [
  { list: 'contacts', share: 0.7 },
  { list: 'companies', share: 0.3 },
];
/** Of each list's changes: updates, creates, the rest deletes. */
const UPDATE_SHARE = 0.6;
const CREATE_SHARE = 0.25;

const ACCOUNT = 'bench';
const TENANT = 'bench.infusionsoft.com';
const KEY = 'KeapAK-bench-events-0-0123456789abcdef';

/** Gateway limits far above what the benchmark uses (it measures events, not the quota). */
const RELAXED_GATEWAY = {
  spikeIntervalMs: 0,
  minuteLimit: 1_000_000,
  minuteWindowMs: 60_000,
  dayLimit: 10_000_000,
  tenantMinuteLimit: 10_000_000,
  tenantDayLimit: 100_000_000,
} as const;
const RELAXED_LEDGER = {
  ...RELAXED_GATEWAY,
  spikeIntervalMs: 20,
  marginMs: 10,
  lateToleranceMs: 5,
  bucketMs: 1_000,
  holdHorizonMs: 10_000,
  bulkShare: 1,
  spikeCoolDownMs: 200,
  quotaCoolDownMs: 2_000,
} as const;

export interface PhaseResult {
  changes: { updates: number; creates: number; deletes: number; total: number };
  rounds: number;
  /** Events EventBridge accepted in this phase, and their distinct event ids. */
  accepted: number;
  distinct: number;
  duplicates: number;
  /** Changes with no event (published or dead-lettered). */
  missing: number;
  /** Events that match no change made. */
  unexpected: number;
  /** Records whose events arrived with an update time going back, or after their deletion. */
  outOfOrder: number;
  deadLettered: number;
  /** Dead letters by reason. */
  deadLetterReasons: Record<string, number>;
  /** Change (sandbox mutation) to EventBridge accepting the event, ms. */
  latency: { p50: number; p95: number; max: number };
  /** The same events in the local runtime's events.jsonl, and change to line written, ms. */
  localLines: number;
  localDistinct: number;
  localMissing: number;
  localLatency: { p50: number; p95: number; max: number };
  seconds: number;
  entriesSent: number;
  entriesRejected: number;
  calls: number;
  invocations: number;
  invocationMs: number;
  /** Billable 64 KB chunks of the accepted events. */
  billableEvents: number;
}

export interface EventsBenchResult {
  options: Omit<EventsBenchOptions, 'progress'>;
  initial: { records: number; events: number };
  main: PhaseResult;
  /** A full re-sync after the main phase: mirror writes that changed nothing, and the events they gave. */
  unchanged: { writes: number; events: number; localEvents: number };
  drill?: PhaseResult;
}

interface Captured {
  write: MirrorWrite;
  seq: number;
}

/** Nearest-rank percentile of `values` (0 when empty). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? 0;
}

function stats(values: readonly number[]) {
  return { p50: percentile(values, 50), p95: percentile(values, 95), max: Math.max(0, ...values) };
}

/** A mulberry32 sequence in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The stream record a NEW_AND_OLD_IMAGES stream carries for a mirror write. */
function streamRecord(c: Captured): DynamoDBRecord {
  const { old, item } = c.write;
  const image = (i: Record<string, unknown>) =>
    marshall(i, { removeUndefinedValues: true }) as NonNullable<DynamoDBRecord['dynamodb']>['NewImage'];
  const seq = String(c.seq).padStart(21, '0');
  return {
    eventID: `bench-${seq}`,
    eventName: old === undefined ? 'INSERT' : 'MODIFY',
    eventVersion: '1.1',
    eventSource: 'aws:dynamodb',
    awsRegion: 'us-east-1',
    dynamodb: {
      Keys: marshall({ pk: item.pk, id: item.id }) as NonNullable<DynamoDBRecord['dynamodb']>['Keys'],
      ...(old ? { OldImage: image(old) } : {}),
      NewImage: image(item),
      SequenceNumber: seq,
      SizeBytes: 100,
      StreamViewType: 'NEW_AND_OLD_IMAGES',
    },
  };
}

/**
 * Lambda's side of the stream, simplified: one shard, batches of up to `batchSize` records in order,
 * one invocation at a time; records from a reported failure on are handed to the next invocation.
 */
class StreamConsumer {
  readonly queue: Captured[] = [];
  invocations = 0;
  invocationMs = 0;
  private busy = false;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private readonly handler: PublisherHandler;
  private readonly batchSize: number;

  constructor(handler: PublisherHandler, batchSize: number) {
    this.handler = handler;
    this.batchSize = batchSize;
  }

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** Resolves once every captured record was handed to the publisher and the last invocation ended. */
  async drained(): Promise<void> {
    while (this.queue.length > 0 || this.busy) await sleep(20);
  }

  private async run(): Promise<void> {
    const context = { getRemainingTimeInMillis: () => 60_000, awsRequestId: 'bench' } as unknown as Context;
    let polled = 0;
    while (!this.stopped || this.queue.length > 0) {
      // Lambda polls a shard four times a second; a full batch is taken at once.
      const wait = polled + POLL_MS - performance.now();
      if (this.queue.length < this.batchSize && wait > 0 && !this.stopped) {
        await sleep(Math.min(wait, 20));
        continue;
      }
      polled = performance.now();
      if (this.queue.length === 0) continue;
      this.busy = true;
      const batch = this.queue.splice(0, this.batchSize);
      const records = batch.map(streamRecord);
      const started = performance.now();
      const response = await this.handler({ Records: records }, context);
      this.invocationMs += performance.now() - started;
      this.invocations++;
      const failed = response.batchItemFailures[0]?.itemIdentifier;
      if (failed !== undefined) {
        const from = records.findIndex((r) => r.dynamodb?.SequenceNumber === failed);
        this.queue.unshift(...batch.slice(Math.max(0, from)));
        await sleep(100);
      }
      this.busy = false;
    }
  }
}

/** How often Lambda polls a stream shard (four times a second). */
const POLL_MS = 250;

interface Change {
  list: SyncResource;
  id: string;
  kind: 'created' | 'updated' | 'deleted';
  /** Update time (created/updated). */
  ut?: number;
  /** When the sandbox made it. */
  at: number;
}

function changeKey(list: string, id: string, kind: string, ut: number | undefined): string {
  return kind === 'deleted' ? `${list}/${id}/deleted` : `${list}/${id}/${kind}/${ut}`;
}

function detailKey(d: ChangeDetail): string {
  return changeKey(d.list, d.id, d.change, d.updateTimeMs);
}

interface World {
  sandbox: RunningSandbox;
  stack: LocalStack;
  stub: EventBridgeStub;
  consumer: StreamConsumer;
  dlqUrl: string;
  eventsFile: string;
  /** Local events (the sink's) by event id: when the write that made them happened. */
  localAt: Map<string, number>;
  writes: { count: number };
  random: () => number;
  /** How long the last round's jobs took, from sending them to an idle queue. */
  lastRoundMs: number;
}

async function readDeadLetters(w: World): Promise<EventDeadLetter[]> {
  const out: EventDeadLetter[] = [];
  for (;;) {
    const r = await w.stack.sqs.client.send(
      new ReceiveMessageCommand({ QueueUrl: w.dlqUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
    );
    const messages = r.Messages ?? [];
    if (messages.length === 0) return out;
    for (const m of messages) out.push(JSON.parse(m.Body ?? '{}') as EventDeadLetter);
    await w.stack.sqs.client.send(
      new DeleteMessageBatchCommand({
        QueueUrl: w.dlqUrl,
        Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle ?? '' })),
      }),
    );
  }
}

function localLines(file: string): EventEnvelope[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as EventEnvelope);
}

/** Syncs what changed: an incremental sync per list and a hook delete job per 100 deleted ids. */
async function syncChanges(
  w: World,
  deleted: Map<'contacts' | 'companies', string[]>,
  mode: 'incremental' | 'full',
) {
  const queue = w.stack.deps.queue;
  for (const { list } of LISTS) await queue.send({ kind: 'sync', account: ACCOUNT, resource: list, mode });
  for (const [list, ids] of deleted) {
    for (let i = 0; i < ids.length; i += 100) {
      await queue.send({
        kind: 'hookEvent',
        account: ACCOUNT,
        resource: list,
        event: 'delete',
        ids: ids.slice(i, i + 100),
        receivedAt: new Date().toISOString(),
      });
    }
  }
}

/** One round: `n` random changes over the lists, synced; returns the changes made. */
async function round(w: World, n: number, poller: ReturnType<LocalStack['poller']>): Promise<Change[]> {
  const changes: Change[] = [];
  const deleted = new Map<'contacts' | 'companies', string[]>();
  let left = n;
  for (const [i, { list, share }] of LISTS.entries()) {
    const count = i === LISTS.length - 1 ? left : Math.round(n * share);
    left -= count;
    // Random split around the shares, so rounds differ.
    const jitter = () => 0.8 + 0.4 * w.random();
    const update = Math.min(count, Math.round(count * UPDATE_SHARE * jitter()));
    const create = Math.min(count - update, Math.round(count * CREATE_SHARE * jitter()));
    const del = count - update - create;
    const at = Date.now();
    const r = w.sandbox.mutate(list, { update, create, delete: del });
    const table = w.sandbox.dataset.table(list) as unknown as {
      get(id: string): Record<string, unknown> | undefined;
    };
    const utOf = (id: string) => Date.parse(String(table.get(id)?.[UPDATE_FIELD[list]] ?? ''));
    for (const id of r.updated) changes.push({ list, id, kind: 'updated', ut: utOf(id), at });
    for (const id of r.created) changes.push({ list, id, kind: 'created', ut: utOf(id), at });
    for (const id of r.deleted) changes.push({ list, id, kind: 'deleted', at });
    if (r.deleted.length > 0) deleted.set(list, r.deleted);
  }
  const synced = performance.now();
  await syncChanges(w, deleted, 'incremental');
  await poller.whenIdle({ timeoutMs: 300_000 });
  w.lastRoundMs = performance.now() - synced;
  return changes;
}

/** Compares the events since the marks with the changes made. */
async function judge(
  w: World,
  changes: Change[],
  mark: {
    accepted: number;
    local: number;
    calls: number;
    entries: number;
    rejected: number;
    invocations: number;
    invocationMs: number;
    started: number;
  },
  rounds: number,
): Promise<PhaseResult> {
  const accepted: AcceptedEntry[] = w.stub.accepted.slice(mark.accepted);
  const dead = await readDeadLetters(w);
  const expected = new Map(changes.map((c) => [changeKey(c.list, c.id, c.kind, c.ut), c]));
  const ids = new Set<string>();
  const seen = new Set<string>();
  let unexpected = 0;
  const latencies: number[] = [];
  for (const a of accepted) {
    ids.add(a.detail.eventId);
    const key = detailKey(a.detail);
    const change = expected.get(key);
    if (!change) unexpected++;
    else if (!seen.has(key)) latencies.push(a.at - change.at);
    seen.add(key);
  }
  const deadReasons: Record<string, number> = {};
  for (const d of dead) {
    deadReasons[d.reason] = (deadReasons[d.reason] ?? 0) + 1;
    if (d.list && d.id && d.updateTimeMs !== undefined && d.entry) {
      const detail = JSON.parse(d.entry.Detail) as ChangeDetail;
      seen.add(detailKey(detail));
    }
  }
  const missing = [...expected.keys()].filter((k) => !seen.has(k)).length;
  // Order: per record, update times never go back, and nothing follows a deletion.
  const last = new Map<string, { ut: number; deleted: boolean }>();
  let outOfOrder = 0;
  for (const a of accepted) {
    const record = `${a.detail.list}/${a.detail.id}`;
    const before = last.get(record);
    if (before && (before.deleted || a.detail.updateTimeMs < before.ut)) outOfOrder++;
    last.set(record, { ut: a.detail.updateTimeMs, deleted: a.detail.change === 'deleted' });
  }
  const lines = localLines(w.eventsFile).slice(mark.local);
  const localIds = new Set<string>();
  const localSeen = new Set<string>();
  const localLatencies: number[] = [];
  for (const line of lines) {
    localIds.add(line.detail.eventId);
    const key = detailKey(line.detail);
    const change = expected.get(key);
    const at = w.localAt.get(line.detail.eventId);
    if (change && at !== undefined && !localSeen.has(key)) localLatencies.push(at - change.at);
    localSeen.add(key);
  }
  const count = (kind: Change['kind']) => changes.filter((c) => c.kind === kind).length;
  return {
    changes: {
      updates: count('updated'),
      creates: count('created'),
      deletes: count('deleted'),
      total: changes.length,
    },
    rounds,
    accepted: accepted.length,
    distinct: ids.size,
    duplicates: accepted.length - ids.size,
    missing,
    unexpected,
    outOfOrder,
    deadLettered: dead.length,
    deadLetterReasons: deadReasons,
    latency: stats(latencies),
    localLines: lines.length,
    localDistinct: localIds.size,
    localMissing: [...expected.keys()].filter((k) => !localSeen.has(k)).length,
    localLatency: stats(localLatencies),
    seconds: (Date.now() - mark.started) / 1000,
    entriesSent: w.stub.stats.entries - mark.entries,
    entriesRejected: w.stub.stats.rejected - mark.rejected,
    calls: w.stub.stats.calls - mark.calls,
    invocations: w.consumer.invocations - mark.invocations,
    invocationMs: w.consumer.invocationMs - mark.invocationMs,
    billableEvents: accepted.reduce((n, a) => n + Math.max(1, Math.ceil(a.bytes / 65_536)), 0),
  };
}

function markOf(w: World) {
  return {
    accepted: w.stub.accepted.length,
    local: localLines(w.eventsFile).length,
    calls: w.stub.stats.calls,
    entries: w.stub.stats.entries,
    rejected: w.stub.stats.rejected,
    invocations: w.consumer.invocations,
    invocationMs: w.consumer.invocationMs,
    started: Date.now(),
  };
}

/** Runs the whole benchmark (or, with small options, the end-to-end test). */
export async function runEventsBench(options: EventsBenchOptions): Promise<EventsBenchResult> {
  const say = options.progress ?? (() => undefined);
  const random = prng(options.seed);
  const sandbox = await startSandbox({
    contacts: options.contacts,
    seed: options.seed,
    keys: [{ key: KEY, tenant: TENANT }],
    limits: RELAXED_GATEWAY,
  });
  const config = parseAppConfig({
    accounts: [
      {
        id: ACCOUNT,
        tenant: TENANT,
        secretId: `keap-sync/${ACCOUNT}`,
        resources: Object.fromEntries(LISTS.map(({ list }) => [list, { everyMinutes: 5 }])),
      },
    ],
    limits: RELAXED_LEDGER,
    keap: { baseUrl: sandbox.baseUrl, timeoutMs: 10_000 },
    worker: { batchSize: 5, concurrency: 4, timeoutSeconds: 120, safetyMarginMs: 2_000, leaseTtlMs: 60_000 },
  });
  const captured: { seq: number } = { seq: 0 };
  const localAt = new Map<string, number>();
  const writes = { count: 0 };
  let consumer: StreamConsumer | undefined;
  const eventsFile = join(options.dataDir, 'events.jsonl');
  const onMirrorWritten = (write: MirrorWrite) => {
    writes.count++;
    const built = buildChangeEvent(
      write.old === undefined ? undefined : toMirrorImage(write.old),
      toMirrorImage(write.item),
      { eventBusName: 'keap-sync-local', tableName: LOCAL_TABLES.mirror },
    );
    if (built.kind === 'event') localAt.set(built.detail.eventId, Date.now());
    consumer?.queue.push({ write, seq: ++captured.seq });
  };
  const stack = await startLocalStack({
    config,
    secrets: { [`keap-sync/${ACCOUNT}`]: KEY },
    log: new MemoryLog(),
    metrics: new MemoryMetrics(),
    events: { file: eventsFile },
    onMirrorWritten,
  });
  const stub = await startEventBridgeStub(prng(options.seed + 1));
  try {
    const dlq = await createQueuePair(stack.sqs.client, 'bench-events-failed', {
      visibilityTimeoutSec: 30,
      maxReceiveCount: 5,
    });
    const metrics = new MemoryMetrics();
    const handler = createPublisherHandler({
      events: stub.client(options.putAttempts),
      sqs: stack.sqs.client,
      deadLetterQueueUrl: dlq.queueUrl,
      eventBusName: 'keap-sync-bench',
      tableName: LOCAL_TABLES.mirror,
      log: new MemoryLog(),
      metrics: { add: (name, value) => metrics.add(name as never, value) },
    });
    consumer = new StreamConsumer(handler, options.batchSize);
    consumer.start();
    const w: World = {
      sandbox,
      stack,
      stub,
      consumer,
      dlqUrl: dlq.queueUrl,
      eventsFile,
      localAt,
      writes,
      random,
      lastRoundMs: 0,
    };
    const poller = stack.poller({ concurrency: 4 });
    await poller.start();
    try {
      // The first full sync: every record is created once (not counted in the phases).
      await syncChanges(w, new Map(), 'full');
      await poller.whenIdle({ timeoutMs: 600_000 });
      await consumer.drained();
      const initial = { records: writes.count, events: stub.accepted.length };
      say(`initial sync: ${initial.records} records, ${initial.events} events`);

      // Main phase.
      let mark = markOf(w);
      const changes: Change[] = [];
      let rounds = 0;
      while (changes.length < options.changes) {
        changes.push(
          ...(await round(w, Math.min(options.roundSize, options.changes - changes.length), poller)),
        );
        rounds++;
        say(
          `changes ${changes.length}/${options.changes}, events ${stub.accepted.length - mark.accepted}, round synced in ${Math.round(w.lastRoundMs)} ms`,
        );
      }
      await consumer.drained();
      const main = await judge(w, changes, mark, rounds);

      // Unchanged writes: a full re-sync rewrites every record as it is.
      mark = markOf(w);
      const writesBefore = writes.count;
      await syncChanges(w, new Map(), 'full');
      await poller.whenIdle({ timeoutMs: 600_000 });
      await consumer.drained();
      const unchanged = {
        writes: writes.count - writesBefore,
        events: stub.accepted.length - mark.accepted,
        localEvents: localLines(eventsFile).length - mark.local,
      };
      say(`full re-sync: ${unchanged.writes} unchanged writes, ${unchanged.events} events`);

      let drill: PhaseResult | undefined;
      if (options.drillSeconds > 0) {
        mark = markOf(w);
        const drillChanges: Change[] = [];
        let drillRounds = 0;
        stub.setRejectShare(options.rejectShare);
        const end = Date.now() + options.drillSeconds * 1000;
        while (Date.now() < end) {
          drillChanges.push(...(await round(w, options.drillRoundSize, poller)));
          drillRounds++;
          say(
            `fault drill: ${drillChanges.length} changes, ${Math.max(0, Math.ceil((end - Date.now()) / 1000))} s left`,
          );
          await sleep(Math.min(1_000, Math.max(0, end - Date.now())));
        }
        // The fault lasts its whole window, even if the changes' events are still being retried.
        while (Date.now() < end) await sleep(50);
        stub.setRejectShare(0);
        await consumer.drained();
        drill = await judge(w, drillChanges, mark, drillRounds);
      }
      return {
        options: { ...options, progress: undefined } as Omit<EventsBenchOptions, 'progress'>,
        initial,
        main,
        unchanged,
        ...(drill ? { drill } : {}),
      };
    } finally {
      await poller.stop();
    }
  } finally {
    await consumer?.stop();
    await stub.close();
    await stack.close();
    await sandbox.close();
  }
}
