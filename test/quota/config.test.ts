import { describe, expect, it } from 'vitest';
import { LedgerConfigError, parseLedgerSettings } from '#shared/quota/index.ts';

function settingOf(input: unknown): string {
  try {
    parseLedgerSettings(input);
  } catch (err) {
    if (err instanceof LedgerConfigError) return err.setting;
    throw err;
  }
  throw new Error('expected a LedgerConfigError');
}

describe('ledger settings', () => {
  it("defaults every limit to Keap's documented value", () => {
    const c = parseLedgerSettings({ tableName: 't' });
    expect(c).toMatchObject({
      spikeIntervalMs: 100,
      minuteLimit: 240,
      minuteWindowMs: 60_000,
      dayLimit: 30_000,
      tenantMinuteLimit: 10_000,
      tenantDayLimit: 250_000,
      quotaScope: 'tenant',
    });
    expect(c.cellMs).toBe(c.spikeIntervalMs + c.marginMs);
  });

  it('requires the table name', () => {
    expect(settingOf({})).toBe('tableName');
  });

  it.each([
    ['minuteLimit', 0],
    ['dayLimit', -5],
    ['spikeIntervalMs', 0],
    ['tenantMinuteLimit', 1.5],
    ['bulkShare', 0],
  ])('rejects %s = %s, naming the setting', (name, value) => {
    expect(settingOf({ tableName: 't', [name]: value })).toBe(name);
  });

  it('rejects a margin not smaller than the spike interval', () => {
    expect(settingOf({ tableName: 't', marginMs: 100 })).toBe('marginMs');
    expect(() => parseLedgerSettings({ tableName: 't', marginMs: 100 })).toThrow(
      /smaller than spikeIntervalMs/,
    );
  });

  it('rejects an unknown scope', () => {
    expect(settingOf({ tableName: 't', quotaScope: 'account' })).toBe('quotaScope');
  });

  it('rejects unknown settings by name', () => {
    expect(settingOf({ tableName: 't', minuteLimt: 10 })).toBe('minuteLimt');
  });

  it('rejects key scope when the keys could together break the tenant caps', () => {
    expect(settingOf({ tableName: 't', quotaScope: 'key', maxKeysPerTenant: 9 })).toBe('maxKeysPerTenant');
    expect(() =>
      parseLedgerSettings({ tableName: 't', quotaScope: 'key', maxKeysPerTenant: 8 }),
    ).not.toThrow();
  });

  it('rejects settings whose item could outgrow 1 KB', () => {
    expect(settingOf({ tableName: 't', bucketMs: 100, holdHorizonMs: 600_000 })).toBe('bucketMs');
  });
});
