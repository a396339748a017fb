// Adapter: the hook receiver Lambda behind its Function URL. Environment checked once at cold start
// (failing with the variable's name), SDK clients built once, Powertools behind the log and metrics
// ports; the Function URL event is turned into the receiver's plain request and back.
import { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, Metrics as PowertoolsMetrics } from '@aws-lambda-powertools/metrics';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { z } from 'zod';
import { withRequestTimeouts } from '../lambda/aws-clients.ts';
import { parseEnvironment } from '../lambda/runtime.ts';
import type { Metrics } from '../pipeline/ports.ts';
import { dynamoRetryConfig } from '../store/index.ts';
import { StateTable } from '../store/table.ts';
import { DynamoHookEndpointStore } from './endpoints.ts';
import { createHookIngress } from './ingress.ts';
import type { HookRequest } from './receiver.ts';
import { sqsHookJobSink } from './sqs.ts';

/** Default largest body: 1,000 object keys with long apiUrls fit in well under this. */
export const DEFAULT_HOOK_MAX_BODY_BYTES = 512 * 1024;

const envSchema = z.object({
  STATE_TABLE: z.string().min(3),
  JOB_QUEUE_URL: z.url(),
  HOOK_MAX_BODY_BYTES: z.coerce.number().int().min(1_024).max(6_000_000).default(DEFAULT_HOOK_MAX_BODY_BYTES),
  LOG_LEVEL: z.enum(['DEBUG', 'INFO', 'WARN', 'ERROR']).default('INFO'),
  METRICS_NAMESPACE: z.string().min(1).default('KeapSync'),
});

export type HookReceiverEnvironment = z.output<typeof envSchema>;

export function loadHookReceiverEnvironment(env: NodeJS.ProcessEnv): HookReceiverEnvironment {
  return parseEnvironment(envSchema, env);
}

/** Each metric as its own EMF line with its dimensions (a receiver invocation adds one or two). */
function powertoolsMetrics(metrics: PowertoolsMetrics): Metrics {
  return {
    add: (name, value, dimensions = {}) => {
      const single = metrics.singleMetric();
      for (const [k, v] of Object.entries(dimensions)) single.addDimension(k, v);
      single.addMetric(name, MetricUnit.Count, value);
    },
  };
}

/** A Function URL (payload 2.0) event as the receiver's request; a base64 body is decoded. */
export function hookRequestOf(event: APIGatewayProxyEventV2): HookRequest {
  const body =
    event.body === undefined
      ? ''
      : event.isBase64Encoded
        ? Buffer.from(event.body, 'base64').toString('utf8')
        : event.body;
  return {
    method: event.requestContext.http.method,
    path: event.rawPath,
    headers: event.headers ?? {},
    body,
  };
}

export interface HookReceiverRuntime {
  handle: (event: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2>;
  logger: Logger;
  metrics: PowertoolsMetrics;
}

/** Builds the receiver once, at cold start. `clients` lets tests point it at emulators. */
export function buildHookReceiverRuntime(
  env: HookReceiverEnvironment,
  clients: { dynamo?: DynamoDBClient; sqs?: SQSClient } = {},
): HookReceiverRuntime {
  const service = 'keap-sync-hook-receiver';
  const logger = new Logger({ serviceName: service, logLevel: env.LOG_LEVEL });
  const metrics = new PowertoolsMetrics({ namespace: env.METRICS_NAMESPACE, serviceName: service });
  const dynamo = clients.dynamo ?? new DynamoDBClient(dynamoRetryConfig());
  const sqs = clients.sqs ?? new SQSClient(withRequestTimeouts({}));
  const ingress = createHookIngress({
    endpoints: new DynamoHookEndpointStore(new StateTable(dynamo, env.STATE_TABLE)),
    enqueue: sqsHookJobSink(sqs, env.JOB_QUEUE_URL),
    log: logger,
    metrics: powertoolsMetrics(metrics),
    maxBodyBytes: env.HOOK_MAX_BODY_BYTES,
  });
  return {
    handle: async (event) => {
      const res = await ingress(hookRequestOf(event));
      return { statusCode: res.status, headers: res.headers, body: res.body };
    },
    logger,
    metrics,
  };
}
