// Use case (drills): the reliability drills of issue 13, each a bounded run of the whole local system
// with one part failing, returning named checks and figures. The tests (test/drills) run them with a
// short outage; `npm run drill -- <name>` runs the full-length versions.
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import type { SqsLambdaPoller } from '../local/poller.ts';
import { queueDepth } from '../local/sqs.ts';
import { keyFingerprint, type SandboxFaults } from '../sandbox/index.ts';
import { Prng } from '../sandbox/prng.ts';
import { type LeakScan, scanForKeys } from './leaks.ts';
import { tallyTransient } from './measure.ts';
import { DRILL_ACCOUNT, DRILL_SECRET_ID, type DrillSystem, plantedKey, startDrillSystem } from './system.ts';
import { type SentWrite, sendWrites, tallyWrites } from './writes.ts';

export const DRILL_NAMES = ['dynamo-outage', 'sqs-outage', 'worker-kills', 'key-rotation'] as const;
export type DrillName = (typeof DRILL_NAMES)[number];

export interface DrillCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface DrillReport {
  drill: DrillName;
  ok: boolean;
  seconds: number;
  checks: DrillCheck[];
  figures: Record<string, number | string>;
  leaks: LeakScan;
}

export interface DrillOptions {
  /** How long the part stays down (outages), or how long the revoked key stays in place. */
  outageMs: number;
  /** worker-kills: how many SIGKILLs. */
  kills?: number;
  contacts?: number;
  seed?: number;
  /** Keap faults on during the drill (the leak test turns them on). */
  faults?: SandboxFaults;
  /** Progress lines (the drill script prints them). */
  progress?: (line: string) => void;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function until(
  fn: () => Promise<boolean> | boolean,
  timeoutMs: number,
  everyMs = 250,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (
      await Promise.resolve()
        .then(fn)
        .catch(() => false)
    )
      return true;
    if (Date.now() >= deadline) return false;
    await sleep(everyMs);
  }
}

async function dlqDepth(sys: DrillSystem): Promise<number> {
  const r = await sys.stack.sqs.client.send(
    new GetQueueAttributesCommand({
      QueueUrl: sys.stack.sqs.queue.dlqUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
    }),
  );
  return (
    Number(r.Attributes?.ApproximateNumberOfMessages ?? 0) +
    Number(r.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)
  );
}

/** How long after a cut a call granted before it may still arrive at Keap. */
const IN_FLIGHT_GRACE_MS = 1_000;

/** Pages slow enough that a backfill is still running when a drill strikes. */
const SLOW_PAGES = { baseMs: 250, perRecordMs: 0.5 } as const;

class Checks {
  readonly list: DrillCheck[] = [];
  add(name: string, ok: boolean, detail: string): void {
    this.list.push({ name, ok, detail });
  }
}

