// Adapter: how a Lambda builds and runs the pipeline. Environment checked once at cold start (failing
// with the variable's name), SDK clients built once, Powertools behind the log and metrics ports, and
// the handlers composed with middy and Powertools' middy middlewares.

import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit, Metrics as PowertoolsMetrics } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import middy, { type MiddyfiedHandler } from '@middy/core';
import type { Context } from 'aws-lambda';
import { z } from 'zod';
import { type AppConfig, parseAppConfigJson } from '../config/app-config.ts';
import { composePipeline, type MetricName, type Metrics, type PipelineDeps } from '../pipeline/index.ts';
import { dynamoRetryConfig } from '../store/index.ts';
import { withRequestTimeouts } from './aws-clients.ts';

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

/** A function's environment read through `schema`; EnvironmentError names the first bad variable. */
export function parseEnvironment<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv): z.output<S> {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = String(issue?.path[0] ?? 'environment');
    throw new EnvironmentError(
      name,
      env[name] === undefined ? 'is not set' : `is invalid (${issue?.message})`,
    );
  }
  return parsed.data;
}

export function loadLambdaEnvironment(env: NodeJS.ProcessEnv): LambdaEnvironment {
  const parsed = parseEnvironment(envSchema, env);
  const config = parseAppConfigJson(parsed.KEAP_SYNC_CONFIG, 'KEAP_SYNC_CONFIG');
  return { ...parsed, config };
}

/** Values of one dimension set, by metric. */
type PendingValues = Map<MetricName, number[]>;
/** Metrics that are a reading, not a count: each value is kept, never summed. */
const READINGS: ReadonlySet<MetricName> = new Set([
  'SyncLagMs',
  'QuotaMinuteLeft',
  'QuotaDayLeft',
  'SendLatenessP50Ms',
  'SendLatenessP99Ms',
  'SendLatenessMaxMs',
  'HandoverGapMinMs',
]);

/**
 * The pipeline's metrics port over Powertools. Values are held per dimension set during the
 * invocation (counts summed) and handed to Powertools by `flush`, one EMF line per dimension set;
 * `logMetrics` publishes the last one when the invocation ends, so nothing is written mid-invocation.
 */
export class PowertoolsMetricsPort implements Metrics {
  private readonly metrics: PowertoolsMetrics;
  private readonly pending = new Map<string, { dimensions: Record<string, string>; values: PendingValues }>();
  constructor(metrics: PowertoolsMetrics) {
    this.metrics = metrics;
  }

  add(name: MetricName, value: number, dimensions: Record<string, string> = {}): void {
    const id = JSON.stringify(Object.entries(dimensions).sort(([a], [b]) => a.localeCompare(b)));
    let set = this.pending.get(id);
    if (!set) {
      set = { dimensions: { ...dimensions }, values: new Map() };
      this.pending.set(id, set);
    }
    const values = set.values.get(name) ?? [];
    if (READINGS.has(name) || values.length === 0) values.push(value);
    else values[0] = (values[0] ?? 0) + value;
    set.values.set(name, values);
  }

  /** Hands what was added to Powertools; every dimension set but the last is published at once. */
  flush(): void {
    let first = true;
    for (const { dimensions, values } of this.pending.values()) {
      if (!first) this.metrics.publishStoredMetrics();
      first = false;
      this.metrics.addDimensions(dimensions);
      for (const [name, list] of values) {
        const unit = name.endsWith('Ms') ? MetricUnit.Milliseconds : MetricUnit.Count;
        for (const value of list) this.metrics.addMetric(name, unit, value);
      }
    }
    this.pending.clear();
  }
}

/** What a Lambda function runs on: the pipeline, and the Powertools logger and metrics behind it. */
export interface LambdaRuntime {
  deps: PipelineDeps;
  logger: Logger;
  metrics: PowertoolsMetrics;
  metricsPort: PowertoolsMetricsPort;
}

/** Builds the pipeline for a function (`service` names it in logs and metrics). Call once, at cold start. */
export function buildLambdaRuntime(env: LambdaEnvironment, service: 'worker' | 'scheduler'): LambdaRuntime {
  // The ledger keeps the SDK's own retry defaults (its wait budget is short); the mirror and state
  // stores retry throttling longer, on the SDK's retry strategy (shared/store/dynamo.ts). Every client
  // has a time limit per attempt (aws-clients.ts).
  const ledgerDynamo = new DynamoDBClient(withRequestTimeouts({}));
  const storeDynamo = new DynamoDBClient(dynamoRetryConfig());
  const sqs = new SQSClient(withRequestTimeouts({}));
  const secrets = new SecretsManagerClient(withRequestTimeouts({}));
  const logger = new Logger({ serviceName: `keap-sync-${service}`, logLevel: env.LOG_LEVEL });
  const metrics = new PowertoolsMetrics({
    namespace: env.METRICS_NAMESPACE,
    serviceName: `keap-sync-${service}`,
  });
  const metricsPort = new PowertoolsMetricsPort(metrics);
  const deps = composePipeline({
    config: env.config,
    clients: { ledgerDynamo, dynamo: storeDynamo, sqs, secrets },
    target: {
      ledgerTable: env.LEDGER_TABLE,
      stateTable: env.STATE_TABLE,
      mirrorTable: env.MIRROR_TABLE,
      queueUrl: env.JOB_QUEUE_URL,
      dlqUrl: env.DEAD_LETTER_QUEUE_URL,
    },
    log: logger,
    metrics: metricsPort,
  });
  return { deps, logger, metrics, metricsPort };
}

/**
 * A Lambda handler: `handler` composed with Powertools' middy middlewares. Every log line carries the
 * Lambda context (request id, function, cold start); the invocation's metrics are flushed once, when
 * it ends (also when it throws).
 */
export function lambdaHandler<TEvent, TResult>(
  runtime: LambdaRuntime,
  handler: (event: TEvent, context: Context) => Promise<TResult>,
): MiddyfiedHandler<TEvent, TResult> {
  const flushPipelineMetrics = () => runtime.metricsPort.flush();
  return middy<TEvent, TResult>()
    .use(injectLambdaContext(runtime.logger))
    .use(logMetrics(runtime.metrics))
    .use({ after: flushPipelineMetrics, onError: flushPipelineMetrics })
    .handler(handler);
}
