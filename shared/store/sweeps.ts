// Adapter: the ids a reconciliation sweep has read so far, kept in the state table while the sweep
// continues across messages (a list too long to read inside one invocation). One partition per sweep
// run, `sweep#<runId>`, one item per chunk of up to 20,000 ids (well under DynamoDB's 400 KB item
// limit), each with a TTL: a sweep that never finishes leaves nothing behind for long.
import { z } from 'zod';
import { checkInput } from './fields.ts';
import type { StateTable } from './table.ts';
import { KEY_SEPARATOR, STATE_TABLE } from './tables.ts';

/** Ids per chunk item: 20,000 ids of up to 20 digits stay under 400 KB. */
export const SWEEP_CHUNK_IDS = 20_000;
/** How long a sweep's chunks are kept at most (AWS's TTL deletes them after). */
const CHUNK_TTL_SECONDS = 2 * 24 * 3600;

const chunkSchema = z.object({ sk: z.string(), ids: z.string() });
const runIdField = z
  .string()
  .regex(/^[A-Za-z0-9-]{1,64}$/, 'a sweep run id is 1-64 letters, digits and dashes');

const partition = (runId: string) => `sweep${KEY_SEPARATOR}${checkInput(runIdField, 'runId', runId)}`;

export class DynamoSweepStore {
  private readonly table: StateTable;
  private readonly now: () => number;

  constructor(table: StateTable, now: () => number = Date.now) {
    this.table = table;
    this.now = now;
  }

  /** Stores `ids` as chunks `from`, `from + 1`, ...; returns the next chunk index. */
  async save(runId: string, from: number, ids: readonly string[]): Promise<number> {
    const pk = partition(runId);
    let index = from;
    for (let i = 0; i < ids.length; i += SWEEP_CHUNK_IDS) {
      const sk = String(index).padStart(6, '0');
      const chunk = ids.slice(i, i + SWEEP_CHUNK_IDS).join(',');
      // A redelivered message writes the same chunk again: the same ids, no change.
      await this.table.put(
        'saveSweepChunk',
        { pk, sk },
        { ids: chunk, [STATE_TABLE.ttlAttribute]: Math.floor(this.now() / 1000) + CHUNK_TTL_SECONDS },
        {
          ConditionExpression: 'attribute_not_exists(#ids) OR #ids = :ids',
          ExpressionAttributeNames: { '#ids': 'ids' },
          ExpressionAttributeValues: { ':ids': chunk },
        },
      );
      index++;
    }
    return index;
  }

  /** Every id saved for the sweep run (one consistent Query of its partition). */
  async load(runId: string): Promise<string[]> {
    const chunks = await this.table.queryPartition(partition(runId), chunkSchema);
    return chunks.flatMap((c) => (c.ids === '' ? [] : c.ids.split(',')));
  }

  /** Deletes the sweep run's chunks (the TTL would, later). */
  async clear(runId: string, chunks: number): Promise<void> {
    const pk = partition(runId);
    for (let i = 0; i < chunks; i++)
      await this.table.remove(
        'clearSweepChunk',
        { pk, sk: String(i).padStart(6, '0') },
        { ConditionExpression: 'attribute_exists(#pk)', ExpressionAttributeNames: { '#pk': 'pk' } },
      );
  }
}