/** The end of every drill: stop the scheduler, drain the queue, compare, tally writes, scan for the key. */
async function settle(
  sys: DrillSystem,
  checks: Checks,
  o: {
    tag: string;
    sent: readonly SentWrite[];
    keys: readonly string[];
    inSyncTimeoutMs: number;
    progress?: (line: string) => void;
    /**
     * Workers die in this drill: a write whose claim a killed worker held is accounted for when the
     * sender can read it as in progress (never repeated blindly), not only when Keap has it.
     */
    killedClaimsAllowed?: boolean;
  },
): Promise<{ leaks: LeakScan; figures: Record<string, number | string> }> {
  const t0 = Date.now();
  // Every write made in Keap (its outcome may stay in-progress: see the check below).
  const accounted = (w: Awaited<ReturnType<typeof tallyWrites>>) =>
    w.createdOnce + (o.killedClaimsAllowed ? w.claimedNotCreated : 0) === w.sent;
  const settled = await until(
    async () => accounted(await tallyWrites(sys, o.tag, o.sent)),
    o.inSyncTimeoutMs,
    500,
  );
  o.progress?.(`writes settled: ${settled} after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  // The writes created records: ask for each list at once (as `keap-sync enqueue` does) instead of
  // waiting for the schedule, and again every 10 s while the mirror still differs.
  let asked = 0;
  const inSync = await until(
    async () => {
      if (Date.now() - t0 >= asked * 10_000) {
        asked++;
        for (const resource of sys.resources)
          await sys.stack.deps.queue.send({
            kind: 'sync',
            account: DRILL_ACCOUNT,
            resource,
            mode: 'incremental',
          });
      }
      return (await sys.differences()).length === 0;
    },
    o.inSyncTimeoutMs,
    500,
  );
  const inSyncSeconds = (Date.now() - t0) / 1000;
  o.progress?.(`in sync: ${inSync} after ${inSyncSeconds.toFixed(1)} s`);
  sys.stopScheduler();
  let queued = 0;
  await until(
    async () => {
      const d = await queueDepth(sys.stack.sqs.client, sys.stack.sqs.queue.queueUrl);
      queued = d.visible + d.notVisible + d.delayed;
      return queued === 0;
    },
    15_000,
    500,
  );
  o.progress?.(`${queued} messages queued after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const diffs = await sys.differences();
  checks.add(
    'mirror == Keap record for record afterwards',
    inSync && diffs.length === 0,
    diffs.length === 0 ? `every list matches (${sys.resources.length} lists)` : diffs.join('; '),
  );
  const w = await tallyWrites(sys, o.tag, o.sent);
  checks.add(
    'no create made twice',
    w.createdTwice === 0,
    `${w.createdTwice} of ${w.sent} writes created twice`,
  );
  checks.add(
    o.killedClaimsAllowed
      ? 'no write job lost (created once, or held by a killed worker and readable as such)'
      : 'no write job lost',
    settled && accounted(w),
    `${w.createdOnce} of ${w.sent} created once in Keap, ${w.notCreated} not created ` +
      `(${w.claimedNotCreated} claimed by a killed attempt); outcome recorded done for ${w.done}`,
  );
  const dead = await dlqDepth(sys);
  checks.add('no dead letters', dead === 0, `${dead} in the dead-letter queue`);
  const leaks = await scanForKeys(sys, o.keys);
  const found = Object.entries(leaks.found);
  checks.add(
    'the key appears nowhere',
    found.length === 0,
    found.length === 0
      ? `0 occurrences in ${Object.entries(leaks.scanned)
          .map(([k, v]) => `${v} ${k}`)
          .join(', ')}`
      : found.map(([k, v]) => `${v} in ${k}`).join(', '),
  );
  const transient = tallyTransient(sys.allLogLines());
  return {
    leaks,
    figures: {
      'seconds to in-sync after recovery': Number(inSyncSeconds.toFixed(1)),
      'write jobs': w.sent,
      // A write that reached Keap while its outcome could not be recorded (the state table down) stays
      // in-progress until worker.writeTakeoverAfterMs; its message waits in the queue until then.
      'write outcomes left in-progress': w.unresolved,
      'writes held by a killed attempt (not repeated)': w.claimedNotCreated,
      'messages still queued at the end': queued,
      'jobs failed (transient)': transient.jobsFailed,
      'jobs recovered': transient.jobsRecovered,
      'retries exhausted': transient.retriesExhausted,
      'Keap requests retried': transient.requestRetries,
    },
  };
}

/** The system the outage and key drills share: in-process workers, slow pages, relaxed limits. */
function startInProcessDrill(o: DrillOptions, key: string, spareKeys: string[] = []): Promise<DrillSystem> {
  return startDrillSystem({
    contacts: o.contacts ?? 3000,
    seed: o.seed,
    key,
    ...(spareKeys.length > 0 ? { spareKeys } : {}),
    limits: 'relaxed',
    pageLatency: SLOW_PAGES,
    faults: o.faults,
    // Lambda kills a timed-out invocation; the local poller cannot, and an abandoned one that goes on
    // would queue a second copy of its job. A 30 s timeout keeps a busy 2-core machine clear of that.
    worker: { timeoutSeconds: 30 },
    visibilityTimeoutSec: 36,
  });
}

async function waitMidSync(sys: DrillSystem, calls: number): Promise<boolean> {
  await until(async () => (await sys.keap.arrivals()).length >= calls, 60_000, 50);
  return (await sys.differences()).length > 0;
}

/** DynamoDB unreachable mid-sync: no Keap call while it is down; the jobs resume; nothing lost or doubled. */
export async function dynamoOutage(o: DrillOptions): Promise<DrillReport> {
  const started = Date.now();
  const key = plantedKey('dynamo');
  const sys = await startInProcessDrill(o, key);
  const checks = new Checks();
  try {
    await sys.startWorkers(2, 2);
    sys.startScheduler(1_000);
    const sent = await sendWrites(sys, 'DDB', 6);
    const mid = await waitMidSync(sys, 4);
    checks.add(
      'cut in the middle of a sync',
      mid,
      mid ? 'lists still being read at the cut' : 'already in sync',
    );
    const before = (await sys.keap.arrivals()).length;
    sys.links.dynamo.cut();
    const cutAt = Date.now();
    o.progress?.(`DynamoDB cut after ${before} Keap calls; down for ${o.outageMs / 1000} s`);
    await sleep(o.outageMs);
    const restoredAt = Date.now();
    sys.links.dynamo.restore();
    o.progress?.('DynamoDB restored');
    // A call the ledger granted just before the cut can still reach Keap a moment after it: the
    // system cannot know yet. Calls after IN_FLIGHT_GRACE_MS were started while DynamoDB was down.
    const arrivals = await sys.keap.arrivals();
    const inFlight = arrivals.filter((a) => a.t >= cutAt && a.t < cutAt + IN_FLIGHT_GRACE_MS).length;
    const during = arrivals.filter((a) => a.t >= cutAt + IN_FLIGHT_GRACE_MS && a.t < restoredAt);
    const offsets = during.map((a) => `${a.method} ${a.path} +${a.t - cutAt} ms`).join(', ');
    checks.add(
      'not one Keap call while DynamoDB was down',
      during.length === 0,
      `${during.length} calls arrived at Keap in the ${((restoredAt - cutAt) / 1000).toFixed(1)} s outage` +
        `${offsets ? ` (${offsets})` : ''}; ${inFlight} in flight at the cut (first ${IN_FLIGHT_GRACE_MS} ms)`,
    );
    const s = await settle(sys, checks, {
      tag: 'DDB',
      sent,
      keys: [key],
      inSyncTimeoutMs: 60_000 + o.outageMs,
      progress: o.progress,
    });
    return report('dynamo-outage', started, checks, s.leaks, {
      'outage s': o.outageMs / 1000,
      'Keap calls before the cut': before,
      'Keap calls during the outage': during.length,
      'Keap calls in flight at the cut': inFlight,
      'Keap calls in all': (await sys.keap.arrivals()).length,
      'connections refused while down': sys.links.dynamo.stats.refused,
      ...s.figures,
    });
  } finally {
    await sys.close();
  }
}

/** SQS unreachable mid-sync: the scheduler and the workers recover without a restart, no job lost. */
export async function sqsOutage(o: DrillOptions): Promise<DrillReport> {
  const started = Date.now();
  const key = plantedKey('sqs');
  const sys = await startInProcessDrill(o, key);
  const checks = new Checks();
  try {
    const pollers: SqsLambdaPoller[] = await sys.startWorkers(2, 2);
    sys.startScheduler(1_000);
    const sent = await sendWrites(sys, 'SQS', 6);
    const mid = await waitMidSync(sys, 4);
    checks.add(
      'cut in the middle of a sync',
      mid,
      mid ? 'lists still being read at the cut' : 'already in sync',
    );
    const schedulerFailuresBefore = sys.scheduler.failures;
    sys.links.sqs.cut();
    const cutAt = Date.now();
    o.progress?.(`SQS cut; down for ${o.outageMs / 1000} s`);
    await sleep(o.outageMs);
    const receivedAtRestore = pollers.reduce((n, p) => n + p.stats.messagesReceived, 0);
    sys.links.sqs.restore();
    const restoredAt = Date.now();
    o.progress?.('SQS restored');
    const schedulerBack = await until(() => (sys.scheduler.lastSuccessAt ?? 0) > restoredAt, 30_000);
    checks.add(
      'the scheduler recovered without a restart',
      schedulerBack,
      `${sys.scheduler.failures - schedulerFailuresBefore} ticks failed while SQS was down; ` +
        `${schedulerBack ? 'next tick after the restore succeeded' : 'no tick succeeded after the restore'}`,
    );
    const workersBack = await until(
      () =>
        pollers.every((p) => p.running) &&
        pollers.reduce((n, p) => n + p.stats.messagesReceived, 0) > receivedAtRestore,
      60_000,
    );
    const receiveErrors = pollers.reduce((n, p) => n + p.stats.receiveErrors, 0);
    const felt =
      sys.links.sqs.stats.refused + receiveErrors + (sys.scheduler.failures - schedulerFailuresBefore);
    checks.add(
      'the outage was felt',
      felt > 0,
      `${sys.links.sqs.stats.refused} connections refused, ${receiveErrors} receive errors, ` +
        `${sys.scheduler.failures - schedulerFailuresBefore} scheduler ticks failed`,
    );
    checks.add(
      'the workers recovered without a restart',
      workersBack,
      `the same ${pollers.length} pollers, ${receiveErrors} receive errors while down, receiving again: ${workersBack ? 'yes' : 'no'}`,
    );
    const s = await settle(sys, checks, {
      tag: 'SQS',
      sent,
      keys: [key],
      inSyncTimeoutMs: 90_000 + o.outageMs,
      progress: o.progress,
    });
    return report('sqs-outage', started, checks, s.leaks, {
      'outage s': (restoredAt - cutAt) / 1000,
      'scheduler ticks failed': sys.scheduler.failures - schedulerFailuresBefore,
      'poller receive errors': receiveErrors,
      'connections refused while down': sys.links.sqs.stats.refused,
      ...s.figures,
    });
  } finally {
    await sys.close();
  }
}

/** Worker processes SIGKILLed at random moments during a backfill mixed with write jobs. */
export async function workerKills(o: DrillOptions): Promise<DrillReport> {
  const started = Date.now();
  const key = plantedKey('kills');
  const kills = o.kills ?? 20;
  const sys = await startDrillSystem({
    contacts: o.contacts ?? 3000,
    seed: o.seed,
    key,
    limits: 'relaxed',
    pageLatency: SLOW_PAGES,
    faults: o.faults,
    worker: { timeoutSeconds: 10, leaseTtlMs: 15_000 },
    visibilityTimeoutSec: 10,
  });
  const checks = new Checks();
  const rng = new Prng(o.seed ?? 5, 9);
  try {
    sys.spawnWorker(2);
    sys.spawnWorker(2);
    sys.startScheduler(1_000);
    const sent: SentWrite[] = [];
    sent.push(...(await sendWrites(sys, 'KILL', 4)));
    const mid = await waitMidSync(sys, 2);
    checks.add('kills start during the backfill', mid, mid ? 'lists still being read' : 'already in sync');
    // Spread the kills over the outage time: each one at a random moment of its share.
    const gap = Math.max(200, o.outageMs / kills);
    let killed = 0;
    for (let i = 0; i < kills; i++) {
      await sleep(Math.round(gap * (0.3 + 1.4 * rng.next())));
      const live = sys.workerProcesses();
      const victim = live.length > 0 ? rng.pick(live) : undefined;
      if (victim) {
        victim.child.kill('SIGKILL');
        await victim.exited;
        killed++;
      }
      sys.spawnWorker(2);
      if (i % 2 === 0) sent.push(...(await sendWrites(sys, 'KILL', 2, sent.length)));
      o.progress?.(`kill ${killed}/${kills} (${victim?.name ?? 'none alive'})`);
    }
    const s = await settle(sys, checks, {
      tag: 'KILL',
      sent,
      keys: [key],
      inSyncTimeoutMs: 120_000,
      progress: o.progress,
      killedClaimsAllowed: true,
    });
    checks.add('every kill landed', killed === kills, `${killed} of ${kills} SIGKILLs`);
    return report('worker-kills', started, checks, s.leaks, {
      SIGKILLs: killed,
      'worker processes started': sys.workerProcesses().length + killed,
      'Keap calls': (await sys.keap.arrivals()).length,
      ...s.figures,
    });
  } finally {
    await sys.close();
  }
}

/** The key revoked mid-run, then a new one stored: at most one call per worker, then a clean resume. */
export async function keyRotation(o: DrillOptions): Promise<DrillReport> {
  const started = Date.now();
  const oldKey = plantedKey('old');
  const newKey = plantedKey('new');
  const sys = await startInProcessDrill(o, oldKey, [newKey]);
  const checks = new Checks();
  const workers = 4;
  try {
    await sys.startWorkers(2, 2);
    sys.startScheduler(1_000);
    const sent = await sendWrites(sys, 'KEY', 4);
    const mid = await waitMidSync(sys, 4);
    checks.add('revoked in the middle of a sync', mid, mid ? 'lists still being read' : 'already in sync');
    await sys.keap.setFaults({ revokedKeys: [{ key: oldKey, from: Date.now() }] });
    o.progress?.('key revoked');
    const stopped = await until(
      async () => (await sys.stack.deps.accounts.getStatus(DRILL_ACCOUNT)).state === 'key-rejected',
      30_000,
    );
    checks.add(
      'the account stops on the rejected key',
      stopped,
      stopped ? 'state key-rejected' : 'still active',
    );
    // Writes sent while the account is stopped wait for the new key (parked, never dropped).
    sent.push(...(await sendWrites(sys, 'KEY', 2, sent.length)));
    await sleep(o.outageMs);
    const oldId = keyFingerprint(oldKey);
    const rejected = (await sys.keap.arrivals()).filter((a) => a.keyId === oldId && a.status === 401);
    checks.add(
      'at most one rejected call per worker',
      rejected.length <= workers,
      `${rejected.length} calls answered 401 (${workers} workers) in ${(o.outageMs / 1000).toFixed(0)} s with the revoked key`,
    );
    const storedAt = Date.now();
    sys.stack.secrets.put(DRILL_SECRET_ID, newKey);
    o.progress?.('new key stored');
    const resumed = await until(
      async () => (await sys.stack.deps.accounts.getStatus(DRILL_ACCOUNT)).state === 'active',
      30_000,
    );
    checks.add('the account resumes with the new key', resumed, resumed ? 'state active' : 'still stopped');
    const s = await settle(sys, checks, {
      tag: 'KEY',
      sent,
      keys: [oldKey, newKey],
      inSyncTimeoutMs: 90_000,
      progress: o.progress,
    });
    const arrivals = await sys.keap.arrivals();
    const late401 = arrivals.filter((a) => a.status === 401 && a.t > storedAt).length;
    checks.add(
      'no 401 once the new key is stored',
      late401 === 0,
      `${late401} calls answered 401 afterwards`,
    );
    return report('key-rotation', started, checks, s.leaks, {
      '401s': rejected.length,
      'calls with the new key': arrivals.filter((a) => a.keyId === keyFingerprint(newKey)).length,
      ...s.figures,
    });
  } finally {
    await sys.close();
  }
}

function report(
  drill: DrillName,
  started: number,
  checks: Checks,
  leaks: LeakScan,
  figures: Record<string, number | string>,
): DrillReport {
  return {
    drill,
    ok: checks.list.every((c) => c.ok),
    seconds: Number(((Date.now() - started) / 1000).toFixed(1)),
    checks: checks.list,
    figures,
    leaks,
  };
}

export const DRILLS: Record<DrillName, (o: DrillOptions) => Promise<DrillReport>> = {
  'dynamo-outage': dynamoOutage,
  'sqs-outage': sqsOutage,
  'worker-kills': workerKills,
  'key-rotation': keyRotation,
};

/** A drill's report as the script prints it. */
export function formatDrill(r: DrillReport): string {
  const lines = [`drill ${r.drill}: ${r.ok ? 'PASSED' : 'FAILED'} in ${r.seconds} s`];
  for (const c of r.checks) lines.push(`  ${c.ok ? 'ok  ' : 'FAIL'}  ${c.name}: ${c.detail}`);
  lines.push(
    `  figures: ${Object.entries(r.figures)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );
  return lines.join('\n');
}
