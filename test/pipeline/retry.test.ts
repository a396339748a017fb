// End to end: a transient failure (a hung Keap request) comes back in seconds with a log line, not
// after the visibility timeout; a message delivered twice does its work once (the second delivery
// makes no Keap call); and a batch that runs up to its function timeout continues in new messages
// instead of outliving its invocation.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { SyncResource } from '#shared/jobs/schema.ts';
import {
  arrivalsSince,
  drain,
  eventually,
  sandboxKey,
  sendRaw,
  startWorld,
  TENANT_A,
  type World,
} from './support.ts';

const ACCOUNT = 'acme';
const KEY = sandboxKey(TENANT_A, 0);
const CONTACTS = 5_000;
/** Long enough that a message left to it would stall every test here. */
const VISIBILITY_SEC = 120;

describe('retries and redeliveries', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({
      contacts: CONTACTS,
      keys: [KEY],
      accounts: [
        {
          id: ACCOUNT,
          tenant: TENANT_A,
          key: KEY.key,
          resources: ['contacts', 'companies', 'tags', 'products', 'notes', 'tasks'],
        },
      ],
      worker: { timeoutSeconds: 10, safetyMarginMs: 2_000, maxRetries: 5 },
      visibilityTimeoutSec: VISIBILITY_SEC,
      // A hung request is abandoned after 1 s (the client tries it 4 times within its budget).
      keapTimeoutMs: 1_000,
    });
  });
  afterAll(async () => {
    await w?.close();
  });

  const drainOne = (timeoutMs = 60_000) =>
    drain(w, { concurrency: 1, batchSize: 5, timeoutMs, allowHandlerErrors: true });

  const syncBody = (resource: SyncResource, mode: 'full' | 'incremental' = 'full') =>
    JSON.stringify({ kind: 'sync', account: ACCOUNT, resource, mode, runId: randomUUID() });

  test('a hung request: the job is logged once with its error and retried in seconds', async () => {
    const { runs } = w.stack.deps;
    const logMark = w.log.lines.length;
    const body = syncBody('tags');
    w.sandbox.setFaults({ hangRate: 1 });
    const poller = w.stack.poller({ concurrency: 1, batchSize: 5 });
    const started = Date.now();
    await poller.start();
    try {
      await sendRaw(w.stack, [body]);
      const failedLine = () =>
        w.log.lines
          .slice(logMark)
          .find((l) => l.message === 'Job failed on a transient error; it is retried after a backoff');
      expect(await eventually(() => failedLine() !== undefined, 30_000)).toBe(true);
      // Keap answers again: the retry finishes the sync.
      w.sandbox.setFaults({ hangRate: undefined });
      const runId = (JSON.parse(body) as { runId: string }).runId;
      expect(
        await eventually(async () => (await runs.getCursor(ACCOUNT, 'tags')).lastRunId === runId, 30_000),
      ).toBe(true);
      const elapsedMs = Date.now() - started;
      // Recovered well before the visibility timeout would have returned the message.
      expect(elapsedMs).toBeLessThan((VISIBILITY_SEC * 1000) / 4);
      expect(failedLine()).toMatchObject({
        level: 'warn',
        error: 'RetryableError',
        kind: 'sync',
        resource: 'tags',
        attempt: 0,
        failures: 1,
        next: 'retry',
      });
      expect(failedLine()?.retryInMs).toBeGreaterThan(0);
      await poller.whenIdle({ timeoutMs: 30_000 });
    } finally {
      w.sandbox.setFaults({ hangRate: undefined });
      await poller.stop();
    }
    // Nothing was left to the visibility timeout: the failed delivery was re-sent, not failed.
    expect(poller.stats.retried).toBe(0);
    expect(poller.stats.failedItems).toBe(0);
    const lines = w.log.lines.slice(logMark);
    expect(lines.filter((l) => l.message.startsWith('Job failed on a transient error'))).toHaveLength(1);
  }, 90_000);

  test('each kind of job delivered twice calls Keap only the first time', async () => {
    const contact = w.sandbox.dataset.contacts.values()[7];
    const tag = w.sandbox.dataset.tags.values()[0];
    const user = w.sandbox.dataset.users.values()[0];
    if (!contact || !tag || !user) throw new Error('the sandbox lacks a contact, tag or user');
    const bodies = [
      syncBody('companies'),
      JSON.stringify({
        kind: 'upsertContact',
        account: ACCOUNT,
        idempotencyKey: `upsert-${randomUUID()}`,
        contact: {
          given_name: 'Ada',
          email_addresses: [{ email: `${randomUUID()}@example.com`, field: 'EMAIL1' }],
        },
      }),
      JSON.stringify({
        kind: 'applyTags',
        account: ACCOUNT,
        idempotencyKey: `tags-${randomUUID()}`,
        tagId: tag.id,
        contactIds: [contact.id],
      }),
      JSON.stringify({
        kind: 'createNote',
        account: ACCOUNT,
        idempotencyKey: `note-${randomUUID()}`,
        contactId: contact.id,
        note: { title: `Twice ${randomUUID()}`, body: 'once', user_id: user.id },
      }),
    ];
    const first = w.sandbox.arrivals.length;
    await sendRaw(w.stack, bodies);
    await drainOne();
    const firstCalls = arrivalsSince(w.sandbox, first).length;
    expect(firstCalls).toBeGreaterThanOrEqual(bodies.length);

    const logMark = w.log.lines.length;
    const second = w.sandbox.arrivals.length;
    await sendRaw(w.stack, bodies);
    await drainOne();
    expect(arrivalsSince(w.sandbox, second)).toEqual([]);
    const lines = w.log.lines.slice(logMark);
    expect(lines.filter((l) => l.message.startsWith('This sync run already finished'))).toHaveLength(1);
    expect(lines.filter((l) => l.message.startsWith('This write was already performed'))).toHaveLength(3);
  }, 90_000);

  test('a sync message delivered twice at once is run by one invocation only', async () => {
    // Two copies of one message (same run id and attempt) received together by two workers: the
    // second finds the attempt held by the first invocation and comes back after it, then is dropped.
    const body = syncBody('contacts');
    const mark = w.sandbox.arrivals.length;
    const logMark = w.log.lines.length;
    await sendRaw(w.stack, [body, body]);
    const poller = w.stack.poller({ concurrency: 2, batchSize: 1 });
    await poller.start();
    try {
      await poller.whenIdle({ timeoutMs: 60_000 });
    } finally {
      await poller.stop();
    }
    const lines = w.log.lines.slice(logMark);
    // One run: started once (it may go on in new messages, each a later attempt, resumed).
    expect(lines.filter((l) => l.message === 'Starting sync')).toHaveLength(1);
    expect(
      lines.filter((l) => l.message.startsWith('Resuming sync')).every((l) => Number(l.attempt) > 0),
    ).toBe(true);
    expect(lines.filter((l) => l.message === 'Sync finished')).toHaveLength(1);
    // The copy was either held off while the first ran, or found the run finished.
    expect(
      lines.filter(
        (l) =>
          l.message.startsWith('This message is being run by another invocation') ||
          l.message.startsWith('This sync run already finished'),
      ).length,
    ).toBeGreaterThanOrEqual(1);
    // One run's pages, read once (the probe of the highest id, and a page per range halved, on top);
    // an earlier test here created a contact.
    const reads = arrivalsSince(w.sandbox, mark).filter(
      (a) => a.method === 'GET' && a.path.endsWith('/contacts'),
    );
    const contacts = w.sandbox.dataset.contacts.size;
    expect(reads.length).toBeLessThanOrEqual(Math.ceil(contacts / 1000) + 1 + 4);
    expect(await w.stack.deps.mirror.count(ACCOUNT, 'contacts')).toBe(contacts);
  }, 90_000);

  test('a batch that runs up to its timeout continues in new messages; none outlives its invocation', async () => {
    const { runs } = w.stack.deps;
    const resources: SyncResource[] = ['contacts', 'products', 'notes', 'tasks', 'companies'];
    const bodies = resources.map((r) => syncBody(r));
    const logMark = w.log.lines.length;
    // Slow pages (under the 1 s request timeout): five 1,000-record pages of contacts, paged
    // alongside four other lists, do not fit in one 10 s invocation.
    w.sandbox.setFaults({ slowMs: 600 });
    let stats: Awaited<ReturnType<typeof drain>>;
    try {
      await sendRaw(w.stack, bodies);
      stats = await drainOne(120_000);
    } finally {
      w.sandbox.setFaults({ slowMs: undefined });
    }
    expect(stats.timeouts).toBe(0);
    expect(stats.killed).toBe(0);
    expect(stats.retried).toBe(0);
    const lines = w.log.lines.slice(logMark);
    expect(lines.some((l) => l.message === 'Out of invocation time: continuing in a new message')).toBe(true);
    for (const [i, r] of resources.entries()) {
      const cursor = await runs.getCursor(ACCOUNT, r);
      expect(cursor.lastRunId, r).toBe((JSON.parse(bodies[i] ?? '{}') as { runId: string }).runId);
      expect(cursor.checkpoint, r).toBeNull();
    }
    // Every contact, including the one the write test created.
    expect(await w.stack.deps.mirror.count(ACCOUNT, 'contacts')).toBe(
      w.sandbox.dataset.contacts.values().length,
    );
  }, 150_000);
});
