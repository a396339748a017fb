// Unit: named custom fields. The pure naming of raw `[{id, content}]` values by a model, and the change
// events carrying them (`customFields`, `customFieldInfo`, `changedCustomFields`) beside the raw record.
import { describe, expect, it } from 'vitest';
import { buildChangeEvent, toMirrorImage } from '#shared/events/index.ts';
import { nameCustomFields, toDefs } from '#shared/pipeline/custom-fields.ts';
import { mirrorItem } from './support.ts';

const OPTIONS = { eventBusName: 'bus', tableName: 'mirror' };
const DEFS = [
  { id: '11', name: 'contactTier', label: 'Tier', type: 'DROPDOWN' },
  { id: '13', name: 'contactScore', label: 'Score', type: 'WHOLE_NUMBER' },
];

/** A mirror item with raw custom fields and, like the mirror writes it, their named form. */
function named(ut: number, tier: string, score: number) {
  const data = {
    given_name: 'Ada',
    custom_fields: [
      { id: '11', content: tier },
      { id: '13', content: score },
    ],
  };
  const { named: n } = nameCustomFields(data, DEFS);
  return { ...mirrorItem({ ut, data }), customFields: n.values, customFieldInfo: n.info };
}

describe('nameCustomFields', () => {
  it('names each raw value by its field_name, with its id and label beside', () => {
    const result = nameCustomFields(
      {
        custom_fields: [
          { id: '11', content: 'gold' },
          { id: 13, content: 7 },
        ],
      },
      DEFS,
    );

    expect(result.named.values).toEqual({ contactTier: 'gold', contactScore: 7 });
    expect(result.named.info).toEqual({
      contactTier: { id: '11', label: 'Tier' },
      contactScore: { id: '13', label: 'Score' },
    });
    expect(result.unknownIds).toEqual([]);
  });

  it('reports ids the model does not know and leaves them out of the named form', () => {
    const result = nameCustomFields(
      {
        custom_fields: [
          { id: '99', content: 'x' },
          { id: '11', content: null },
        ],
      },
      DEFS,
    );

    expect(result.named.values).toEqual({ contactTier: null });
    expect(result.unknownIds).toEqual(['99']);
  });

  it('drops model entries without an id or field_name when storing a model', () => {
    const defs = toDefs([
      { id: '1', field_name: 'a', label: 'A', field_type: 'TEXT' },
      { id: '2', field_name: null, label: 'B' },
    ]);

    expect(defs).toEqual([{ id: '1', name: 'a', label: 'A', type: 'TEXT' }]);
  });
});

describe('change events with named custom fields', () => {
  it('carry the named form beside the raw record on create, every name changed', () => {
    const built = buildChangeEvent(undefined, toMirrorImage(named(1000, 'gold', 5)), OPTIONS);

    if (built.kind !== 'event') throw new Error('expected an event');
    expect(built.detail.customFields).toEqual({ contactTier: 'gold', contactScore: 5 });
    expect(built.detail.customFieldInfo?.contactTier).toEqual({ id: '11', label: 'Tier' });
    expect(built.detail.changedCustomFields).toEqual(['contactScore', 'contactTier']);
    expect(built.detail.record?.custom_fields).toEqual([
      { id: '11', content: 'gold' },
      { id: '13', content: 5 },
    ]);
  });

  it('name only the custom fields whose value changed on update', () => {
    const built = buildChangeEvent(
      toMirrorImage(named(1000, 'gold', 5)),
      toMirrorImage(named(2000, 'gold', 6)),
      OPTIONS,
    );

    if (built.kind !== 'event') throw new Error('expected an event');
    expect(built.detail.changedCustomFields).toEqual(['contactScore']);
    expect(built.detail.changedFields).toEqual(['custom_fields']);
  });

  it('leave the named form out when the record is replaced by a pointer', () => {
    const big = named(1000, 'x'.repeat(2_000), 1);

    const built = buildChangeEvent(undefined, toMirrorImage(big), { ...OPTIONS, maxEntryBytes: 1_000 });

    if (built.kind !== 'event') throw new Error('expected an event');
    expect(built.detail.recordPointer).toBeDefined();
    expect(built.detail.customFields).toBeUndefined();
  });
});
