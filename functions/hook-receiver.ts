// Handler (thin entry): the REST hook receiver Lambda behind its Function URL. Checks the URL's
// per-account token, answers Keap's verification handshake, and queues each accepted delivery as hook
// jobs before answering; the worker does the work. All logic lives in shared/hooks. middy adds the
// Lambda context to log lines (never the request path: it holds the token) and flushes metrics.
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { buildHookReceiverRuntime, loadHookReceiverEnvironment } from '../shared/hooks/lambda.ts';

const runtime = buildHookReceiverRuntime(loadHookReceiverEnvironment(process.env));

export const handler = middy<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2>()
  .use(injectLambdaContext(runtime.logger))
  .use(logMetrics(runtime.metrics))
  .handler(runtime.handle);
