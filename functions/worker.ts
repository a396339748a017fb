// Handler (thin entry): the worker Lambda, fed by the job queue (ReportBatchItemFailures). All logic
// lives in shared/pipeline; configuration is checked once, at cold start.
import { buildLambdaDeps, loadLambdaEnvironment } from '../shared/lambda/runtime.ts';
import { createWorkerHandler } from '../shared/pipeline/index.ts';

const deps = buildLambdaDeps(loadLambdaEnvironment(process.env), 'worker');

export const handler = createWorkerHandler(deps);
