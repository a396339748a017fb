// End to end: hook event jobs (ids only, as Keap's REST hooks deliver them) bring creates, edits and
// deletions into the mirror: records re-read by id in batches through the ledger, deletions kept as
// tombstones that neither a redelivered delete nor an old edit disturbs.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { HOOK_JOB_MAX_IDS, type HookEventJobInput } from '#shared/hooks/job.ts';
import type { MirrorItem } from '#shared/store/index.ts';
import {
  arrivalsSince,
  diffRecords,
  drain,
  mirrorOf,
  sandboxKey,
  sendRaw,
  startWorld,
  TENANT_A,
  type World,
} from './support.ts';

const ACCOUNT = 'acme';
const KEY = sandboxKey(TENANT_A, 0);

/** Hook event jobs for `ids`, at most HOOK_JOB_MAX_IDS each, as the receiver would enqueue them. */
function hookJobs(
  resource: HookEventJobInput['resource'],
  event: HookEventJobInput['event'],
  ids: readonly string[],
  receivedAt = new Date().toISOString(),
): string[] {
  const out: string[] = [];
  for (let i = 0; i < ids.length; i += HOOK_JOB_MAX_IDS) {
    const job: HookEventJobInput = {
      kind: 'hookEvent',
      account: ACCOUNT,
      resource,
      event,
      ids: ids.slice(i, i + HOOK_JOB_MAX_IDS),
      receivedAt,
    };
    out.push(JSON.stringify(job));
  }
  return out;
}

type SandboxRecord = Record<string, unknown> & { id: string };

function sandboxRecords(w: World, resource: 'contacts' | 'companies'): SandboxRecord[] {
  return w.sandbox.dataset.table(resource).values() as unknown as SandboxRecord[];
}

function fieldsOf(records: readonly SandboxRecord[]): string[] {
  return [...new Set(records.flatMap((r) => Object.keys(r)))];
}

/** The mirror split into live records and tombstones. */
async function mirrorParts(w: World, resource: string) {
  const all = await mirrorOf(w.stack, ACCOUNT, resource);
  const live = new Map<string, MirrorItem>();
  const tombstones = new Map<string, MirrorItem>();
  for (const [id, item] of all) (item.deletedAt === undefined ? live : tombstones).set(id, item);
  return { all, live, tombstones };
}

