// Unit: the store's pure parts (settings, key design, item size, error classification); no emulator.

import type { AddressInfo } from 'node:net';
import { createServer, type Socket } from 'node:net';
import {
  ConditionalCheckFailedException,
  GetItemCommand,
  ProvisionedThroughputExceededException,
} from '@aws-sdk/client-dynamodb';
import { ConfiguredRetryStrategy } from '@smithy/core/retry';
import { describe, expect, it } from 'vitest';
import { localDynamoClient } from '#harness/emulators/dynamo.ts';
import {
  callDynamo,
  dynamoRetryConfig,
  estimateItemSize,
  isTransient,
  MIRROR_TABLE,
  mirrorPartitionKey,
  parseDynamoRetrySettings,
  parseMirrorSettings,
  parseStateSettings,
  RecordTooLargeError,
  STATE_TABLE,
  StaleRunError,
  StoreConfigError,
  StoreError,
  StoreInputError,
  StoreUnavailableError,
  stateKey,
} from '#shared/store/index.ts';

describe('settings', () => {
  it('fills defaults', () => {
    expect(parseMirrorSettings({})).toMatchObject({ writeConcurrency: 16 });
    expect(parseDynamoRetrySettings({})).toMatchObject({ maxAttempts: 8 });
    expect(parseStateSettings(undefined)).toMatchObject({ writeTakeoverAfterMs: 16 * 60_000 });
  });

  it('names a bad or unknown setting', () => {
    expect(() => parseMirrorSettings({ writeConcurrency: 0 })).toThrow(StoreConfigError);
    expect(() => parseMirrorSettings({ writeConcurrency: 0 })).toThrow(/writeConcurrency/);
    expect(() => parseStateSettings({ takeoverMs: 5 })).toThrow(/takeoverMs/);
    expect(() => parseDynamoRetrySettings({ backoffBaseMs: 100, backoffMaxMs: 10 })).toThrow(/backoffMaxMs/);
  });

  it('hands the retry settings to the SDK client', () => {
    const config = dynamoRetryConfig({ maxAttempts: 5 });

    expect(config.maxAttempts).toBe(5);
    expect(config.retryStrategy).toBeInstanceOf(ConfiguredRetryStrategy);
    // The SDK sets no request timeout; the stores always have one.
    expect(dynamoRetryConfig().requestHandler).toEqual({
      requestTimeout: 10_000,
      connectionTimeout: 3_000,
      throwOnRequestTimeout: true,
    });
    expect(() => parseDynamoRetrySettings({ requestTimeoutMs: 0 })).toThrow(/requestTimeoutMs/);
  });

  it('a DynamoDB that never answers fails each attempt at its time limit, then the call, as transient', async () => {
    // Accepts connections and reads the requests, never answers (a stalled endpoint, a lost reply).
    let requests = 0;
    const held: Socket[] = [];
    const blackHole = createServer((socket) => {
      held.push(socket);
      socket.on('data', (chunk) => {
        if (chunk.toString('latin1').startsWith('POST ')) requests++;
      });
    });
    await new Promise<void>((resolve) => blackHole.listen(0, '127.0.0.1', resolve));
    const { port } = blackHole.address() as AddressInfo;
    const client = localDynamoClient(
      `http://127.0.0.1:${port}`,
      dynamoRetryConfig({ maxAttempts: 2, backoffBaseMs: 1, backoffMaxMs: 1, requestTimeoutMs: 300 }),
    );
    try {
      const call = callDynamo('mirror', 'GetItem', () =>
        client.send(
          new GetItemCommand({ TableName: 'mirror', Key: { pk: { S: 'a#contacts' }, id: { S: '1' } } }),
        ),
      );
      const err = await call.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect(err).toMatchObject({ table: 'mirror', operation: 'GetItem', attempts: 2, retryable: true });
      expect(requests).toBe(2);
    } finally {
      client.destroy();
      for (const s of held) s.destroy();
      await new Promise<void>((resolve) => blackHole.close(() => resolve()));
    }
  }, 20_000);
});

