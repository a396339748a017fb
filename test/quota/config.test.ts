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
    expect(c.cellMs).toBe(c.spikeIntervalMs + c.spikeMarginMs);
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

  it('lets the window margin exceed the spike interval (an operator may buy more safety)', () => {
    const c = parseLedgerSettings({ tableName: 't', marginMs: 400 });
    expect(c.windowMs).toBe(c.minuteWindowMs + 400);
    expect(c.cellMs).toBe(c.spikeIntervalMs + c.spikeMarginMs);
  });

  it('paces one key at its sustained rate by default: 250 ms a call at Keap limits', () => {
    const c = parseLedgerSettings({ tableName: 't' });
    expect(c.cellMs).toBe(250);
    expect(c.lateToleranceMs).toBeLessThan(c.spikeMarginMs);
  });

  it('rejects a late tolerance that would eat the spike margin', () => {
    expect(settingOf({ tableName: 't', spikeMarginMs: 50, lateToleranceMs: 50 })).toBe('lateToleranceMs');
    expect(() => parseLedgerSettings({ tableName: 't', spikeMarginMs: 50, lateToleranceMs: 50 })).toThrow(
      /smaller than the spike margin/,
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
