// Adapter (local runtime and tests): the whole system on one machine. Embedded DynamoDB and SQS, a
// Secrets Manager stub, optionally the Keap sandbox, the tables and queues, and the same pipeline
// dependencies the Lambdas build, so the same handler code runs locally.
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { AppConfig } from '#shared/config/app-config.ts';
import {
  composePipeline,
  createWorkerHandler,
  type Log,
  MemoryMetrics,
  type Metrics,
  type Pipeline,
  type PipelineTarget,
  runScheduler,
  type WorkerHandler,
} from '#shared/pipeline/index.ts';
import { createLedgerTable } from '#shared/quota/index.ts';
import { createMirrorTable, createStateTable, type MirrorStoreOptions } from '#shared/store/index.ts';
import { localDynamoClient, type RunningDynamo, startDynalite } from '../emulators/dynamo.ts';
import { LocalEventSink } from './events.ts';
import { CuttableLink } from './link.ts';
import { SqsLambdaPoller } from './poller.ts';
import { localSecretsClient, type RunningSecrets, startSecretsStub } from './secrets.ts';
import { createQueuePair, localSqsClient, type QueuePair, type RunningSqs, startSqs } from './sqs.ts';

export const LOCAL_TABLES = {
  ledger: 'keap-sync-ledger',
  state: 'keap-sync-state',
  mirror: 'keap-sync-mirror',
};
export const LOCAL_QUEUE = 'keap-sync-jobs';

/** The local tables, and the queues of this run. */
function localTarget(queueUrl: string, dlqUrl: string): PipelineTarget {
  return {
    ledgerTable: LOCAL_TABLES.ledger,
    stateTable: LOCAL_TABLES.state,
    mirrorTable: LOCAL_TABLES.mirror,
    queueUrl,
    dlqUrl,
  };
}

export interface LocalStackOptions {
  config: AppConfig;
  /** Serve the embedded DynamoDB on this port (other processes connect to it); default a free one. */
  dynamoPort?: number;
  /** Secret values by secret id (the account keys). */
  secrets: Record<string, string>;
  log: Log;
  metrics?: Metrics;
  /**
   * Services to use instead of the embedded ones (another emulator, or a real AWS account): the
   * AWS_ENDPOINT_URL_DYNAMODB / _SQS / _SECRETS_MANAGER values. Credentials and region then come from
   * the AWS SDK's usual chain; with an external Secrets Manager the account secrets must exist there.
   */
  dynamoEndpoint?: string;
  sqsEndpoint?: string;
  secretsEndpoint?: string;
  /** Where the embedded dynalite keeps its data (default: in memory). */
  dataPath?: string;
  /** Queue visibility timeout, seconds (default 6x the worker timeout, as in AWS). */
  visibilityTimeoutSec?: number;
  /** This process's clock (tests). */
  clock?: () => number;
  /** Write the change events here (JSON lines) and POST them to `url`; default: no events. */
  events?: LocalEventsSetting;
  /**
   * Also told every mirror write's (old, new) pair, after the events sink: what the table's stream would
   * carry (the events benchmark feeds it to the publisher Lambda's handler).
   */
  onMirrorWritten?: MirrorStoreOptions['onWritten'];
  /**
   * Put a cuttable TCP link in front of the embedded DynamoDB and SQS (drills): every client, here and
   * in worker processes, reaches them through `links`, which can make either unreachable for a while.
   */
  cuttableLinks?: boolean;
}

/** Where the local runtime delivers change events (passed on to worker processes as is). */
export interface LocalEventsSetting {
  file: string;
  url?: string;
}

export interface LocalStack {
  deps: Pipeline;
  /** The change events sink, when `events` was given. */
  events: LocalEventSink | undefined;
  handler: WorkerHandler;
  dynamo: { endpoint: string; client: DynamoDBClient };
  sqs: { endpoint: string; client: SQSClient; queue: QueuePair };
  secrets: RunningSecrets;
  metrics: Metrics;
  /** The links in front of the embedded DynamoDB and SQS, when `cuttableLinks` was set. */
  links: { dynamo: CuttableLink; sqs: CuttableLink } | undefined;
  /** One scheduler run; `tickMs` is how often the caller runs it (default the configured interval). */
  scheduler: (tickMs?: number) => ReturnType<typeof runScheduler>;
  /** A poller driving `handler` (or another handler) from the job queue, Lambda-style. */
  poller(options?: {
    concurrency?: number;
    batchSize?: number;
    functionTimeoutMs?: number;
    killAfterMs?: number;
    handler?: WorkerHandler;
  }): SqsLambdaPoller;
  close(): Promise<void>;
}

