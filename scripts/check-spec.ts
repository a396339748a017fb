// Adapter (CLI): checks the Keap client against Keap's official v2 OpenAPI file. Runs the client against
// the Keap sandbox through Stoplight Prism's validating proxy and fails on any request or response
// violation except the two the file cannot know about: the X-Keap-API-Key header (the file declares
// only OAuth2) and 429 (undeclared; the ledger's to prevent, so counted and reported on their own).
//
// How Prism's findings are read: Prism proxy (without --errors) forwards every request and puts the
// violations of each exchange, request and response, as JSON in an `sl-violations` response header.
// This script wraps its own `fetch` to read that header per request, so each violation comes with the
// request that caused it; Prism's log ("Violation: ..." lines) is counted as a cross-check. `--errors`
// does not work with this file: every request lacks the declared OAuth2 token, so Prism answers each
// one with its own 401 before forwarding, and any other request violation with its own 422.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { type RunningDynamo, startDynalite } from '#harness/emulators/dynamo.ts';
import { type RunningSandbox, startSandbox } from '#harness/sandbox/index.ts';
import {
  KeapClient,
  MODEL_OBJECTS,
  RESOURCE_NAMES,
  RESOURCES,
  type ResourceName,
} from '#shared/keap/index.ts';
import { createLedgerTable, DynamoLedgerStore, QuotaLedger } from '#shared/quota/index.ts';

const HELP = `Usage: npm run check:spec -- <keap-v2-openapi.yml> [options]

Checks the Keap client against Keap's official REST v2 OpenAPI file with Stoplight Prism's validating
proxy: starts the Keap sandbox (Keap's own rate limits) and dynalite for the quota ledger, starts
\`prism proxy <file> <sandbox>\` on 127.0.0.1 (a free port), and sends through it what the client
sends Keap: a full read of every list (tag applications for every tag), an incremental read of every
list, each list's id filter, every custom-field model, a contact upsert (create, then update), a
tag applied and removed, and a note. Exit 1 on any request or response violation other than the
undeclared X-Keap-API-Key header and the undeclared 429 status (429s are counted and reported on
their own), or if a step fails; exit 2 on bad arguments.

The file is Keap's, not part of this project: get it from Keap's SDK repository on GitHub,
github.com/infusionsoft/keap-sdk, file sdks/v2/swagger.yml (the REST v2 OpenAPI 3.1 file, MIT).

Options:
  --contacts N      sandbox dataset size (default 2500: contacts, orders and notes span several pages)
  --page-size N     list page size (default 1000, the size a sync uses)
  --timeout-ms MS   bound on the whole run (default 240000); Prism and the sandbox are stopped either way
  --json FILE       also write the findings as JSON
  --help            this text

Examples:
  npm run check:spec -- ../shared/reference/keap-v2-openapi.yml
`;

interface Violation {
  location: string[];
  severity: string;
  code?: string | number;
  message: string;
}

interface Exchange {
  step: string;
  method: string;
  /** Path and query as sent (the API key is a header and never appears here). */
  url: string;
  status: number;
  violations: Violation[];
  /** Prism answered itself (problem+json from Prism): the request never reached the sandbox. */
  fromPrism: boolean;
  raw?: string;
}

interface Finding {
  method: string;
  path: string;
  location: string;
  severity: string;
  message: string;
  count: number;
  example: string;
}

const CANARY = 'canary';
const KEY_HEADER = 'request: the X-Keap-API-Key header (the file declares only OAuth2)';

function isApiKeyViolation(v: Violation): boolean {
  return v.location.length === 1 && v.location[0] === 'request' && String(v.code) === '401';
}

function isUndeclared429(v: Violation, status: number): boolean {
  return (
    status === 429 &&
    v.location.length === 1 &&
    v.location[0] === 'response' &&
    v.message.startsWith('Unable to match the returned status code')
  );
}

