// Unit: the configuration file, the job messages and the Lambda environment are validated once, with
// errors that name the setting.
import { describe, expect, it } from 'vitest';
import { ConfigError, parseAppConfig, parseAppConfigJson } from '#shared/config/app-config.ts';
import { PoisonMessageError, parseJob } from '#shared/jobs/schema.ts';
import { EnvironmentError, loadLambdaEnvironment } from '#shared/lambda/runtime.ts';

const account = {
  id: 'acme',
  tenant: 'ab103',
  secretId: 'keap/acme',
  resources: { contacts: { everyMinutes: 5 } },
};

function settingOf(input: unknown): string {
  try {
    parseAppConfig(input);
  } catch (err) {
    if (err instanceof ConfigError) return err.setting;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  it('fills every default', () => {
    const c = parseAppConfig({ accounts: [account] });
    expect(c.worker).toMatchObject({ batchSize: 5, concurrency: 4, timeoutSeconds: 120, maxReceiveCount: 5 });
    expect(c.keap.baseUrl).toBe('https://api.infusionsoft.com/crm');
    expect(c.accounts[0]?.resources.contacts?.mode).toBe('incremental');
    expect(c.mirror.tombstoneDays).toBe(30);
  });

  it.each([
    [{ accounts: [account], secrets: { prefix: 'keap*' } }, 'secrets.prefix'],
    [{ accounts: [account], scheduler: { bulkJobsPerAccount: 4 } }, 'scheduler.bulkJobsPerAccount'],
    [{ accounts: [{ ...account, id: 'Not OK' }] }, 'accounts.0.id'],
    [{ accounts: [{ ...account, resources: {} }] }, 'accounts.0.resources'],
    [{ accounts: [{ ...account, resources: { leads: { everyMinutes: 5 } } }] }, 'accounts.0.resources'],
    [{ accounts: [account], worker: { batchSize: 11 } }, 'worker.batchSize'],
    [{ accounts: [account], mirror: { tombstoneDays: 0 } }, 'mirror.tombstoneDays'],
    [{ accounts: [account, account] }, 'accounts.1.id'],
    [{ accounts: [account], limits: { spikeMarginMs: 40, lateToleranceMs: 40 } }, 'limits.lateToleranceMs'],
  ])('names the bad setting (%#)', (input, setting) => {
    expect(settingOf(input)).toBe(setting);
  });

  it('rejects unknown settings by name', () => {
    expect(() => parseAppConfig({ accounts: [account], wrker: {} })).toThrow(/unknown setting\(s\) wrker/);
  });

  it('says when the file is not JSON', () => {
    expect(() => parseAppConfigJson('{nope', 'x.json')).toThrow(/x.json is not valid JSON/);
  });
});

describe('job messages', () => {
  it('accepts a sync job with defaults', () => {
    expect(parseJob('{"kind":"sync","account":"acme","resource":"contacts"}')).toMatchObject({
      mode: 'incremental',
      attempt: 0,
    });
  });

  it('accepts a hook event job, tag applications with "<tagId>:<contactId>" ids', () => {
    expect(
      parseJob(
        '{"kind":"hookEvent","account":"acme","resource":"tagApplications","event":"removed","ids":["91:4711","92"],"receivedAt":"2026-01-01T00:00:00.000Z"}',
      ),
    ).toMatchObject({ kind: 'hookEvent', ids: ['91:4711', '92'], attempt: 0 });
  });

  it.each([
    ['not json', 'invalid-json'],
    ['{"kind":"dance","account":"acme"}', 'unknown-kind'],
    ['{"kind":"sync","account":"acme","resource":"leads"}', 'invalid-job'],
    [
      '{"kind":"createNote","account":"acme","idempotencyKey":"note-0001","contactId":"12","note":{"user_id":1}}',
      'invalid-job',
    ],
    [
      '{"kind":"applyTags","account":"acme","idempotencyKey":"short","tagId":"1","contactIds":["2"]}',
      'invalid-job',
    ],
    [
      '{"kind":"hookEvent","account":"acme","resource":"contacts","event":"edit","ids":["1:2"],"receivedAt":"2026-01-01T00:00:00.000Z"}',
      'invalid-job',
    ],
    [
      '{"kind":"hookEvent","account":"acme","resource":"users","event":"edit","ids":["1"],"receivedAt":"2026-01-01T00:00:00.000Z"}',
      'invalid-job',
    ],
  ])('classifies %s as poison (%s)', (body, reason) => {
    try {
      parseJob(body);
      throw new Error('expected poison');
    } catch (err) {
      expect(err).toBeInstanceOf(PoisonMessageError);
      expect((err as PoisonMessageError).reason).toBe(reason);
    }
  });
});

describe('Lambda environment', () => {
  const env = {
    KEAP_SYNC_CONFIG: JSON.stringify({ accounts: [account] }),
    LEDGER_TABLE: 'ledger',
    STATE_TABLE: 'state',
    MIRROR_TABLE: 'mirror',
    JOB_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/1/jobs',
    DEAD_LETTER_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/1/dlq',
  };

  it('loads and validates the configuration once', () => {
    expect(loadLambdaEnvironment(env).config.accounts[0]?.id).toBe('acme');
  });

  it('fails with the name of a missing variable', () => {
    const { MIRROR_TABLE: _m, ...rest } = env;
    expect(() => loadLambdaEnvironment(rest)).toThrow(EnvironmentError);
    expect(() => loadLambdaEnvironment(rest)).toThrow(/MIRROR_TABLE is not set/);
  });
});
