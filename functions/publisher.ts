// Handler (thin entry): the publisher Lambda, fed by the mirror table's stream (ReportBatchItemFailures).
// Publishes one EventBridge event per real change; all logic lives in shared/events.
import { createPublisherHandler } from '../shared/events/index.ts';
import { buildPublisherDeps, loadPublisherEnvironment } from '../shared/events/lambda.ts';

const deps = buildPublisherDeps(loadPublisherEnvironment(process.env));

export const handler = createPublisherHandler(deps);
