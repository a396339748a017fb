// Unit (pure): the event builder. From the mirror item before and after a write to one EventBridge
// entry, or to the reason nothing is published.
import { describe, expect, it } from 'vitest';
import {
  type BuiltEvent,
  buildChangeEvent,
  ChangeEventError,
  changedFields,
  changeEventId,
  entrySize,
  MAX_ENTRY_BYTES,
  type MirrorImage,
  sameValue,
  toMirrorImage,
} from '#shared/events/index.ts';
import { type ItemInput, mirrorItem } from './support.ts';

const OPTIONS = { eventBusName: 'KeapSync-changes', tableName: 'keap-sync-mirror' };
const image = (input: ItemInput = {}): MirrorImage => toMirrorImage(mirrorItem(input));

function event(old: MirrorImage | undefined, next: MirrorImage | undefined, options = OPTIONS): BuiltEvent {
  const built = buildChangeEvent(old, next, options);
  if (built.kind !== 'event') throw new Error(`expected an event, got a skip (${built.reason})`);
  return built;
}

describe('buildChangeEvent', () => {
  it('publishes a new record as Created with every field named and the record itself', () => {
    const built = event(undefined, image({ data: { given_name: 'Ada', email: 'ada@example.com' } }));

    expect(built.entry).toMatchObject({
      Source: 'keap-sync',
      DetailType: 'Keap Contact Created',
      EventBusName: 'KeapSync-changes',
    });
    expect(JSON.parse(built.entry.Detail)).toEqual({
      eventId: changeEventId('acme', 'contacts', '4711', 1_790_000_000_000, 'created'),
      account: 'acme',
      list: 'contacts',
      id: '4711',
      change: 'created',
      updateTime: new Date(1_790_000_000_000).toISOString(),
      updateTimeMs: 1_790_000_000_000,
      changedFields: ['email', 'given_name'],
      record: { given_name: 'Ada', email: 'ada@example.com' },
      syncedAt: new Date(1_790_000_001_000).toISOString(),
    });
  });

  it('publishes a newer version as Updated with the names of the fields that changed', () => {
    const old = image({ ut: 1000, data: { given_name: 'Ada', family_name: 'L', tags: [1, 2] } });
    const next = image({ ut: 2000, data: { given_name: 'Ada', family_name: 'Lovelace', phone: '1' } });

    const built = event(old, next);

    expect(built.entry.DetailType).toBe('Keap Contact Updated');
    expect(built.detail.changedFields).toEqual(['family_name', 'phone', 'tags']);
    expect(built.detail.record).toEqual(next.data);
    expect(built.detail.updateTimeMs).toBe(2000);
  });

  it('names every list in detail-type', () => {
    const names = {
      contacts: 'Contact',
      companies: 'Company',
      orders: 'Order',
      opportunities: 'Opportunity',
      tags: 'Tag',
      notes: 'Note',
      tasks: 'Task',
      products: 'Product',
      subscriptions: 'Subscription',
      users: 'User',
    };
    for (const [resource, name] of Object.entries(names)) {
      expect(event(undefined, image({ resource })).entry.DetailType).toBe(`Keap ${name} Created`);
    }
  });

  it('publishes nothing for a write that changed nothing, whatever the order of the keys', () => {
    const old = image({ ut: 1000, data: { a: 1, b: { x: [1, { y: 2 }], z: null } } });
    const next = image({ ut: 2000, data: { b: { z: null, x: [1, { y: 2 }] }, a: 1, gone: undefined } });

    expect(buildChangeEvent(old, next, OPTIONS)).toEqual({ kind: 'skip', reason: 'unchanged' });
  });

  it('publishes nothing for an idempotent rewrite of the same version', () => {
    const same = image({ ut: 1000 });
    expect(buildChangeEvent(same, { ...same, syncedAt: 'later' }, OPTIONS)).toEqual({
      kind: 'skip',
      reason: 'unchanged',
    });
  });

  it('never publishes a version that is not newer than the one it replaced', () => {
    const old = image({ ut: 2000, data: { given_name: 'New' } });
    const older = image({ ut: 1000, data: { given_name: 'Old' } });
    const sameTime = image({ ut: 2000, data: { given_name: 'Other' } });

    expect(buildChangeEvent(old, older, OPTIONS)).toEqual({ kind: 'skip', reason: 'not-newer' });
    expect(buildChangeEvent(old, sameTime, OPTIONS)).toEqual({ kind: 'skip', reason: 'not-newer' });
  });

  it('publishes a removed item as Deleted with its last version', () => {
    const old = image({ ut: 1000, data: { given_name: 'Ada' } });

    const built = event(old, undefined);

    expect(built.entry.DetailType).toBe('Keap Contact Deleted');
    expect(built.detail).toMatchObject({
      change: 'deleted',
      updateTimeMs: 1000,
      record: { given_name: 'Ada' },
    });
    expect(built.detail.changedFields).toEqual(['given_name']);
  });

  it('publishes a tombstone (a new image with deletedAt) as Deleted, once', () => {
    const old = image({ ut: 1000, data: { given_name: 'Ada' } });
    const tombstone = image({ ut: 3000, deletedAt: '2026-01-02T00:00:00.000Z' });

    const built = event(old, tombstone);

    expect(built.entry.DetailType).toBe('Keap Contact Deleted');
    expect(built.detail).toMatchObject({
      change: 'deleted',
      updateTimeMs: 3000,
      record: { given_name: 'Ada' },
    });
    expect(buildChangeEvent(tombstone, { ...tombstone, ut: 4000 }, OPTIONS)).toEqual({
      kind: 'skip',
      reason: 'already-deleted',
    });
    expect(buildChangeEvent(tombstone, undefined, OPTIONS)).toEqual({
      kind: 'skip',
      reason: 'already-deleted',
    });
  });

  it('publishes a record that comes back after a tombstone as Created', () => {
    const tombstone = image({ ut: 3000, deletedAt: '2026-01-02T00:00:00.000Z' });
    expect(event(tombstone, image({ ut: 4000 })).entry.DetailType).toBe('Keap Contact Created');
  });

  it('gives the same change the same event id, and every other change another one', () => {
    const v1 = image({ ut: 1000, data: { n: 1 } });
    const v2 = image({ ut: 2000, data: { n: 2 } });

    const once = event(v1, v2).detail.eventId;
    const again = event(v1, v2).detail.eventId;
    const ids = [
      once,
      event(undefined, v1).detail.eventId,
      event(v2, undefined).detail.eventId,
      event(v1, image({ ut: 2000, id: '4712', data: { n: 2 } })).detail.eventId,
      event(v1, image({ ut: 2000, account: 'globex', data: { n: 2 } })).detail.eventId,
    ];

    expect(again).toBe(once);
    expect(new Set(ids).size).toBe(ids.length);
    expect(once).toMatch(/^[0-9a-f]{32}$/);
  });

  it('points to the record instead of carrying it when the entry would exceed 256 KB', () => {
    const big = image({ ut: 2000, data: { notes: 'x'.repeat(MAX_ENTRY_BYTES), given_name: 'Ada' } });

    const built = event(image({ ut: 1000 }), big);

    expect(built.oversize).toBe(true);
    expect(built.bytes).toBeLessThanOrEqual(MAX_ENTRY_BYTES);
    expect(built.bytes).toBe(entrySize(built.entry));
    expect(built.detail.record).toBeUndefined();
    expect(built.detail.recordPointer).toEqual({
      table: 'keap-sync-mirror',
      pk: 'acme#contacts',
      id: '4711',
    });
    expect(built.detail.changedFields).toEqual(['notes']);
  });

  it('counts entry bytes as EventBridge does: UTF-8 of source, detail-type and detail', () => {
    const built = event(undefined, image({ data: { name: 'Zoë 🙂' } }));
    expect(built.bytes).toBe(
      Buffer.byteLength('keap-sync') +
        Buffer.byteLength(built.entry.DetailType) +
        Buffer.byteLength(built.entry.Detail),
    );
  });

  it('refuses an item of a list that has no event type, and an item without data, naming them', () => {
    expect(() => buildChangeEvent(undefined, image({ resource: 'widgets' }), OPTIONS)).toThrow(
      expect.objectContaining({ name: 'ChangeEventError', reason: 'unknown-list' }),
    );
    const noData = { ...mirrorItem(), data: undefined };
    expect(() => toMirrorImage(noData)).toThrow(ChangeEventError);
    expect(() => toMirrorImage(noData)).toThrow(/acme#contacts\/4711.*has no data/);
  });
});

describe('changedFields and sameValue', () => {
  it('names added, removed and changed top-level fields, sorted', () => {
    expect(changedFields({ a: 1, b: 2, c: [1] }, { b: 2, c: [1, 2], d: null })).toEqual(['a', 'c', 'd']);
  });

  it('compares arrays in order and maps in any order', () => {
    expect(sameValue([1, 2], [2, 1])).toBe(false);
    expect(sameValue({ a: 1, b: 2 }, { b: 2, a: 1 })).toBe(true);
    expect(sameValue({ a: 1 }, { a: 1, b: undefined })).toBe(true);
    expect(sameValue({ a: null }, { a: undefined })).toBe(false);
  });
});
