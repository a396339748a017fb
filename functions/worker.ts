// Handler (thin entry): the worker Lambda, fed by the job queue (ReportBatchItemFailures). All logic
// lives in shared/pipeline; configuration is checked once, at cold start. middy adds the Lambda
// context to log lines and flushes metrics once per invocation (shared/lambda/runtime.ts).
import { buildLambdaRuntime, lambdaHandler, loadLambdaEnvironment } from '../shared/lambda/runtime.ts';
import { createWorkerHandler } from '../shared/pipeline/index.ts';

const runtime = buildLambdaRuntime(loadLambdaEnvironment(process.env), 'worker');

export const handler = lambdaHandler(runtime, createWorkerHandler(runtime.deps));
