// Use case (CLI): `keap-sync export <list>`: the mirror of one list streamed as JSON lines or CSV, for
// spreadsheets and BI tools. Records are read a Query page at a time and written with back-pressure
// (memory stays flat whatever the list's size). CSV has one column per top-level field (objects and
// arrays as JSON) and one per custom field, named by Keap's field_name; its columns are fixed before
// the first row from the list's schema, the stored custom-field model and the first page.
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { stringify } from 'csv-stringify';
import type { SyncResource } from '#shared/jobs/schema.ts';
import { REGISTRY } from '#shared/keap/registry.ts';
import type { MirrorItem, StoredModel } from '#shared/store/index.ts';

export type ExportFormat = 'jsonl' | 'csv';

/** What an export reads: the mirror (MirrorStore) and the stored custom-field models. */
export interface ExportSources {
  mirror: {
    iterate(account: string, resource: string): AsyncIterable<MirrorItem>;
    count(account: string, resource: string): Promise<number>;
  };
  models: { get(account: string, resource: string): Promise<StoredModel | undefined> };
}

export interface ExportOptions {
  account: string;
  list: SyncResource;
  format: ExportFormat;
  /** Only records updated at or after this time (epoch ms). */
  sinceMs?: number;
  /** Also export records Keap deleted (tombstones), with their `deletedAt`. */
  includeDeleted?: boolean;
  out: Writable;
  /** Leave `out` open at the end (standard output). */
  keepOpen?: boolean;
  /** Told after each record read. */
  onProgress?: (p: { read: number; total: number; written: number }) => void;
}

export interface ExportResult {
  /** Records in the mirror of the list (tombstones included). */
  total: number;
  read: number;
  written: number;
  skippedDeleted: number;
  skippedOlder: number;
  /** CSV only: the header. */
  columns?: string[];
}

/** Fixed columns first in CSV. */
const META_COLUMNS = ['id', 'updateTime', 'syncedAt'] as const;

/** A JSON line: the mirror's record with its named custom fields beside Keap's raw form. */
function jsonLine(item: MirrorItem): string {
  return `${JSON.stringify({
    account: item.account,
    list: item.resource,
    id: item.id,
    updateTime: item.updateTime,
    syncedAt: item.syncedAt,
    ...(item.deletedAt ? { deletedAt: item.deletedAt } : {}),
    record: item.data,
    ...(item.customFields
      ? { customFields: item.customFields, customFieldInfo: item.customFieldInfo ?? {} }
      : {}),
  })}\n`;
}

/** A cell: text and numbers as they are, booleans as true/false, objects and arrays as JSON, null empty. */
function cell(value: unknown): string | number {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string' || typeof value === 'number') return value;
  if (typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

/** The schema's top-level field names (the registry's zod object), when it has a shape. */
function schemaFields(list: SyncResource): string[] {
  const schema = REGISTRY[list].schema as unknown as { shape?: Record<string, unknown> };
  return schema.shape ? Object.keys(schema.shape) : [];
}

interface CsvLayout {
  columns: string[];
  row(item: MirrorItem): Array<string | number>;
}

/**
 * Columns: id, updateTime, syncedAt (and deletedAt), then the record's fields (the schema's, then any
 * other seen in the first page, `custom_fields` left out), then one per custom field: the stored
 * model's names, then any other named in the first page. A custom field whose name is also a record
 * field is `custom_fields.<name>`. Fields first seen after the first page are in the JSON lines only.
 */
function csvLayout(
  list: SyncResource,
  model: StoredModel | undefined,
  firstPage: readonly MirrorItem[],
  includeDeleted: boolean,
): CsvLayout {
  const fields = new Set(schemaFields(list));
  for (const item of firstPage) for (const key of Object.keys(item.data)) fields.add(key);
  for (const skip of ['id', 'custom_fields']) fields.delete(skip);
  const custom = new Set(model?.fields.map((f) => f.name) ?? []);
  for (const item of firstPage) for (const key of Object.keys(item.customFields ?? {})) custom.add(key);
  const recordColumns = [...fields];
  const customColumns = [...custom].map((name) => ({
    name,
    column:
      fields.has(name) || (META_COLUMNS as readonly string[]).includes(name) ? `custom_fields.${name}` : name,
  }));
  const meta: string[] = [...META_COLUMNS, ...(includeDeleted ? ['deletedAt'] : [])];
  return {
    columns: [...meta, ...recordColumns, ...customColumns.map((c) => c.column)],
    row: (item) => [
      item.id,
      item.updateTime,
      item.syncedAt,
      ...(includeDeleted ? [item.deletedAt ?? ''] : []),
      ...recordColumns.map((f) => cell(item.data[f])),
      ...customColumns.map((c) => cell(item.customFields?.[c.name])),
    ],
  };
}

/** Streams the mirror of `options.list` to `options.out`. */
export async function exportMirror(sources: ExportSources, options: ExportOptions): Promise<ExportResult> {
  const { account, list, format, sinceMs, includeDeleted = false } = options;
  const total = await sources.mirror.count(account, list);
  const result: ExportResult = { total, read: 0, written: 0, skippedDeleted: 0, skippedOlder: 0 };
  const keep = (item: MirrorItem): boolean => {
    if (item.deletedAt !== undefined && !includeDeleted) {
      result.skippedDeleted++;
      return false;
    }
    if (sinceMs !== undefined && item.updateTimeMs < sinceMs) {
      result.skippedOlder++;
      return false;
    }
    return true;
  };
  const source = sources.mirror.iterate(account, list)[Symbol.asyncIterator]();
  const read = async (): Promise<MirrorItem | undefined> => {
    const next = await source.next();
    if (next.done) return undefined;
    result.read++;
    options.onProgress?.({ read: result.read, total, written: result.written });
    return next.value;
  };
  // Kept records, one at a time, after `head` (what was read ahead to lay out the CSV columns).
  async function* kept(head: MirrorItem[]): AsyncGenerator<MirrorItem> {
    for (const item of head) if (keep(item)) yield item;
    for (let item = await read(); item !== undefined; item = await read()) if (keep(item)) yield item;
  }
  const end = { end: !options.keepOpen };
  if (format === 'jsonl') {
    await pipeline(
      Readable.from(
        (async function* () {
          for await (const item of kept([])) {
            result.written++;
            yield jsonLine(item);
          }
        })(),
      ),
      options.out,
      end,
    );
    return result;
  }
  // CSV: read ahead one mirror page to see the fields the records carry.
  const head: MirrorItem[] = [];
  const pageSize = 500;
  for (let i = 0; i < pageSize; i++) {
    const item = await read();
    if (item === undefined) break;
    head.push(item);
  }
  const layout = csvLayout(list, await sources.models.get(account, list), head, includeDeleted);
  result.columns = layout.columns;
  await pipeline(
    Readable.from(
      (async function* () {
        for await (const item of kept(head)) {
          result.written++;
          yield layout.row(item);
        }
      })(),
    ),
    stringify({ header: true, columns: layout.columns }),
    options.out,
    end,
  );
  return result;
}
