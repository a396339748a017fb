// Domain: an in-memory table of records keyed by id, with a version that changes on every write.

/** What callers outside the sandbox may do with a table: read it. */
export interface ReadonlyTable<T extends { id: string }> {
  readonly size: number;
  get(id: string): T | undefined;
  has(id: string): boolean;
  /** Every record, oldest id first. */
  values(): T[];
  ids(): string[];
}

export class RecordTable<T extends { id: string }> implements ReadonlyTable<T> {
  private readonly rows = new Map<string, T>();
  private maxId = 0;
  private readonly onChange: () => void;

  constructor(onChange: () => void) {
    this.onChange = onChange;
  }

  get size(): number {
    return this.rows.size;
  }

  get(id: string): T | undefined {
    return this.rows.get(id);
  }

  has(id: string): boolean {
    return this.rows.has(id);
  }

  values(): T[] {
    return [...this.rows.values()];
  }

  ids(): string[] {
    return [...this.rows.keys()];
  }

  /** Inserts or replaces a record. */
  put(rec: T): void {
    this.rows.set(rec.id, rec);
    const n = Number(rec.id);
    if (Number.isInteger(n) && n > this.maxId) this.maxId = n;
    this.onChange();
  }

  delete(id: string): boolean {
    const had = this.rows.delete(id);
    if (had) this.onChange();
    return had;
  }

  /** The next numeric id (ids are never reused, like Keap's). */
  nextId(): string {
    this.maxId += 1;
    return String(this.maxId);
  }
}
