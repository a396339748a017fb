// Adapter (local runtime and tests): a Secrets Manager stub on 127.0.0.1 speaking the AWS JSON 1.1
// protocol, so the real @aws-sdk/client-secrets-manager client (endpoint option, or the environment
// variable AWS_ENDPOINT_URL_SECRETS_MANAGER) reads secrets the tests control. Values are never logged.

import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { LOCAL_AWS } from '../emulators/dynamo.ts';
import { EmulatorStartError } from './errors.ts';

export interface RunningSecrets {
  endpoint: string;
  client: SecretsManagerClient;
  /** Sets a secret's current value (creating it if needed); the previous value becomes AWSPREVIOUS. */
  put(name: string, value: string): void;
  /** Deletes a secret at once; later reads get ResourceNotFoundException. */
  remove(name: string): void;
  /** GetSecretValue requests answered for `name` (by name or ARN, found or not); all of them without a name. */
  requestCount(name?: string): number;
  close(): Promise<void>;
}

interface SecretVersion {
  versionId: string;
  value: string;
  createdDate: number;
}

interface StoredSecret {
  name: string;
  arn: string;
  description?: string;
  createdDate: number;
  lastChangedDate: number;
  current: SecretVersion;
  previous?: SecretVersion;
}

/** An AWS-shaped error: `type` becomes `__type`, which the SDK maps to its exception class. */
class StubFault {
  readonly type: string;
  readonly message: string;
  readonly status: number;
  constructor(type: string, message: string, status = 400) {
    this.type = type;
    this.message = message;
    this.status = status;
  }
}

const SECRET_NOT_FOUND = "Secrets Manager can't find the specified secret.";
const ARN_PREFIX = `arn:aws:secretsmanager:${LOCAL_AWS.region}:000000000000:secret:`;
const SUFFIX_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export function localSecretsClient(endpoint: string): SecretsManagerClient {
  return new SecretsManagerClient({ ...LOCAL_AWS, endpoint, maxAttempts: 1 });
}

