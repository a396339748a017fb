// Domain: public surface of the REST hook receiver core (event keys, the job it emits, the receiver).

export * from './endpoints.ts';
export * from './events.ts';
export * from './ingress.ts';
export * from './job.ts';
export * from './lifecycle.ts';
export * from './receiver.ts';
export * from './sqs.ts';
