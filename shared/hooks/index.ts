// Domain: public surface of the REST hook receiver core (event keys, the job it emits, the receiver).
export * from './events.ts';
export * from './job.ts';
export * from './receiver.ts';
