// Benchmark: `npm run bench:events` (prints a report; not a test). Random creates, updates and deletes
// in the Keap sandbox, synced by the real worker into the local mirror, published by the publisher
// Lambda's handler to a local EventBridge stub (and written to events.jsonl by the local runtime):
// exactly one event per change, none out of order, none for unchanged writes, the latency, the cost
// per 1,000 changes from list prices; then the fault drill (20% of PutEvents entries rejected).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_OPTIONS, type EventsBenchResult, type PhaseResult, runEventsBench } from './scenario.ts';

const HELP = `Usage: npm run bench:events -- [options]

Makes --changes random changes (about 60% updates, 25% creates, 15% deletes; 70% contacts, 30%
companies) in the in-process Keap sandbox, --round changes at a time; after each round the worker syncs
them (an incremental sync per list, hook delete jobs for the deletions). Every mirror write goes, as the
mirror's stream would carry it, to the publisher Lambda's handler in batches of --batch, which puts the
events on a local EventBridge stub. Checks one event per change (by event id), order per record, no
event for a full re-sync that changes nothing; prints latency (change in the sandbox to the event
accepted, and to the line in events.jsonl) and the cost per 1,000 changes from list prices. Then the
fault drill: for --drill-seconds the stub rejects --reject of the entries with ThrottlingException
while changes keep coming; nothing may be lost or duplicated.

Options
  --changes <n>         changes in the main phase (default ${DEFAULT_OPTIONS.changes})
  --round <n>           changes per round (default ${DEFAULT_OPTIONS.roundSize})
  --contacts <n>        contacts in the sandbox (default ${DEFAULT_OPTIONS.contacts})
  --batch <n>           stream records per publisher invocation (default ${DEFAULT_OPTIONS.batchSize})
  --drill-seconds <s>   fault drill length, 0 for none (default ${DEFAULT_OPTIONS.drillSeconds})
  --drill-round <n>     changes per round during the drill (default ${DEFAULT_OPTIONS.drillRoundSize})
  --reject <share>      share of entries rejected in the drill (default ${DEFAULT_OPTIONS.rejectShare})
  --seed <n>            sandbox and fault seed (default ${DEFAULT_OPTIONS.seed})
  --json <file>         also write the figures as JSON
  --help                this text

Example
  npm run bench:events -- --changes 2000 --drill-seconds 10
`;

/** us-east-1 list prices. */
const PRICE = {
  /** EventBridge custom events put on a bus, per event (billed per 64 KB chunk). */
  event: 1.0 / 1_000_000,
  /** Lambda arm64, per GB-second. */
  gbSecond: 0.0000133334,
  /** Lambda, per request. */
  request: 0.2 / 1_000_000,
};
/** The publisher's memory (infra setting publisherMemoryMb's default). */
const PUBLISHER_MB = 256;

const n = (x: number) => x.toLocaleString('en-US');
const ms = (x: number) => `${n(Math.round(x))} ms`;

function phaseLines(p: PhaseResult): string[] {
  const reasons = Object.entries(p.deadLetterReasons)
    .map(([r, c]) => `${r} ${n(c)}`)
    .join(', ');
  return [
    `  changes          ${n(p.changes.total)} (updates ${n(p.changes.updates)}, creates ${n(p.changes.creates)}, deletes ${n(p.changes.deletes)}) in ${n(p.rounds)} rounds, ${p.seconds.toFixed(1)} s`,
    `  EventBridge      ${n(p.accepted)} events accepted, ${n(p.distinct)} distinct event ids, ${n(p.duplicates)} duplicates`,
    `                   ${n(p.missing)} changes without an event, ${n(p.unexpected)} events for no change, ${n(p.outOfOrder)} out of order per record`,
    `                   ${n(p.deadLettered)} dead-lettered${reasons ? ` (${reasons})` : ''}; ${n(p.entriesSent)} entries sent in ${n(p.calls)} PutEvents calls, ${n(p.entriesRejected)} rejected; ${n(p.invocations)} publisher invocations`,
    `  latency          change -> EventBridge accepted: p50 ${ms(p.latency.p50)}, p95 ${ms(p.latency.p95)}, max ${ms(p.latency.max)}`,
    `  events.jsonl     ${n(p.localLines)} lines, ${n(p.localDistinct)} distinct, ${n(p.localMissing)} changes missing; change -> line: p50 ${ms(p.localLatency.p50)}, p95 ${ms(p.localLatency.p95)}`,
  ];
}

