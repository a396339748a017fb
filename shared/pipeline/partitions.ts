// Domain: a full read of a large list split into id ranges read in parallel, so a first sync is bound
// by the quota rather than by how long Keap takes to build each page. Ranges come from the list's id
// comparison filter (`contact_id>=...;contact_id<=...`), read in id order, so a record updated or
// created during the read never moves from one range to another (a time slice would lose it).
//
// The plan starts with `readers` equal slices of the ids the list holds (its lowest and highest id,
// one call each; the last slice is open above, so records created during the run are read too). A
// reader that finishes its range takes one nobody reads, or else halves the range with the most
// records left (the density of its last page times the ids left): the range keeps its Keap page
// token and stops at the new bound, the new half starts afresh. So every reader has work to the end,
// however unevenly ids are spread. The plan is the checkpoint: after every page the whole plan is
// saved, so a crash or a continuation resumes each range from its own token.
import { z } from 'zod';

/** Ranges a plan holds at most (a checkpoint stays a few kilobytes). */
export const MAX_PARTITIONS = 64;

const decimalId = z.string().regex(/^[0-9]{1,20}$/, 'a decimal id');

export const partitionSchema = z
  .object({
    /** Lowest id of the range (inclusive). */
    lo: decimalId,
    /** Highest id (inclusive); null: open above (the last range, which also reads records created meanwhile). */
    hi: decimalId.nullable(),
    /** Upper bound of the query the page token belongs to (a split lowers `hi`, never this). */
    queryHi: decimalId.nullable(),
    /** Keap's token for the range's next page; null: its first page. */
    token: z.string().min(1).max(4096).nullable(),
    /** Highest id read so far; null before its first page. */
    at: decimalId.nullable(),
    /** Records per id on its last page of two or more records (to choose which range to halve). */
    density: z.number().nonnegative().nullable(),
    done: z.boolean(),
    /** Ids of the page at `token` a stopped write already put in the mirror (the page read again skips them). */
    pageDone: z.array(z.string().min(1).max(1024)).max(10_000).optional(),
  })
  .strict();

export type Partition = z.output<typeof partitionSchema>;

/** What a checkpoint holds: the ranges, and the highest id the list held when the read began. */
export const planSchema = z
  .object({
    horizon: decimalId,
    ranges: z.array(partitionSchema).min(1).max(MAX_PARTITIONS),
  })
  .strict();

export type SavedPlan = z.output<typeof planSchema>;

/** A checkpoint's partitions that are not a plan this version can resume. */
export class PartitionPlanError extends Error {
  constructor(resource: string, detail: string) {
    super(
      `The checkpoint of the ${resource} sync holds id ranges this version cannot resume (${detail}); ` +
        'clear the list checkpoint (keap-sync restart) to start the read again.',
    );
    this.name = 'PartitionPlanError';
  }
}

export interface PlanOptions {
  /** The page size ranges are read with (a range worth halving has two pages left or more). */
  pageSize: number;
  /** Ranges at most (default MAX_PARTITIONS). */
  maxPartitions?: number;
}

const big = (id: string): bigint => BigInt(id);
const isDecimal = (id: string): boolean => /^[0-9]{1,20}$/.test(id);

export class PartitionPlan {
  readonly parts: Partition[];
  /** Highest id the list held when the read began: where the open range's estimate ends. */
  readonly horizon: bigint;
  private readonly taken = new Set<Partition>();
  private readonly options: Required<PlanOptions>;

  private constructor(parts: Partition[], horizon: bigint, options: PlanOptions) {
    this.parts = parts;
    this.horizon = horizon;
    this.options = { maxPartitions: MAX_PARTITIONS, ...options };
  }

  /**
   * `count` equal slices of `[min, max]`, the last one open above; fewer when the ids span less than
   * two pages a slice (a small list is one range).
   */
  static initial(min: bigint, max: bigint, count: number, options: PlanOptions): PartitionPlan {
    const span = max - min + 1n;
    const worth = Number(span / BigInt(2 * options.pageSize));
    const n = BigInt(Math.max(1, Math.min(count, worth, options.maxPartitions ?? MAX_PARTITIONS)));
    const parts: Partition[] = [];
    for (let i = 0n; i < n; i++) {
      const lo = min + (span * i) / n;
      const hi = i === n - 1n ? null : min + (span * (i + 1n)) / n - 1n;
      parts.push({
        lo: String(lo),
        hi: hi === null ? null : String(hi),
        queryHi: hi === null ? null : String(hi),
        token: null,
        at: null,
        density: null,
        done: false,
      });
    }
    return new PartitionPlan(parts, max, options);
  }