/** Starts the stub on 127.0.0.1 (port 0 picks a free one) holding `initial` as name -> SecretString. */
export async function startSecretsStub(
  initial: Record<string, string> = {},
  options: { port?: number } = {},
): Promise<RunningSecrets> {
  const secrets = new Map<string, StoredSecret>();
  const counts = new Map<string, number>();
  let total = 0;

  const nowSeconds = () => Date.now() / 1000;
  const newVersion = (value: string, versionId?: string): SecretVersion => ({
    versionId: versionId ?? randomUUID(),
    value,
    createdDate: nowSeconds(),
  });
  const create = (name: string, value: string, versionId?: string, description?: string): StoredSecret => {
    const suffix = Array.from(randomBytes(6), (b) => SUFFIX_CHARS[b % SUFFIX_CHARS.length]).join('');
    const now = nowSeconds();
    const secret: StoredSecret = {
      name,
      arn: `${ARN_PREFIX}${name}-${suffix}`,
      createdDate: now,
      lastChangedDate: now,
      current: newVersion(value, versionId),
    };
    if (description !== undefined) secret.description = description;
    secrets.set(name, secret);
    return secret;
  };
  const update = (secret: StoredSecret, value: string, versionId?: string): SecretVersion => {
    secret.previous = secret.current;
    secret.current = newVersion(value, versionId);
    secret.lastChangedDate = nowSeconds();
    return secret.current;
  };
  /** Finds a secret by name, full ARN, or ARN without the random suffix (as AWS does). */
  const lookup = (secretId: string): StoredSecret | undefined => {
    if (!secretId.startsWith(ARN_PREFIX)) return secrets.get(secretId);
    for (const secret of secrets.values()) {
      if (secret.arn === secretId || `${ARN_PREFIX}${secret.name}` === secretId) return secret;
    }
    return undefined;
  };
  const find = (secretId: string): StoredSecret => {
    const secret = lookup(secretId);
    if (!secret) throw new StubFault('ResourceNotFoundException', SECRET_NOT_FOUND);
    return secret;
  };

  for (const [name, value] of Object.entries(initial)) create(name, value);

  const operations: Record<string, (input: Record<string, unknown>) => Record<string, unknown>> = {
    GetSecretValue: (input) => {
      const secretId = requiredString(input, 'SecretId');
      const key = lookup(secretId)?.name ?? secretId;
      counts.set(key, (counts.get(key) ?? 0) + 1);
      total++;
      const secret = find(secretId);
      const versionId = optionalString(input, 'VersionId');
      const stage =
        optionalString(input, 'VersionStage') ?? (versionId === undefined ? 'AWSCURRENT' : undefined);
      const staged: Array<[string, SecretVersion | undefined]> = [
        ['AWSCURRENT', secret.current],
        ['AWSPREVIOUS', secret.previous],
      ];
      const match = staged.find(
        ([versionStage, version]) =>
          version !== undefined &&
          (versionId === undefined || version.versionId === versionId) &&
          (stage === undefined || stage === versionStage),
      );
      const version = match?.[1];
      if (!match || !version) {
        throw new StubFault(
          'ResourceNotFoundException',
          "Secrets Manager can't find the specified secret value for the requested VersionId or VersionStage.",
        );
      }
      return {
        ARN: secret.arn,
        Name: secret.name,
        VersionId: version.versionId,
        SecretString: version.value,
        VersionStages: [match[0]],
        CreatedDate: version.createdDate,
      };
    },
    PutSecretValue: (input) => {
      const secret = find(requiredString(input, 'SecretId'));
      const version = update(
        secret,
        secretString(input, true) ?? '',
        optionalString(input, 'ClientRequestToken'),
      );
      return {
        ARN: secret.arn,
        Name: secret.name,
        VersionId: version.versionId,
        VersionStages: ['AWSCURRENT'],
      };
    },
    CreateSecret: (input) => {
      const name = requiredString(input, 'Name');
      if (secrets.has(name)) {
        throw new StubFault(
          'ResourceExistsException',
          `The operation failed because the secret ${name} already exists.`,
        );
      }
      const value = secretString(input, false);
      if (value === undefined) {
        throw new StubFault(
          'InvalidRequestException',
          'This Secrets Manager stub only creates secrets with a SecretString; pass SecretString.',
        );
      }
      const secret = create(
        name,
        value,
        optionalString(input, 'ClientRequestToken'),
        optionalString(input, 'Description'),
      );
      return { ARN: secret.arn, Name: secret.name, VersionId: secret.current.versionId };
    },
    DescribeSecret: (input) => {
      const secret = find(requiredString(input, 'SecretId'));
      const stages: Record<string, string[]> = { [secret.current.versionId]: ['AWSCURRENT'] };
      if (secret.previous) stages[secret.previous.versionId] = ['AWSPREVIOUS'];
      return {
        ARN: secret.arn,
        Name: secret.name,
        ...(secret.description === undefined ? {} : { Description: secret.description }),
        CreatedDate: secret.createdDate,
        LastChangedDate: secret.lastChangedDate,
        VersionIdsToStages: stages,
      };
    },
  };

  const server = createServer((req, res) => {
    void answer(req, res, operations);
  });
  server.listen(options.port ?? 0, '127.0.0.1');
  try {
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([err]) => Promise.reject(err)),
    ]);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new EmulatorStartError(
      `The Secrets Manager stub could not listen on 127.0.0.1:${options.port ?? 0} (${detail}). ` +
        'Pass another port, or 0 for a free one.',
      { cause: err },
    );
  }
  const address = server.address();
  if (address === null || typeof address === 'string') {
    throw new EmulatorStartError('The Secrets Manager stub did not bind a TCP port.');
  }
  const endpoint = `http://127.0.0.1:${address.port}`;
  const client = localSecretsClient(endpoint);
  return {
    endpoint,
    client,
    put: (name, value) => {
      const secret = secrets.get(name);
      if (secret) update(secret, value);
      else create(name, value);
    },
    remove: (name) => {
      secrets.delete(name);
    },
    requestCount: (name) => (name === undefined ? total : (counts.get(name) ?? 0)),
    close: async () => {
      client.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function answer(
  req: IncomingMessage,
  res: ServerResponse,
  operations: Record<string, (input: Record<string, unknown>) => Record<string, unknown>>,
): Promise<void> {
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const target = req.headers['x-amz-target'];
    const operation =
      req.method === 'POST' && typeof target === 'string' && target.startsWith('secretsmanager.')
        ? operations[target.slice('secretsmanager.'.length)]
        : undefined;
    if (!operation) {
      throw new StubFault(
        'UnknownOperationException',
        `This Secrets Manager stub answers ${Object.keys(operations).join(', ')} only (got ${String(target)}).`,
      );
    }
    let input: unknown;
    try {
      input = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    } catch {
      throw new StubFault('SerializationException', 'The request body is not valid JSON.');
    }
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      throw new StubFault('SerializationException', 'The request body must be a JSON object.');
    }
    reply(res, 200, operation(input as Record<string, unknown>));
  } catch (err) {
    const fault =
      err instanceof StubFault
        ? err
        : new StubFault('InternalServiceError', 'The Secrets Manager stub failed on this request.', 500);
    res.setHeader('x-amzn-errortype', fault.type);
    reply(res, fault.status, { __type: fault.type, message: fault.message });
  }
}

function reply(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/x-amz-json-1.1',
    'content-length': Buffer.byteLength(payload),
    'x-amzn-requestid': randomUUID(),
  });
  res.end(payload);
}

function requiredString(input: Record<string, unknown>, field: string): string {
  const value = input[field];
  if (typeof value !== 'string' || value === '') {
    throw new StubFault(
      'InvalidParameterException',
      `The parameter ${field} is required and must be a string.`,
    );
  }
  return value;
}

function optionalString(input: Record<string, unknown>, field: string): string | undefined {
  const value = input[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') {
    throw new StubFault('InvalidParameterException', `The parameter ${field} must be a string.`);
  }
  return value;
}

/** The request's SecretString; SecretBinary is refused (the stub stores text only). */
function secretString(input: Record<string, unknown>, required: boolean): string | undefined {
  if (input.SecretBinary !== undefined) {
    throw new StubFault(
      'InvalidRequestException',
      'This Secrets Manager stub stores SecretString values only; send the secret as SecretString.',
    );
  }
  const value = optionalString(input, 'SecretString');
  if (required && value === undefined) {
    throw new StubFault('InvalidRequestException', 'You must provide either SecretString or SecretBinary.');
  }
  return value;
}
