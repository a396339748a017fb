// Integration: `keap-sync export` streams a list of the mirror as JSON lines or CSV, custom fields by
// name (named columns in CSV), against dynalite; and the command itself, spawned as an operator runs it
// on a stopped system's data folder.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { text } from 'node:stream/consumers';
import { promisify } from 'node:util';
import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ExportOptions, exportMirror } from '#harness/cli/export.ts';
import { formatExportProgress } from '#harness/cli/progress.ts';
import { type RunningDynamo, startDynalite } from '#harness/emulators/dynamo.ts';
import { LOCAL_TABLES } from '#harness/local/stack.ts';
import {
  createMirrorTable,
  createStateTable,
  type MirrorRecord,
  MirrorStore,
  openStateStores,
} from '#shared/store/index.ts';
import { BIN, cliEnv, ROOT } from './support.ts';

const run = promisify(execFile);
const T0 = Date.UTC(2026, 0, 1);
const DEFS = [
  { id: '11', name: 'contactTier', label: 'Tier', type: 'DROPDOWN' },
  { id: '13', name: 'contactScore', label: 'Score', type: 'WHOLE_NUMBER' },
];

/** A contact as the worker mirrors it: raw custom fields and their named form. */
function contact(n: number): MirrorRecord {
  const tier = ['bronze', 'silver', 'gold'][n % 3] ?? 'gold';
  return {
    id: String(n),
    updateTimeMs: T0 + n * 60_000,
    data: {
      id: String(n),
      given_name: `Ada ${n}`,
      email_addresses: [{ email: `ada${n}@example.com`, field: 'EMAIL1' }],
      custom_fields: [
        { id: '11', content: tier },
        { id: '13', content: n },
      ],
    },
    customFields: {
      values: { contactTier: tier, contactScore: n },
      info: { contactTier: { id: '11', label: 'Tier' }, contactScore: { id: '13', label: 'Score' } },
    },
  };
}

async function seed(
  db: RunningDynamo,
  mirrorTable: string,
  stateTable: string,
  account: string,
  count: number,
) {
  const mirror = new MirrorStore(db.client, mirrorTable);
  await mirror.upsertMany(
    account,
    'contacts',
    Array.from({ length: count }, (_, i) => contact(i + 1)),
  );
  await openStateStores(db.client, stateTable).models.put(account, 'contacts', DEFS, T0);
  return mirror;
}

describe('exportMirror', () => {
  let db: RunningDynamo;
  let sources: Parameters<typeof exportMirror>[0];
  const ACCOUNT = 'acme';
  beforeAll(async () => {
    db = await startDynalite();
    await createMirrorTable(db.client, 'mirror');
    await createStateTable(db.client, 'state');
    const mirror = await seed(db, 'mirror', 'state', ACCOUNT, 1_200);
    await mirror.tombstoneMany(ACCOUNT, 'contacts', [{ id: '7', deletedAtMs: T0 + 10_000 * 60_000 }]);
    sources = { mirror, models: openStateStores(db.client, 'state').models };
  });
  afterAll(async () => {
    await db?.close();
  });

  async function exported(o: Partial<ExportOptions>) {
    const out = new PassThrough();
    const body = text(out);
    const result = await exportMirror(sources, {
      account: ACCOUNT,
      list: 'contacts',
      format: 'jsonl',
      out,
      ...o,
    });
    return { result, body: await body };
  }

  it('writes one JSON line per record with the named custom fields beside the raw form', async () => {
    const { result, body } = await exported({ format: 'jsonl' });

    const lines = body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(1_199);
    expect(result).toMatchObject({ total: 1_200, read: 1_200, written: 1_199, skippedDeleted: 1 });
    const first = lines.find((l) => l.id === '5');
    expect(first).toMatchObject({
      account: ACCOUNT,
      list: 'contacts',
      updateTime: new Date(T0 + 5 * 60_000).toISOString(),
      customFields: { contactTier: 'gold', contactScore: 5 },
      customFieldInfo: { contactTier: { id: '11', label: 'Tier' } },
    });
    expect(first.record.custom_fields).toEqual([
      { id: '11', content: 'gold' },
      { id: '13', content: 5 },
    ]);
  });

  it('writes CSV with a column per field and one per custom field, named by field_name', async () => {
    const { result, body } = await exported({ format: 'csv' });

    const rows = parse(body, { columns: true }) as Array<Record<string, string>>;
    expect(rows).toHaveLength(1_199);
    expect(result.columns?.slice(0, 3)).toEqual(['id', 'updateTime', 'syncedAt']);
    expect(result.columns).toEqual(expect.arrayContaining(['given_name', 'contactTier', 'contactScore']));
    expect(result.columns).not.toContain('custom_fields');
    const row = rows.find((r) => r.id === '1000');
    expect(row).toMatchObject({ given_name: 'Ada 1000', contactTier: 'silver', contactScore: '1000' });
    expect(JSON.parse(row?.email_addresses ?? '')).toEqual([
      { email: 'ada1000@example.com', field: 'EMAIL1' },
    ]);
  });

  it('keeps only records updated at or after --since', async () => {
    const { result, body } = await exported({ format: 'jsonl', sinceMs: T0 + 1_001 * 60_000 });

    const ids = body
      .trim()
      .split('\n')
      .map((l) => Number(JSON.parse(l).id));
    expect(ids.sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => 1_001 + i));
    expect(result.skippedOlder).toBe(999);
  });

  it('exports deleted records with their deletedAt only when asked', async () => {
    const { body } = await exported({ format: 'csv', includeDeleted: true });

    const rows = parse(body, { columns: true }) as Array<Record<string, string>>;
    expect(rows).toHaveLength(1_200);
    expect(rows.find((r) => r.id === '7')?.deletedAt).toBe(new Date(T0 + 10_000 * 60_000).toISOString());
    expect(rows.find((r) => r.id === '8')?.deletedAt).toBe('');
  });

  it('reports its progress as it reads, up to the total', async () => {
    const seen: number[] = [];

    await exported({ format: 'jsonl', onProgress: (p) => seen.push(p.read) });

    expect(seen).toHaveLength(1_200);
    expect(seen.at(-1)).toBe(1_200);
  });
});

