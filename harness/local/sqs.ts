// Adapter (local runtime and tests): embedded SQS. fauxqs runs in-process on 127.0.0.1 with real SQS
// semantics (visibility timeout, DelaySeconds, long polling, redrive to a dead-letter queue).
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { buildApp } from 'fauxqs';
import { LOCAL_AWS } from '../emulators/dynamo.ts';
import { EmulatorStartError, LocalHarnessError } from './errors.ts';

/** A standard queue and its dead-letter queue; the main queue redrives to the DLQ. */
export interface QueuePair {
  queueUrl: string;
  dlqUrl: string;
  queueArn: string;
  dlqArn: string;
}

export interface QueuePairOptions {
  /** Visibility timeout of the main queue, in seconds (0-43200). */
  visibilityTimeoutSec: number;
  /** Receives after which SQS moves a message to the DLQ (1-1000). */
  maxReceiveCount: number;
}

export interface RunningSqs {
  endpoint: string;
  client: SQSClient;
  /** Creates `name` and `name-dlq` (standard queues) with a RedrivePolicy on `name`. Idempotent. */
  createQueuePair(name: string, opts: QueuePairOptions): Promise<QueuePair>;
  close(): Promise<void>;
}

/** Message counts of one queue, as GetQueueAttributes reports them. */
export interface QueueDepth {
  visible: number;
  notVisible: number;
  delayed: number;
}

const FAUXQS_QUEUE_HOST = /http:\/\/sqs\.[a-z0-9-]+\.localhost(:\d+)?\//g;

export function localSqsClient(endpoint: string): SQSClient {
  return new SQSClient({ ...LOCAL_AWS, endpoint, maxAttempts: 1 });
}

/**
 * Starts fauxqs in this process on 127.0.0.1 (port 0 picks a free one). Queue URLs take the form
 * `http://127.0.0.1:<port>/000000000000/<name>` and ARNs `arn:aws:sqs:us-east-1:000000000000:<name>`,
 * so a client configured only through `AWS_ENDPOINT_URL_SQS` reaches the queues too.
 */
export async function startSqs(options: { port?: number } = {}): Promise<RunningSqs> {
  const port = options.port ?? 0;
  const app = buildApp({ logger: false });
  // fauxqs names queues `http://sqs.<region>.localhost:<port>/...`, a host that does not resolve on every
  // machine; the SDK sends to the QueueUrl's host when it differs from the endpoint's (a client configured
  // only through AWS_ENDPOINT_URL_SQS then fails with ENOTFOUND). Answer with 127.0.0.1 URLs instead;
  // fauxqs finds queues by the URL's last path segment, so either form keeps working in requests.
  app.addHook('onSend', async (_request, reply, payload) => {
    const type = reply.getHeader('content-type');
    if (typeof payload !== 'string' || typeof type !== 'string' || !type.includes('x-amz-json-1.0')) {
      return payload;
    }
    return payload.replace(FAUXQS_QUEUE_HOST, (_match, hostPort: string) => `http://127.0.0.1${hostPort}/`);
  });
  let address: string;
  try {
    address = await app.listen({ host: '127.0.0.1', port });
  } catch (err) {
    await app.close();
    const detail = err instanceof Error ? err.message : String(err);
    throw new EmulatorStartError(
      `fauxqs could not listen on 127.0.0.1:${port} (${detail}). Pass another port, or 0 for a free one.`,
      { cause: err },
    );
  }
  const endpoint = `http://127.0.0.1:${new URL(address).port}`;
  const client = localSqsClient(endpoint);
  return {
    endpoint,
    client,
    createQueuePair: (name, opts) => createQueuePair(client, name, opts),
    close: async () => {
      client.destroy();
      await app.close();
    },
  };
}

/** Creates (or finds) a standard queue and its dead-letter queue with a redrive policy, on any SQS. */
export async function createQueuePair(
  client: SQSClient,
  name: string,
  opts: QueuePairOptions,
): Promise<QueuePair> {
  if (name.endsWith('.fifo')) {
    throw new LocalHarnessError(
      `createQueuePair makes standard queues only; "${name}" is a FIFO name. Drop the .fifo suffix.`,
    );
  }
  const dlq = await client.send(new CreateQueueCommand({ QueueName: `${name}-dlq` }));
  const dlqUrl = requireUrl(dlq.QueueUrl, `${name}-dlq`);
  const dlqArn = await queueArn(client, dlqUrl);
  const main = await client.send(
    new CreateQueueCommand({
      QueueName: name,
      Attributes: {
        VisibilityTimeout: String(opts.visibilityTimeoutSec),
        RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: opts.maxReceiveCount }),
      },
    }),
  );
  const queueUrl = requireUrl(main.QueueUrl, name);
  return { queueUrl, dlqUrl, queueArn: await queueArn(client, queueUrl), dlqArn };
}

function requireUrl(url: string | undefined, name: string): string {
  if (!url) throw new LocalHarnessError(`CreateQueue for "${name}" returned no QueueUrl.`);
  return url;
}

/** The ARN SQS reports for a queue (what an event source mapping names as `eventSourceARN`). */
export async function queueArn(client: SQSClient, queueUrl: string): Promise<string> {
  const out = await client.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }),
  );
  const arn = out.Attributes?.QueueArn;
  if (!arn) throw new LocalHarnessError(`GetQueueAttributes returned no QueueArn for ${queueUrl}.`);
  return arn;
}

/** Visible, in-flight and delayed message counts of a queue. */
export async function queueDepth(client: SQSClient, queueUrl: string): Promise<QueueDepth> {
  const out = await client.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: [
        'ApproximateNumberOfMessages',
        'ApproximateNumberOfMessagesNotVisible',
        'ApproximateNumberOfMessagesDelayed',
      ],
    }),
  );
  const attrs = out.Attributes ?? {};
  return {
    visible: Number(attrs.ApproximateNumberOfMessages ?? 0),
    notVisible: Number(attrs.ApproximateNumberOfMessagesNotVisible ?? 0),
    delayed: Number(attrs.ApproximateNumberOfMessagesDelayed ?? 0),
  };
}
