// Test support: a tiny local hook receiver built on the receiver core, whose answers a test can script.
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { onTestFinished } from 'vitest';
import { createHookReceiver, type HookEventJob, type HookOutcome } from '#shared/hooks/index.ts';

/** What the receiver does with the next requests: answer as the core says, fail with a status, or hang. */
export type Behaviour = 'core' | 'no-echo' | 'hang' | { status: number };

export interface TestReceiver {
  url: string;
  token: string;
  /** Jobs queued, in order. */
  jobs: HookEventJob[];
  outcomes: HookOutcome['kind'][];
  /** Behaviours to use for the next requests, one each; then `behaviour`. */
  script: Behaviour[];
  behaviour: Behaviour;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Starts a receiver for account "demo" on a free port; closed when the test finishes. */
export async function startReceiver(eventKeys: readonly string[]): Promise<TestReceiver> {
  const token = 'tok_receiver_0123456789abcdef';
  const core = createHookReceiver({ account: 'demo', token, eventKeys, maxBodyBytes: 1024 * 1024 });
  const r: TestReceiver = { url: '', token, jobs: [], outcomes: [], script: [], behaviour: 'core' };
  const server = createServer((req, res) => {
    void readBody(req).then((body) => {
      const b = r.script.shift() ?? r.behaviour;
      if (b === 'hang') return;
      if (typeof b === 'object') {
        res.writeHead(b.status).end();
        return;
      }
      const out = core({ method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers, body });
      r.outcomes.push(out.kind);
      // Queue first, answer after: what the Lambda adapter must do.
      if (out.kind === 'accepted') r.jobs.push(...out.jobs);
      const headers = { ...out.response.headers };
      if (b === 'no-echo') delete headers['X-Hook-Secret'];
      res.writeHead(out.response.status, headers).end(out.response.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/${token}`;
  onTestFinished(async () => {
    const done = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await done;
  });
  return r;
}
