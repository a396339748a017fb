// Handler (thin entry): the publisher Lambda, fed by the mirror table's stream (ReportBatchItemFailures).
// Publishes one EventBridge event per real change; all logic lives in shared/events. middy adds the
// Lambda context to log lines and flushes metrics once per invocation.
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import { createPublisherHandler } from '../shared/events/index.ts';
import { buildPublisherRuntime, loadPublisherEnvironment } from '../shared/events/lambda.ts';

const runtime = buildPublisherRuntime(loadPublisherEnvironment(process.env));

export const handler = middy(createPublisherHandler(runtime.deps))
  .use(injectLambdaContext(runtime.logger))
  .use(logMetrics(runtime.metrics));
