// Wiring (composition root): the one place the pipeline's ports are built from SDK clients and the
// deployment's table and queue names: the DynamoDB ledger, state and mirror stores, the SQS job queue,
// the Secrets Manager key cache. The Lambdas (shared/lambda/runtime.ts) and the local runtime
// (harness/local/stack.ts) and operator commands call it with their own clients, logger and clock.
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { AppConfig } from '../config/app-config.ts';
import { DynamoHookEndpointStore } from '../hooks/endpoints.ts';
import { DynamoLedgerStore, QuotaLedger } from '../quota/index.ts';
import { AccountDirectory, MirrorStore, type MirrorStoreOptions, openStateStores } from '../store/index.ts';
import { StateTable } from '../store/table.ts';
import type { PipelineDeps } from './deps.ts';
import { KeyProvider } from './keys.ts';
import type { Log, Metrics } from './ports.ts';
import { JobQueue } from './queue.ts';

/** How long a worker trusts a registry entry it read (an edit reaches running workers within this). */
export const ACCOUNT_CACHE_MS = 30_000;

/** Where a deployment keeps its data and jobs (the CDK stack's names, or the local runtime's). */
export interface PipelineTarget {
  ledgerTable: string;
  stateTable: string;
  mirrorTable: string;
  queueUrl: string;
  dlqUrl: string;
}

export interface PipelineClients {
  /** The state and mirror stores' client (dynamoRetryConfig in Lambda). */
  dynamo: DynamoDBClient;
  /** The ledger's client, when it should differ (Lambda: the SDK's default retries); default `dynamo`. */
  ledgerDynamo?: DynamoDBClient;
  sqs: SQSClient;
  secrets: SecretsManagerClient;
}

/** The tables alone: what a status report reads, with no queue or key needed. */
export function composeStores(
  config: AppConfig,
  clients: Pick<PipelineClients, 'dynamo' | 'ledgerDynamo'>,
  target: Pick<PipelineTarget, 'ledgerTable' | 'stateTable' | 'mirrorTable'>,
  clock?: () => number,
  /** Called after each mirror write with the (old, new) items, as the table's stream would carry (local events). */
  onMirrorWritten?: MirrorStoreOptions['onWritten'],
) {
  const { dynamo, ledgerDynamo = dynamo } = clients;
  const state = openStateStores(dynamo, target.stateTable, { now: clock });
  return {
    config,
    ledger: new QuotaLedger({
      store: new DynamoLedgerStore(ledgerDynamo, target.ledgerTable),
      settings: { tableName: target.ledgerTable, ...config.limits },
      clock,
    }),
    runs: state.runs,
    leases: state.leases,
    accounts: state.accounts,
    registry: state.registry,
    directory: new AccountDirectory(state.registry, config.accounts, {
      cacheMs: ACCOUNT_CACHE_MS,
      now: clock ?? Date.now,
    }),
    writes: state.writes,
    hookEndpoints: new DynamoHookEndpointStore(new StateTable(dynamo, target.stateTable), clock),
    models: state.models,
    sweeps: state.sweeps,
    mirror: new MirrorStore(dynamo, target.mirrorTable, {
      now: clock,
      settings: { tombstoneDays: config.mirror.tombstoneDays },
      onWritten: onMirrorWritten,
    }),
  };
}

/** The whole pipeline; `clock`: the process's clock for every store, the ledger and the key cache (tests). */
export function composePipeline(o: {
  config: AppConfig;
  clients: PipelineClients;
  target: PipelineTarget;
  log: Log;
  metrics: Metrics;
  clock?: () => number;
  onMirrorWritten?: MirrorStoreOptions['onWritten'];
}) {
  return {
    ...composeStores(o.config, o.clients, o.target, o.clock, o.onMirrorWritten),
    queue: new JobQueue(o.clients.sqs, o.target.queueUrl, o.target.dlqUrl),
    keys: new KeyProvider(o.clients.secrets, o.config.worker.secretMaxAgeMs, o.clock),
    log: o.log,
    metrics: o.metrics,
  } satisfies PipelineDeps;
}

/** The composed pipeline: the ports, with the adapters' own extras (queue URLs, mirror iteration). */
export type Pipeline = ReturnType<typeof composePipeline>;
