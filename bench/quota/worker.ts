// Benchmark/test harness (not product code): one worker process running many concurrent acquirers
// against a shared DynamoDB emulator, for one system: the keap-sync ledger, rate-limiter-flexible's
// RateLimiterDynamo (one limiter per limit, combined with RateLimiterUnion) or a naive per-worker split.
// Configured by the JSON in env BENCH_WORKER; prints one JSON result line on stdout when done.
import { performance } from 'node:perf_hooks';
import { DynamoDB } from '@aws-sdk/client-dynamodb';
import { LOCAL_AWS } from '#harness/emulators/dynamo.ts';
import { guardedDispatcher } from '#shared/keap/transport.ts';
import { DynamoLedgerStore, QuotaLedger } from '#shared/quota/index.ts';

export type SystemName = 'keap-sync' | 'rate-limiter-flexible' | 'naive-split';

export interface WorkerConfig {
  system: SystemName;
  /** Index of this process among the system's processes. */
  index: number;
  /** Total workers (acquirers) across every process of the system; the naive split divides by it. */
  totalWorkers: number;
  acquirers: number;
  endpoint: string;
  tableName: string;
  tenant: string;
  keys: string[];
  /** Injected clock offset of this process, ms. */
  offsetMs: number;
  /** True-time (Date.now of the machine) start and end. */
  startAt: number;
  endAt: number;
  /** Slots per acquire (keap-sync). */
  k: number;
  limits: { spikeIntervalMs: number; minuteLimit: number; minuteWindowMs: number; dayLimit: number };
  /** Ledger settings beyond the limits (keap-sync). */
  ledger?: Record<string, unknown>;
  /** Where calls go; absent: only record the send times. */
  judgeUrl?: string;
  /** Clock-align the ledger before starting (what a fresh fleet does). */
  syncClock?: boolean;
  /** Scenario faults: a stall between the wait and the request (GC, throttling), a network tail, a CPU hog. */
  stall?: { p: number; minMs: number; maxMs: number };
  tail?: { p: number; ms: number };
  cpuHog?: { everyMs: number; minMs: number; maxMs: number };
}

export interface SendRecord {
  /** True time (machine clock) the call left. */
  t: number;
  key: string;
  status?: number;
}

export interface WorkerResult {
  index: number;
  sends: SendRecord[];
  slotsGranted: number;
  missedSlots: number;
  ddbRequests: number;
  /** Requests made before the run started (clock alignment), not per call. */
  setupDdbRequests: number;
  acquireMs: number[];
  errors: string[];
  clockCorrectionMs: number;
  correctionAtStartMs?: number;
  released?: number;
  /** Requests the ledger's last-moment check refused (keap-sync), and the largest admitted lateness. */
  refused?: number;
  maxLatenessMs?: number;
  /** keap-sync: steady-state DynamoDB requests by kind (successful writes, lost races, reads). */
  steadyByKind?: { reads: number; writes: number; lostRaces: number };
  /** Errors beyond the first 200, counted only. */
  errorsDropped?: number;
}

const trueNow = () => Date.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

function countingClient(endpoint: string, counter: { n: number }): DynamoDB {
  const client = new DynamoDB({ ...LOCAL_AWS, endpoint, maxAttempts: 1 });
  client.middlewareStack.add(
    (next) => async (args) => {
      counter.n++;
      return next(args);
    },
    { step: 'initialize', name: 'countRequests' },
  );
  return client;
}

async function send(
  cfg: WorkerConfig,
  key: string,
  out: SendRecord[],
  dispatcher?: ReturnType<typeof guardedDispatcher>,
): Promise<number | 'refused' | undefined> {
  const rec: SendRecord = { t: trueNow(), key };
  out.push(rec);
  if (!cfg.judgeUrl) return undefined;
  const extra = cfg.tail && Math.random() < cfg.tail.p ? cfg.tail.ms : 0;
  let res: Response;
  try {
    res = await fetch(cfg.judgeUrl, {
      method: 'POST',
      headers: {
        'x-bench-tenant': cfg.tenant,
        'x-bench-key': key,
        'x-bench-proc': String(cfg.index),
        'x-bench-extra-ms': String(extra),
      },
      ...(dispatcher ? { dispatcher } : {}),
    } as RequestInit);
  } catch (err) {
    if ((err as Error).cause instanceof Error && ((err as Error).cause as Error).name === 'SendRefused') {
      // Refused by the ledger's last check before it was written: never sent.
      out.splice(out.indexOf(rec), 1);
      return 'refused';
    }
    throw err;
  }
  await res.arrayBuffer();
  rec.status = res.status;
  return res.status;
}

