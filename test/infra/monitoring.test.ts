// Tests (infrastructure): alarms, their thresholds and settings, the notification topic, the
// dashboard, and the contract between the alarms' queries and the metrics the functions emit.

import { Match } from 'aws-cdk-lib/assertions';
import type { Context } from 'aws-lambda';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildLambdaRuntime, lambdaHandler, loadLambdaEnvironment } from '#shared/lambda/runtime.ts';
import { METRICS_NAMESPACE, metricsQuery } from '../../infra/constructs/monitoring.ts';
import { logicalId, type Synth, synth, testConfig } from './support.ts';

function alarmOn(s: Synth, expression: string) {
  return s.app.findResources('AWS::CloudWatch::Alarm', {
    Properties: { Metrics: [Match.objectLike({ Expression: expression })] },
  });
}

describe('alarms', () => {
  let s: Synth;
  beforeAll(() => {
    s = synth();
  });

  it('alarms as soon as a message is in the dead-letter queue', () => {
    s.app.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [
        { Name: 'QueueName', Value: { 'Fn::ImportValue': Match.stringLikeRegexp('DeadLetterQueue') } },
      ],
      Statistic: 'Maximum',
      Period: 300,
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 0,
      TreatMissingData: 'notBreaching',
    });
  });

  it('alarms on worker and scheduler errors above the setting', () => {
    for (const fn of ['WorkerFunction', 'SchedulerFunction']) {
      s.app.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/Lambda',
        MetricName: 'Errors',
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: logicalId(s.app, 'AWS::Lambda::Function', fn) } }],
        Statistic: 'Sum',
        ComparisonOperator: 'GreaterThanThreshold',
        Threshold: 0,
      });
    }
    const t = synth({ context: { functionErrorsAlarmThreshold: '3' } });
    t.app.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'Errors', Threshold: 3 });
  });

  it('alarms on any Keap 429 and any rejected key of any account, with one alarm each', () => {
    for (const metric of ['Keap429s', 'KeyRejected'] as const) {
      s.app.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Metrics: [
          {
            Id: Match.anyValue(),
            Expression: `SELECT SUM(${metric}) FROM KeapSync`,
            Period: 300,
            ReturnData: true,
          },
        ],
        ComparisonOperator: 'GreaterThanThreshold',
        Threshold: 0,
        TreatMissingData: 'notBreaching',
      });
    }
  });

  it('names no account in any alarm: accounts added to the registry are watched without a deploy', () => {
    const alarms = JSON.stringify(s.app.findResources('AWS::CloudWatch::Alarm'));
    expect(alarms).not.toMatch(/acme|globex/);
  });

  it('alarms when calls leave within 80% of the ledger lateness tolerance of their slot', () => {
    s.app.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Metrics: [Match.objectLike({ Expression: 'SELECT MAX(SendLatenessMaxMs) FROM KeapSync' })],
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Threshold: 40,
      TreatMissingData: 'notBreaching',
    });
  });

  it('alarms when less than 10% of the day budget is left, by default', () => {
    // Keap's day limit is 30,000 calls per tenant.
    s.app.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Metrics: [Match.objectLike({ Expression: 'SELECT MIN(QuotaDayLeft) FROM KeapSync' })],
      ComparisonOperator: 'LessThanThreshold',
      Threshold: 3000,
      TreatMissingData: 'ignore',
    });
  });

  it('follows the configured day limit, and takes the threshold from context', () => {
    const config = { ...testConfig(), limits: { dayLimit: 12_000 } };
    const t = synth({ config });
    expect(Object.values(alarmOn(t, 'SELECT MIN(QuotaDayLeft) FROM KeapSync'))).toEqual([
      expect.objectContaining({ Properties: expect.objectContaining({ Threshold: 1200 }) }),
    ]);
    const u = synth({ context: { quotaDayLeftAlarmBelow: 500 } });
    expect(Object.values(alarmOn(u, 'SELECT MIN(QuotaDayLeft) FROM KeapSync'))).toEqual([
      expect.objectContaining({ Properties: expect.objectContaining({ Threshold: 500 }) }),
    ]);
  });

  it('alarms when a sync finishes more than syncLagAlarmMinutes behind (default one day)', () => {
    s.app.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Metrics: [Match.objectLike({ Expression: 'SELECT MAX(SyncLagMs) FROM KeapSync' })],
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 86_400_000,
    });
    const t = synth({ context: { syncLagAlarmMinutes: '90' } });
    t.app.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Metrics: [Match.objectLike({ Expression: 'SELECT MAX(SyncLagMs) FROM KeapSync' })],
      Threshold: 5_400_000,
    });
  });

  it('creates no topic unless alarmEmail is set, and then notifies it from every alarm', () => {
    s.app.resourceCountIs('AWS::SNS::Topic', 0);
    const t = synth({ context: { alarmEmail: 'ops@example.com' } });
    const topic = logicalId(t.app, 'AWS::SNS::Topic', 'MonitoringAlarmTopic');
    t.app.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'ops@example.com',
      TopicArn: { Ref: topic },
    });
    for (const alarm of Object.values(t.app.findResources('AWS::CloudWatch::Alarm'))) {
      expect(alarm.Properties.AlarmActions).toEqual([{ Ref: topic }]);
    }
  });

  it('encrypts the topic with a rotating key CloudWatch may use, and denies non-TLS publishing', () => {
    const t = synth({ context: { alarmEmail: 'ops@example.com' } });
    const key = logicalId(t.app, 'AWS::KMS::Key', 'MonitoringAlarmTopicKey');
    t.app.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: { 'Fn::GetAtt': [key, 'Arn'] } });
    t.app.hasResourceProperties('AWS::KMS::Key', {
      EnableKeyRotation: true,
      KeyPolicy: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Principal: { Service: 'cloudwatch.amazonaws.com' },
            Action: ['kms:Decrypt', 'kms:GenerateDataKey*'],
          }),
        ]),
      },
    });
    t.app.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          Match.objectLike({
            Effect: 'Allow',
            Principal: { Service: 'cloudwatch.amazonaws.com' },
            Action: 'sns:Publish',
            Condition: Match.objectLike({ StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } }),
          }),
        ]),
      },
    });
  });
});

