// Benchmark harness: a strict gateway on 127.0.0.1. Each call's arrival is its receive time plus a
// random latency; calls are judged by the gateway rules (harness/gateway/rules.ts) in arrival order,
// once every earlier arrival is in, so the judge's own scheduling delays do not distort the gaps.
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type GatewayLimits, GatewayRules, type Violation } from '#harness/gateway/rules.ts';

export interface JudgedArrival {
  proc: string;
  t: number;
  key: string;
  ok: boolean;
  rule?: Violation;
}

export interface Judge {
  url: string;
  arrivals: Map<string, JudgedArrival[]>;
  close(): Promise<void>;
}

interface Pending {
  at: number;
  tenant: string;
  key: string;
  proc: string;
  res: ServerResponse;
}

export async function startJudge(
  limits: Partial<GatewayLimits>,
  jitterMs: { min: number; max: number },
  random: () => number = Math.random,
): Promise<Judge> {
  const rules = new Map<string, GatewayRules>();
  const arrivals = new Map<string, JudgedArrival[]>();
  const queue: Pending[] = [];
  const settleMs = jitterMs.max + 20 + 400;
  const judgeDue = () => {
    const horizon = performance.timeOrigin + performance.now() - settleMs;
    queue.sort((a, b) => a.at - b.at);
    while (queue.length > 0 && (queue[0]?.at ?? Number.POSITIVE_INFINITY) <= horizon) {
      const p = queue.shift();
      if (!p) break;
      let r = rules.get(p.tenant);
      if (!r) {
        r = new GatewayRules(limits);
        rules.set(p.tenant, r);
      }
      const v = r.admit(p.at, p.tenant, p.key);
      let list = arrivals.get(p.tenant);
      if (!list) {
        list = [];
        arrivals.set(p.tenant, list);
      }
      list.push(
        v.ok
          ? { proc: p.proc, t: p.at, key: p.key, ok: true }
          : { proc: p.proc, t: p.at, key: p.key, ok: false, rule: v.rule },
      );
      p.res.writeHead(v.ok ? 200 : 429, { 'content-type': 'application/json' });
      p.res.end(v.ok ? '{}' : `{"fault":{"detail":{"errorcode":"${v.rule}"}}}`);
    }
  };
  const ticker = setInterval(judgeDue, 5);
  const server: Server = createServer((req, res) => {
    const received = performance.timeOrigin + performance.now();
    req.resume();
    // A worker may ask for extra network latency on this request (the network-tail scenario).
    const extra = Number(req.headers['x-bench-extra-ms'] ?? 0) || 0;
    queue.push({
      at: received + extra + jitterMs.min + random() * (jitterMs.max - jitterMs.min),
      tenant: String(req.headers['x-bench-tenant'] ?? ''),
      key: String(req.headers['x-bench-key'] ?? ''),
      proc: String(req.headers['x-bench-proc'] ?? ''),
      res,
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/call`,
    arrivals,
    close: () =>
      new Promise<void>((resolve) => {
        clearInterval(ticker);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