async function runKeapSync(cfg: WorkerConfig, result: WorkerResult, counter: { n: number }): Promise<void> {
  const client = countingClient(cfg.endpoint, counter);
  const store = new DynamoLedgerStore(client, cfg.tableName);
  const ledger = new QuotaLedger({
    store,
    settings: { tableName: cfg.tableName, ...cfg.limits, ...cfg.ledger },
    clock: () => trueNow() + cfg.offsetMs,
  });
  const firstKey = cfg.keys[0] ?? 'key0';
  // What a worker does before its first call (the first acquire would): align its clock with
  // DynamoDB's Date header. Done here so it is counted with the set-up requests.
  await ledger
    .alignClock(cfg.tenant, firstKey)
    .catch((err: unknown) => result.errors.push((err as Error).name));
  // Align clocks with the other processes just before the start, when all of them are up and probe
  // at the same time (a second of probing; its requests are reported apart and in the total).
  if (cfg.syncClock) {
    await sleep(cfg.startAt - 1_200 - trueNow());
    await ledger
      .syncClock(cfg.tenant, firstKey, Math.max(0, Math.min(1_000, cfg.startAt - trueNow() - 150)))
      .catch((err: unknown) => result.errors.push((err as Error).name));
  }
  result.setupDdbRequests = counter.n;
  const setupStats = { ...store.stats };
  result.correctionAtStartMs = ledger.clockCorrectionMs;
  await sleep(cfg.startAt - trueNow());
  type Acquired = Awaited<ReturnType<QuotaLedger['acquire']>> | Error;
  const acquire = (key: string, notBefore: number): Promise<Acquired> =>
    ledger
      .acquire({
        tenant: cfg.tenant,
        key,
        count: cfg.k,
        priority: 'interactive',
        hold: true,
        waitBudgetMs: 1_000,
        spreadMs: 5_000,
        notBefore,
      })
      .catch((err: unknown) => err as Error);
  const responses = new Set<Promise<unknown>>();
  const acquirer = async (n: number) => {
    const key = cfg.keys[n % cfg.keys.length] ?? firstKey;
    // Ask for the first slot now; afterwards ask for the next slot as soon as one is held, not needed
    // before the held one: the ledger lets such requests of this process share one write.
    let pending = acquire(key, 0);
    let pastEnd = false;
    while (trueNow() < cfg.endAt && !pastEnd) {
      const t0 = performance.now();
      const d = await pending;
      // Overhead on the caller's critical path: how long it was blocked waiting for the ledger.
      result.acquireMs.push(performance.now() - t0);
      if (d instanceof Error) {
        result.errors.push(d.name);
        await sleep(100);
        pending = acquire(key, 0);
        continue;
      }
      if (d.status === 'deferred') {
        // A worker in Lambda would defer through the queue; here the acquirer waits (bounded by the run).
        // A far deferral (a spent day) is asked again every few seconds: another worker may release.
        const wait = Math.min(
          d.retryAt - ledger.now(),
          d.reason === 'day' ? 3_000 : Number.POSITIVE_INFINITY,
        );
        if (trueNow() + wait > cfg.endAt) return;
        await sleep(wait);
        pending = acquire(key, 0);
        continue;
      }
      result.slotsGranted += d.slots.length;
      const last = d.slots[d.slots.length - 1] ?? ledger.now();
      pending = acquire(key, last);
      for (const slot of d.slots) {
        // A slot held past the end of the run is not used: give it back (with the rest of this
        // grant) and stop, rather than overrun the run or keep asking for slots it cannot use.
        if (trueNow() + (slot - ledger.now()) > cfg.endAt) {
          const unused = d.slots.slice(d.slots.indexOf(slot));
          result.missedSlots += unused.length;
          await ledger.release(cfg.tenant, key, unused).catch((err: unknown) => {
            result.errors.push((err as Error).name);
          });
          pastEnd = true;
          break;
        }
        if (!(await ledger.waitForSlot(slot, { tenant: cfg.tenant, key }))) {
          // Woke too late to send safely: give the slot back so the budget is not lost.
          result.missedSlots++;
          void ledger.release(cfg.tenant, key, [slot]).catch((err: unknown) => {
            result.errors.push((err as Error).name);
          });
          continue;
        }
        // A stall between the wake-up and the request (GC, CPU throttling, a cold TLS handshake).
        if (cfg.stall && Math.random() < cfg.stall.p) {
          await sleep(cfg.stall.minMs + Math.random() * (cfg.stall.maxMs - cfg.stall.minMs));
        }
        // The ledger's last check runs in the HTTP layer, as the Keap client's does.
        const dispatcher = guardedDispatcher(
          () => ledger.admit(cfg.tenant, key, slot),
          (a) => {
            if (a.ok) result.maxLatenessMs = Math.max(result.maxLatenessMs ?? 0, a.lateMs);
          },
        );
        // The response is handled off the critical path, as a client with reserved slots would.
        const inFlight = send(cfg, key, result.sends, dispatcher)
          .then((status) => {
            if (status === 'refused') {
              // Not sent: give the slot back (the ledger takes it only if it is still this process's).
              result.refused = (result.refused ?? 0) + 1;
              result.missedSlots++;
              return ledger.release(cfg.tenant, key, [slot]);
            }
            return status === 429 ? ledger.report429(cfg.tenant, key, 'spike') : undefined;
          })
          .catch((err: unknown) => {
            result.errors.push((err as Error).name);
          })
          .finally(() => responses.delete(inFlight));
        responses.add(inFlight);
      }
    }
    // The run is over: a reservation still pending is not used (it was counted as granted if made).
    const d = await pending;
    if (!(d instanceof Error) && d.status !== 'deferred') {
      result.slotsGranted += d.slots.length;
      result.missedSlots += d.slots.length;
      await ledger.release(cfg.tenant, key, d.slots).catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: cfg.acquirers }, (_, n) => acquirer(n)));
  await Promise.all([...responses]);
  result.released = result.missedSlots;
  result.clockCorrectionMs = ledger.clockCorrectionMs;
  // After the start-up alignment: reads, writes and writes that lost a race (key registry included).
  result.steadyByKind = {
    reads: store.stats.reads - setupStats.reads,
    writes: store.stats.writes - setupStats.writes - (store.stats.failedWrites - setupStats.failedWrites),
    lostRaces: store.stats.failedWrites - setupStats.failedWrites,
  };
  client.destroy();
}

