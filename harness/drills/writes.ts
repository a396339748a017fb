// Adapter (drills, soak): a stream of write jobs (notes and new contacts, each with its own idempotency
// key) sent to the job queue, and the check that each create happened at most once in Keap.
import { SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { DRILL_ACCOUNT, type DrillSystem } from './system.ts';

/** The queue refused write jobs of the stream. */
export class WriteStreamError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WriteStreamError';
  }
}

export interface SentWrite {
  idempotencyKey: string;
  kind: 'createNote' | 'upsertContact';
  /** The note's title or the contact's email: what finds the create in Keap. */
  mark: string;
}

/** Sends `n` write jobs (alternately a note on a known contact and a new contact), ten per batch. */
export async function sendWrites(sys: DrillSystem, tag: string, n: number, from = 0): Promise<SentWrite[]> {
  const { contactIds, userId } = await sys.keap.anchors();
  const sent: SentWrite[] = [];
  const bodies: string[] = [];
  for (let i = from; i < from + n; i++) {
    if (i % 2 === 0) {
      const mark = `${tag}-note-${i}`;
      const w: SentWrite = { idempotencyKey: `${tag}-write-${i}`, kind: 'createNote', mark };
      sent.push(w);
      bodies.push(
        JSON.stringify({
          kind: 'createNote',
          account: DRILL_ACCOUNT,
          idempotencyKey: w.idempotencyKey,
          contactId: contactIds[i % Math.max(1, contactIds.length)],
          note: { title: mark, user_id: userId, body: 'Drill note.' },
        }),
      );
    } else {
      const mark = `${tag.toLowerCase()}.c${i}@example.com`;
      const w: SentWrite = { idempotencyKey: `${tag}-write-${i}`, kind: 'upsertContact', mark };
      sent.push(w);
      bodies.push(
        JSON.stringify({
          kind: 'upsertContact',
          account: DRILL_ACCOUNT,
          idempotencyKey: w.idempotencyKey,
          contact: {
            given_name: 'Drill',
            family_name: `C${i}`,
            email_addresses: [{ email: mark, field: 'EMAIL1' }],
          },
        }),
      );
    }
  }
  for (let i = 0; i < bodies.length; i += 10) {
    const chunk = bodies.slice(i, i + 10);
    const out = await sys.stack.sqs.client.send(
      new SendMessageBatchCommand({
        QueueUrl: sys.stack.sqs.queue.queueUrl,
        Entries: chunk.map((MessageBody, j) => ({ Id: `w${j}`, MessageBody })),
      }),
    );
    if ((out.Failed ?? []).length > 0)
      throw new WriteStreamError(`${out.Failed?.length} write jobs were not queued.`);
  }
  return sent;
}

export interface WriteTally {
  sent: number;
  /** Outcome recorded as done. */
  done: number;
  /** Left outcome-unknown or failed-retryable (the worker died or the answer was lost). */
  unresolved: number;
  /** Creates Keap holds once. */
  createdOnce: number;
  /** Creates Keap holds twice or more: must be 0. */
  createdTwice: number;
  /** Writes that never reached Keap. */
  notCreated: number;
  /**
   * Of those, writes whose claim is still in progress: a worker died holding it. A create is never
   * repeated blindly: after worker writeTakeoverAfterMs the sender reads outcome-unknown.
   */
  claimedNotCreated: number;
}

/** Counts how each sent write ended, in the state table and in Keap. */
export async function tallyWrites(
  sys: DrillSystem,
  tag: string,
  sent: readonly SentWrite[],
): Promise<WriteTally> {
  const notes = await sys.keap.notesTitled(`${tag}-note-`);
  const contacts = await sys.keap.contactsEmailed(`${tag.toLowerCase()}.c`);
  const count = new Map<string, number>();
  for (const n of notes) count.set(n.title, (count.get(n.title) ?? 0) + 1);
  for (const c of contacts) count.set(c.email, (count.get(c.email) ?? 0) + 1);
  const t: WriteTally = {
    sent: sent.length,
    done: 0,
    unresolved: 0,
    createdOnce: 0,
    createdTwice: 0,
    notCreated: 0,
    claimedNotCreated: 0,
  };
  for (const w of sent) {
    const outcome = await sys.stack.deps.writes.getOutcome(w.idempotencyKey);
    if (outcome?.state === 'done') t.done++;
    else t.unresolved++;
    const c = count.get(w.mark) ?? 0;
    if (c === 0) {
      t.notCreated++;
      if (outcome?.state === 'in-progress') t.claimedNotCreated++;
    } else if (c === 1) t.createdOnce++;
    else t.createdTwice++;
  }
  return t;
}

/** Whether every sent write has its outcome recorded as done (the stream is drained). */
export async function writesSettled(sys: DrillSystem, sent: readonly SentWrite[]): Promise<boolean> {
  for (const w of sent) {
    const o = await sys.stack.deps.writes.getOutcome(w.idempotencyKey);
    if (o?.state !== 'done') return false;
  }
  return true;
}
