// Benchmark support: a local EventBridge that answers PutEvents (JSON 1.1 over HTTP, so the real SDK
// client with its own retries talks to it), records when each entry was accepted, and can reject a
// share of entries with ThrottlingException while a fault is switched on (the fault drill).
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import type { ChangeDetail } from '#shared/events/index.ts';

export interface AcceptedEntry {
  detail: ChangeDetail;
  detailType: string;
  /** Entry size as EventBridge bills it (UTF-8 bytes of source, detail-type and detail). */
  bytes: number;
  /** Epoch ms when the stub accepted it. */
  at: number;
}

export interface EventBridgeStub {
  endpoint: string;
  accepted: AcceptedEntry[];
  /** PutEvents calls and entries received (accepted or not). */
  stats: { calls: number; entries: number; rejected: number };
  /** Rejects this share of entries (0 = none) with ThrottlingException until set again. */
  setRejectShare(share: number): void;
  client(maxAttempts: number): EventBridgeClient;
  close(): Promise<void>;
}

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

interface PutEntry {
  Source: string;
  DetailType: string;
  Detail: string;
}

/** Starts the stub on 127.0.0.1; `random` decides which entries a fault rejects. */
export async function startEventBridgeStub(random: () => number): Promise<EventBridgeStub> {
  const accepted: AcceptedEntry[] = [];
  const stats = { calls: 0, entries: 0, rejected: 0 };
  let rejectShare = 0;
  let seq = 0;
  const server = createServer(async (req, res) => {
    const text = await body(req);
    if (req.headers['x-amz-target'] !== 'AWSEvents.PutEvents') {
      res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify({ __type: 'UnknownOperationException', message: 'PutEvents only' }));
      return;
    }
    const { Entries } = JSON.parse(text) as { Entries: PutEntry[] };
    stats.calls++;
    stats.entries += Entries.length;
    let failed = 0;
    const answers = Entries.map((entry) => {
      if (rejectShare > 0 && random() < rejectShare) {
        failed++;
        stats.rejected++;
        return { ErrorCode: 'ThrottlingException', ErrorMessage: 'Rate exceeded (fault drill)' };
      }
      accepted.push({
        detail: JSON.parse(entry.Detail) as ChangeDetail,
        detailType: entry.DetailType,
        bytes:
          Buffer.byteLength(entry.Source) +
          Buffer.byteLength(entry.DetailType) +
          Buffer.byteLength(entry.Detail),
        at: Date.now(),
      });
      return { EventId: `stub-${++seq}` };
    });
    res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
    res.end(JSON.stringify({ FailedEntryCount: failed, Entries: answers }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const clients: EventBridgeClient[] = [];
  return {
    endpoint,
    accepted,
    stats,
    setRejectShare: (share) => {
      rejectShare = share;
    },
    client: (maxAttempts) => {
      const client = new EventBridgeClient({
        endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
        maxAttempts,
        retryMode: 'standard',
      });
      clients.push(client);
      return client;
    },
    close: async () => {
      for (const c of clients) c.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