interface RlfResLike {
  msBeforeNext: number;
}

async function runRateLimiterFlexible(cfg: WorkerConfig, result: WorkerResult, counter: { n: number }) {
  // rate-limiter-flexible reads Date.now() itself: give this whole process the injected skew.
  const realNow = Date.now.bind(Date);
  Date.now = () => realNow() + cfg.offsetMs;
  const t = () => realNow();
  const { RateLimiterDynamo, RateLimiterUnion } = await import('rate-limiter-flexible');
  const client = countingClient(cfg.endpoint, counter);
  const common = { storeClient: client, tableName: cfg.tableName, tableCreated: true, ttlSet: true };
  const l = cfg.limits;
  const union = new RateLimiterUnion(
    new RateLimiterDynamo({
      ...common,
      keyPrefix: 'spike',
      points: Math.round(1000 / l.spikeIntervalMs),
      duration: 1,
    }),
    new RateLimiterDynamo({
      ...common,
      keyPrefix: 'minute',
      points: l.minuteLimit,
      duration: l.minuteWindowMs / 1000,
    }),
    new RateLimiterDynamo({ ...common, keyPrefix: 'day', points: l.dayLimit, duration: 86_400 }),
  );
  await sleep(cfg.startAt - t());
  const acquirer = async (n: number) => {
    const key = cfg.keys[n % cfg.keys.length] ?? 'key0';
    while (t() < cfg.endAt) {
      const t0 = performance.now();
      try {
        await union.consume(`${cfg.tenant}:${key}`, 1);
        result.acquireMs.push(performance.now() - t0);
        result.slotsGranted++;
        const rec: SendRecord = { t: t(), key };
        result.sends.push(rec);
        if (cfg.judgeUrl) {
          const res = await fetch(cfg.judgeUrl, {
            method: 'POST',
            headers: { 'x-bench-tenant': cfg.tenant, 'x-bench-key': key },
          });
          await res.arrayBuffer();
          rec.status = res.status;
        }
      } catch (rejected) {
        result.acquireMs.push(performance.now() - t0);
        let wait = 0;
        let failed = false;
        for (const r of Object.values(rejected as Record<string, unknown>)) {
          if (r instanceof Error) failed = true;
          else wait = Math.max(wait, (r as RlfResLike).msBeforeNext ?? 0);
        }
        if (failed) result.errors.push('DynamoDBError');
        if (t() + wait > cfg.endAt) return;
        await sleep(failed ? 100 : wait);
      }
    }
  };
  await Promise.all(Array.from({ length: cfg.acquirers }, (_, n) => acquirer(n)));
  Date.now = realNow;
  client.destroy();
}