describe('hook events into the mirror', () => {
  let w: World;

  beforeAll(async () => {
    w = await startWorld({
      contacts: 600,
      keys: [KEY],
      accounts: [{ id: ACCOUNT, tenant: TENANT_A, key: KEY.key, resources: ['contacts', 'companies'] }],
    });
    // Start from a mirror equal to Keap: one full sync of each list.
    await w.stack.scheduler();
    await drain(w, { timeoutMs: 60_000 });
  }, 120_000);
  afterAll(async () => {
    await w?.close();
  });

  let deletedContacts: string[] = [];
  let beforeDeletion = new Map<string, MirrorItem>();

  test('250 changed contacts reach the mirror in a few batched Keap calls, deletions tombstoned', async () => {
    beforeDeletion = await mirrorOf(w.stack, ACCOUNT, 'contacts');
    const change = w.sandbox.mutate('contacts', { update: 150, create: 50, delete: 50 });
    deletedContacts = change.deleted;
    expect(change.updated.length + change.created.length + change.deleted.length).toBe(250);
    const mark = w.sandbox.arrivals.length;

    const jobs = [
      ...hookJobs('contacts', 'edit', change.updated),
      ...hookJobs('contacts', 'add', change.created),
      ...hookJobs('contacts', 'delete', change.deleted),
    ];
    await sendRaw(w.stack, jobs);
    await drain(w, { timeoutMs: 60_000 });

    // One call per job (the `ids` filter reads up to 100 records at once), not one per record.
    const calls = arrivalsSince(w.sandbox, mark);
    expect(calls.map((a) => `${a.method} ${a.path} ${a.status}`)).toEqual(
      jobs.map(() => 'GET /crm/rest/v2/contacts 200'),
    );
    expect(calls.length).toBe(4);

    const { live, tombstones } = await mirrorParts(w, 'contacts');
    const expected = sandboxRecords(w, 'contacts');
    expect(diffRecords(expected, live, 'update_time', fieldsOf(expected)).slice(0, 5)).toEqual([]);
    expect([...tombstones.keys()].sort()).toEqual([...change.deleted].sort());
    for (const id of change.deleted) {
      const item = tombstones.get(id);
      const was = beforeDeletion.get(id);
      // The last version is kept; only the deletion marks are added.
      expect(item?.data, id).toEqual(was?.data);
      expect(item?.updateTimeMs, id).toBe(was?.updateTimeMs);
      expect(item?.syncedAt, id).toBe(was?.syncedAt);
      expect(Date.parse(item?.deletedAt ?? ''), id).toBe(item?.deletedAtMs);
      expect(item?.expiresAt, id).toBe(Math.floor((item?.deletedAtMs ?? 0) / 1000) + 30 * 86_400);
    }
    expect(w.metrics.sum('RecordsDeleted', { account: ACCOUNT, resource: 'contacts' })).toBe(50);
  }, 60_000);

  test('a redelivered delete changes nothing', async () => {
    const before = await mirrorOf(w.stack, ACCOUNT, 'contacts');

    await sendRaw(w.stack, [
      ...hookJobs('contacts', 'delete', deletedContacts),
      ...hookJobs('contacts', 'delete', deletedContacts),
    ]);
    await drain(w, { timeoutMs: 60_000 });

    expect(await mirrorOf(w.stack, ACCOUNT, 'contacts')).toEqual(before);
  }, 60_000);

  test('an old edit, or a late write of a version read before the deletion, does not resurrect a tombstone', async () => {
    const before = await mirrorOf(w.stack, ACCOUNT, 'contacts');
    const old = deletedContacts.slice(0, 10);

    // An edit event from before the deletion, handled after it: Keap no longer has the records.
    await sendRaw(w.stack, hookJobs('contacts', 'edit', old, new Date(Date.now() - 3_600_000).toISOString()));
    await drain(w, { timeoutMs: 60_000 });
    // A sync page read before the deletion and written after it.
    const late = await w.stack.deps.mirror.upsertMany(
      ACCOUNT,
      'contacts',
      old.map((id) => {
        const item = beforeDeletion.get(id);
        if (!item) throw new Error(`contact ${id} was not mirrored before its deletion`);
        return { id, updateTimeMs: item.updateTimeMs, data: { ...item.data, late: true } };
      }),
    );

    expect(late).toEqual({ written: 0, skippedStale: 10 });
    expect(await mirrorOf(w.stack, ACCOUNT, 'contacts')).toEqual(before);
  }, 60_000);

  test('a list without an id filter (companies) is read one bounded GET per id', async () => {
    const change = w.sandbox.mutate('companies', { update: 6, delete: 3 });
    const mark = w.sandbox.arrivals.length;

    await sendRaw(w.stack, [
      ...hookJobs('companies', 'edit', change.updated),
      ...hookJobs('companies', 'delete', change.deleted),
    ]);
    await drain(w, { timeoutMs: 60_000 });

    const calls = arrivalsSince(w.sandbox, mark);
    expect(calls.length).toBe(change.updated.length + change.deleted.length);
    expect(calls.filter((a) => a.status === 404).length).toBe(change.deleted.length);
    expect(calls.every((a) => /^\/crm\/rest\/v2\/companies\/[0-9]+$/.test(a.path))).toBe(true);
    const { live, tombstones } = await mirrorParts(w, 'companies');
    const expected = sandboxRecords(w, 'companies');
    expect(diffRecords(expected, live, 'update_time', fieldsOf(expected)).slice(0, 5)).toEqual([]);
    expect([...tombstones.keys()].sort()).toEqual([...change.deleted].sort());
  }, 60_000);

  test('a delete event for records Keap still has keeps them (a delivery is re-checked, not trusted)', async () => {
    const still = sandboxRecords(w, 'contacts')
      .slice(0, 3)
      .map((r) => r.id);

    await sendRaw(w.stack, hookJobs('contacts', 'delete', still));
    await drain(w, { timeoutMs: 60_000 });

    const { live, tombstones } = await mirrorParts(w, 'contacts');
    for (const id of still) {
      expect(live.has(id), id).toBe(true);
      expect(tombstones.has(id), id).toBe(false);
    }
  }, 60_000);

  test('tag applications: applied ones are upserted, removed ones tombstoned', async () => {
    const change = w.sandbox.mutate('tagApplications', { create: 4, delete: 3 });
    expect(change.created.length).toBeGreaterThan(0);
    expect(change.deleted.length).toBeGreaterThan(0);

    await sendRaw(w.stack, [
      ...hookJobs('tagApplications', 'applied', change.created),
      ...hookJobs('tagApplications', 'removed', change.deleted),
    ]);
    await drain(w, { timeoutMs: 60_000 });

    const { live, tombstones } = await mirrorParts(w, 'tagApplications');
    for (const id of change.created) {
      const [tagId, contactId] = id.split(':');
      const app = w.sandbox.dataset.tagApplications.get(id);
      expect(live.get(id)?.data, id).toEqual({
        id,
        tag_id: tagId,
        contact_id: contactId,
        applied_time: app?.applied_time,
      });
    }
    expect([...tombstones.keys()].sort()).toEqual([...change.deleted].sort());

    // Removing an application the mirror holds tombstones it; applying it again later revives it.
    const [first] = change.created;
    if (!first) throw new Error('no application was created');
    const [tagId = '', contactId = ''] = first.split(':');
    w.sandbox.dataset.removeTag(tagId, [contactId]);
    await sendRaw(w.stack, hookJobs('tagApplications', 'removed', [first]));
    await drain(w, { timeoutMs: 60_000 });
    expect((await mirrorParts(w, 'tagApplications')).tombstones.has(first)).toBe(true);

    await new Promise((r) => setTimeout(r, 5));
    w.sandbox.dataset.applyTag(tagId, [contactId], Date.now());
    await new Promise((r) => setTimeout(r, 5));
    await sendRaw(w.stack, hookJobs('tagApplications', 'applied', [first]));
    await drain(w, { timeoutMs: 60_000 });
    const again = (await mirrorParts(w, 'tagApplications')).live.get(first);
    expect(again?.data.applied_time).toBe(w.sandbox.dataset.tagApplications.get(first)?.applied_time);
  }, 60_000);

  test('a tag named alone (Keap documents only the tag id): its vanished applications are tombstoned', async () => {
    // The tag with the most applications, mirrored whole by an `applied` naming the tag alone.
    const byTag = new Map<string, string[]>();
    for (const id of w.sandbox.dataset.tagApplications.ids()) {
      const [tagId = ''] = id.split(':');
      byTag.set(tagId, [...(byTag.get(tagId) ?? []), id]);
    }
    const [tagId = '', apps = []] = [...byTag].sort((a, b) => b[1].length - a[1].length)[0] ?? [];
    expect(apps.length).toBeGreaterThan(2);
    await sendRaw(w.stack, hookJobs('tagApplications', 'applied', [tagId]));
    await drain(w, { timeoutMs: 60_000 });
    expect(
      [...(await mirrorParts(w, 'tagApplications')).live.keys()]
        .filter((id) => id.startsWith(`${tagId}:`))
        .sort(),
    ).toEqual([...apps].sort());

    // Two applications are removed in Keap; the delivery names the tag only.
    const removed = apps.slice(0, 2);
    for (const id of removed) w.sandbox.dataset.removeTag(tagId, [id.split(':')[1] ?? '']);
    await new Promise((r) => setTimeout(r, 5));
    await sendRaw(w.stack, hookJobs('tagApplications', 'removed', [tagId]));
    await drain(w, { timeoutMs: 60_000 });

    const { live, tombstones } = await mirrorParts(w, 'tagApplications');
    for (const id of removed) expect(tombstones.has(id), id).toBe(true);
    for (const id of apps.slice(2)) expect(live.has(id), id).toBe(true);
  }, 60_000);
});
