// The embedded dynalite closes the LevelDB iterator of every Query, also of pages cut short by Limit
// (dynalite 4 alone leaves those open, and each pins memory: the local run grew by gigabytes).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { openDynaliteIterators, startDynalite } from '#harness/emulators/dynamo.ts';
import { createMirrorTable, MirrorStore } from '#shared/store/index.ts';

describe('embedded dynalite', () => {
  it.each(['memory', 'disk'])('leaves no iterator open after paged counts (%s)', async (where) => {
    const dir = where === 'disk' ? mkdtempSync(join(tmpdir(), 'dynalite-it-')) : undefined;
    const dynamo = await startDynalite(dir ? { path: join(dir, 'db') } : {});
    onTestFinished(async () => {
      await dynamo.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });
    await createMirrorTable(dynamo.client, 'mirror');
    const mirror = new MirrorStore(dynamo.client, 'mirror', { settings: { pageSize: 10 } });
    const records = Array.from({ length: 95 }, (_, i) => ({
      id: String(i + 1),
      updateTimeMs: 1,
      data: { n: i },
    }));
    await mirror.upsertMany('a', 'contacts', records);
    const before = openDynaliteIterators();
    for (let i = 0; i < 20; i++) expect(await mirror.count('a', 'contacts')).toBe(95);
    let seen = 0;
    for await (const _ of mirror.iterate('a', 'contacts')) if (++seen === 15) break;
    // Each count reads 10 pages, 9 of them cut short by Limit; all 200+ iterators are closed again.
    await new Promise((r) => setTimeout(r, 50));
    expect(openDynaliteIterators()).toBe(before);
  });
});
