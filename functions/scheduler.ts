// Handler (thin entry): the scheduler Lambda, started by an EventBridge Scheduler schedule. Enqueues
// the sync jobs that are due; all logic lives in shared/pipeline/scheduler.ts. Configuration is
// checked once, at cold start; middy adds the Lambda context and flushes metrics (shared/lambda).
import { buildLambdaRuntime, lambdaHandler, loadLambdaEnvironment } from '../shared/lambda/runtime.ts';
import { runScheduler, type SchedulerResult } from '../shared/pipeline/index.ts';

const runtime = buildLambdaRuntime(loadLambdaEnvironment(process.env), 'scheduler');

export const handler = lambdaHandler(
  runtime,
  async (): Promise<SchedulerResult> => runScheduler(runtime.deps),
);
