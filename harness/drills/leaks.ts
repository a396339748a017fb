// Adapter (drills): the leak scan. Reads everything the system kept or showed (every log line of every
// process, worker standard error, dead letters and queued jobs, every item of the ledger, state and
// mirror tables, the metrics, the live view's text) and counts where a planted key appears.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { ChangeMessageVisibilityCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { collectStatus, formatStatus } from '../cli/status.ts';
import { LOCAL_TABLES } from '../local/stack.ts';
import type { DrillSystem } from './system.ts';

export interface LeakScan {
  /** What was scanned, by place: how many items (lines, messages, table items, metrics). */
  scanned: Record<string, number>;
  /** Places where the key (or a 16-character piece of it) was found, with how often. */
  found: Record<string, number>;
}

/** The key and pieces of it long enough to identify it (a truncated or sliced copy is a leak too). */
function needles(key: string): string[] {
  const out = new Set([key]);
  for (let i = 0; i + 16 <= key.length; i += 8) {
    const piece = key.slice(i, i + 16);
    if (!piece.startsWith('KeapAK-')) out.add(piece);
  }
  return [...out];
}

/** Texts (of `texts`) holding any of `keys` or a 16-character piece of one. */
export function countOccurrences(texts: readonly string[], keys: readonly string[]): number {
  const all = keys.flatMap(needles);
  let n = 0;
  for (const t of texts) if (all.some((k) => t.includes(k))) n++;
  return n;
}

async function peekQueue(sys: DrillSystem, queueUrl: string): Promise<string[]> {
  const bodies: string[] = [];
  const handles: string[] = [];
  for (let empty = 0; empty < 2; ) {
    const r = await sys.stack.sqs.client.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
        VisibilityTimeout: 30,
        MessageAttributeNames: ['All'],
        MessageSystemAttributeNames: ['All'],
      }),
    );
    const got = r.Messages ?? [];
    if (got.length === 0) empty++;
    for (const m of got) {
      bodies.push(JSON.stringify(m));
      if (m.ReceiptHandle) handles.push(m.ReceiptHandle);
    }
  }
  for (const ReceiptHandle of handles)
    await sys.stack.sqs.client
      .send(new ChangeMessageVisibilityCommand({ QueueUrl: queueUrl, ReceiptHandle, VisibilityTimeout: 0 }))
      // A worker received and deleted it meanwhile: nothing to put back.
      .catch(() => undefined);
  return bodies;
}

async function scanTable(sys: DrillSystem, table: string): Promise<string[]> {
  const items: string[] = [];
  let ExclusiveStartKey: Record<string, unknown> | undefined;
  do {
    const r = await sys.stack.dynamo.client.send(
      new ScanCommand({ TableName: table, ExclusiveStartKey: ExclusiveStartKey as never }),
    );
    for (const i of r.Items ?? []) items.push(JSON.stringify(i));
    ExclusiveStartKey = r.LastEvaluatedKey;
  } while (ExclusiveStartKey);
  return items;
}

/** Scans everything for each of `keys`; `viewText` adds what a live view showed during the run. */
export async function scanForKeys(
  sys: DrillSystem,
  keys: readonly string[],
  viewText: readonly string[] = [],
): Promise<LeakScan> {
  const places: Record<string, string[]> = {};
  places['log lines'] = sys.allLogLines();
  places['worker stderr'] = readdirSync(sys.dataDir)
    .filter((f) => f.endsWith('.stderr'))
    .flatMap((f) => readFileSync(join(sys.dataDir, f), 'utf8').split('\n'));
  places['dead letters'] = await peekQueue(sys, sys.stack.sqs.queue.dlqUrl);
  places['queued jobs'] = await peekQueue(sys, sys.stack.sqs.queue.queueUrl);
  places['ledger items'] = await scanTable(sys, LOCAL_TABLES.ledger);
  places['state items'] = await scanTable(sys, LOCAL_TABLES.state);
  places['mirror items'] = await scanTable(sys, LOCAL_TABLES.mirror);
  places.metrics = [...sys.metrics.totals.entries()].map(([k, v]) => `${k}=${v}`);
  const sources = {
    ...sys.stack.deps,
    queues: {
      client: sys.stack.sqs.client,
      queueUrl: sys.stack.sqs.queue.queueUrl,
      dlqUrl: sys.stack.sqs.queue.dlqUrl,
    },
  };
  const report = await collectStatus(sources);
  places['live view'] = [...viewText, formatStatus(report), JSON.stringify(report)];
  const scan: LeakScan = { scanned: {}, found: {} };
  for (const [place, texts] of Object.entries(places)) {
    scan.scanned[place] = texts.length;
    const n = countOccurrences(texts, keys);
    if (n > 0) scan.found[place] = n;
  }
  return scan;
}
