// Integration: the Secrets Manager stub answering the real @aws-sdk/client-secrets-manager client.
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  ResourceExistsException,
  ResourceNotFoundException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LOCAL_AWS } from '#harness/emulators/dynamo.ts';
import { type RunningSecrets, startSecretsStub } from '#harness/local/index.ts';

const get = (stub: RunningSecrets, SecretId: string, extra: { VersionStage?: string } = {}) =>
  stub.client.send(new GetSecretValueCommand({ SecretId, ...extra }));

describe('Secrets Manager stub', () => {
  let stub: RunningSecrets;
  beforeEach(async () => {
    stub = await startSecretsStub({ 'keap-sync/keap-api-key': 'first-key' });
  });
  afterEach(async () => {
    await stub.close();
  });

  it('serves a secret to the real SDK client', async () => {
    const out = await get(stub, 'keap-sync/keap-api-key');

    expect(out).toMatchObject({
      Name: 'keap-sync/keap-api-key',
      SecretString: 'first-key',
      VersionStages: ['AWSCURRENT'],
      ARN: expect.stringMatching(
        /^arn:aws:secretsmanager:us-east-1:000000000000:secret:keap-sync\/keap-api-key-\w{6}$/,
      ),
    });
    expect(out.CreatedDate).toBeInstanceOf(Date);
  });

  it('finds a secret by its ARN, full or without the random suffix', async () => {
    const { ARN } = await get(stub, 'keap-sync/keap-api-key');
    const arn = ARN ?? '';

    expect((await get(stub, arn)).SecretString).toBe('first-key');
    expect((await get(stub, arn.slice(0, -7))).SecretString).toBe('first-key');
  });

  it('returns the value put() set on the next call, and keeps the old one as AWSPREVIOUS', async () => {
    const before = await get(stub, 'keap-sync/keap-api-key');

    stub.put('keap-sync/keap-api-key', 'rotated-key');
    const after = await get(stub, 'keap-sync/keap-api-key');
    const previous = await get(stub, 'keap-sync/keap-api-key', { VersionStage: 'AWSPREVIOUS' });

    expect(after.SecretString).toBe('rotated-key');
    expect(after.VersionId).not.toBe(before.VersionId);
    expect(previous).toMatchObject({ SecretString: 'first-key', VersionId: before.VersionId });
  });

  it('throws ResourceNotFoundException for an unknown secret', async () => {
    const error = await get(stub, 'nope').catch((e: unknown) => e);

    expect(error).toBeInstanceOf(ResourceNotFoundException);
    expect((error as ResourceNotFoundException).message).toBe(
      "Secrets Manager can't find the specified secret.",
    );
    expect((error as ResourceNotFoundException).$metadata.httpStatusCode).toBe(400);
  });

  it('throws ResourceNotFoundException once a secret is removed', async () => {
    stub.remove('keap-sync/keap-api-key');

    await expect(get(stub, 'keap-sync/keap-api-key')).rejects.toBeInstanceOf(ResourceNotFoundException);
  });

  it('counts GetSecretValue requests per secret, found or not, and in total', async () => {
    const { ARN } = await get(stub, 'keap-sync/keap-api-key');
    await get(stub, ARN ?? '');
    await get(stub, 'missing').catch(() => undefined);
    await stub.client.send(new DescribeSecretCommand({ SecretId: 'keap-sync/keap-api-key' }));

    expect(stub.requestCount('keap-sync/keap-api-key')).toBe(2);
    expect(stub.requestCount('missing')).toBe(1);
    expect(stub.requestCount('other')).toBe(0);
    expect(stub.requestCount()).toBe(3);
  });

  it('creates, updates and describes secrets through the API', async () => {
    await stub.client.send(
      new CreateSecretCommand({ Name: 'webhook', SecretString: 's1', Description: 'hook' }),
    );
    const put = await stub.client.send(
      new PutSecretValueCommand({ SecretId: 'webhook', SecretString: 's2' }),
    );
    const described = await stub.client.send(new DescribeSecretCommand({ SecretId: 'webhook' }));
    const duplicate = await stub.client
      .send(new CreateSecretCommand({ Name: 'webhook', SecretString: 'x' }))
      .catch((e: unknown) => e);

    expect((await get(stub, 'webhook')).SecretString).toBe('s2');
    expect(described).toMatchObject({ Name: 'webhook', Description: 'hook' });
    expect(described.VersionIdsToStages?.[put.VersionId ?? '']).toEqual(['AWSCURRENT']);
    expect(duplicate).toBeInstanceOf(ResourceExistsException);
  });

  it('is reachable through AWS_ENDPOINT_URL_SECRETS_MANAGER alone', async () => {
    vi.stubEnv('AWS_ENDPOINT_URL_SECRETS_MANAGER', stub.endpoint);
    const client = new SecretsManagerClient({ region: LOCAL_AWS.region, credentials: LOCAL_AWS.credentials });
    try {
      const out = await client.send(new GetSecretValueCommand({ SecretId: 'keap-sync/keap-api-key' }));

      expect(out.SecretString).toBe('first-key');
    } finally {
      client.destroy();
      vi.unstubAllEnvs();
    }
  });
});
