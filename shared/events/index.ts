// Public surface of the change events: the pure builder, the stream decoder, the publisher use case.
export * from './change.ts';
export * from './publisher.ts';
export * from './stream.ts';
