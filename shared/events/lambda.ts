// Adapter: how the publisher Lambda builds its dependencies. Environment checked once at cold start
// (failing with the variable's name), SDK clients built once, Powertools behind the log and metrics ports.
import { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, Metrics as PowertoolsMetrics } from '@aws-lambda-powertools/metrics';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SQSClient } from '@aws-sdk/client-sqs';
import { z } from 'zod';
import { withRequestTimeouts } from '../lambda/aws-clients.ts';
import { EnvironmentError } from '../lambda/runtime.ts';
import type { EventMetrics, PublisherDeps } from './publisher.ts';

/**
 * Attempts per PutEvents call (the SDK's, for throttling and 5xx of the whole call) and per rejected
 * entry (the publisher's, with the same backoff): one setting for both.
 */
export const PUT_EVENTS_MAX_ATTEMPTS = 4;

const envSchema = z.object({
  EVENT_BUS_NAME: z.string().min(1),
  EVENTS_DEAD_LETTER_QUEUE_URL: z.url(),
  MIRROR_TABLE: z.string().min(3),
  LOG_LEVEL: z.enum(['DEBUG', 'INFO', 'WARN', 'ERROR']).default('INFO'),
  METRICS_NAMESPACE: z.string().min(1).default('KeapSync'),
});

export type PublisherEnvironment = z.output<typeof envSchema>;

export function loadPublisherEnvironment(env: NodeJS.ProcessEnv): PublisherEnvironment {
  const parsed = envSchema.safeParse(env);
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

function powertoolsMetrics(metrics: PowertoolsMetrics): EventMetrics {
  return {
    add: (name, value, dimensions = {}) => {
      const single = metrics.singleMetric();
      for (const [k, v] of Object.entries(dimensions)) single.addDimension(k, v);
      single.addMetric(name, MetricUnit.Count, value);
    },
  };
}

/** The publisher's deps and the Powertools logger and metrics its middy middlewares wrap. */
export function buildPublisherRuntime(env: PublisherEnvironment): {
  deps: PublisherDeps;
  logger: Logger;
  metrics: PowertoolsMetrics;
} {
  const service = 'keap-sync-publisher';
  const logger = new Logger({ serviceName: service, logLevel: env.LOG_LEVEL });
  const metrics = new PowertoolsMetrics({ namespace: env.METRICS_NAMESPACE, serviceName: service });
  return { deps: buildPublisherDeps(env, logger, metrics), logger, metrics };
}

export function buildPublisherDeps(
  env: PublisherEnvironment,
  logger = new Logger({ serviceName: 'keap-sync-publisher', logLevel: env.LOG_LEVEL }),
  metrics = new PowertoolsMetrics({ namespace: env.METRICS_NAMESPACE, serviceName: 'keap-sync-publisher' }),
): PublisherDeps {
  return {
    events: new EventBridgeClient(
      withRequestTimeouts({ maxAttempts: PUT_EVENTS_MAX_ATTEMPTS, retryMode: 'standard' }),
    ),
    sqs: new SQSClient(withRequestTimeouts({})),
    deadLetterQueueUrl: env.EVENTS_DEAD_LETTER_QUEUE_URL,
    eventBusName: env.EVENT_BUS_NAME,
    tableName: env.MIRROR_TABLE,
    log: logger,
    metrics: powertoolsMetrics(metrics),
  };
}