/** Where a running local stack's services listen (written to the data folder for other commands). */
export interface LocalEndpoints {
  pid: number;
  dynamo: string;
  sqs: string;
  queueUrl: string;
  dlqUrl: string;
  queueArn: string;
  secrets: string;
  keapBaseUrl: string;
  startedAt: string;
  /** The local REST hook receiver's base URL, when `keap-sync run` started one. */
  hookReceiverUrl?: string;
}

/**
 * Builds the pipeline against services another process runs (a worker process of `keap-sync run`, or
 * the operator commands). No emulator is started; `close` only releases the clients.
 */
export function connectLocalStack(o: {
  config: AppConfig;
  endpoints: LocalEndpoints;
  log: Log;
  metrics?: Metrics;
  events?: LocalEventsSetting;
}): Omit<LocalStack, 'secrets' | 'dynamo' | 'sqs' | 'links'> & {
  sqsClient: SQSClient;
  dynamoClient: DynamoDBClient;
} {
  const dynamoClient = localDynamoClient(o.endpoints.dynamo);
  const sqsClient = localSqsClient(o.endpoints.sqs);
  const secretsClient = localSecretsClient(o.endpoints.secrets);
  const metrics = o.metrics ?? new MemoryMetrics();
  const events = o.events && new LocalEventSink({ ...o.events, tableName: LOCAL_TABLES.mirror, log: o.log });
  const deps = composePipeline({
    config: o.config,
    clients: { dynamo: dynamoClient, sqs: sqsClient, secrets: secretsClient },
    target: localTarget(o.endpoints.queueUrl, o.endpoints.dlqUrl),
    onMirrorWritten: events?.onWritten,
    log: o.log,
    metrics,
  });
  const handler = createWorkerHandler(deps);
  const pollers: SqsLambdaPoller[] = [];
  return {
    deps,
    events,
    handler,
    metrics,
    sqsClient,
    dynamoClient,
    scheduler: (tickMs?: number) => runScheduler(deps, Date.now(), tickMs),
    poller: (p = {}) => {
      const poller = new SqsLambdaPoller({
        client: sqsClient,
        queueUrl: o.endpoints.queueUrl,
        queueArn: o.endpoints.queueArn,
        handler: p.handler ?? handler,
        batchSize: p.batchSize ?? o.config.worker.batchSize,
        concurrency: p.concurrency ?? o.config.worker.concurrency,
        functionTimeoutMs: p.functionTimeoutMs ?? o.config.worker.timeoutSeconds * 1000,
        killAfterMs: p.killAfterMs,
        functionName: 'keap-sync-worker',
        log: o.log,
      });
      pollers.push(poller);
      return poller;
    },
    close: async () => {
      for (const p of pollers) if (p.running) await p.stop();
      await events?.flush();
      dynamoClient.destroy();
      sqsClient.destroy();
      secretsClient.destroy();
    },
  };
}

function externalRegion(): string {
  return process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
}

/** One onWritten from two optional ones (the events sink first). */
function bothWritten(
  a: MirrorStoreOptions['onWritten'],
  b: MirrorStoreOptions['onWritten'],
): MirrorStoreOptions['onWritten'] {
  if (!a || !b) return a ?? b;
  return (write) => {
    a(write);
    b(write);
  };
}

