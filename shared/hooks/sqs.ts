// Adapter: the hook jobs' sink on the job queue. One SendMessageBatch per ten jobs (a delivery of
// 1,000 ids is ten jobs: one call); any entry SQS did not take fails the whole delivery, so the
// receiver answers 503 and Keap sends it again (a job queued twice is harmless: the worker re-reads).
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { HookJobSink } from './ingress.ts';

/** Some jobs of a delivery were not queued. */
export class HookEnqueueError extends Error {
  constructor(failed: number, total: number, code: string | undefined) {
    super(`${failed} of ${total} hook job(s) were not queued (${code ?? 'no code'}).`);
    this.name = 'HookEnqueueError';
  }
}

const SQS_BATCH = 10;

export function sqsHookJobSink(sqs: SQSClient, queueUrl: string): HookJobSink {
  return async (jobs) => {
    for (let i = 0; i < jobs.length; i += SQS_BATCH) {
      const part = jobs.slice(i, i + SQS_BATCH);
      const out = await sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: part.map((job, j) => ({
            Id: `j${j}`,
            MessageBody: JSON.stringify(job),
            MessageAttributes: { kind: { DataType: 'String', StringValue: job.kind } },
          })),
        }),
      );
      const failed = out.Failed ?? [];
      if (failed.length > 0) throw new HookEnqueueError(failed.length, part.length, failed[0]?.Code);
    }
  };
}
