// Adapter (local runtime): the REST hook receiver as a local HTTP server, the same use case as the
// Lambda (shared/hooks/ingress.ts) on node:http: endpoints from the local state table, jobs onto the
// local job queue. `npm start`, the tests and the benchmark run it; `down()` makes it refuse
// connections for a while (the receiver-down drill) without losing its port.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHookIngress, type HookIngressDeps } from '#shared/hooks/index.ts';

export interface LocalHookServer {
  /** Base URL (`http://127.0.0.1:<port>`); hook URLs are `<url>/hooks/<account>/<token>`. */
  url: string;
  /** Requests answered, by status. */
  answered: Map<number, number>;
  /** Whether the receiver answers (false: every request gets 503, as a receiver that is down). */
  up: boolean;
  close(): Promise<void>;
}

function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      // Keep reading (so the client sees an answer) but stop keeping what is past the limit.
      if (size <= limit + 1) chunks.push(c);
    });
    req.on('end', () => resolve(size > limit + 1 ? undefined : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export async function startLocalHookServer(
  deps: HookIngressDeps,
  options: { port?: number; host?: string } = {},
): Promise<LocalHookServer> {
  const ingress = createHookIngress(deps);
  const answered = new Map<number, number>();
  const state: LocalHookServer = { url: '', answered, up: true, close: async () => undefined };
  const count = (status: number) => answered.set(status, (answered.get(status) ?? 0) + 1);
  const server: Server = createServer((req, res) => {
    void (async () => {
      try {
        const body = await readBody(req, deps.maxBodyBytes);
        if (!state.up) {
          count(503);
          res.writeHead(503).end();
          return;
        }
        const out = await ingress({
          method: req.method ?? 'GET',
          path: req.url ?? '/',
          headers: req.headers,
          // An oversized body is passed as one byte too many: the core answers 413.
          body: body ?? 'x'.repeat(deps.maxBodyBytes + 1),
        });
        count(out.status);
        res.writeHead(out.status, out.headers).end(out.body);
      } catch (err) {
        deps.log.error('Local hook receiver failed', { error: (err as Error).name });
        count(500);
        if (!res.headersSent) res.writeHead(500).end();
      }
    })();
  });
  await new Promise<void>((resolve) =>
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve),
  );
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = async () => {
    const done = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await done;
  };
  return state;
}