export async function startLocalStack(o: LocalStackOptions): Promise<LocalStack> {
  const closers: Array<() => Promise<void>> = [];
  const links: { dynamo?: CuttableLink; sqs?: CuttableLink } = {};
  try {
    let dynamo: { endpoint: string; client: DynamoDBClient };
    if (o.dynamoEndpoint) {
      const client = new DynamoDBClient({ region: externalRegion(), endpoint: o.dynamoEndpoint });
      dynamo = { endpoint: o.dynamoEndpoint, client };
      closers.push(async () => client.destroy());
    } else {
      const running: RunningDynamo = await startDynalite({
        path: o.dataPath,
        port: o.cuttableLinks ? undefined : o.dynamoPort,
      });
      closers.push(() => running.close());
      if (o.cuttableLinks) {
        const link = await CuttableLink.start(running.endpoint, o.dynamoPort);
        closers.push(() => link.close());
        links.dynamo = link;
        const client = localDynamoClient(link.endpoint);
        closers.push(async () => client.destroy());
        dynamo = { endpoint: link.endpoint, client };
      } else {
        dynamo = running;
      }
    }
    await createLedgerTable(dynamo.client, LOCAL_TABLES.ledger);
    await createStateTable(dynamo.client, LOCAL_TABLES.state);
    await createMirrorTable(dynamo.client, LOCAL_TABLES.mirror);

    let sqs: Pick<RunningSqs, 'endpoint' | 'client'>;
    if (o.sqsEndpoint) {
      const client = new SQSClient({ region: externalRegion(), endpoint: o.sqsEndpoint });
      sqs = { endpoint: o.sqsEndpoint, client };
      closers.push(async () => client.destroy());
    } else {
      const running = await startSqs();
      closers.push(() => running.close());
      if (o.cuttableLinks) {
        const link = await CuttableLink.start(running.endpoint);
        closers.push(() => link.close());
        links.sqs = link;
        const client = localSqsClient(link.endpoint);
        closers.push(async () => client.destroy());
        sqs = { endpoint: link.endpoint, client };
      } else {
        sqs = running;
      }
    }
    const visibility = o.visibilityTimeoutSec ?? Math.min(43_200, 6 * o.config.worker.timeoutSeconds);
    const created = await createQueuePair(sqs.client, LOCAL_QUEUE, {
      visibilityTimeoutSec: visibility,
      maxReceiveCount: o.config.worker.maxReceiveCount,
    });
    // The SDK sends to a queue URL's own host: point the URLs at the link too, or they would bypass it.
    const sqsLink = links.sqs;
    const queue: QueuePair = sqsLink
      ? { ...created, queueUrl: sqsLink.rewrite(created.queueUrl), dlqUrl: sqsLink.rewrite(created.dlqUrl) }
      : created;

    let secrets: RunningSecrets;
    if (o.secretsEndpoint) {
      const client = new SecretsManagerClient({ region: externalRegion(), endpoint: o.secretsEndpoint });
      const unsupported = () => {
        throw new Error('The Secrets Manager in use is external: store and rotate keys there.');
      };
      secrets = {
        endpoint: o.secretsEndpoint,
        client,
        put: unsupported,
        remove: unsupported,
        requestCount: () => 0,
        close: async () => client.destroy(),
      };
    } else {
      secrets = await startSecretsStub(o.secrets);
    }
    closers.push(() => secrets.close());

    const metrics = o.metrics ?? new MemoryMetrics();
    const events =
      o.events && new LocalEventSink({ ...o.events, tableName: LOCAL_TABLES.mirror, log: o.log });
    const deps = composePipeline({
      config: o.config,
      clients: { dynamo: dynamo.client, sqs: sqs.client, secrets: secrets.client },
      target: localTarget(queue.queueUrl, queue.dlqUrl),
      onMirrorWritten: bothWritten(events?.onWritten, o.onMirrorWritten),
      log: o.log,
      metrics,
      clock: o.clock,
    });
    const handler = createWorkerHandler(deps);
    const pollers: SqsLambdaPoller[] = [];
    return {
      deps,
      events,
      handler,
      dynamo,
      sqs: { endpoint: sqs.endpoint, client: sqs.client, queue },
      secrets,
      metrics,
      links: links.dynamo && links.sqs ? { dynamo: links.dynamo, sqs: links.sqs } : undefined,
      scheduler: (tickMs?: number) => runScheduler(deps, o.clock?.() ?? Date.now(), tickMs),
      poller: (p = {}) => {
        const poller = new SqsLambdaPoller({
          client: sqs.client,
          queueUrl: queue.queueUrl,
          queueArn: queue.queueArn,
          handler: p.handler ?? handler,
          batchSize: p.batchSize ?? o.config.worker.batchSize,
          concurrency: p.concurrency ?? o.config.worker.concurrency,
          functionTimeoutMs:
            p.functionTimeoutMs ?? Math.min(visibility * 1000, o.config.worker.timeoutSeconds * 1000),
          killAfterMs: p.killAfterMs,
          functionName: 'keap-sync-worker',
          log: o.log,
        });
        pollers.push(poller);
        return poller;
      },
      close: async () => {
        for (const p of pollers) if (p.running) await p.stop();
        await events?.flush();
        for (const c of closers.reverse()) await c().catch(() => undefined);
      },
    };
  } catch (err) {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    throw err;
  }
}
