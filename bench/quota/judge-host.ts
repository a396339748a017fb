// Benchmark harness: runs one judge (a strict gateway) in its own process, so one system's bursts
// cannot delay another system's arrival stamps. Prints {"url"} first; GET /arrivals returns the log.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startJudge } from './judge.ts';

const limits = JSON.parse(process.env.BENCH_JUDGE ?? '{}') as {
  limits: Record<string, number>;
  jitter: { min: number; max: number };
};
const judge = await startJudge(limits.limits, limits.jitter);
const control = createServer((req, res) => {
  if (req.url === '/arrivals') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(Object.fromEntries(judge.arrivals)));
    return;
  }
  res.writeHead(404).end();
});
await new Promise<void>((resolve) => control.listen(0, '127.0.0.1', resolve));
const { port } = control.address() as AddressInfo;
process.stdout.write(`${JSON.stringify({ url: judge.url, control: `http://127.0.0.1:${port}` })}\n`);
const stop = () => {
  control.close();
  judge.close().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
