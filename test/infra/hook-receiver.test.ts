// Tests (infrastructure): the REST hook receiver: a Function URL without IAM auth (Keap signs
// nothing; the URL's token is the check), least privilege (read the endpoint item, queue jobs),
// a bounded public entry point, and the alarms for failing deliveries and Inactive hooks.
import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { grants, logicalId, roleStatements, type Synth, sortGrants, synth } from './support.ts';

describe('hook receiver', () => {
  let s: Synth;
  beforeAll(() => {
    s = synth({ context: { hookReceiverReservedConcurrency: 20 } });
  });

  it('is reached through a Function URL that Keap can call without signing', () => {
    s.app.hasResourceProperties('AWS::Lambda::Url', {
      AuthType: 'NONE',
      InvokeMode: 'BUFFERED',
      TargetFunctionArn: {
        'Fn::GetAtt': [logicalId(s.app, 'AWS::Lambda::Function', 'HookReceiverFunction'), 'Arn'],
      },
    });
    s.app.hasOutput('HookReceiverUrl', Match.anyValue());
  });

  it('may read the state table and queue jobs, nothing more', () => {
    expect(grants(roleStatements(s.app, 'HookReceiverRole'))).toEqual(
      sortGrants([
        { actions: ['dynamodb:GetItem'], resource: 'StateTable' },
        { actions: ['sqs:SendMessage'], resource: 'JobQueue' },
        { actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resource: 'HookReceiverLogs' },
      ]),
    );
  });

  it('answers within Keap 30 s limit, bounds its concurrency and its body size from the settings', () => {
    s.app.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('hook receiver'),
      Timeout: 10,
      ReservedConcurrentExecutions: 20,
      Environment: { Variables: Match.objectLike({ HOOK_MAX_BODY_BYTES: '524288' }) },
    });
  });

  it('refuses a receiver timeout Keap would count as a failed delivery', () => {
    expect(() => synth({ context: { hookReceiverTimeoutSeconds: 30 } })).toThrow(
      /hookReceiverTimeoutSeconds/,
    );
  });

  it('alarms on receiver 5xx or errors, on many refused requests, and on an Inactive hook of any account', () => {
    s.app.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmDescription: Match.stringLikeRegexp('answered Keap with 5xx'),
      Metrics: Match.arrayWith([Match.objectLike({ Expression: 'FILL(url5xx, 0) + FILL(errors, 0)' })]),
    });
    s.app.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmDescription: Match.stringLikeRegexp('hook requests were refused'),
      Threshold: 10,
      Metrics: [Match.objectLike({ Expression: 'SELECT SUM(HookDeliveriesRejected) FROM KeapSync' })],
    });
    // One alarm over every account (accounts are data, in the registry): an added account is watched too.
    s.app.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmDescription: Match.stringLikeRegexp("an account's REST hook Inactive"),
      Threshold: 0,
      Metrics: [Match.objectLike({ Expression: 'SELECT MAX(HooksInactive) FROM KeapSync' })],
    });
  });
});
