// Adapter: how a Lambda builds the pipeline. Environment checked once at cold start (failing with the
// variable's name), SDK clients built once, Powertools behind the log and metrics ports.

import { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, Metrics as PowertoolsMetrics } from '@aws-lambda-powertools/metrics';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import { z } from 'zod';
import { type AppConfig, parseAppConfigJson } from '../config/app-config.ts';
import { JobQueue, KeyProvider, type Metrics, type PipelineDeps } from '../pipeline/index.ts';
import { DynamoLedgerStore, QuotaLedger } from '../quota/index.ts';
import { dynamoRetryConfig, MirrorStore, StateStore } from '../store/index.ts';

const envSchema = z.object({
  /** The configuration file's content (JSON), set by the CDK stack from the same file. */
  KEAP_SYNC_CONFIG: z.string().min(2),
  LEDGER_TABLE: z.string().min(3),
  STATE_TABLE: z.string().min(3),
  MIRROR_TABLE: z.string().min(3),
  JOB_QUEUE_URL: z.url(),
  DEAD_LETTER_QUEUE_URL: z.url(),
  LOG_LEVEL: z.enum(['DEBUG', 'INFO', 'WARN', 'ERROR']).default('INFO'),
  METRICS_NAMESPACE: z.string().min(1).default('KeapSync'),
});

export type LambdaEnvironment = z.output<typeof envSchema> & { config: AppConfig };

/** A required environment variable is missing or malformed. */
export class EnvironmentError extends Error {
  readonly variable: string;
  constructor(variable: string, problem: string) {
    super(
      `Environment variable ${variable} ${problem}. The CDK stack sets it; check the function's configuration.`,
    );
    this.name = 'EnvironmentError';
    this.variable = variable;
  }
}

export function loadLambdaEnvironment(env: NodeJS.ProcessEnv): LambdaEnvironment {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = String(issue?.path[0] ?? 'environment');
    throw new EnvironmentError(
      name,
      env[name] === undefined ? 'is not set' : `is invalid (${issue?.message})`,
    );
  }
  const config = parseAppConfigJson(parsed.data.KEAP_SYNC_CONFIG, 'KEAP_SYNC_CONFIG');
  return { ...parsed.data, config };
}

function powertoolsMetrics(metrics: PowertoolsMetrics): Metrics {
  return {
    add: (name, value, dimensions = {}) => {
      const single = metrics.singleMetric();
      for (const [k, v] of Object.entries(dimensions)) single.addDimension(k, v);
      single.addMetric(name, name.endsWith('Ms') ? MetricUnit.Milliseconds : MetricUnit.Count, value);
    },
  };
}

/** Builds the pipeline for a function (`service` names it in logs and metrics). */
export function buildLambdaDeps(env: LambdaEnvironment, service: 'worker' | 'scheduler'): PipelineDeps {
  // The ledger keeps the SDK's own retry defaults (its wait budget is short); the mirror and state
  // stores retry throttling longer, on the SDK's retry strategy (shared/store/dynamo.ts).
  const ledgerDynamo = new DynamoDBClient({});
  const storeDynamo = new DynamoDBClient(dynamoRetryConfig());
  const sqs = new SQSClient({});
  const secrets = new SecretsManagerClient({});
  const logger = new Logger({ serviceName: `keap-sync-${service}`, logLevel: env.LOG_LEVEL });
  const metrics = new PowertoolsMetrics({
    namespace: env.METRICS_NAMESPACE,
    serviceName: `keap-sync-${service}`,
  });
  const { config } = env;
  return {
    config,
    ledger: new QuotaLedger({
      store: new DynamoLedgerStore(ledgerDynamo, env.LEDGER_TABLE),
      settings: { tableName: env.LEDGER_TABLE, ...config.limits },
    }),
    state: new StateStore(storeDynamo, env.STATE_TABLE),
    mirror: new MirrorStore(storeDynamo, env.MIRROR_TABLE),
    queue: new JobQueue(sqs, env.JOB_QUEUE_URL, env.DEAD_LETTER_QUEUE_URL),
    keys: new KeyProvider(secrets, config.worker.secretMaxAgeMs),
    log: logger, // Powertools' Logger is the pipeline's log port as it is
    metrics: powertoolsMetrics(metrics),
  };
}
