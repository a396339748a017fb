// Unit: which failures are transient, the retry backoff, the batch's shared deadline, and the
// start-up checks of the new settings (worker.maxRetries, keap.timeoutMs against the retry budget).
import { describe, expect, it } from 'vitest';
import { ConfigError, parseAppConfig } from '#shared/config/app-config.ts';
import { parseJob } from '#shared/jobs/schema.ts';
import {
  NotFoundError,
  QuotaDeferredError,
  RetryableError,
  UnexpectedResponseError,
} from '#shared/keap/index.ts';
import { InvocationDeadline } from '#shared/pipeline/deadline.ts';
import type { PipelineDeps } from '#shared/pipeline/deps.ts';
import { MemoryLog, MemoryMetrics } from '#shared/pipeline/index.ts';
import { isTransient, RETRY_MAX_MS, retryDelayMs, retryLater } from '#shared/pipeline/retry.ts';
import { LedgerContentionError, LedgerUnavailableError } from '#shared/quota/index.ts';
import { StaleRunError, StoreUnavailableError } from '#shared/store/index.ts';

const ctx = { method: 'GET', path: '/rest/v2/contacts', keyId: 'k1', tenant: 't', attempts: 4 };
const account = {
  id: 'acme',
  tenant: 'ab103',
  secretId: 'keap/acme',
  resources: { tasks: { everyMinutes: 5 } },
};

describe('transient failures', () => {
  it.each([
    ['a Keap timeout', new RetryableError(ctx, 'timeout', false)],
    ['a Keap 5xx', new RetryableError({ ...ctx, status: 503 }, 'server', false)],
    ['a cut or HTML body', new UnexpectedResponseError(ctx, 'malformed JSON')],
    ['ledger contention', new LedgerContentionError('quota#tenant#t', 8)],
    ['the ledger unavailable', new LedgerUnavailableError('quota#tenant#t', new Error('down'))],
    ['the store unavailable', new StoreUnavailableError('state', 'UpdateItem', 8, true, new Error('down'))],
  ])('%s is retried through the queue', (_what, err) => {
    expect(isTransient(err)).toBe(true);
  });

  it.each([
    ['a create whose outcome is unknown', new RetryableError(ctx, 'timeout', true)],
    ['a 404', new NotFoundError(ctx)],
    ['a ledger deferral (it has its own path)', new QuotaDeferredError(ctx, 1, 'minute')],
    [
      'a store that cannot work at all',
      new StoreUnavailableError('state', 'GetItem', 1, false, new Error('x')),
    ],
    ['a run that lost its checkpoint', new StaleRunError('acme', 'tasks', 'r1', 'r2')],
    ['anything else', new Error('boom')],
  ])('%s is not', (_what, err) => {
    expect(isTransient(err)).toBe(false);
  });
});

describe('retry backoff', () => {
  it('doubles per failure in a row, in seconds, with jitter between half and all of it', () => {
    const low = [1, 2, 3, 4].map((n) => retryDelayMs(n, () => 0));
    const high = [1, 2, 3, 4].map((n) => retryDelayMs(n, () => 1));
    expect(high).toEqual([1_000, 2_000, 4_000, 8_000]);
    expect(low).toEqual([500, 1_000, 2_000, 4_000]);
  });

  it('is capped', () => {
    expect(retryDelayMs(30, () => 1)).toBe(RETRY_MAX_MS);
  });
});

describe('the batch deadline', () => {
  it('reserves the safety margin plus twice the slowest page any record has seen', () => {
    let left = 50_000;
    const d = new InvocationDeadline(() => left, 5_000);
    expect(d.reserveMs()).toBe(5_000);
    d.pageTook(3_000);
    d.pageTook(1_000);
    expect(d.reserveMs()).toBe(11_000);
    left = 10_000;
    expect(d.remainingMs()).toBeLessThan(d.reserveMs());
  });
});

