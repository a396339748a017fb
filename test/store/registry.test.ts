// Integration: the account registry in the state table on dynalite and DynamoDB Local: add, list,
// pause, resume, remove; the configuration file seeds it without overwriting; the scheduler's batched
// reads (BatchGetItem of 100 keys, a paginated Query) return every item, and one account's entries
// never show another's.
import { describe, expect, it } from 'vitest';
import { type AccountConfig, parseAccountConfig } from '#shared/config/app-config.ts';
import {
  AccountDirectory,
  AccountExistsError,
  openStateStores,
  UnknownAccountError,
} from '#shared/store/index.ts';
import { emulatorCases } from '../support/emulators.ts';
import { reportMissingEmulator, unique, useTables } from './support.ts';

reportMissingEmulator();

const T0 = Date.UTC(2026, 0, 1);

function accountNamed(
  id: string,
  lists: Record<string, { everyMinutes: number }> = { contacts: { everyMinutes: 5 } },
) {
  return parseAccountConfig(
    { id, tenant: `${id}.infusionsoft.com`, secretId: `keap-sync/${id}`, resources: lists },
    'keap-sync/',
  );
}

describe.each(emulatorCases)('account registry on $name', (emu) => {
  const tables = useTables(emu);
  const state = () => openStateStores(tables().db.client, tables().stateTable, { now: () => T0 });
  const ids = (entries: Array<{ account: AccountConfig }>, prefix: string) =>
    entries.map((e) => e.account.id).filter((id) => id.startsWith(prefix));

  it('adds, lists, pauses, resumes and removes an account', async () => {
    const { registry } = state();
    const p = unique('reg')
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, '-');
    const a = accountNamed(`${p}-a`, { contacts: { everyMinutes: 5 }, tags: { everyMinutes: 60 } });
    const added = await registry.add(a, { source: 'cli' });
    expect(added).toEqual({
      account: a,
      paused: false,
      addedAt: new Date(T0).toISOString(),
      updatedAt: new Date(T0).toISOString(),
      source: 'cli',
    });
    await registry.add(accountNamed(`${p}-b`), { source: 'cli' });
    expect(ids(await registry.list(), p)).toEqual([`${p}-a`, `${p}-b`]);
    expect((await registry.setPaused(`${p}-a`, true, T0 + 1)).paused).toBe(true);
    expect((await registry.get(`${p}-a`))?.paused).toBe(true);
    expect((await registry.setPaused(`${p}-a`, false, T0 + 2)).paused).toBe(false);
    await registry.remove(`${p}-b`);
    expect(ids(await registry.list(), p)).toEqual([`${p}-a`]);
    await expect(registry.remove(`${p}-b`)).rejects.toBeInstanceOf(UnknownAccountError);
    await expect(registry.setPaused(`${p}-b`, true)).rejects.toBeInstanceOf(UnknownAccountError);
  });

  it('refuses a second account of the same id unless told to replace it, which keeps its paused state', async () => {
    const { registry } = state();
    const id = unique('dup')
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, '-');
    await registry.add(accountNamed(id), { source: 'cli' });
    await registry.setPaused(id, true);
    await expect(registry.add(accountNamed(id), { source: 'cli' })).rejects.toBeInstanceOf(
      AccountExistsError,
    );
    const replaced = await registry.add(accountNamed(id, { orders: { everyMinutes: 15 } }), {
      source: 'cli',
      replace: true,
      nowMs: T0 + 5,
    });
    expect(replaced.paused).toBe(true);
    expect(Object.keys(replaced.account.resources)).toEqual(['orders']);
    expect(replaced.addedAt).toBe(new Date(T0).toISOString());
  });

  it('is seeded from the configuration file without overwriting what is registered', async () => {
    const { registry } = state();
    const p = unique('seed')
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, '-');
    await registry.add(accountNamed(`${p}-a`, { tags: { everyMinutes: 60 } }), { source: 'cli' });
    await registry.setPaused(`${p}-a`, true);
    const added = await registry.seed(
      [accountNamed(`${p}-a`), accountNamed(`${p}-b`)],
      'keap-sync.config.json',
    );
    expect(added).toEqual([`${p}-b`]);
    const a = await registry.get(`${p}-a`);
    expect(a?.paused).toBe(true);
    expect(Object.keys(a?.account.resources ?? {})).toEqual(['tags']);
    expect((await registry.get(`${p}-b`))?.source).toBe('keap-sync.config.json');
  });

  it("the directory adds the file's unseeded accounts to the registry's, and the registry's version wins", async () => {
    const { registry } = state();
    const p = unique('dir')
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, '-');
    await registry.add(accountNamed(`${p}-a`, { tags: { everyMinutes: 60 } }), { source: 'cli' });
    let now = T0;
    const directory = new AccountDirectory(registry, [accountNamed(`${p}-a`), accountNamed(`${p}-file`)], {
      cacheMs: 1_000,
      now: () => now,
    });
    const listed = (await directory.list()).filter((e) => e.account.id.startsWith(p));
    expect(listed.map((e) => [e.account.id, Object.keys(e.account.resources)])).toEqual([
      [`${p}-a`, ['tags']],
      [`${p}-file`, ['contacts']],
    ]);
    expect((await directory.find(`${p}-file`))?.account.id).toBe(`${p}-file`);
    expect(await directory.find(`${p}-new`)).toBeUndefined();
    // An account registered a moment after a miss is found by the next job (misses are not cached).
    await registry.add(accountNamed(`${p}-new`), { source: 'cli' });
    expect((await directory.find(`${p}-new`))?.account.id).toBe(`${p}-new`);
    // A hit is trusted for cacheMs, then read again.
    await registry.remove(`${p}-new`);
    expect(await directory.find(`${p}-new`)).toBeDefined();
    now += 1_001;
    expect(await directory.find(`${p}-new`)).toBeUndefined();
  });

  it('lists 1,200 accounts (several Query pages) and reads 2,400 cursors and statuses in batches', async () => {
    const stores = state();
    const p = unique('many')
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, '-')
      .slice(0, 20);
    const n = 1_200;
    const big = Object.fromEntries(
      [
        'contacts',
        'companies',
        'orders',
        'opportunities',
        'tags',
        'notes',
        'tasks',
        'products',
        'subscriptions',
        'users',
      ].map((r) => [r, { everyMinutes: 60 }]),
    );
    const all = Array.from({ length: n }, (_, i) => accountNamed(`${p}-${String(i).padStart(4, '0')}`, big));
    await stores.registry.seed(all, 'test');
    const listed = ids(await stores.registry.list(), p);
    expect(listed).toHaveLength(n);
    // A few accounts with state of their own; every other one reads as never run / active.
    await stores.leases.acquire(`${p}-0007`, 'tags', 'run-7', 60_000, T0);
    await stores.runs.start(`${p}-0007`, 'tags', 'run-7', 'full', T0);
    await stores.accounts.markKeyRejected(`${p}-0011`, 'v1', 'Keap answered 401', T0);
    const pairs = all.flatMap((a) => [
      { account: a.id, resource: 'tags' },
      { account: a.id, resource: 'contacts' },
    ]);
    const cursors = await stores.runs.getCursors(pairs);
    expect(cursors).toHaveLength(2 * n);
    expect(cursors.filter((c) => c.checkpoint !== null).map((c) => `${c.account}/${c.resource}`)).toEqual([
      `${p}-0007/tags`,
    ]);
    const statuses = await stores.accounts.getStatuses(all.map((a) => a.id));
    expect([...statuses].filter(([, s]) => s.state === 'key-rejected').map(([id]) => id)).toEqual([
      `${p}-0011`,
    ]);
  }, 60_000);
});