function costLines(p: PhaseResult): string[] {
  const per = 1_000 / Math.max(1, p.changes.total);
  const events = p.billableEvents * per;
  const requests = p.invocations * per;
  const seconds = (p.invocationMs / 1000) * per;
  const gbs = seconds * (PUBLISHER_MB / 1024);
  const eventCost = events * PRICE.event;
  const lambdaCost = gbs * PRICE.gbSecond + requests * PRICE.request;
  return [
    'Publishing cost per 1,000 changes (us-east-1 list prices; Lambda duration as measured locally):',
    `  EventBridge      ${events.toFixed(0)} events (64 KB chunks) x $1.00/M = $${eventCost.toFixed(6)}`,
    `  Lambda           ${requests.toFixed(1)} invocations x ${(p.invocationMs / Math.max(1, p.invocations)).toFixed(0)} ms = ${seconds.toFixed(2)} s x ${PUBLISHER_MB / 1024} GB = ${gbs.toFixed(3)} GB-s x $0.0000133334 + ${requests.toFixed(1)} x $0.20/M = $${lambdaCost.toFixed(6)}`,
    `  total            $${(eventCost + lambdaCost).toFixed(6)} per 1,000 changes (DynamoDB Streams reads by Lambda are free)`,
  ];
}

export function report(r: EventsBenchResult): string {
  const o = r.options;
  const lines = [
    `keap-sync events benchmark: seed ${o.seed}, sandbox ${n(o.contacts)} contacts, publisher batches of ${o.batchSize}, PutEvents attempts ${o.putAttempts}`,
    `Initial full sync: ${n(r.initial.records)} records mirrored, ${n(r.initial.events)} Created events (not counted below)`,
    '',
    'Main phase:',
    ...phaseLines(r.main),
    `  unchanged writes ${n(r.unchanged.writes)} mirror writes of a full re-sync -> ${n(r.unchanged.events)} events (${n(r.unchanged.localEvents)} in events.jsonl)`,
    '',
    ...costLines(r.main),
  ];
  if (r.drill) {
    lines.push(
      '',
      `Fault drill: ${o.drillSeconds} s with ${Math.round(o.rejectShare * 100)}% of PutEvents entries rejected (ThrottlingException), changes ${o.drillRoundSize} per round:`,
      ...phaseLines(r.drill),
      `  lost             ${n(r.drill.missing)} (neither published nor dead-lettered); duplicated ${n(r.drill.duplicates)}`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      changes: { type: 'string' },
      round: { type: 'string' },
      contacts: { type: 'string' },
      batch: { type: 'string' },
      'drill-seconds': { type: 'string' },
      'drill-round': { type: 'string' },
      reject: { type: 'string' },
      seed: { type: 'string' },
      json: { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const num = (name: string, v: string | undefined, fallback: number, min: number, max: number): number => {
    if (v === undefined) return fallback;
    const x = Number(v);
    if (!Number.isFinite(x) || x < min || x > max) {
      throw new Error(`--${name} must be a number from ${min} to ${max}; got "${v}".`);
    }
    return x;
  };
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-events-'));
  try {
    const result = await runEventsBench({
      ...DEFAULT_OPTIONS,
      changes: num('changes', values.changes, DEFAULT_OPTIONS.changes, 1, 1_000_000),
      roundSize: num('round', values.round, DEFAULT_OPTIONS.roundSize, 1, 10_000),
      contacts: num('contacts', values.contacts, DEFAULT_OPTIONS.contacts, 10, 100_000),
      batchSize: num('batch', values.batch, DEFAULT_OPTIONS.batchSize, 1, 10_000),
      drillSeconds: num('drill-seconds', values['drill-seconds'], DEFAULT_OPTIONS.drillSeconds, 0, 3_600),
      drillRoundSize: num('drill-round', values['drill-round'], DEFAULT_OPTIONS.drillRoundSize, 1, 10_000),
      rejectShare: num('reject', values.reject, DEFAULT_OPTIONS.rejectShare, 0, 0.9),
      seed: num('seed', values.seed, DEFAULT_OPTIONS.seed, 0, 2 ** 31),
      dataDir,
      progress: (line) => process.stderr.write(`${line}\n`),
    });
    process.stdout.write(`${report(result)}\n`);
    if (values.json) writeFileSync(values.json, `${JSON.stringify(result, null, 2)}\n`);
    const drillOk = !result.drill || (result.drill.missing === 0 && result.drill.duplicates === 0);
    const ok =
      result.main.missing === 0 &&
      result.main.duplicates === 0 &&
      result.main.unexpected === 0 &&
      result.main.outOfOrder === 0 &&
      result.unchanged.events === 0 &&
      drillOk;
    if (!ok) process.exitCode = 1;
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