describe('retry settings', () => {
  it('defaults to 8 retries (a minute-long outage ridden out) and a 10 s Keap timeout', () => {
    const c = parseAppConfig({ accounts: [account] });
    expect(c.worker.maxRetries).toBe(8);
    expect(c.keap.timeoutMs).toBe(10_000);
  });

  it.each([
    [{ worker: { maxRetries: -1 } }, 'worker.maxRetries'],
    [{ worker: { maxRetries: 1.5 } }, 'worker.maxRetries'],
    // A 30 s timeout inside the client's 30 s retry budget leaves a hung request no second try.
    [{ keap: { timeoutMs: 30_000 } }, 'keap.timeoutMs'],
  ])('rejects %j naming %s', (extra, setting) => {
    const err = (() => {
      try {
        parseAppConfig({ accounts: [account], ...extra });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).setting).toBe(setting);
    expect((err as ConfigError).message).toContain(setting);
  });

  it('a job carries its failures in a row, and a message without them parses', () => {
    expect(parseJob('{"kind":"sync","account":"acme","resource":"tasks","failures":2}')).toMatchObject({
      failures: 2,
    });
    expect(parseJob('{"kind":"sync","account":"acme","resource":"tasks"}').failures).toBeUndefined();
  });
});

/** The ports retryLater uses, recording what it sent, dead-lettered and did to the lease. */
function retryPorts(maxRetries: number) {
  const config = parseAppConfig({ accounts: [account], worker: { maxRetries } });
  const sent: Array<{ job: Record<string, unknown>; delayMs: number }> = [];
  const dead: Array<{ reason: string; detail: string }> = [];
  const leaseCalls: string[] = [];
  const deps = {
    config,
    log: new MemoryLog(),
    metrics: new MemoryMetrics(),
    queue: {
      send: async () => undefined,
      requeue: async (job: Record<string, unknown>, delayMs = 0) => {
        sent.push({ job, delayMs });
      },
      deadLetter: async (_b: string, reason: string, detail: string) => {
        dead.push({ reason, detail });
      },
    },
    leases: {
      renew: async () => {
        leaseCalls.push('renew');
        return true;
      },
      release: async () => {
        leaseCalls.push('release');
        return true;
      },
    },
  } as unknown as PipelineDeps;
  return { deps, sent, dead, leaseCalls, account: config.accounts[0] as (typeof config.accounts)[number] };
}

describe('retryLater', () => {
  const body = '{"kind":"sync","account":"acme","resource":"tasks","runId":"run-1"}';
  const err = new RetryableError(ctx, 'timeout', false);

  it('re-sends the job with its failure counted and a delay of seconds, keeping its lease', async () => {
    const p = retryPorts(5);
    const log = p.deps.log as MemoryLog;
    await retryLater(parseJob(body), err, { body, messageId: 'm1' }, p.account, p.deps, log);
    expect(p.sent).toHaveLength(1);
    expect(p.sent[0]?.job).toMatchObject({ runId: 'run-1', failures: 1 });
    expect(p.sent[0]?.delayMs).toBeGreaterThanOrEqual(500);
    expect(p.sent[0]?.delayMs).toBeLessThanOrEqual(1_000);
    expect(p.dead).toEqual([]);
    expect(p.leaseCalls).toEqual(['renew']);
    expect(log.lines).toHaveLength(1);
    expect(log.lines[0]).toMatchObject({
      error: 'RetryableError',
      failures: 1,
      maxRetries: 5,
      next: 'retry',
    });
  });

  it('dead-letters the job as retries-exhausted with the last error after maxRetries failures', async () => {
    const p = retryPorts(2);
    const log = p.deps.log as MemoryLog;
    const tired = parseJob(body.replace('}', ',"failures":2}'));
    await retryLater(tired, err, { body, messageId: 'm1' }, p.account, p.deps, log);
    expect(p.sent).toEqual([]);
    expect(p.dead).toHaveLength(1);
    expect(p.dead[0]?.reason).toBe('retries-exhausted');
    expect(p.dead[0]?.detail).toMatch(/^RetryableError: /);
    expect(p.leaseCalls).toEqual(['release']);
    expect((p.deps.metrics as MemoryMetrics).sum('DeadLetters', { reason: 'retries-exhausted' })).toBe(1);
    expect(log.lines[0]).toMatchObject({ level: 'error', next: 'dead-letter', failures: 3 });
  });
});
