// Test support: an in-memory ledger store with request counting, and a dynalite/DynamoDB Local host.
import type { LedgerStore, PutOutcome, ServerDateListener, StoredItem } from '#shared/quota/store.ts';

/** A faithful in-memory LedgerStore (atomic conditional put), optionally returning the winner on conflict. */
export class MemoryLedgerStore implements LedgerStore {
  readonly items = new Map<string, StoredItem>();
  readonly stats = { reads: 0, writes: 0, failedWrites: 0 };
  readonly returnsItemOnConflict: boolean;
  constructor(returnsItemOnConflict = true) {
    this.returnsItemOnConflict = returnsItemOnConflict;
  }
  readonly registry = new Map<string, Map<string, number>>();
  async registerKey(
    pk: string,
    key: string,
    max: number,
    now: number,
    stale: (lastUsed: number) => boolean,
  ): Promise<boolean> {
    this.stats.writes++;
    const set = new Map(
      [...(this.registry.get(pk) ?? new Map<string, number>())].filter(([, t]) => !stale(t)),
    );
    if (!set.has(key) && set.size >= max) {
      this.stats.failedWrites++;
      return false;
    }
    set.set(key, now);
    this.registry.set(pk, set);
    return true;
  }
  async read(pk: string): Promise<StoredItem | undefined> {
    this.stats.reads++;
    const it = this.items.get(pk);
    return it ? { ...it } : undefined;
  }
  async put(pk: string, next: StoredItem, expected: number | undefined): Promise<PutOutcome> {
    this.stats.writes++;
    const cur = this.items.get(pk);
    const ok = expected === undefined ? cur === undefined : cur?.version === expected;
    if (!ok) {
      this.stats.failedWrites++;
      return this.returnsItemOnConflict
        ? { ok: false, current: cur ? { ...cur } : undefined, returned: true }
        : { ok: false, current: undefined, returned: false };
    }
    this.items.set(pk, { ...next });
    return { ok: true };
  }
}

/** A MemoryLedgerStore whose answers carry the server's `Date` (whole seconds of `serverNow`), as DynamoDB's do. */
export class DatedStore extends MemoryLedgerStore {
  onServerDate: ServerDateListener | undefined;
  private readonly serverNow: () => number;
  constructor(serverNow: () => number) {
    super();
    this.serverNow = serverNow;
  }
  private date(): void {
    const perf = performance.now();
    this.onServerDate?.(Math.floor(this.serverNow() / 1000) * 1000, perf, perf);
  }
  override async read(pk: string): Promise<StoredItem | undefined> {
    const out = await super.read(pk);
    this.date();
    return out;
  }
  override async put(pk: string, next: StoredItem, expected: number | undefined): Promise<PutOutcome> {
    const out = await super.put(pk, next, expected);
    this.date();
    return out;
  }
}
