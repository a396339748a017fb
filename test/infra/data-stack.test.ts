// Tests (infrastructure): the stateful stack. Tables, queues, and their protection.
import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { MIRROR_TABLE, STATE_TABLE } from '#shared/store/tables.ts';
import { type Synth, synth } from './support.ts';

describe('data stack', () => {
  let s: Synth;
  beforeAll(() => {
    s = synth();
  });

  const protectedTable = {
    BillingMode: 'PAY_PER_REQUEST',
    PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
    SSESpecification: { SSEEnabled: true },
    DeletionProtectionEnabled: true,
  };

  it('keeps the ledger table on demand, recoverable, encrypted, keyed by pk', () => {
    s.data.hasResource('AWS::DynamoDB::Table', {
      Properties: {
        ...protectedTable,
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
        AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
      },
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
  });

  it('keys the state table by pk and sk with TTL on ttl', () => {
    s.data.hasResource('AWS::DynamoDB::Table', {
      Properties: {
        ...protectedTable,
        KeySchema: [
          { AttributeName: STATE_TABLE.partitionKey, KeyType: 'HASH' },
          { AttributeName: STATE_TABLE.sortKey, KeyType: 'RANGE' },
        ],
        TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
      },
      DeletionPolicy: 'Retain',
    });
  });

  it('keys the mirror table by pk and id and streams new and old images', () => {
    s.data.hasResource('AWS::DynamoDB::Table', {
      Properties: {
        ...protectedTable,
        KeySchema: [
          { AttributeName: MIRROR_TABLE.partitionKey, KeyType: 'HASH' },
          { AttributeName: 'id', KeyType: 'RANGE' },
        ],
        StreamSpecification: { StreamViewType: 'NEW_AND_OLD_IMAGES' },
        TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
      },
      DeletionPolicy: 'Retain',
    });
  });

  it('encrypts every queue (jobs, dead letters, event dead letters) and keeps them on stack deletion', () => {
    const queues = s.data.findResources('AWS::SQS::Queue');
    expect(Object.values(queues)).toHaveLength(3);
    for (const queue of Object.values(queues)) {
      expect(queue.Properties.SqsManagedSseEnabled).toBe(true);
      expect(queue.DeletionPolicy).toBe('Retain');
    }
  });

  it('denies every request to any queue that does not use TLS', () => {
    for (const queue of ['JobQueue', 'DeadLetterQueue', 'EventDeadLetterQueue']) {
      s.data.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: Match.stringLikeRegexp(`^${queue}`) }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Principal: { AWS: '*' },
              Action: 'sqs:*',
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
          ]),
        },
      });
    }
  });

  it('redrives to the dead-letter queue after worker.maxReceiveCount receives', () => {
    s.data.hasResourceProperties('AWS::SQS::Queue', {
      RedrivePolicy: {
        deadLetterTargetArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^DeadLetterQueue'), 'Arn'] },
        maxReceiveCount: 9,
      },
    });
  });

  it('keeps a job invisible for 6x the worker timeout', () => {
    // worker.timeoutSeconds is 200 in the test configuration.
    s.data.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: 1200,
      RedrivePolicy: Match.anyValue(),
    });
  });

  it('adds the batching window to the visibility timeout, as AWS advises', () => {
    const t = synth({ context: { workerMaxBatchingWindowSeconds: '20' } });
    t.data.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: 1220,
      RedrivePolicy: Match.anyValue(),
    });
  });

  it('keeps dead letters for 14 days', () => {
    s.data.hasResourceProperties('AWS::SQS::Queue', {
      MessageRetentionPeriod: 1_209_600,
      RedrivePolicy: Match.absent(),
    });
  });

  it('outputs the queue URLs and ARNs and the table names the deploy guide uses', () => {
    for (const output of [
      'JobQueueUrl',
      'JobQueueArn',
      'DeadLetterQueueUrl',
      'DeadLetterQueueArn',
      'LedgerTableName',
      'StateTableName',
      'MirrorTableName',
      'MirrorTableStreamArn',
    ]) {
      s.data.hasOutput(output, { Value: Match.anyValue() });
    }
  });
});
