// Tests (infrastructure): least privilege. Each function's role holds exactly the access its code
// uses (shared/pipeline, shared/store, shared/quota), on exactly its resources.
import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { grants, roleStatements, type Synth, sortGrants, synth, testConfig } from './support.ts';

const SECRETS = ['secret:keap-sync/acme-??????', 'secret:keap/globex-AbC123'];
const READ_SECRET = ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue'];
const WRITE_LOGS = ['logs:CreateLogStream', 'logs:PutLogEvents'];

describe('permissions', () => {
  let s: Synth;
  beforeAll(() => {
    s = synth();
  });

  it('lets the worker do exactly what the pipeline does, nothing more', () => {
    expect(grants(roleStatements(s.app, 'WorkerRole'))).toEqual(
      sortGrants([
        { actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'], resource: 'LedgerTable' },
        {
          actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'],
          resource: 'StateTable',
        },
        { actions: ['dynamodb:PutItem', 'dynamodb:Query'], resource: 'MirrorTable' },
        { actions: ['sqs:SendMessage'], resource: 'JobQueue' },
        { actions: ['sqs:SendMessage'], resource: 'DeadLetterQueue' },
        {
          actions: [
            'sqs:ReceiveMessage',
            'sqs:ChangeMessageVisibility',
            'sqs:GetQueueUrl',
            'sqs:DeleteMessage',
            'sqs:GetQueueAttributes',
          ],
          resource: 'JobQueue',
        },
        ...SECRETS.map((secret) => ({ actions: READ_SECRET, resource: secret })),
        { actions: WRITE_LOGS, resource: 'WorkerLogs' },
      ]),
    );
  });

  it('lets the scheduler read the ledger, keep state, count the mirror and enqueue, nothing more', () => {
    expect(grants(roleStatements(s.app, 'SchedulerRole'))).toEqual(
      sortGrants([
        { actions: ['dynamodb:GetItem'], resource: 'LedgerTable' },
        {
          actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'],
          resource: 'StateTable',
        },
        { actions: ['dynamodb:Query'], resource: 'MirrorTable' },
        { actions: ['sqs:SendMessage'], resource: 'JobQueue' },
        ...SECRETS.map((secret) => ({ actions: READ_SECRET, resource: secret })),
        { actions: WRITE_LOGS, resource: 'SchedulerLogs' },
      ]),
    );
  });

  it('never lets a function change or drop a table, scan it, or use a wildcard', () => {
    for (const role of ['WorkerRole', 'SchedulerRole']) {
      for (const statement of roleStatements(s.app, role)) {
        expect(statement.Effect).toBe('Allow');
        const actions = [statement.Action].flat();
        for (const forbidden of [
          'dynamodb:DeleteTable',
          'dynamodb:UpdateTable',
          'dynamodb:Scan',
          'dynamodb:BatchWriteItem',
          'sqs:DeleteQueue',
          'sqs:PurgeQueue',
          'secretsmanager:PutSecretValue',
        ]) {
          expect(actions).not.toContain(forbidden);
        }
        expect(actions.every((a) => !a.includes('*'))).toBe(true);
        expect(JSON.stringify(statement.Resource)).not.toMatch(/"\*"|:\*"/);
      }
    }
  });

  it('grants only the configured secrets, read-only, by name or by ARN', () => {
    s.app.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          {
            Effect: 'Allow',
            Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'],
            Resource: {
              'Fn::Join': [
                '',
                [
                  'arn:',
                  { Ref: 'AWS::Partition' },
                  ':secretsmanager:',
                  { Ref: 'AWS::Region' },
                  ':',
                  { Ref: 'AWS::AccountId' },
                  ':secret:keap-sync/acme-??????',
                ],
              ],
            },
          },
          {
            Effect: 'Allow',
            Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'],
            Resource: 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:keap/globex-AbC123',
          },
        ]),
      },
    });
  });

  it('creates no secret: the keys never pass through the template', () => {
    s.app.resourceCountIs('AWS::SecretsManager::Secret', 0);
    s.data.resourceCountIs('AWS::SecretsManager::Secret', 0);
  });

  it('grants a secret named by a partial ARN through a wildcard for its suffix only', () => {
    const config = testConfig();
    const [first] = config.accounts;
    if (!first) throw new Error('test configuration has no account');
    first.secretId = 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:keap/acme';
    const t = synth({ config });
    t.app.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Resource: 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:keap/acme-??????',
          }),
        ]),
      },
    });
  });

  it('attaches no managed policy to any role', () => {
    for (const role of Object.values(s.app.findResources('AWS::IAM::Role'))) {
      expect(role.Properties.ManagedPolicyArns).toBeUndefined();
    }
  });

  it('lets only EventBridge Scheduler of this account invoke the scheduler', () => {
    s.app.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [
          Match.objectLike({
            Principal: { Service: 'scheduler.amazonaws.com' },
            Condition: { StringEquals: Match.objectLike({ 'aws:SourceAccount': { Ref: 'AWS::AccountId' } }) },
          }),
        ],
      },
    });
    expect(grants(roleStatements(s.app, 'ScheduleRole'))).toEqual([
      {
        actions: ['lambda:InvokeFunction'],
        resource: expect.stringMatching(/^\{"Fn::GetAtt":\["SchedulerFunction/),
      },
    ]);
  });
});
