// Tests (infrastructure): the change events. The bus (created, or the user's), the publisher on the
// mirror's stream with the settings that keep a bad record from blocking the rest, its least-privilege
// role, its dead-letter queue and alarms.
import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { DeploySettingError } from '../../infra/settings.ts';
import { logicalId, roleStatements, type Synth, sortGrants, synth } from './support.ts';

const importOf = (name: string) => ({ 'Fn::ImportValue': Match.stringLikeRegexp(name) });

describe('change events', () => {
  let s: Synth;
  beforeAll(() => {
    s = synth();
  });

  it('creates the bus <stackPrefix>-changes in the data stack and keeps it on deletion', () => {
    s.data.hasResource('AWS::Events::EventBus', {
      Properties: Match.objectLike({ Name: 'KeapSync-changes' }),
      DeletionPolicy: 'Retain',
    });
  });

  it('publishes to a bus the user names instead, creating none', () => {
    const t = synth({ context: { eventBusName: 'crm-events' } });

    t.data.resourceCountIs('AWS::Events::EventBus', 0);
    t.app.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('publisher'),
      Environment: { Variables: Match.objectLike({ EVENT_BUS_NAME: 'crm-events' }) },
    });
    const putEvents = roleStatements(t.app, 'PublisherRole').find((st) => st.Action === 'events:PutEvents');
    expect(JSON.stringify(putEvents?.Resource)).toContain(':event-bus/crm-events');
  });

  it('feeds the publisher from the mirror stream: oldest first, partial failures, bisect, bounded retries, a DLQ', () => {
    s.app.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: logicalId(s.app, 'AWS::Lambda::Function', 'PublisherFunction') },
      EventSourceArn: importOf('MirrorTable.*StreamArn'),
      StartingPosition: 'TRIM_HORIZON',
      BatchSize: 100,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      BisectBatchOnFunctionError: true,
      MaximumRetryAttempts: 10,
      MaximumRecordAgeInSeconds: 86_400,
      DestinationConfig: { OnFailure: { Destination: importOf('EventDeadLetterQueue.*Arn') } },
    });
  });

  it('takes batch size, retries, record age, memory and timeout from context', () => {
    const t = synth({
      context: {
        publisherBatchSize: '500',
        publisherRetryAttempts: 3,
        publisherMaxRecordAgeHours: 6,
        publisherMemoryMb: 512,
        publisherTimeoutSeconds: 120,
      },
    });
    t.app.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: importOf('MirrorTable.*StreamArn'),
      BatchSize: 500,
      MaximumRetryAttempts: 3,
      MaximumRecordAgeInSeconds: 6 * 3600,
    });
    t.app.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('publisher'),
      MemorySize: 512,
      Timeout: 120,
    });
  });

  it('runs the publisher on the base construct, with only the variables it reads', () => {
    const id = logicalId(s.app, 'AWS::Lambda::Function', 'PublisherFunction');
    const fn = s.app.findResources('AWS::Lambda::Function')[id] as {
      Properties: {
        Runtime: string;
        Architectures: string[];
        Environment: { Variables: Record<string, unknown> };
      };
    };
    expect(fn.Properties.Runtime).toBe('nodejs24.x');
    expect(fn.Properties.Architectures).toEqual(['arm64']);
    expect(Object.keys(fn.Properties.Environment.Variables).sort()).toEqual([
      'EVENTS_DEAD_LETTER_QUEUE_URL',
      'EVENT_BUS_NAME',
      'LOG_LEVEL',
      'METRICS_NAMESPACE',
      'MIRROR_TABLE',
      'NODE_OPTIONS',
    ]);
  });

  it('lets the publisher put events on that bus, read that stream and dead-letter, nothing more', () => {
    const statements = roleStatements(s.app, 'PublisherRole');
    const label = (resource: string) =>
      resource === '"*"'
        ? '*'
        : /MirrorTable[0-9A-F]+StreamArn/.test(resource)
          ? 'MirrorTableStream'
          : (['ChangeEventBus', 'EventDeadLetterQueue', 'PublisherLogs'].find((n) => resource.includes(n)) ??
            resource);
    const described = statements.map((st) => ({
      actions: [st.Action].flat(),
      resource: label(JSON.stringify(st.Resource)),
    }));
    expect(sortGrants(described)).toEqual(
      sortGrants([
        { actions: ['events:PutEvents'], resource: 'ChangeEventBus' },
        { actions: ['sqs:SendMessage'], resource: 'EventDeadLetterQueue' },
        // The on-failure destination's grant (Lambda sends the failed batches' records there).
        {
          actions: ['sqs:SendMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl'],
          resource: 'EventDeadLetterQueue',
        },
        {
          actions: ['dynamodb:DescribeStream', 'dynamodb:GetRecords', 'dynamodb:GetShardIterator'],
          resource: 'MirrorTableStream',
        },
        // IAM has no resource-level permission for ListStreams (the one cdk-nag suppression, reasoned).
        { actions: ['dynamodb:ListStreams'], resource: '*' },
        { actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resource: 'PublisherLogs' },
      ]),
    );
    const actions = statements.flatMap((st) => [st.Action].flat());
    // No item or table access: the publisher never reads the mirror itself.
    expect(actions.filter((a) => /^dynamodb:(.*Item|Query|Scan|.*Table)$/.test(a))).toEqual([]);
  });

  it('keeps the event dead-letter queue encrypted, TLS-only and 14 days', () => {
    s.data.hasResource('AWS::SQS::Queue', {
      Properties: Match.objectLike({ SqsManagedSseEnabled: true, MessageRetentionPeriod: 14 * 86_400 }),
      DeletionPolicy: 'Retain',
    });
    s.data.hasResourceProperties('AWS::SQS::QueuePolicy', {
      Queues: [{ Ref: Match.stringLikeRegexp('^EventDeadLetterQueue') }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
  });

  it('alarms on any event dead letter and on publisher errors', () => {
    s.app.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmDescription: Match.stringLikeRegexp('Change events were not published'),
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: importOf('EventDeadLetterQueue.*QueueName') }],
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
    });
    s.app.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmDescription: Match.stringLikeRegexp('The publisher failed'),
      MetricName: 'Errors',
      Dimensions: [
        {
          Name: 'FunctionName',
          Value: { Ref: logicalId(s.app, 'AWS::Lambda::Function', 'PublisherFunction') },
        },
      ],
    });
  });

  it('stops synth with the setting named for a bus ARN or a record age beyond the stream', () => {
    expect(() => synth({ context: { eventBusName: 'arn:aws:events:eu-west-1:1:event-bus/x' } })).toThrow(
      DeploySettingError,
    );
    expect(() => synth({ context: { eventBusName: 'arn:aws:events:eu-west-1:1:event-bus/x' } })).toThrow(
      /"eventBusName".*not an ARN/,
    );
    expect(() => synth({ context: { publisherMaxRecordAgeHours: 48 } })).toThrow(
      /"publisherMaxRecordAgeHours"/,
    );
  });
});