describe('key design', () => {
  it('builds the documented keys', () => {
    expect(MIRROR_TABLE.partitionKeyFormat).toBe('<account>#<resource>');
    expect(mirrorPartitionKey('acme', 'contacts')).toBe('acme#contacts');
    expect(stateKey.cursor('acme', 'contacts')).toEqual({ pk: 'acme#contacts', sk: 'cursor' });
    expect(stateKey.lease('acme', 'contacts')).toEqual({ pk: 'acme#contacts', sk: 'lease' });
    expect(stateKey.account('acme')).toEqual({ pk: 'acme', sk: 'account' });
    expect(stateKey.write('k#1')).toEqual({ pk: 'write#k#1', sk: 'write' });
    expect(stateKey.hooks('acme')).toEqual({ pk: 'acme', sk: 'hooks' });
    expect(Object.values(STATE_TABLE.items).map((i) => i.sk)).toEqual([
      'cursor',
      'lease',
      'account',
      '<account>',
      'write',
      'hooks',
      'model',
    ]);
  });

  it('refuses names that would make keys ambiguous', () => {
    expect(() => mirrorPartitionKey('a#b', 'contacts')).toThrow(StoreInputError);
    expect(() => mirrorPartitionKey('acme', '')).toThrow(/resource/);
    expect(() => stateKey.write('')).toThrow(/idempotencyKey/);
  });
});

describe('item size estimate', () => {
  it('follows DynamoDB’s sizing rules', () => {
    expect(estimateItemSize({ a: 'abc' })).toBe(1 + 3);
    expect(estimateItemSize({ n: 12345 })).toBe(1 + 4);
    expect(estimateItemSize({ b: true, z: null, u: undefined })).toBe(4);
    expect(estimateItemSize({ m: { k: 'v' } })).toBe(1 + 3 + (1 + 1 + 1));
    expect(estimateItemSize({ l: ['ab', 7] })).toBe(1 + 3 + (1 + 2) + (1 + 2));
    expect(estimateItemSize({ s: 'é' })).toBe(1 + 2);
  });

  it('names values a mirror item cannot hold', () => {
    expect(() => estimateItemSize({ data: { f: () => 1 } }, 'c7')).toThrow(/record "c7"/);
    expect(() => estimateItemSize({ data: { n: Number.POSITIVE_INFINITY } })).toThrow(StoreInputError);
  });
});

describe('errors', () => {
  it('share one base class, carry names and say what to do next', () => {
    const tooLarge = new RecordTooLargeError('acme', 'contacts', 'c1', 500_000, 409_600);
    const stale = new StaleRunError('acme', 'contacts', 'r1', 'r2');

    expect(tooLarge).toBeInstanceOf(StoreError);
    expect(stale).toBeInstanceOf(StoreError);
    expect(tooLarge.name).toBe('RecordTooLargeError');
    expect(stale.message).toMatch(/Stop this run/);
    expect(tooLarge.message).toMatch(/leave the record out/);
  });

  it('classifies throttling, 5xx and dropped connections as transient, the rest not', () => {
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    const server = Object.assign(new Error('boom'), { $metadata: { httpStatusCode: 503 } });
    const validation = Object.assign(new Error('bad'), {
      name: 'ValidationException',
      $metadata: { httpStatusCode: 400 },
    });

    expect(
      isTransient(new ProvisionedThroughputExceededException({ message: 'slow down', $metadata: {} })),
    ).toBe(true);
    expect([isTransient(reset), isTransient(server)]).toEqual([true, true]);
    expect([isTransient(validation), isTransient('nope')]).toEqual([false, false]);
  });

  it('reports a failed call with the table, the operation and the attempts the SDK made', async () => {
    const throttled = new ProvisionedThroughputExceededException({
      message: 'slow down',
      $metadata: { attempts: 3 },
    });

    const error = await callDynamo('state', 'PutItem', () => Promise.reject(throttled)).catch(
      (e: unknown) => e,
    );

    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(error).toMatchObject({ table: 'state', operation: 'PutItem', attempts: 3, retryable: true });
  });

  it('passes a conditional-check failure through for the caller to decide', async () => {
    const refused = new ConditionalCheckFailedException({ message: 'condition', $metadata: {} });

    const error = await callDynamo('state', 'PutItem', () => Promise.reject(refused)).catch(
      (e: unknown) => e,
    );

    expect(error).toBe(refused);
  });
});