  /** The plan a checkpoint saved; throws PartitionPlanError when it is not one. */
  static resume(resource: string, saved: unknown, options: PlanOptions): PartitionPlan {
    const parsed = planSchema.safeParse(saved);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new PartitionPlanError(resource, `${issue?.path.join('.') || 'partitions'}: ${issue?.message}`);
    }
    return new PartitionPlan(parsed.data.ranges, BigInt(parsed.data.horizon), options);
  }

  get done(): boolean {
    return this.parts.every((p) => p.done);
  }

  /** A copy of the plan to save in the checkpoint. */
  snapshot(): SavedPlan {
    return { horizon: String(this.horizon), ranges: this.parts.map((p) => ({ ...p })) };
  }

  /**
   * The range an idle reader reads next: one nobody reads, or the second half of the range with the
   * most records left (at least two pages). Undefined: nothing left worth a reader.
   */
  take(): Partition | undefined {
    const free = this.parts.find((p) => !p.done && !this.taken.has(p));
    if (free) {
      this.taken.add(free);
      return free;
    }
    if (this.parts.length >= this.options.maxPartitions) return undefined;
    let best: { part: Partition; left: number; end: bigint; at: bigint } | undefined;
    for (const part of this.parts) {
      if (part.done || part.at === null || part.density === null) continue;
      const at = big(part.at);
      const end = part.hi === null ? this.horizon : big(part.hi);
      if (end <= at + 1n) continue;
      const left = part.density * Number(end - at);
      if (left >= 2 * this.options.pageSize && (!best || left > best.left)) best = { part, left, end, at };
    }
    if (!best) return undefined;
    const { part, end, at } = best;
    const mid = at + (end - at) / 2n;
    const second: Partition = {
      lo: String(mid + 1n),
      hi: part.hi,
      queryHi: part.hi,
      token: null,
      at: null,
      density: part.density,
      done: false,
    };
    part.hi = String(mid);
    this.parts.splice(this.parts.indexOf(part) + 1, 0, second);
    this.taken.add(second);
    return second;
  }

  /** The reader of `part` stopped (done, out of time, failed): another may take it up. */
  release(part: Partition): void {
    this.taken.delete(part);
  }

  /**
   * The records of a page that belong to `part` now (a split may have lowered its upper bound) and
   * that a stopped write of this page has not already put in the mirror.
   */
  within<T extends { id: string }>(part: Partition, records: readonly T[]): T[] {
    const done = new Set(part.pageDone ?? []);
    const hi = part.hi === null ? undefined : big(part.hi);
    return records.filter(
      (r) => !done.has(r.id) && (hi === undefined || !isDecimal(r.id) || big(r.id) <= hi),
    );
  }

  /** A write of the page at `part`'s token stopped after `ids`: the page read again skips them. */
  keepDone(part: Partition, ids: readonly string[]): void {
    part.pageDone = [...new Set([...(part.pageDone ?? []), ...ids])];
  }

  /**
   * Moves `part` past a page whose records are in the mirror: its next token, the highest id read,
   * its density; done on the list's last page or once it read past its upper bound.
   */
  advance(
    part: Partition,
    page: { records: ReadonlyArray<{ id: string }>; nextPageToken: string | undefined; done: boolean },
  ): void {
    const ids = page.records.filter((r) => isDecimal(r.id)).map((r) => big(r.id));
    let lo: bigint | undefined;
    let hi: bigint | undefined;
    for (const id of ids) {
      if (lo === undefined || id < lo) lo = id;
      if (hi === undefined || id > hi) hi = id;
    }
    if (hi !== undefined && (part.at === null || hi > big(part.at))) part.at = String(hi);
    if (lo !== undefined && hi !== undefined && ids.length >= 2)
      part.density = ids.length / Number(hi - lo + 1n);
    part.token = page.nextPageToken ?? null;
    delete part.pageDone;
    const past = part.hi !== null && part.at !== null && big(part.at) >= big(part.hi);
    if (page.done || page.nextPageToken === undefined || past) part.done = true;
  }
}
