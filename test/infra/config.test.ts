// Tests (infrastructure): a bad configuration or deployment setting stops synth with a message that
// names the setting, before anything is built.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '#shared/config/app-config.ts';
import { DeploySettingError, MAX_CONFIG_BYTES } from '../../infra/settings.ts';
import { build, REPO_ROOT, scratchSubdir, testConfig, writeConfig } from './support.ts';

function withAccount(patch: Record<string, unknown>): unknown {
  const config = testConfig();
  return { ...config, accounts: [{ ...config.accounts[0], ...patch }] };
}

describe('configuration checked at synth', () => {
  it('rejects an account without resources, naming the setting', () => {
    expect(() => build({ config: withAccount({ resources: {} }) })).toThrow(
      /accounts\.0\.resources: list at least one resource to sync/,
    );
  });

  it('rejects an unknown setting, naming it', () => {
    const config = { ...testConfig(), worker: { batchSize: 5, retries: 3 } };
    expect(() => build({ config })).toThrow(/worker: unknown setting\(s\) retries/);
  });

  it('rejects a worker concurrency Lambda cannot use', () => {
    const config = { ...testConfig(), worker: { concurrency: 1 } };
    expect(() => build({ config })).toThrow(ConfigError);
    expect(() => build({ config })).toThrow(/worker\.concurrency/);
  });

  it('says which file is not JSON', () => {
    const file = writeConfig('{"accounts": [');
    expect(() => build({ context: { configFile: file } })).toThrow(/is not valid JSON/);
  });

  it('says what to do when the file is missing', () => {
    expect(() => build({ context: { configFile: 'no-such-keap-sync.config.json' } })).toThrow(
      /no-such-keap-sync\.config\.json could not be read \(ENOENT\); create it/,
    );
  });

  it('rejects a secret id with a wildcard, which would widen the grant', () => {
    expect(() => build({ config: withAccount({ secretId: 'keap-sync/*' }) })).toThrow(
      /accounts\.0\.secretId: "keap-sync\/\*" is not a Secrets Manager secret name/,
    );
  });

  it('rejects an ARN that is not a secret', () => {
    expect(() => build({ config: withAccount({ secretId: 'arn:aws:s3:::my-bucket/keap-key' }) })).toThrow(
      /accounts\.0\.secretId: .* is not a Secrets Manager secret ARN/,
    );
  });

  it('synthesizes a file of 1,000 accounts: none of them goes into the environment', () => {
    const resources = { contacts: { everyMinutes: 5 }, tags: { everyMinutes: 60 } };
    const accounts = Array.from({ length: 1_000 }, (_, i) => ({
      id: `account-${i}`,
      tenant: `tenant${i}.infusionsoft.com`,
      secretId: `keap-sync/account-${i}`,
      resources,
    }));
    const { deployment } = build({ config: { accounts } });
    expect(deployment.loaded.json).toBe('{}');
  });

  it('rejects an account secret outside secrets.prefix, which the one grant would not cover', () => {
    expect(() => build({ config: withAccount({ secretId: 'keap/acme' }) })).toThrow(
      /accounts\.0\.secretId: "keap\/acme" is not named under the secrets prefix "keap-sync\/"/,
    );
  });

  it('rejects global settings too large for Lambda environment variables', () => {
    const config = { ...testConfig(), keap: { baseUrl: `https://example.com/${'x'.repeat(4_000)}` } };
    expect(() => build({ config })).toThrow(new RegExp(`may take at most ${MAX_CONFIG_BYTES} bytes`));
  });

  it('rejects an invalid context setting, naming it and how to set it', () => {
    expect(() => build({ config: testConfig(), context: { logRetentionDays: '31' } })).toThrow(
      DeploySettingError,
    );
    expect(() => build({ config: testConfig(), context: { logRetentionDays: '31' } })).toThrow(
      /Invalid deployment setting "logRetentionDays": use one of 1, 3, 5, 7, 14, 30/,
    );
    expect(() => build({ config: testConfig(), context: { alarmEmail: 'ops at example' } })).toThrow(
      /"alarmEmail": use an email address/,
    );
  });

  it('stops `node infra/app.ts` with the message and exit code 1', async () => {
    const file = writeConfig(withAccount({ resources: {} }));
    const outdir = scratchSubdir('cdk-out-');
    const run = promisify(execFile)(process.execPath, [path.join(REPO_ROOT, 'infra/app.ts')], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        CDK_OUTDIR: outdir,
        CDK_CONTEXT_JSON: JSON.stringify({ configFile: file }),
      },
    });
    await expect(run).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/Invalid keap-sync configuration: .*accounts\.0\.resources/),
    });
  });
});
