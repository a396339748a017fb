// Integration: the local runtime's change events. The mirror (on dynalite) hands each successful write's
// (old, new) pair to the sink, which writes the same events the publisher Lambda puts on EventBridge to
// a JSON-lines file and POSTs them to a URL, in order.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { type RunningDynamo, startDynalite } from '#harness/emulators/dynamo.ts';
import { type EventEnvelope, LocalEventSink } from '#harness/local/index.ts';
import { jsonLog } from '#shared/pipeline/index.ts';
import { createMirrorTable, type MirrorRecord, MirrorStore } from '#shared/store/index.ts';

let db: RunningDynamo;
let dir: string;
let tables = 0;
beforeAll(async () => {
  db = await startDynalite();
  dir = mkdtempSync(join(tmpdir(), 'keap-sync-events-'));
});
afterAll(async () => {
  await db?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function receiver(ctx: TestContext, status = () => 200) {
  const bodies: EventEnvelope[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const code = status();
      if (code === 200) bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as EventEnvelope);
      res.writeHead(code).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  ctx.onTestFinished(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`, bodies };
}

async function setup(ctx: TestContext, url?: string) {
  const table = `mirror-${++tables}`;
  await createMirrorTable(db.client, table);
  const file = join(dir, `${table}.jsonl`);
  const sink = new LocalEventSink({
    file,
    tableName: table,
    log: jsonLog(() => undefined),
    ...(url ? { url } : {}),
  });
  const mirror = new MirrorStore(db.client, table, { onWritten: sink.onWritten });
  ctx.onTestFinished(() => sink.flush());
  const lines = () =>
    readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as EventEnvelope);
  return { sink, mirror, lines, table };
}

const contact = (id: string, ut: number, data: Record<string, unknown>): MirrorRecord => ({
  id,
  updateTimeMs: ut,
  data,
});

describe.concurrent('local change events', () => {
  it('writes Created, then Updated with the changed fields, as EventBridge envelopes', async (ctx) => {
    const s = await setup(ctx);

    await s.mirror.upsertMany('demo', 'contacts', [contact('1', 1000, { given_name: 'Ada', email: 'a@x' })]);
    await s.mirror.upsertMany('demo', 'contacts', [contact('1', 2000, { given_name: 'Ada', email: 'b@x' })]);

    const [created, updated] = s.lines();
    expect(s.lines()).toHaveLength(2);
    expect(created).toMatchObject({
      version: '0',
      source: 'keap-sync',
      'detail-type': 'Keap Contact Created',
      detail: {
        account: 'demo',
        list: 'contacts',
        id: '1',
        change: 'created',
        record: { given_name: 'Ada' },
      },
    });
    expect(updated).toMatchObject({
      'detail-type': 'Keap Contact Updated',
      detail: { change: 'updated', updateTimeMs: 2000, changedFields: ['email'] },
    });
    expect(updated?.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  it('writes nothing for a rewrite that changed nothing, or for an older version', async (ctx) => {
    const s = await setup(ctx);
    await s.mirror.upsertMany('demo', 'orders', [contact('7', 2000, { total: 10, items: [1, 2] })]);

    await s.mirror.upsertMany('demo', 'orders', [contact('7', 2000, { items: [1, 2], total: 10 })]);
    const stale = await s.mirror.upsertMany('demo', 'orders', [contact('7', 1000, { total: 5 })]);

    expect(stale.skippedStale).toBe(1);
    expect(s.lines().map((e) => e['detail-type'])).toEqual(['Keap Order Created']);
    expect(s.sink.stats).toMatchObject({ events: 1, skipped: 1, errors: 0 });
  });

  it('gives the event the id the publisher Lambda would, and points to a record over 256 KB', async (ctx) => {
    const s = await setup(ctx);

    await s.mirror.upsertMany('demo', 'notes', [contact('9', 1000, { body: 'z'.repeat(300 * 1024) })]);

    const [event] = s.lines();
    expect(event?.detail.record).toBeUndefined();
    expect(event?.detail.recordPointer).toEqual({ table: s.table, pk: 'demo#notes', id: '9' });
    expect(event?.detail.eventId).toMatch(/^[0-9a-f]{32}$/);
  });

  it('POSTs every event to the URL in the order written, retrying a 503', async (ctx) => {
    let calls = 0;
    const r = await receiver(ctx, () => (++calls === 2 ? 503 : 200));
    const s = await setup(ctx, r.url);

    for (let ut = 1; ut <= 5; ut++) {
      await s.mirror.upsertMany('demo', 'tasks', [contact('3', ut * 1000, { title: `v${ut}` })]);
    }
    await s.sink.flush();

    expect(r.bodies).toEqual(s.lines());
    expect(r.bodies.map((e) => e.detail.updateTimeMs)).toEqual([1000, 2000, 3000, 4000, 5000]);
    expect(s.sink.stats).toMatchObject({ events: 5, posted: 5, postFailures: 0 });
  });
});
