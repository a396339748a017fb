// Adapter (CLI): runs the Keap sandbox until SIGINT/SIGTERM. First stdout line: JSON with baseUrl and keys.
import { parseArgs } from 'node:util';
import type { GatewayLimits } from '../harness/gateway/rules.ts';
import {
  DEFAULT_TENANT,
  defaultKeys,
  RESOURCE_TYPES,
  type SandboxFaults,
  type SandboxOptions,
  startSandbox,
} from '../harness/sandbox/index.ts';
import { parsePageLatency } from '../harness/sandbox/latency.ts';

const HELP = `Keap sandbox: a local stand-in for Keap's REST v2 API and its rate-limiting gateway.

Usage: npm run sandbox -- [options]        (or: node scripts/sandbox.ts [options])

Binds 127.0.0.1 only. The first line on stdout is one JSON object:
  {"baseUrl":"http://127.0.0.1:PORT/crm","keys":[{"key":"...","tenant":"..."}],...}
Send a key as header X-Keap-API-Key. Stop with Ctrl-C (SIGINT) or SIGTERM.

Server and data
  --port <n>                 port, 0 picks a free one (default 0)
  --seed <n>                 dataset/keys/faults seed (default 1)
  --contacts <n>             contacts in the dataset; other types scale from it (default 5000)
  --lazy                     generate contacts on demand from (seed, index), so 1,000,000 fit in
                             memory: contacts are read-only and carry no tags, the other lists hold
                             their minimum counts; GET contacts pages by id or update_time and
                             filters on start_update_time, end_update_time and ids
  --keys <n>                 number of generated keys (default 2)
  --tenant <id>              tenant of the generated keys (default ${DEFAULT_TENANT})
  --last-page-token <mode>   "empty" (next_page_token: "") or "absent" on the last page (default empty)
  --arrival-log <file>       append one JSON line per request: {t,tenant,keyId,method,path,status,rule?}

Gateway limits (default: Keap's 10/s spike, 240/min, 30,000/day, tenant 10,000/min and 250,000/day)
  --spike-interval-ms <ms>   --minute-limit <n>   --minute-window-ms <ms>   --day-limit <n>
  --tenant-minute-limit <n>  --tenant-day-limit <n>   --quota-scope tenant|key

Latency and faults (rates are shares 0..1; times are ms after start-up)
  --latency-min <ms> --latency-max <ms>   random latency before a request is stamped and judged
  --page-latency <model>     time to build each list page, "<base ms>+<ms per record>/record",
                             e.g. 300+2/record (a 1,000-record page: 2.3 s); off by default
  --latency-jitter <j>       page latency times a uniform factor in [1-j, 1+j], j from 0 to 1 (default 0)
  --server-error-rate <r>    500/502/503 with a JSON or HTML body
  --hang-rate <r>            never answer
  --html-error-rate <r>      502/503 HTML page
  --malformed-json-rate <r>  200 with truncated JSON
  --slow-ms <ms>             extra delay on every response
  --storm <from>,<until>     every request in [from, until) gets 429
  --revoke <n>@<at>          key number n (1-based) answers 401 from <at> on

REST hooks (/rest/v1/hooks: handshake, batched deliveries, retries, Inactive after 4 failures or a 410)
  --hook-time-scale <f>      every delay of Keap's delivery policy times f, e.g. 0.01 (default 1)

Admin (no key, not counted): GET {baseUrl}/__admin/health, GET {baseUrl}/__admin/hooks, POST {baseUrl}/__admin/mutate
  {"type":"contacts","update":5,"create":2,"delete":1}, POST {baseUrl}/__admin/faults {"hangRate":0.1}

Examples
  npm run sandbox -- --port 8787
  npm run sandbox -- --port 0 --contacts 500 --seed 7 --arrival-log arrivals.jsonl
  npm run sandbox -- --minute-limit 20 --latency-min 20 --latency-max 80 --server-error-rate 0.05
  npm run sandbox -- --storm 60000,90000 --revoke 2@120000
  npm run sandbox -- --contacts 1000000 --lazy --page-latency 300+2/record --latency-jitter 0.2
`;

/** A command-line flag is missing a value or has a bad one. */
class FlagError extends Error {
  readonly flag: string;
  constructor(flag: string, message: string) {
    super(`--${flag}: ${message}`);
    this.name = 'FlagError';
    this.flag = flag;
  }
}

