// Adapter (local runtime): the change events without EventBridge. DynamoDB Streams has no emulator, so
// the mirror's own (old, new) pair after each successful write (MirrorStore's onWritten) goes through
// the same pure builder the publisher Lambda uses; each event is appended to a JSON-lines file and,
// optionally, POSTed to a URL, in the envelope EventBridge delivers to a rule's target.
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildChangeEvent, type ChangeDetail, EVENT_SOURCE, toMirrorImage } from '#shared/events/index.ts';
import type { Log } from '#shared/pipeline/index.ts';
import type { MirrorWrite } from '#shared/store/index.ts';

/** The account and region the envelope names locally (EventBridge fills in the real ones). */
const LOCAL_ACCOUNT = '000000000000';
const LOCAL_REGION = 'local';
const POST_ATTEMPTS = 4;
const POST_TIMEOUT_MS = 5_000;
/** POSTs in flight at once; one record's events are still sent one after the other, in order. */
const POST_CONCURRENCY = 8;

/** An event as an EventBridge rule delivers it (to SQS, or as the body of an API destination). */
export interface EventEnvelope {
  version: '0';
  id: string;
  'detail-type': string;
  source: string;
  account: string;
  time: string;
  region: string;
  resources: string[];
  detail: ChangeDetail;
}

export interface LocalEventsOptions {
  /** JSON-lines file every event is appended to (e.g. `.data/events.jsonl`). */
  file: string;
  /** POST every event here too (one event per request, JSON). */
  url?: string;
  /** The mirror table's name, for pointers to records too large for an event. */
  tableName: string;
  log: Log;
}

export class LocalEventSink {
  readonly stats = { events: 0, skipped: 0, posted: 0, postFailures: 0, errors: 0 };
  private readonly options: LocalEventsOptions;
  /** The last POST queued per record: the next one of that record waits for it (order per record). */
  private readonly lastPerRecord = new Map<string, Promise<void>>();
  private readonly pending = new Set<Promise<void>>();
  private inFlight = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(options: LocalEventsOptions) {
    this.options = options;
    mkdirSync(dirname(options.file), { recursive: true });
  }

  /** MirrorStore's onWritten: the event for this write, if it is a real change. Never throws. */
  readonly onWritten = (write: MirrorWrite): void => {
    try {
      const built = buildChangeEvent(
        write.old === undefined ? undefined : toMirrorImage(write.old),
        toMirrorImage(write.item),
        { eventBusName: 'keap-sync-local', tableName: this.options.tableName },
      );
      if (built.kind === 'skip') {
        this.stats.skipped++;
        return;
      }
      const envelope: EventEnvelope = {
        version: '0',
        id: crypto.randomUUID(),
        'detail-type': built.entry.DetailType,
        source: EVENT_SOURCE,
        account: LOCAL_ACCOUNT,
        // EventBridge's own format: whole seconds.
        time: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
        region: LOCAL_REGION,
        resources: [],
        detail: JSON.parse(built.entry.Detail) as ChangeDetail,
      };
      const line = JSON.stringify(envelope);
      // One write per line with O_APPEND: lines of concurrent worker processes never interleave.
      appendFileSync(this.options.file, `${line}\n`);
      this.stats.events++;
      const { url } = this.options;
      if (url) this.enqueue(`${built.detail.list}/${built.detail.id}`, () => this.post(url, line));
    } catch (err) {
      this.stats.errors++;
      this.options.log.error('Change event not written', {
        error: (err as Error).name,
        message: (err as Error).message,
      });
    }
  };

  /** Waits for the POSTs still queued. */
  async flush(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  private enqueue(record: string, send: () => Promise<void>): void {
    const previous = this.lastPerRecord.get(record) ?? Promise.resolve();
    const next = previous.then(async () => {
      // A slot of POST_CONCURRENCY; a finished POST hands its slot straight to the next waiting one.
      if (this.inFlight >= POST_CONCURRENCY) await new Promise<void>((r) => this.waiting.push(r));
      else this.inFlight++;
      try {
        await send();
      } finally {
        const waiter = this.waiting.shift();
        if (waiter) waiter();
        else this.inFlight--;
      }
    });
    this.lastPerRecord.set(record, next);
    this.pending.add(next);
    void next.finally(() => {
      this.pending.delete(next);
      if (this.lastPerRecord.get(record) === next) this.lastPerRecord.delete(record);
    });
  }

  private async post(url: string, body: string): Promise<void> {
    for (let attempt = 1; attempt <= POST_ATTEMPTS; attempt++) {
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
          signal: AbortSignal.timeout(POST_TIMEOUT_MS),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) {
          this.stats.posted++;
          return;
        }
        // Like an API destination: 4xx other than 429 is final, 429 and 5xx are retried.
        if (res.status < 500 && res.status !== 429) throw new Error(`HTTP ${res.status}`);
        if (attempt === POST_ATTEMPTS) throw new Error(`HTTP ${res.status}`);
      } catch (err) {
        if (attempt === POST_ATTEMPTS || /^HTTP 4/.test((err as Error).message)) {
          this.stats.postFailures++;
          this.options.log.warn('Change event not delivered to --events-url', {
            url,
            attempts: attempt,
            message: (err as Error).message,
          });
          return;
        }
      }
      await sleep(200 * 2 ** (attempt - 1));
    }
  }
}