/** Each worker keeps its own 1/N share of every limit, on its own (skewed) clock, with no coordination. */
async function runNaiveSplit(cfg: WorkerConfig, result: WorkerResult) {
  const l = cfg.limits;
  const n = cfg.totalWorkers;
  const spacing = l.spikeIntervalMs * n;
  const perMinute = Math.floor(l.minuteLimit / n);
  const perDay = Math.floor(l.dayLimit / n);
  const now = () => trueNow() + cfg.offsetMs;
  await sleep(cfg.startAt - trueNow());
  const acquirer = async (i: number) => {
    const key = cfg.keys[i % cfg.keys.length] ?? 'key0';
    const log: number[] = [];
    // A random phase, so the workers do not all start in step (kinder to the naive split).
    let last = now() - Math.random() * spacing;
    let day = 0;
    while (trueNow() < cfg.endAt && day < perDay && perMinute > 0) {
      const t0 = performance.now();
      const oldest = log.length >= perMinute ? (log[log.length - perMinute] ?? 0) : Number.NEGATIVE_INFINITY;
      const at = Math.max(now(), last + spacing, oldest + l.minuteWindowMs);
      result.acquireMs.push(performance.now() - t0);
      if (at - cfg.offsetMs > cfg.endAt) return;
      await sleep(at - now());
      last = now();
      log.push(last);
      day++;
      result.slotsGranted++;
      await send(cfg, key, result.sends);
    }
  };
  await Promise.all(Array.from({ length: cfg.acquirers }, (_, i) => acquirer(i)));
}

async function main(): Promise<void> {
  const raw = process.env.BENCH_WORKER;
  if (!raw) throw new Error('BENCH_WORKER is not set: this script is started by bench/quota/run.ts');
  const cfg = JSON.parse(raw) as WorkerConfig;
  const counter = { n: 0 };
  const result: WorkerResult = {
    index: cfg.index,
    sends: [],
    slotsGranted: 0,
    missedSlots: 0,
    ddbRequests: 0,
    setupDdbRequests: 0,
    acquireMs: [],
    errors: [],
    clockCorrectionMs: 0,
  };
  // A CPU hog beside the worker: the event loop stalls for minMs-maxMs about every everyMs.
  let hog: NodeJS.Timeout | undefined;
  if (cfg.cpuHog) {
    const h = cfg.cpuHog;
    const burn = () => {
      const until = performance.now() + h.minMs + Math.random() * (h.maxMs - h.minMs);
      while (performance.now() < until) {
        // busy
      }
      hog = setTimeout(burn, h.everyMs * (0.5 + Math.random()));
    };
    hog = setTimeout(burn, h.everyMs);
  }
  if (cfg.system === 'keap-sync') await runKeapSync(cfg, result, counter);
  else if (cfg.system === 'rate-limiter-flexible') await runRateLimiterFlexible(cfg, result, counter);
  else await runNaiveSplit(cfg, result);
  if (hog) clearTimeout(hog);
  result.ddbRequests = counter.n;
  // Errors repeat (a worker failing closed every 100 ms): keep the first 200 and the count.
  if (result.errors.length > 200) {
    const extra = result.errors.length - 200;
    result.errors = result.errors.slice(0, 200);
    result.errorsDropped = extra;
  }
  // A pipe is written asynchronously: exit only once the result line is out.
  await new Promise<void>((resolve) => process.stdout.write(`${JSON.stringify(result)}\n`, () => resolve()));
}

if (process.env.BENCH_WORKER) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
