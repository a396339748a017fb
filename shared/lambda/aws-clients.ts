// Adapter: the time limits every AWS SDK client of the Lambdas gets. The SDK sets no request timeout:
// an answer that never comes (a connection dropped without a reset, a stalled endpoint) would hold an
// invocation until its own timeout, past the deadline the pipeline plans with. Limited, the attempt
// fails with a TimeoutError, which the SDK retries like any transient error. The mirror and state
// stores' DynamoDB client takes the same limits from its settings (dynamoRetryConfig).

/** One attempt's limit, from sending to the whole answer (ms). */
export const AWS_REQUEST_TIMEOUT_MS = 10_000;
/** One attempt's limit to open the connection (ms). */
export const AWS_CONNECT_TIMEOUT_MS = 3_000;

/** Client configuration with the limits above; spread it into a client's configuration. */
export function withRequestTimeouts<C extends object>(
  config: C,
): C & {
  requestHandler: { requestTimeout: number; connectionTimeout: number; throwOnRequestTimeout: true };
} {
  return {
    ...config,
    requestHandler: {
      requestTimeout: AWS_REQUEST_TIMEOUT_MS,
      connectionTimeout: AWS_CONNECT_TIMEOUT_MS,
      // Without it the SDK only logs a warning when the limit passes and keeps waiting.
      throwOnRequestTimeout: true,
    },
  };
}
