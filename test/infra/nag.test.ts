// Tests (infrastructure): cdk-nag's AwsSolutions rules pass with no unsuppressed error or warning,
// and the only suppressions are the ones a reviewer has read (each with its reason).
import { Aspects } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import type { KeapSyncDeployment } from '../../infra/keap-sync.ts';
import { build, testConfig } from './support.ts';

describe('cdk-nag AwsSolutions', () => {
  let deployment: KeapSyncDeployment;
  beforeAll(() => {
    const config = testConfig();
    // Every way of naming a secret under the prefix: by name, by complete ARN, by partial ARN.
    config.accounts.push({
      id: 'initech',
      tenant: 'in123',
      secretId: 'arn:aws:secretsmanager:us-east-1:111122223333:secret:keap-sync/initech',
      resources: { contacts: { everyMinutes: 5 } },
    });
    const built = build({ config, context: { alarmEmail: 'ops@example.com' } });
    Aspects.of(built.cdkApp).add(new AwsSolutionsChecks({ verbose: true, reports: false }));
    deployment = built.deployment;
  });

  it('finds no unsuppressed error or warning in either stack', () => {
    for (const stack of [deployment.data, deployment.app]) {
      const annotations = Annotations.fromStack(stack);
      expect(annotations.findError('*', Match.stringLikeRegexp('AwsSolutions-'))).toEqual([]);
      expect(annotations.findWarning('*', Match.stringLikeRegexp('AwsSolutions-'))).toEqual([]);
    }
  });

  it('suppresses only the reviewed findings, each with its reason', () => {
    const suppressions = [deployment.data, deployment.app].flatMap((stack) =>
      Object.entries(
        Template.fromStack(stack).toJSON().Resources as Record<
          string,
          { Metadata?: Record<string, unknown> }
        >,
      ).flatMap(([id, resource]) => {
        const nag = resource.Metadata?.cdk_nag as
          | { rules_to_suppress: Array<{ id: string; reason: string; applies_to?: unknown[] }> }
          | undefined;
        return (nag?.rules_to_suppress ?? []).map((rule) => ({ id, rule }));
      }),
    );
    const secretsPrefix = (role: string) => ({
      id: expect.stringMatching(new RegExp(`^${role}RoleDefaultPolicy`)),
      rule: expect.objectContaining({
        id: 'AwsSolutions-IAM5',
        reason: expect.stringMatching(/the accounts' secrets prefix "keap-sync\/"/),
      }),
    });
    expect(suppressions).toEqual([
      {
        id: expect.stringMatching(/^EventDeadLetterQueue/),
        rule: expect.objectContaining({
          id: 'AwsSolutions-SQS3',
          reason: expect.stringMatching(/It is a dead-letter queue/),
        }),
      },
      secretsPrefix('Worker'),
      secretsPrefix('Scheduler'),
      {
        id: expect.stringMatching(/^ScheduleRoleDefaultPolicy/),
        rule: expect.objectContaining({
          id: 'AwsSolutions-IAM5',
          reason: expect.stringMatching(/the scheduler function and its versions/),
        }),
      },
      {
        id: expect.stringMatching(/^PublisherRoleDefaultPolicy/),
        rule: expect.objectContaining({
          id: 'AwsSolutions-IAM5',
          reason: expect.stringMatching(/ListStreams has no resource-level permissions/),
          applies_to: ['Resource::*'],
        }),
      },
    ]);
  });
});
