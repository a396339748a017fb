// Adapter: the job queue and its dead-letter queue.
import { SendMessageBatchCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { Job, JobInput } from '../jobs/schema.ts';
import { mapLimit } from './parallel.ts';
import type { Queue } from './stores.ts';

/** SQS's longest message delay. Waits longer than this are re-sent again when they come back. */
export const MAX_DELAY_SECONDS = 900;

/** A deferred job comes back this much before its retry time: time to receive and start it. */
export const RETURN_EARLY_MS = 1_000;

/**
 * The queue delay for a job the ledger deferred until `retryAt`, often the slot it holds for the job.
 * SQS delays are whole seconds and a held slot is missed when woken for more than lateToleranceMs
 * after it (its quota is then wasted), so round down, less the time to receive and start the job:
 * the job comes back early and the client sleeps until its slot.
 */
export function deferralDelayMs(retryAt: number, now: number): number {
  const wait = retryAt - now - RETURN_EARLY_MS;
  return wait <= 0 ? 0 : Math.floor(wait / 1000) * 1000;
}

export class JobQueue implements Queue {
  readonly queueUrl: string;
  readonly dlqUrl: string;
  private readonly sqs: SQSClient;

  constructor(sqs: SQSClient, queueUrl: string, dlqUrl: string) {
    this.sqs = sqs;
    this.queueUrl = queueUrl;
    this.dlqUrl = dlqUrl;
  }

  /**
   * Sends many new jobs in SendMessageBatch calls of 10 (SQS's limit), `parallel` calls at a time.
   * Returns the jobs SQS refused (the caller releases what it held for them); a call that fails as a
   * whole rejects.
   */
  async sendMany(jobs: readonly JobInput[], parallel = 8): Promise<JobInput[]> {
    const batches: JobInput[][] = [];
    for (let i = 0; i < jobs.length; i += 10) batches.push(jobs.slice(i, i + 10));
    const refused = await mapLimit(batches, parallel, async (batch) => {
      const out = await this.sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: this.queueUrl,
          Entries: batch.map((job, i) => ({
            Id: String(i),
            MessageBody: JSON.stringify(job),
            MessageAttributes: { kind: { DataType: 'String', StringValue: job.kind } },
          })),
        }),
      );
      return (out.Failed ?? []).map((f) => batch[Number(f.Id)]).filter((j): j is JobInput => j !== undefined);
    });
    return refused.flat();
  }

  /** Sends a job, optionally not visible until `delayMs` from now (capped at SQS's 15 minutes). */
  async send(job: JobInput, delayMs = 0): Promise<void> {
    const delay = Math.max(0, Math.min(MAX_DELAY_SECONDS, Math.ceil(delayMs / 1000)));
    await this.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.queueUrl,
        MessageBody: JSON.stringify(job),
        DelaySeconds: delay,
        MessageAttributes: { kind: { DataType: 'String', StringValue: job.kind } },
      }),
    );
  }

  /**
   * Sends `job` again as its next attempt (`attempt` + 1), the one way every path re-sends a job: a
   * sync continuing in a new message, a job the ledger deferred, a write waiting for a new key. Slots a
   * copy once held are never carried over: the next attempt acquires its own.
   */
  async requeue<J extends Job>(job: J, delayMs = 0): Promise<void> {
    // Hook jobs have no `heldSlots` (their schema is strict): drop it from those kinds that may carry it.
    const next: Record<string, unknown> = { ...job, attempt: job.attempt + 1 };
    delete next.heldSlots;
    await this.send(next as JobInput, delayMs);
  }

  /** Moves a message that can never succeed to the dead-letter queue, with the reason attached. */
  async deadLetter(body: string, reason: string, detail: string, messageId: string): Promise<void> {
    await this.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.dlqUrl,
        MessageBody: body,
        MessageAttributes: {
          reason: { DataType: 'String', StringValue: reason },
          error: { DataType: 'String', StringValue: detail.slice(0, 1000) || reason },
          originalMessageId: { DataType: 'String', StringValue: messageId },
        },
      }),
    );
  }
}
