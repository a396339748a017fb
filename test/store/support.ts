// Test support: emulator lifecycle, unique names and fault-injecting clients for the store suites.
import { type DynamoDBClient, ProvisionedThroughputExceededException } from '@aws-sdk/client-dynamodb';
import type { FinalizeRequestMiddleware, MetadataBearer } from '@smithy/types';
import { afterAll, beforeAll, it } from 'vitest';
import { localDynamoClient, type RunningDynamo } from '#harness/emulators/dynamo.ts';
import {
  createMirrorTable,
  createStateTable,
  type DynamoRetrySettingsInput,
  dynamoRetryConfig,
} from '#shared/store/index.ts';
import { type EmulatorCase, missingEmulatorFailure } from '../support/emulators.ts';

let seq = 0;

/** A name no other test in this process uses (accounts, tables, keys). */
export function unique(prefix: string): string {
  seq += 1;
  return `${prefix}${seq}x${Math.random().toString(36).slice(2, 8)}`;
}

/** Under CI a missing DynamoDB Local is a failing test, not a silent skip. */
export function reportMissingEmulator(): void {
  if (missingEmulatorFailure) {
    it('DynamoDB Local integration suite can run', () => {
      throw new Error(missingEmulatorFailure);
    });
  }
}

export interface Tables {
  db: RunningDynamo;
  mirrorTable: string;
  stateTable: string;
}

/** Starts the emulator once for the describe block and creates one mirror and one state table. */
export function useTables(emu: EmulatorCase): () => Tables {
  let tables: Tables | undefined;
  beforeAll(async () => {
    const db = await emu.start();
    tables = { db, mirrorTable: unique('mirror'), stateTable: unique('state') };
    await createMirrorTable(db.client, tables.mirrorTable);
    await createStateTable(db.client, tables.stateTable);
  });
  afterAll(async () => {
    await tables?.db.close();
  });
  return () => {
    if (!tables) throw new Error('the emulator did not start; see the beforeAll error');
    return tables;
  };
}

export interface FaultyClient {
  client: DynamoDBClient;
  /** Requests that reached the emulator, by command name. */
  sent: Map<string, number>;
  /** Highest number of requests in flight at once. */
  maxInFlight: number;
  /** The next `n` requests fail with throttling before they are sent. */
  throttleNext(n: number): void;
  /** The next `n` requests are sent and applied, but their answer is lost (a timeout). */
  loseNextAnswers(n: number): void;
}

/**
 * A client of the same emulator, built as the stores' clients are (the SDK retrying with `retry`),
 * whose requests can be throttled or lose their answer. Faults are injected inside the SDK's retry
 * loop, so each attempt meets them as it would meet DynamoDB's.
 */
export function faultyClient(db: RunningDynamo, retry?: DynamoRetrySettingsInput): FaultyClient {
  const client = localDynamoClient(db.endpoint, dynamoRetryConfig(retry));
  let throttle = 0;
  let lose = 0;
  let inFlight = 0;
  const state: FaultyClient = {
    client,
    sent: new Map(),
    maxInFlight: 0,
    throttleNext: (n) => {
      throttle = n;
    },
    loseNextAnswers: (n) => {
      lose = n;
    },
  };
  const faults: FinalizeRequestMiddleware<object, MetadataBearer> = (next, context) => async (args) => {
    if (throttle > 0) {
      throttle -= 1;
      throw new ProvisionedThroughputExceededException({ message: 'injected throttling', $metadata: {} });
    }
    const name = context.commandName ?? 'unknown';
    state.sent.set(name, (state.sent.get(name) ?? 0) + 1);
    inFlight += 1;
    state.maxInFlight = Math.max(state.maxInFlight, inFlight);
    try {
      const result = await next(args);
      if (lose > 0) {
        lose -= 1;
        const timeout = new Error('injected: the answer was lost');
        timeout.name = 'TimeoutError';
        throw timeout;
      }
      return result;
    } finally {
      inFlight -= 1;
    }
  };
  client.middlewareStack.addRelativeTo(faults, {
    relation: 'after',
    toMiddleware: 'retryMiddleware',
    name: 'faultInjection',
  });
  return state;
}
