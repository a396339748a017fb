// End to end (sandbox, dynalite, fauxqs) and against the client: tag applications as a synced list.
// The walk reads every tag's contacts in tag order and can resume from any page token it gave; a full
// sync mirrors every application (`<tag>:<contact>`, tag, contact and applied time, no contact
// copies); an incremental one finds new and re-applied tags; the sweep tombstones removed ones and
// the applications of deleted tags; after random changes, mirror == sandbox.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseJob } from '#shared/jobs/schema.ts';
import { KeapClient } from '#shared/keap/index.ts';
import { ClientCache, type PipelineDeps } from '#shared/pipeline/deps.ts';
import { runScheduler } from '#shared/pipeline/scheduler.ts';
import { runSweep } from '#shared/pipeline/sweep.ts';
import {
  type ListPage,
  tagApplicationCalls,
  tagApplicationPages,
} from '#shared/pipeline/tag-applications.ts';
import { startLedgerHost, uniqueTenant } from '../keap/support.ts';
import {
  arrivalsSince,
  drain,
  mirrorOf,
  sandboxKey,
  sendRaw,
  startWorld,
  TENANT_A,
  type World,
} from './support.ts';

const ACCOUNT = 'tagged';
const KEY = sandboxKey(TENANT_A, 0);

describe('tag applications: the walk over every tag', () => {
  let w: World;
  let host: Awaited<ReturnType<typeof startLedgerHost>>;
  const client = (pageSize: number) =>
    new KeapClient({
      apiKey: KEY.key,
      tenant: uniqueTenant(),
      ledger: host.ledger(),
      settings: { baseUrl: w.sandbox.baseUrl, pageSize },
    });
  async function collect(pages: AsyncIterable<ListPage>): Promise<ListPage[]> {
    const out: ListPage[] = [];
    for await (const p of pages) out.push(p);
    return out;
  }

  beforeAll(async () => {
    host = await startLedgerHost();
    w = await startWorld({
      contacts: 200,
      keys: [KEY],
      accounts: [{ id: ACCOUNT, tenant: TENANT_A, key: KEY.key, resources: ['tags', 'tagApplications'] }],
      scheduler: { reserveCallsForIncremental: 0 },
    });
  }, 60_000);
  afterAll(async () => {
    await w?.close();
    await host?.close();
  });

  test('reads every application once, in tag order, and resumes from any token to the same end', async () => {
    const mark = w.sandbox.arrivals.length;
    const pages = await collect(tagApplicationPages(client(25)));
    const ids = pages.flatMap((p) => p.records.map((r) => r.id));
    const sandboxIds = [...w.sandbox.dataset.table('tagApplications').ids()].map(String);
    expect(ids.length).toBe(new Set(ids).size);
    expect([...ids].sort()).toEqual([...sandboxIds].sort());
    // Tag order: a tag's applications come together, tags ascending by id.
    const tagOrder = ids.map((id) => BigInt(id.split(':')[0] ?? '0'));
    for (let i = 1; i < tagOrder.length; i++)
      expect(tagOrder[i] ?? 0n).toBeGreaterThanOrEqual(tagOrder[i - 1] ?? 0n);
    // Every request is counted on some page, and only the last page is done.
    expect(pages.reduce((n, p) => n + p.requests, 0)).toBe(arrivalsSince(w.sandbox, mark).length);
    expect(pages.filter((p) => p.done).length).toBe(1);
    expect(pages.at(-1)?.done).toBe(true);
    const tags = w.sandbox.dataset.table('tags').size;
    expect(arrivalsSince(w.sandbox, mark).length).toBeGreaterThanOrEqual(tagApplicationCalls(tags, 0));

    // Resuming from each of a few tokens (mid-tag and tag boundaries) yields exactly the rest.
    const withTokens = pages.map((p, i) => ({ token: p.nextPageToken, after: i + 1 }));
    const picks = withTokens.filter((t) => t.token !== undefined);
    const sample = [
      picks.find((t) => /^tag:\d+:/.test(t.token ?? '')),
      picks.find((t) => /^tag:\d+$/.test(t.token ?? '')),
      picks[Math.floor(picks.length / 2)],
      picks.at(-1),
    ].filter((t) => t !== undefined);
    expect(sample.some((t) => /^tag:\d+:/.test(t.token ?? ''))).toBe(true);
    expect(sample.some((t) => /^tag:\d+$/.test(t.token ?? ''))).toBe(true);
    for (const { token, after } of sample) {
      const rest = await collect(tagApplicationPages(client(25), { pageToken: token as string }));
      const restIds = rest.flatMap((p) => p.records.map((r) => r.id));
      const expected = pages.slice(after).flatMap((p) => p.records.map((r) => r.id));
      expect(restIds, token).toEqual(expected);
    }
  }, 60_000);

  test('a token that is not the walk one is refused with TagWalkTokenError', async () => {
    await expect(
      collect(tagApplicationPages(client(25), { pageToken: 'not-a-token' })),
    ).rejects.toMatchObject({
      name: 'TagWalkTokenError',
    });
  });

  test('a full sync mirrors every application, with the tag, contact and applied time only', async () => {
    await w.stack.scheduler();
    await drain(w);
    const mirror = await mirrorOf(w.stack, ACCOUNT, 'tagApplications');
    const table = w.sandbox.dataset.table('tagApplications');
    expect(mirror.size).toBe(table.size);
    for (const a of table.values()) {
      const item = mirror.get(a.id);
      expect(item?.data, a.id).toEqual({
        id: a.id,
        tag_id: a.tag_id,
        contact_id: a.contact_id,
        applied_time: a.applied_time,
      });
    }
  }, 60_000);

  test('new, re-applied and removed applications and a deleted tag: incremental sync and sweep make mirror == sandbox', async () => {
    const size = w.sandbox.dataset.table('tagApplications').size;
    const n = Math.max(3, Math.floor(size / 10));
    const change = w.sandbox.mutate('tagApplications', { create: n, update: n, delete: n });
    const tagGone = w.sandbox.mutate('tags', { delete: 1 });
    expect(change.created.length).toBeGreaterThan(0);
    expect(tagGone.deleted.length).toBe(1);

    // An hour later the incremental sync runs; a day later the sweep too.
    await runScheduler(w.stack.deps, Date.now() + 61 * 60_000);
    await drain(w);
    let mirror = await mirrorOf(w.stack, ACCOUNT, 'tagApplications');
    for (const id of [...change.created, ...change.updated]) {
      const live = w.sandbox.dataset.table('tagApplications').get(id);
      if (!live) continue; // its tag was deleted after it changed
      expect(mirror.get(id)?.data, id).toMatchObject({ applied_time: live?.applied_time });
    }
    await runScheduler(w.stack.deps, Date.now() + 25 * 3_600_000);
    await drain(w);
    mirror = await mirrorOf(w.stack, ACCOUNT, 'tagApplications');
    const live = new Set([...mirror].filter(([, i]) => i.deletedAt === undefined).map(([id]) => id));
    const keap = new Set([...w.sandbox.dataset.table('tagApplications').ids()].map(String));
    expect([...live].filter((id) => !keap.has(id))).toEqual([]);
    expect([...keap].filter((id) => !live.has(id))).toEqual([]);
    for (const id of change.deleted) expect(mirror.get(id)?.deletedAt, id).toBeDefined();
    const goneTag = tagGone.deleted[0] ?? '';
    const ofGoneTag = [...mirror].filter(([id]) => id.startsWith(`${goneTag}:`));
    for (const [id, item] of ofGoneTag) expect(item.deletedAt, id).toBeDefined();
  }, 90_000);

  test('a sweep out of time after each tag continues tag by tag in new messages, and tombstones what each found', async () => {
    const removed = w.sandbox.mutate('tagApplications', { delete: 6 }).deleted;
    expect(removed).toHaveLength(6);
    const account = w.config.accounts[0];
    if (!account) throw new Error('no account');
    const client = new ClientCache(w.stack.deps).for(account, await w.stack.deps.keys.get(account));
    const requeued: unknown[] = [];
    const deps: PipelineDeps = {
      ...w.stack.deps,
      queue: { requeue: async (j: unknown) => void requeued.push(j) } as unknown as PipelineDeps['queue'],
    };
    const tags = w.sandbox.dataset.table('tags').size;
    let job = parseJob(JSON.stringify({ kind: 'sweep', account: ACCOUNT, resource: 'tagApplications' }));
    const outcomes: string[] = [];
    for (let i = 0; i < tags + 2; i++) {
      if (job.kind !== 'sweep') throw new Error('not a sweep');
      // No time left once any tag is done: every message sweeps one tag.
      const out = await runSweep(job, account, client, deps, { remainingMs: () => 0 }, w.log);
      outcomes.push(out.status);
      if (out.status !== 'continued') break;
      // What the worker sent is a valid message of its own.
      job = parseJob(JSON.stringify(requeued.at(-1)));
    }
    expect(outcomes).toEqual([...Array.from({ length: tags - 1 }, () => 'continued'), 'done']);
    const mirror = await mirrorOf(w.stack, ACCOUNT, 'tagApplications');
    for (const id of removed) expect(mirror.get(id)?.deletedAt, id).toBeDefined();
    const live = [...mirror].filter(([, i]) => i.deletedAt === undefined).map(([id]) => id);
    expect(live.sort()).toEqual([...w.sandbox.dataset.table('tagApplications').ids()].map(String).sort());
    // A continued sweep message says where it resumes and when the sweep began (and, but for tag
    // applications, which kept ids it continues from).
    expect(() =>
      parseJob(
        JSON.stringify({
          kind: 'sweep',
          account: ACCOUNT,
          resource: 'contacts',
          pageToken: 'tag:1',
          startedAtMs: 1,
        }),
      ),
    ).toThrow(/chunks/);
    expect(() =>
      parseJob(
        JSON.stringify({
          kind: 'sweep',
          account: ACCOUNT,
          resource: 'tagApplications',
          pageToken: 'x',
          startedAtMs: 1,
        }),
      ),
    ).toThrow(/tag:<tagId>/);
    expect(() =>
      parseJob(
        JSON.stringify({ kind: 'sweep', account: ACCOUNT, resource: 'tagApplications', pageToken: 'tag:1' }),
      ),
    ).toThrow(/startedAtMs/);
  }, 60_000);

  test('an on-demand sync of tag applications, delivered again after it finished, calls Keap no more', async () => {
    const body = JSON.stringify({
      kind: 'sync',
      account: ACCOUNT,
      resource: 'tagApplications',
      runId: 'walk-1',
    });
    const mark = w.sandbox.arrivals.length;
    await sendRaw(w.stack, [body]);
    await drain(w);
    const tags = w.sandbox.dataset.table('tags').size;
    const walked = arrivalsSince(w.sandbox, mark);
    expect(walked.filter((a) => a.path.split('?')[0]?.endsWith('/tags')).length).toBe(Math.ceil(tags / 1000));
    expect(walked.length).toBeGreaterThanOrEqual(tags);
    const again = w.sandbox.arrivals.length;
    await sendRaw(w.stack, [body]);
    await drain(w);
    expect(arrivalsSince(w.sandbox, again)).toEqual([]);
    expect(
      w.metrics.sum('JobsSkipped', { account: ACCOUNT, resource: 'tagApplications', reason: 'finished' }),
    ).toBe(1);
  }, 60_000);
});
