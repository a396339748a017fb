// Adapter (local runtime and tests): the errors the local AWS harness raises. Callers branch on the class.
import type { QueueDepth } from './sqs.ts';

/** Base class of every error the local harness (embedded SQS, Secrets Manager stub, poller) raises. */
export class LocalHarnessError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An embedded emulator or stub could not start (port taken, bind failed). */
export class EmulatorStartError extends LocalHarnessError {}

/** A poller option is missing or out of range, or the queue does not fit it. `option` names it. */
export class PollerConfigError extends LocalHarnessError {
  readonly option: string;
  constructor(option: string, message: string) {
    super(`Invalid SQS poller option "${option}": ${message}`);
    this.option = option;
  }
}

/** The poller was used out of order (started twice, or started after stop). */
export class PollerStateError extends LocalHarnessError {}

/** `whenIdle` gave up: the queue still held messages or an invocation was still running. */
export class PollerIdleTimeoutError extends LocalHarnessError {
  readonly depth: QueueDepth;
  readonly inFlight: number;
  constructor(timeoutMs: number, depth: QueueDepth, inFlight: number, running: boolean) {
    super(
      `The queue did not drain within ${timeoutMs} ms: ${depth.visible} visible, ${depth.notVisible} in flight, ` +
        `${depth.delayed} delayed message(s), ${inFlight} invocation(s) running. ` +
        (running
          ? 'Raise timeoutMs, or check that the handler does not keep failing the same message.'
          : 'The poller is not running: call start() first.'),
    );
    this.depth = depth;
    this.inFlight = inFlight;
  }
}

/** The handler ran past `functionTimeoutMs`; the poller abandoned it like Lambda does (nothing deleted). */
export class InvocationTimeoutError extends LocalHarnessError {
  readonly awsRequestId: string;
  constructor(awsRequestId: string, timeoutMs: number) {
    super(
      `Task timed out after ${(timeoutMs / 1000).toFixed(2)} seconds (request ${awsRequestId}). The batch returns ` +
        'to the queue after its visibility timeout; make the handler finish sooner or raise functionTimeoutMs.',
    );
    this.awsRequestId = awsRequestId;
  }
}

/** The invocation was killed on purpose (`killAfterMs` or `abandon()`), simulating a crashed worker. */
export class InvocationKilledError extends LocalHarnessError {
  readonly awsRequestId: string;
  constructor(awsRequestId: string, how: string) {
    super(
      `Invocation ${awsRequestId} was killed (${how}). Its result is ignored and its batch returns to the ` +
        'queue after the visibility timeout.',
    );
    this.awsRequestId = awsRequestId;
  }
}

/** The handler's response is not a valid SQSBatchResponse; Lambda then retries the whole batch. */
export class InvalidBatchResponseError extends LocalHarnessError {
  readonly awsRequestId: string;
  constructor(awsRequestId: string, problem: string) {
    super(
      `The handler's response to request ${awsRequestId} is not a valid batch response (${problem}), so the ` +
        'whole batch is retried. Return { batchItemFailures: [{ itemIdentifier: record.messageId }] } ' +
        'naming only messages of this batch, or nothing when all succeeded.',
    );
    this.awsRequestId = awsRequestId;
  }
}
