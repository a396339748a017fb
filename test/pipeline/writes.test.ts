// End to end: a write message delivered twice (duplicated by the sender, or redelivered by SQS after
// the worker's answer was lost) is performed once, and its outcome is recorded under its key.
import { randomUUID } from 'node:crypto';
import type { SQSBatchResponse } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { WorkerHandler } from '#shared/pipeline/index.ts';
import { arrivalsSince, drain, sandboxKey, sendRaw, startWorld, TENANT_A, type World } from './support.ts';

const ACCOUNT = 'acme';
const KEY = sandboxKey(TENANT_A, 0);

/**
 * The real handler, but the first delivery of every message is reported failed after it ran: the
 * worker did the work and its answer was lost, so SQS delivers the message again.
 */
function losingFirstAnswers(handler: WorkerHandler): WorkerHandler {
  const seen = new Set<string>();
  return async (event, context) => {
    const response: SQSBatchResponse = await handler(event, context);
    const lost = event.Records.filter((r) => !seen.has(r.body));
    for (const r of lost) seen.add(r.body);
    const failed = new Set([
      ...response.batchItemFailures.map((f) => f.itemIdentifier),
      ...lost.map((r) => r.messageId),
    ]);
    return { batchItemFailures: [...failed].map((itemIdentifier) => ({ itemIdentifier })) };
  };
}

describe('idempotent writes', () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld({
      contacts: 300,
      keys: [KEY],
      accounts: [{ id: ACCOUNT, tenant: TENANT_A, key: KEY.key, resources: ['contacts'] }],
      worker: { timeoutSeconds: 10 },
      // Fast redelivery of failed and duplicate-in-progress messages.
      visibilityTimeoutSec: 2,
    });
  });
  afterAll(async () => {
    await w?.close();
  });

  const drainQueue = async (handler?: WorkerHandler): Promise<void> => {
    await drain(w, { concurrency: 2, handler, timeoutMs: 30_000, allowHandlerErrors: true });
  };

  function someContact(index: number): string {
    const contact = w.sandbox.dataset.contacts.values()[index];
    if (!contact) throw new Error('the sandbox has too few contacts');
    return contact.id;
  }

  function someUser(): string {
    const user = w.sandbox.dataset.users.values()[0];
    if (!user) throw new Error('the sandbox has no users');
    return user.id;
  }

  function notesOf(contactId: string, title: string) {
    return w.sandbox.dataset.notes.values().filter((n) => n.contact_id === contactId && n.title === title);
  }

  test('createNote sent twice at once and redelivered creates one note, and records its outcome', async () => {
    const contactId = someContact(3);
    const title = `Call back ${randomUUID()}`;
    const idempotencyKey = `note-${randomUUID()}`;
    const body = JSON.stringify({
      kind: 'createNote',
      account: ACCOUNT,
      idempotencyKey,
      contactId,
      note: { title, user_id: someUser(), text: 'Asked about pricing.' },
    });
    const mark = w.sandbox.arrivals.length;
    // Two copies in one batch (processed in parallel), and a third later.
    await sendRaw(w.stack, [body, body]);
    await drainQueue(losingFirstAnswers(w.stack.handler));
    await sendRaw(w.stack, [body]);
    await drainQueue();

    const notes = notesOf(contactId, title);
    expect(notes).toHaveLength(1);
    expect(notes[0]?.text).toBe('Asked about pricing.');
    const posts = arrivalsSince(w.sandbox, mark).filter((a) => a.method === 'POST');
    expect(posts).toHaveLength(1);
    const outcome = await w.stack.deps.writes.getOutcome(idempotencyKey);
    expect(outcome?.state).toBe('done');
    expect(outcome?.outcome).toEqual({ noteId: notes[0]?.id, contactId });
    expect(w.metrics.sum('WritesDone', { operation: 'createNote' })).toBe(1);
    expect(w.metrics.sum('WritesDuplicate', { operation: 'createNote' })).toBeGreaterThanOrEqual(2);
  }, 60_000);

  test('upsertContact redelivered with the same key is sent to Keap once', async () => {
    const idempotencyKey = `upsert-${randomUUID()}`;
    const email = `dup.${randomUUID().slice(0, 8)}@example.com`;
    const body = JSON.stringify({
      kind: 'upsertContact',
      account: ACCOUNT,
      idempotencyKey,
      contact: { given_name: 'Ada', family_name: 'Once', email_addresses: [{ email, field: 'EMAIL1' }] },
    });
    const before = w.sandbox.dataset.contacts.size;
    const mark = w.sandbox.arrivals.length;
    await sendRaw(w.stack, [body, body]);
    await drainQueue(losingFirstAnswers(w.stack.handler));

    const matches = w.sandbox.dataset.contacts
      .values()
      .filter((c) => c.email_addresses.some((e) => e.email === email));
    expect(matches).toHaveLength(1);
    expect(w.sandbox.dataset.contacts.size).toBe(before + 1);
    const created = matches[0];
    // Sent once: a second upsert would have stamped a newer update time on the same contact.
    expect(created?.update_time).toBe(created?.create_time);
    expect(arrivalsSince(w.sandbox, mark).filter((a) => a.method === 'POST')).toHaveLength(1);
    const outcome = await w.stack.deps.writes.getOutcome(idempotencyKey);
    expect(outcome?.state).toBe('done');
    expect(outcome?.outcome).toEqual({ contactId: created?.id, created: true });
  }, 60_000);

  test("a note's body (the job's `body` field) reaches Keap as the note's text", async () => {
    const contactId = someContact(5);
    const title = `Body ${randomUUID()}`;
    await sendRaw(w.stack, [
      JSON.stringify({
        kind: 'createNote',
        account: ACCOUNT,
        idempotencyKey: `note-body-${randomUUID()}`,
        contactId,
        note: { title, user_id: someUser(), body: 'Prefers email.' },
      }),
    ]);
    await drainQueue();
    const notes = notesOf(contactId, title);
    expect(notes).toHaveLength(1);
    expect(notes[0]?.text).toBe('Prefers email.');
  });

  test('applyTags redelivered applies the tag once and keeps the first outcome', async () => {
    const tag = w.sandbox.dataset.tags.values()[0];
    const ids = [someContact(10), someContact(11), someContact(12)].filter(
      (id) => !w.sandbox.dataset.tagApplications.has(`${tag?.id}:${id}`),
    );
    expect(ids.length).toBeGreaterThan(0);
    const idempotencyKey = `tags-${randomUUID()}`;
    const body = JSON.stringify({
      kind: 'applyTags',
      account: ACCOUNT,
      idempotencyKey,
      tagId: tag?.id,
      contactIds: ids,
    });
    const mark = w.sandbox.arrivals.length;
    await sendRaw(w.stack, [body]);
    await drainQueue(losingFirstAnswers(w.stack.handler));
    expect(arrivalsSince(w.sandbox, mark).filter((a) => a.method === 'POST')).toHaveLength(1);
    const outcome = await w.stack.deps.writes.getOutcome(idempotencyKey);
    expect(outcome?.state).toBe('done');
    expect(outcome?.outcome?.results).toEqual(Object.fromEntries(ids.map((id) => [id, 'SUCCESS'])));
    for (const id of ids) expect(w.sandbox.dataset.tagApplications.has(`${tag?.id}:${id}`)).toBe(true);
  }, 60_000);
});
