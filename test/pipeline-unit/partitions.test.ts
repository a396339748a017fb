// Unit: the id-range plan of a partitioned full read. Simulated readers over a list of ids read every
// id exactly once however unevenly the ids are spread, keep every reader busy to the end by halving
// the range with the most left, and resume from a saved plan.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Partition, PartitionPlan, PartitionPlanError } from '#shared/pipeline/partitions.ts';

const PAGE = 10;

/** One page of `part` as Keap would serve it: ids in [lo, queryHi] after the token, in id order. */
function servePage(ids: readonly number[], part: Partition) {
  const lo = Number(part.lo);
  const hi = part.queryHi === null ? Number.POSITIVE_INFINITY : Number(part.queryHi);
  const after = part.token === null ? lo - 1 : Number(part.token);
  const inRange = ids.filter((id) => id >= lo && id <= hi && id > after);
  const page = inRange.slice(0, PAGE);
  const more = inRange.length > PAGE;
  const last = page[page.length - 1];
  return {
    records: page.map((id) => ({ id: String(id) })),
    nextPageToken: more && last !== undefined ? String(last) : undefined,
    done: !more,
  };
}

/**
 * Reads the whole list with `readers` simulated readers taking turns page by page (the first page
 * read beforehand, as the sync does); returns the ids written, in order, and the pages read.
 */
function simulate(ids: number[], readers: number, plan: PartitionPlan) {
  const written: string[] = [];
  let pages = 0;
  let rounds = 0;
  const active: Array<Partition | undefined> = Array.from({ length: readers }, () => undefined);
  for (let step = 0; step < 100_000; step++) {
    let progressed = false;
    for (let r = 0; r < readers; r++) {
      let part = active[r];
      if (!part || part.done) {
        if (part) plan.release(part);
        part = plan.take();
        active[r] = part;
      }
      if (!part) continue;
      const page = servePage(ids, part);
      pages++;
      written.push(...plan.within(part, page.records).map((x) => x.id));
      plan.advance(part, page);
      progressed = true;
    }
    if (!progressed) break;
    rounds++;
  }
  return { written, pages, rounds };
}

describe('PartitionPlan', () => {
  it('slices the ids evenly, the last slice open above', () => {
    const plan = PartitionPlan.initial(1n, 1000n, 4, { pageSize: PAGE });
    expect(plan.parts.map((p) => [p.lo, p.hi])).toEqual([
      ['1', '250'],
      ['251', '500'],
      ['501', '750'],
      ['751', null],
    ]);
  });

  it('makes one range of a list spanning less than two pages a slice', () => {
    expect(PartitionPlan.initial(1n, 30n, 8, { pageSize: PAGE }).parts).toHaveLength(1);
    // An empty remainder (the first page held the highest id) is one open range.
    expect(PartitionPlan.initial(50n, 40n, 8, { pageSize: PAGE }).parts.map((p) => p.hi)).toEqual([null]);
  });

  it('reads every id exactly once, for any spread of ids and any number of readers', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 5_000 }), { minLength: 1, maxLength: 600 }),
        fc.integer({ min: 1, max: 12 }),
        (raw, readers) => {
          const ids = [...raw].sort((a, b) => a - b);
          const min = ids[0] as number;
          const max = ids[ids.length - 1] as number;
          const plan = PartitionPlan.initial(BigInt(min), BigInt(max), readers, { pageSize: PAGE });
          const { written } = simulate(ids, readers, plan);
          expect([...written].sort((a, b) => Number(a) - Number(b))).toEqual(ids.map(String));
          expect(plan.done).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('halves the fullest range when a reader runs out, so a skewed list still keeps every reader busy', () => {
    // 90% of the ids in the last tenth of the span: the even slices leave most readers idle early.
    const ids = [
      ...Array.from({ length: 100 }, (_, i) => 1 + i * 90),
      ...Array.from({ length: 900 }, (_, i) => 9_001 + i),
    ];
    const readers = 8;
    const plan = PartitionPlan.initial(1n, 9_900n, readers, { pageSize: PAGE });
    const { written, rounds } = simulate(ids, readers, plan);
    expect(new Set(written).size).toBe(ids.length);
    expect(written).toHaveLength(ids.length);
    // One reader alone needs 100 rounds (1,000 ids, 10 a page); without halving, the reader of the
    // dense slice would need about 90. With it the readers share the dense part.
    expect(rounds).toBeLessThan(100 / 2);
    expect(plan.parts.length).toBeGreaterThan(readers);
  });

  it('resumes from a saved plan and refuses one it cannot read', () => {
    const ids = Array.from({ length: 300 }, (_, i) => i + 1);
    const plan = PartitionPlan.initial(1n, 300n, 3, { pageSize: PAGE });
    const first = plan.take() as Partition;
    const page = servePage(ids, first);
    plan.advance(first, page);
    const saved = JSON.parse(JSON.stringify(plan.snapshot())) as unknown;
    const resumed = PartitionPlan.resume('contacts', saved, { pageSize: PAGE });
    const rest = simulate(ids, 3, resumed);
    expect([...rest.written, ...page.records.map((r) => r.id)].sort((a, b) => Number(a) - Number(b))).toEqual(
      ids.map(String),
    );
    expect(() => PartitionPlan.resume('contacts', { horizon: '9', ranges: [] }, { pageSize: PAGE })).toThrow(
      PartitionPlanError,
    );
    expect(() => PartitionPlan.resume('contacts', { ranges: 'x' }, { pageSize: PAGE })).toThrow(
      /keap-sync restart/,
    );
  });
});