const STRING_FLAGS = [
  'port',
  'seed',
  'contacts',
  'keys',
  'tenant',
  'last-page-token',
  'arrival-log',
  'spike-interval-ms',
  'minute-limit',
  'minute-window-ms',
  'day-limit',
  'tenant-minute-limit',
  'tenant-day-limit',
  'quota-scope',
  'latency-min',
  'latency-max',
  'server-error-rate',
  'hang-rate',
  'html-error-rate',
  'malformed-json-rate',
  'slow-ms',
  'storm',
  'revoke',
  'hook-time-scale',
  'page-latency',
  'latency-jitter',
] as const;
type Flag = (typeof STRING_FLAGS)[number];

function parseCli(
  argv: string[],
):
  | { help: true }
  | { help: false; options: SandboxOptions; storm?: [number, number]; revoke?: [number, number] } {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      help: { type: 'boolean', short: 'h' },
      lazy: { type: 'boolean' },
      ...Object.fromEntries(STRING_FLAGS.map((f) => [f, { type: 'string' as const }])),
    },
  });
  if (values.help) return { help: true };
  const str = (f: Flag): string | undefined => {
    const v = (values as Record<string, string | boolean | undefined>)[f];
    return typeof v === 'string' ? v : undefined;
  };
  const int = (f: Flag, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined => {
    const v = str(f);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || n < min || n > max)
      throw new FlagError(f, `expected a whole number from ${min} to ${max}, got "${v}".`);
    return n;
  };
  const share = (f: Flag): number | undefined => {
    const v = str(f);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1)
      throw new FlagError(f, `expected a share from 0 to 1, got "${v}".`);
    return n;
  };
  const pair = (f: Flag, sep: string): [number, number] | undefined => {
    const v = str(f);
    if (v === undefined) return undefined;
    const [a, b, ...rest] = v.split(sep);
    const x = Number(a);
    const y = Number(b);
    if (
      rest.length > 0 ||
      a === undefined ||
      b === undefined ||
      a === '' ||
      b === '' ||
      !Number.isInteger(x) ||
      !Number.isInteger(y) ||
      x < 0 ||
      y < 0
    )
      throw new FlagError(f, `expected two whole numbers separated by "${sep}", got "${v}".`);
    return [x, y];
  };
  const choice = <T extends string>(f: Flag, allowed: readonly T[]): T | undefined => {
    const v = str(f);
    if (v === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(v))
      throw new FlagError(f, `expected one of ${allowed.join(', ')}, got "${v}".`);
    return v as T;
  };

  const seed = int('seed', -2_147_483_648, 2_147_483_647) ?? 1;
  const keyCount = int('keys', 1, 100) ?? 2;
  const tenant = str('tenant') ?? DEFAULT_TENANT;
  if (tenant.trim() === '') throw new FlagError('tenant', 'must not be empty.');
  const limits: Partial<GatewayLimits> = {};
  const setLimit = (k: keyof Omit<GatewayLimits, 'quotaScope'>, f: Flag, min: number): void => {
    const v = int(f, min);
    if (v !== undefined) limits[k] = v;
  };
  setLimit('spikeIntervalMs', 'spike-interval-ms', 0);
  setLimit('minuteLimit', 'minute-limit', 1);
  setLimit('minuteWindowMs', 'minute-window-ms', 1);
  setLimit('dayLimit', 'day-limit', 1);
  setLimit('tenantMinuteLimit', 'tenant-minute-limit', 1);
  setLimit('tenantDayLimit', 'tenant-day-limit', 1);
  const scope = choice('quota-scope', ['tenant', 'key'] as const);
  if (scope) limits.quotaScope = scope;

  const latencyMin = int('latency-min', 0);
  const latencyMax = int('latency-max', 0);
  if (latencyMin !== undefined && latencyMax !== undefined && latencyMax < latencyMin)
    throw new FlagError('latency-max', `must not be below --latency-min (${latencyMin}).`);
  const faults: SandboxFaults = {};
  const rates: Array<[keyof SandboxFaults, Flag]> = [
    ['serverErrorRate', 'server-error-rate'],
    ['hangRate', 'hang-rate'],
    ['htmlErrorRate', 'html-error-rate'],
    ['malformedJsonRate', 'malformed-json-rate'],
  ];
  for (const [k, f] of rates) {
    const v = share(f);
    if (v !== undefined) (faults as Record<string, number>)[k] = v;
  }
  const slow = int('slow-ms', 0);
  if (slow !== undefined) faults.slowMs = slow;
  const storm = pair('storm', ',');
  if (storm && storm[1] < storm[0]) throw new FlagError('storm', 'until must not be before from.');
  const revoke = pair('revoke', '@');
  if (revoke && (revoke[0] < 1 || revoke[0] > keyCount))
    throw new FlagError('revoke', `key number must be from 1 to ${keyCount}, got ${revoke[0]}.`);

  const options: SandboxOptions = {
    host: '127.0.0.1',
    port: int('port', 0, 65_535) ?? 0,
    seed,
    contacts: int('contacts', 0, 1_000_000) ?? 5000,
    keys: defaultKeys(seed, keyCount, tenant),
    limits,
    faults,
    lastPageToken: choice('last-page-token', ['empty', 'absent'] as const) ?? 'empty',
  };
  const hookScale = str('hook-time-scale');
  if (hookScale !== undefined) {
    const n = Number(hookScale);
    if (hookScale.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 10)
      throw new FlagError('hook-time-scale', `expected a factor above 0 and at most 10, got "${hookScale}".`);
    options.hooks = { timeScale: n };
  }
  if (values.lazy === true) options.lazy = true;
  const jitter = share('latency-jitter');
  const pageLatency = str('page-latency');
  if (pageLatency !== undefined) {
    try {
      options.pageLatency = parsePageLatency(pageLatency, jitter);
    } catch (err) {
      throw new FlagError('page-latency', err instanceof Error ? err.message : String(err));
    }
  } else if (jitter !== undefined) throw new FlagError('latency-jitter', 'needs --page-latency.');
  if (latencyMin !== undefined || latencyMax !== undefined) {
    const min = latencyMin ?? 0;
    options.latencyMs = { min, max: latencyMax ?? min };
  }
  const log = str('arrival-log');
  if (log !== undefined) {
    if (log.trim() === '') throw new FlagError('arrival-log', 'needs a file path.');
    options.arrivalLogPath = log;
  }
  const out: { help: false; options: SandboxOptions; storm?: [number, number]; revoke?: [number, number] } = {
    help: false,
    options,
  };
  if (storm) out.storm = storm;
  if (revoke) out.revoke = revoke;
  return out;
}

