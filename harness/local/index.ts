// Adapter (local runtime and tests): the local AWS harness — embedded SQS, a Secrets Manager stub, and
// the SQS -> Lambda poller that drives handlers the way the event source mapping does.

export * from './accounts.ts';
export * from './errors.ts';
export * from './events.ts';
export * from './poller.ts';
export * from './secrets.ts';
export * from './sqs.ts';