/** The dashboard's body as JSON, with CloudFormation references replaced by placeholders. */
function dashboardExpressions(s: Synth): string[] {
  const dashboards = Object.values(s.app.findResources('AWS::CloudWatch::Dashboard'));
  expect(dashboards).toHaveLength(1);
  const body = dashboards[0]?.Properties.DashboardBody as { 'Fn::Join': [string, unknown[]] };
  const text = body['Fn::Join'][1].map((part) => (typeof part === 'string' ? part : 'REF')).join('');
  const parsed = JSON.parse(text) as { widgets: Array<{ properties: { metrics?: unknown[][] } }> };
  return parsed.widgets
    .flatMap((w) => w.properties.metrics ?? [])
    .flat()
    .flatMap((m) => (typeof m === 'object' && m !== null && 'expression' in m ? [String(m.expression)] : []));
}

describe('dashboard', () => {
  it('shows quota left, calls, 429s and lag with a line per account, deferrals and records', () => {
    const s = synth();
    const expressions = dashboardExpressions(s);
    expect(expressions).toEqual(
      expect.arrayContaining([
        metricsQuery('MIN', 'QuotaMinuteLeft', undefined, 'account'),
        metricsQuery('MIN', 'QuotaDayLeft', undefined, 'account'),
        metricsQuery('SUM', 'KeapCalls', undefined, 'account'),
        metricsQuery('SUM', 'Keap429s', undefined, 'account'),
        metricsQuery('SUM', 'Deferrals', undefined, 'reason'),
        metricsQuery('SUM', 'RecordsWritten', undefined, 'resource'),
        metricsQuery('MAX', 'SyncLagMs', undefined, 'account'),
      ]),
    );
    expect(JSON.stringify(expressions)).not.toMatch(/acme|globex/);
    s.app.hasOutput('DashboardUrl', { Value: Match.anyValue() });
  });
});

/** The parts of a Lambda context Powertools reads. */
function invocationContext(): Context {
  const unsupported = () => {
    throw new Error('not on nodejs24.x');
  };
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: 'keap-sync-worker',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:eu-west-1:111122223333:function:keap-sync-worker',
    memoryLimitInMB: '256',
    awsRequestId: 'request-1',
    logGroupName: '/aws/lambda/keap-sync-worker',
    logStreamName: 'test',
    getRemainingTimeInMillis: () => 60_000,
    done: unsupported,
    fail: unsupported,
    succeed: unsupported,
  };
}

describe('metrics contract', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('the functions emit into the alarms namespace with the account dimension the queries filter on', async () => {
    const lines: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    const env = loadLambdaEnvironment({
      KEAP_SYNC_CONFIG: JSON.stringify(testConfig()),
      LEDGER_TABLE: 'ledger',
      STATE_TABLE: 'state',
      MIRROR_TABLE: 'mirror',
      JOB_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/111122223333/jobs',
      DEAD_LETTER_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/111122223333/dlq',
      METRICS_NAMESPACE,
      AWS_REGION: 'eu-west-1',
    });
    const runtime = buildLambdaRuntime(env, 'worker');
    const handler = lambdaHandler(runtime, async () => {
      runtime.deps.metrics.add('KeyRejected', 1, { account: 'acme' });
    });
    await handler({}, invocationContext());
    const emf = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => '_aws' in l);
    expect(emf).toMatchObject({
      _aws: {
        CloudWatchMetrics: [
          {
            Namespace: 'KeapSync',
            Dimensions: [expect.arrayContaining(['account'])],
            Metrics: [expect.objectContaining({ Name: 'KeyRejected' })],
          },
        ],
      },
      account: 'acme',
      KeyRejected: 1,
    });
  });
});