async function main(): Promise<void> {
  let parsed: ReturnType<typeof parseCli>;
  try {
    parsed = parseCli(process.argv.slice(2));
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`sandbox: ${message}\nRun with --help for the options.\n`);
    process.exitCode = 2;
    return;
  }
  if (parsed.help) {
    process.stdout.write(HELP);
    return;
  }
  const options = parsed.options;
  const started = Date.now();
  const faults = options.faults ?? {};
  if (parsed.storm) faults.storm429 = { from: started + parsed.storm[0], until: started + parsed.storm[1] };
  const revokedKey = parsed.revoke ? options.keys?.[parsed.revoke[0] - 1] : undefined;
  if (parsed.revoke && revokedKey)
    faults.revokedKeys = [{ key: revokedKey.key, from: started + parsed.revoke[1] }];
  options.faults = faults;

  const sandbox = await startSandbox(options);
  const counts: Record<string, number> = {};
  for (const type of RESOURCE_TYPES) counts[type] = sandbox.dataset.table(type).size;
  if (sandbox.lazyContacts) counts.contacts = sandbox.lazyContacts.count;
  process.stdout.write(
    `${JSON.stringify({ baseUrl: sandbox.baseUrl, keys: sandbox.keys, seed: options.seed, counts, pid: process.pid })}\n`,
  );
  process.stderr.write(`Keap sandbox listening at ${sandbox.baseUrl} (Ctrl-C to stop)\n`);

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`Keap sandbox: ${signal}, closing\n`);
    sandbox.close().then(
      () => {
        process.exitCode = 0;
      },
      (err: unknown) => {
        process.stderr.write(
          `Keap sandbox: close failed (${err instanceof Error ? err.message : String(err)})\n`,
        );
        process.exitCode = 1;
      },
    );
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

await main();
