// Handler (thin entry): the scheduler Lambda, started by an EventBridge Scheduler schedule. Enqueues
// the sync jobs that are due; all logic lives in shared/pipeline/scheduler.ts.
import { buildLambdaDeps, loadLambdaEnvironment } from '../shared/lambda/runtime.ts';
import { runScheduler, type SchedulerResult } from '../shared/pipeline/index.ts';

const deps = buildLambdaDeps(loadLambdaEnvironment(process.env), 'scheduler');

export const handler = async (): Promise<SchedulerResult> => runScheduler(deps);