function parseViolations(raw: string | null): { list: Violation[]; truncated: boolean } {
  if (raw === null || raw === '') return { list: [], truncated: false };
  if (raw.startsWith('Too many violations!')) return { list: [], truncated: true };
  try {
    const parsed = JSON.parse(raw) as unknown;
    if (!Array.isArray(parsed)) return { list: [], truncated: true };
    return {
      list: parsed.map((v: Record<string, unknown>) => ({
        location: Array.isArray(v.location) ? v.location.map(String) : [],
        severity: String(v.severity ?? ''),
        code: typeof v.code === 'string' || typeof v.code === 'number' ? v.code : undefined,
        message: String(v.message ?? ''),
      })),
      truncated: false,
    };
  } catch {
    return { list: [], truncated: true };
  }
}

/** Prism, started detached (its own process group) so that it and any worker it forks stop together. */
class PrismProcess {
  readonly child: ChildProcess;
  log = '';
  #exited = false;

  constructor(file: string, upstream: string) {
    const require = createRequire(import.meta.url);
    const cli = require.resolve('@stoplight/prism-cli/dist/index.js');
    this.child = spawn(process.execPath, [cli, 'proxy', file, upstream, '-h', '127.0.0.1', '-p', '0'], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1', SCARF_ANALYTICS: 'false' },
    });
    const take = (chunk: Buffer): void => {
      this.log += chunk.toString('utf8');
    };
    this.child.stdout?.on('data', take);
    this.child.stderr?.on('data', take);
    this.child.once('exit', () => {
      this.#exited = true;
    });
  }

  get running(): boolean {
    return !this.#exited && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with Prism's address once it listens; rejects if it exits first or takes too long. */
  ready(timeoutMs: number): Promise<string> {
    return new Promise((resolveUrl, reject) => {
      const started = performance.now();
      const timer = setInterval(() => {
        const m = /Prism is listening on (http:\/\/[^\s]+)/.exec(this.log);
        if (m?.[1]) {
          clearInterval(timer);
          resolveUrl(m[1]);
        } else if (!this.running) {
          clearInterval(timer);
          reject(new Error(`Prism exited before listening:\n${tail(this.log, 20)}`));
        } else if (performance.now() - started > timeoutMs) {
          clearInterval(timer);
          reject(new Error(`Prism did not listen within ${timeoutMs} ms:\n${tail(this.log, 20)}`));
        }
      }, 50);
    });
  }

  /** SIGTERM to the whole group, SIGKILL after `graceMs`. */
  async stop(graceMs = 3_000): Promise<void> {
    if (!this.running || this.child.pid === undefined) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** Synchronous last resort (process exit). */
  kill(): void {
    if (this.running) this.signal('SIGKILL');
  }

  private signal(sig: NodeJS.Signals): void {
    const pid = this.child.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, sig);
    } catch {
      try {
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    }
  }
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

function fail(message: string): never {
  process.stderr.write(`check:spec: ${message}\nRun with --help for the options.\n`);
  process.exit(2);
}

function intOption(values: Record<string, unknown>, name: string, fallback: number, min: number): number {
  const v = values[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (typeof v !== 'string' || !/^\d+$/.test(v) || n < min)
    fail(`--${name}: expected a whole number >= ${min}.`);
  return n;
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    strict: true,
    allowPositionals: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      contacts: { type: 'string' },
      'page-size': { type: 'string' },
      'timeout-ms': { type: 'string' },
      json: { type: 'string' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1) fail("give the path of Keap's v2 OpenAPI file (one argument).");
  const file = resolve(positionals[0] ?? '');
  if (!existsSync(file)) fail(`${file} does not exist. Get it from Keap's SDK repository (see --help).`);
  if (!looksLikeOpenApi(file)) fail(`${file} does not look like an OpenAPI 3 file.`);
  const contacts = intOption(values, 'contacts', 2500, 1);
  const pageSize = intOption(values, 'page-size', 1000, 1);
  const timeoutMs = intOption(values, 'timeout-ms', 240_000, 10_000);

  const t0 = performance.now();
  const exchanges: Exchange[] = [];
  const stepErrors: Array<{ step: string; error: string }> = [];
  let step = 'start';
  let prism: PrismProcess | undefined;
  let sandbox: RunningSandbox | undefined;
  let dynamo: RunningDynamo | undefined;
  const realFetch = globalThis.fetch;

  let cleaned: Promise<void> | undefined;
  const cleanup = (): Promise<void> => {
    cleaned ??= (async () => {
      globalThis.fetch = realFetch;
      await prism?.stop().catch(() => prism?.kill());
      await sandbox?.close().catch(() => undefined);
      await dynamo?.close().catch(() => undefined);
    })();
    return cleaned;
  };
  process.once('exit', () => prism?.kill());
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      process.stderr.write(`check:spec: ${sig}, stopping Prism and the sandbox\n`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  const deadline = setTimeout(() => {
    process.stderr.write(`check:spec: FAILED: no result within ${timeoutMs} ms (step: ${step})\n`);
    void cleanup().finally(() => process.exit(1));
  }, timeoutMs);
  deadline.unref();

  try {
    process.stdout.write(`check:spec: ${file}\n`);
    dynamo = await startDynalite();
    await createLedgerTable(dynamo.client, 'ledger');
    const ledger = new QuotaLedger({
      store: new DynamoLedgerStore(dynamo.client, 'ledger'),
      settings: { tableName: 'ledger' }, // Keap's limits, as in production
    });
    sandbox = await startSandbox({ seed: 1, contacts }); // Keap's limits too
    const started = performance.now();
    prism = new PrismProcess(file, sandbox.baseUrl);
    const prismUrl = await prism.ready(Math.max(5_000, timeoutMs / 2));
    process.stdout.write(
      `sandbox ${sandbox.baseUrl} (${contacts} contacts), Prism ${prismUrl} (ready in ${Math.round(performance.now() - started)} ms)\n`,
    );

    globalThis.fetch = async (input, init) => {
      const res = await realFetch(input, init);
      const u = new URL(input instanceof Request ? input.url : String(input));
      const raw = res.headers.get('sl-violations');
      const { list, truncated } = parseViolations(raw);
      if (truncated)
        list.push({
          location: ['response'],
          severity: 'Error',
          message: 'sl-violations unreadable or truncated',
        });
      const type = res.headers.get('content-type') ?? '';
      exchanges.push({
        step,
        method: init?.method ?? (input instanceof Request ? input.method : 'GET'),
        url: `${u.pathname}${u.search}`,
        status: res.status,
        violations: list,
        fromPrism: type.includes('application/problem+json'),
        ...(truncated && raw ? { raw: raw.slice(0, 300) } : {}),
      });
      return res;
    };

    const tenant = sandbox.keys[0]?.tenant ?? 'sandbox.infusionsoft.com';
    const client = new KeapClient({
      apiKey: sandbox.keys[0]?.key ?? '',
      tenant,
      ledger,
      settings: { baseUrl: prismUrl, pageSize, waitBudgetMs: 120_000, timeoutMs: 30_000 },
    });

    const run = async (name: string, fn: () => Promise<unknown>): Promise<void> => {
      step = name;
      try {
        await fn();
      } catch (err) {
        stepErrors.push({
          step: name,
          error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
        });
      }
    };

    const idsOf = new Map<ResourceName, string[]>();
    let userId = '1';
    const lists = RESOURCE_NAMES.filter(
      (r): r is Exclude<ResourceName, 'tagApplications'> => r !== 'tagApplications',
    );
    for (const resource of lists) {
      await run(`full ${resource}`, async () => {
        const r = await client.readAll(resource);
        idsOf.set(
          resource,
          r.records.map((x) => x.id),
        );
        if (resource === 'users') userId = r.records[0]?.id ?? userId;
      });
    }
    const tagIds = idsOf.get('tags') ?? [];
    const contactIds = idsOf.get('contacts') ?? [];
    await run('full tagApplications (every tag)', async () => {
      for (const tagId of tagIds) await client.readAll('tagApplications', { tagId });
    });
    // A cursor 30 days before the data's end: the filters and newest-first reads return a part.
    const since = new Date(Date.UTC(2026, 5, 1)).toISOString();
    for (const resource of lists) {
      await run(`incremental ${resource}`, () => client.readAll(resource, { since }));
    }
    await run('incremental tagApplications', async () => {
      for (const tagId of tagIds.slice(0, 3)) await client.readAll('tagApplications', { tagId, since });
    });
    // The registry's id filter of each list that has one (`ids`, `tag_ids`, `task_ids`, ...).
    for (const resource of lists) {
      const idFilter = RESOURCES[resource].idFilter;
      if (!idFilter) continue;
      const ids = (idsOf.get(resource) ?? []).slice(0, 3).join(',');
      await run(`ids filter ${resource} (${idFilter})`, () =>
        client.readAll(resource, { filter: { [idFilter]: ids } }),
      );
    }
    for (const object of MODEL_OBJECTS) await run(`model ${object}`, () => client.getModel(object));

    let contactId = contactIds[0] ?? '1';
    const email = `spec-check-${Date.now()}@example.com`;
    await run('upsert contact (create)', async () => {
      const r = await client.upsertContact(
        { given_name: 'Spec', family_name: 'Check', email_addresses: [{ email, field: 'EMAIL1' }] },
        { duplicateOption: 'Email' },
      );
      contactId = r.contact.id;
    });
    await run('upsert contact (update)', () =>
      client.upsertContact(
        { given_name: 'Spec2', family_name: 'Check', email_addresses: [{ email, field: 'EMAIL1' }] },
        { duplicateOption: 'Email' },
      ),
    );
    const tagId = tagIds[0] ?? '1';
    await run('apply tag', () => client.applyTags(tagId, [contactId]));
    await run('remove tag', () => client.removeTags(tagId, [contactId]));
    await run('create note', () =>
      client.createNote(contactId, { user_id: userId, title: 'Spec check', text: 'Sent through Prism' }),
    );
    // Canary: one request the file forbids (page_size above its maximum of 1000), to prove that Prism
    // validates and that its findings are read. It is left out of the findings below.
    // It uses the sandbox's second key, outside the ledger, so it cannot cost the client's key a 429.
    const sandbox429 = sandbox.arrivals.filter((a) => a.status === 429);
    step = CANARY;
    await fetch(`${prismUrl}/rest/v2/contacts?page_size=1001`, {
      headers: { 'X-Keap-API-Key': sandbox.keys[1]?.key ?? '', Accept: 'application/json' },
    }).then((r) => r.text());
    step = 'done';
    globalThis.fetch = realFetch;
    const canary = exchanges.filter((x) => x.step === CANARY);
    exchanges.splice(0, exchanges.length, ...exchanges.filter((x) => x.step !== CANARY));
    const canarySeen = canary.some((x) =>
      x.violations.some((v) => v.location.join('.') === 'request.query.page_size'),
    );

    // ---- Findings ---------------------------------------------------------------------------------
    const findings = new Map<string, Finding>();
    let keyHeader = 0;
    let rateLimited = 0;
    let prismAnswers = 0;
    for (const x of exchanges) {
      if (x.status === 429) rateLimited++;
      const path = x.url.split('?')[0] ?? x.url;
      const add = (location: string, severity: string, message: string): void => {
        const k = `${x.method} ${path}\u0000${location}\u0000${message}`;
        const f = findings.get(k);
        if (f) f.count++;
        else
          findings.set(k, { method: x.method, path, location, severity, message, count: 1, example: x.url });
      };
      if (x.fromPrism) {
        prismAnswers++;
        add('response', 'Error', `Prism answered ${x.status} itself (the request did not reach the sandbox)`);
      }
      for (const v of x.violations) {
        if (isApiKeyViolation(v)) keyHeader++;
        else if (!isUndeclared429(v, x.status)) add(v.location.join('.'), v.severity, v.message);
      }
    }
    const logViolations = (prism.log.match(/Violation: /g) ?? []).length;
    const headerViolations = [...exchanges, ...canary].reduce((n, x) => n + x.violations.length, 0);
    const terminated = (prism.log.match(/Request terminated with error/g) ?? []).length;
    const seconds = (performance.now() - t0) / 1000;

    const out: string[] = [];
    const bySteps = new Map<string, number>();
    for (const x of exchanges) bySteps.set(x.step, (bySteps.get(x.step) ?? 0) + 1);
    out.push(`requests through Prism: ${exchanges.length} in ${bySteps.size} steps`);
    for (const [s, n] of bySteps) out.push(`  ${s}: ${n}`);
    out.push(`allowed: ${KEY_HEADER}: on ${keyHeader} of ${exchanges.length} requests`);
    out.push(`answered by Prism itself (never reached the sandbox): ${prismAnswers}`);
    out.push(
      `canary (page_size=1001, which the file forbids): ${canarySeen ? 'flagged by Prism, so validation is on' : 'NOT flagged: Prism is not validating'}`,
    );
    out.push(
      `429s (undeclared in the file; the ledger's to prevent): ${rateLimited} seen by the client, ${sandbox429.length} answered by the sandbox` +
        (sandbox429.length
          ? ` (${[...new Set(sandbox429.map((a) => a.rule ?? 'unknown'))].join(', ')})`
          : ''),
    );
    out.push(
      `Prism log: ${logViolations} "Violation:" lines (headers: ${headerViolations}), ${terminated} requests ended by Prism`,
    );
    const list = [...findings.values()];
    const distinct = list.length;
    const total = list.reduce((n, f) => n + f.count, 0);
    if (distinct === 0) out.push('violations: none');
    else {
      out.push(`violations: ${total} (${distinct} distinct)`);
      for (const f of list) {
        out.push(`  ${f.method} ${f.path} ${f.location} [${f.severity}] x${f.count}: ${f.message}`);
        out.push(`    e.g. ${f.example.length > 200 ? `${f.example.slice(0, 197)}...` : f.example}`);
      }
    }
    if (logViolations !== headerViolations)
      out.push('mismatch: Prism logged a different number of violations than its headers carried');
    for (const e of stepErrors) out.push(`step failed: ${e.step}: ${e.error}`);
    const ok =
      distinct === 0 && stepErrors.length === 0 && logViolations === headerViolations && terminated === 0;
    out.push(
      `${ok ? 'PASSED' : 'FAILED'}: ${distinct} distinct violations, ${stepErrors.length} failed steps, ${rateLimited} 429s, ${seconds.toFixed(1)} s`,
    );
    process.stdout.write(`${out.join('\n')}\n`);
    if (typeof values.json === 'string') {
      writeFileSync(
        values.json,
        `${JSON.stringify({ file, ok, seconds, requests: exchanges.length, keyHeader, rateLimited, sandbox429: sandbox429.length, findings: list, stepErrors }, null, 2)}\n`,
      );
    }
    return ok ? 0 : 1;
  } catch (err) {
    process.stdout.write(
      `FAILED: ${err instanceof Error ? err.message : String(err)} (step: ${step})\n${prism ? `Prism log:\n${tail(prism.log, 15)}\n` : ''}`,
    );
    return 1;
  } finally {
    clearTimeout(deadline);
    await cleanup();
  }
}

/** Only the file's first bytes are read here, to fail early on a wrong file; Prism reads the rest. */
function looksLikeOpenApi(path: string): boolean {
  try {
    return /openapi:\s*3\./.test(readFileSync(path, 'utf8').slice(0, 2_000));
  } catch {
    return false;
  }
}

process.exitCode = await main();