describe('export progress line', () => {
  it('shows a bar, the share read of the total, the records written and an ETA', () => {
    const line = formatExportProgress(
      { list: 'contacts', read: 500, total: 1_000, written: 490, elapsedMs: 1_000 },
      10,
    );

    expect(line).toBe('export contacts █████░░░░░  50%  read 500/1,000  written 490  ETA 1s');
  });
});

describe('keap-sync export (spawned)', () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'keap-sync-export-'));
    const db = await startDynalite({ path: join(dataDir, 'dynamo') });
    await createMirrorTable(db.client, LOCAL_TABLES.mirror);
    await createStateTable(db.client, LOCAL_TABLES.state);
    await seed(db, LOCAL_TABLES.mirror, LOCAL_TABLES.state, 'demo', 30);
    await db.close();
  });
  afterAll(() => {
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('writes the CSV to --out and says what it exported on standard error', async () => {
    const file = join(dataDir, 'contacts.csv');

    const r = await run(
      process.execPath,
      [BIN, 'export', 'contacts', '--format', 'csv', '--out', file, '--data-dir', dataDir],
      {
        cwd: ROOT,
        env: cliEnv(),
      },
    );

    const rows = parse(readFileSync(file, 'utf8'), { columns: true }) as Array<Record<string, string>>;
    expect(rows).toHaveLength(30);
    expect(rows.find((x) => x.id === '3')).toMatchObject({ contactTier: 'bronze', contactScore: '3' });
    expect(r.stderr).toContain('Exported 30 of 30 contacts as csv');
  });

  it('refuses a --since that is not an ISO-8601 time, with exit code 2', async () => {
    const r = await run(
      process.execPath,
      [BIN, 'export', 'contacts', '--since', 'yesterday', '--data-dir', dataDir],
      {
        cwd: ROOT,
        env: cliEnv(),
      },
    ).catch((err: { code: number; stderr: string }) => err);

    expect(r).toMatchObject({ code: 2 });
    expect((r as { stderr: string }).stderr).toContain('--since must be an ISO-8601');
  });
});

describe('keap-sync export --aws (spawned)', () => {
  let db: RunningDynamo;
  beforeAll(async () => {
    db = await startDynalite();
    await createMirrorTable(db.client, 'deployed-mirror');
    await createStateTable(db.client, 'deployed-state');
    await seed(db, 'deployed-mirror', 'deployed-state', 'demo', 12);
  });
  afterAll(async () => {
    await db?.close();
  });

  it("reads the deployed stack's mirror through the AWS SDK's usual chain", async () => {
    const env = cliEnv({
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
      AWS_ENDPOINT_URL_DYNAMODB: db.endpoint,
      LEDGER_TABLE: 'deployed-ledger',
      STATE_TABLE: 'deployed-state',
      MIRROR_TABLE: 'deployed-mirror',
      JOB_QUEUE_URL: 'http://127.0.0.1:9/queue/jobs',
      DEAD_LETTER_QUEUE_URL: 'http://127.0.0.1:9/queue/dlq',
    });

    const r = await run(process.execPath, [BIN, 'export', 'contacts', '--format', 'jsonl', '--aws'], {
      cwd: ROOT,
      env,
    });

    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(12);
    expect(lines[0].customFields).toHaveProperty('contactTier');
  });
});
