// Tests (infrastructure): least privilege. Each function's role holds exactly the access its code
// uses (shared/pipeline, shared/store, shared/quota), on exactly its resources.
import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { grants, roleStatements, type Synth, sortGrants, synth, testConfig } from './support.ts';

/** One grant on the secrets prefix covers every account of the registry, present and future. */
const SECRETS = ['secret:keap-sync/*'];
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
          actions: [
            'dynamodb:GetItem',
            'dynamodb:PutItem',
            'dynamodb:UpdateItem',
            'dynamodb:DeleteItem',
            'dynamodb:Query',
          ],
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
        { actions: ['dynamodb:GetItem', 'dynamodb:BatchGetItem'], resource: 'LedgerTable' },
        {
          actions: [
            'dynamodb:GetItem',
            'dynamodb:BatchGetItem',
            'dynamodb:Query',
            'dynamodb:PutItem',
            'dynamodb:UpdateItem',
            'dynamodb:DeleteItem',
          ],
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

  it("grants read access to the secrets under secrets.prefix only, in the stack's account and region", () => {
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
                  ':secret:keap-sync/*',
                ],
              ],
            },
          },
        ]),
      },
    });
  });

  it('creates no secret: the keys never pass through the template', () => {
    s.app.resourceCountIs('AWS::SecretsManager::Secret', 0);
    s.data.resourceCountIs('AWS::SecretsManager::Secret', 0);
  });

  it('follows another secrets.prefix, and refuses an account secret outside it', () => {
    const config = { ...testConfig(), secrets: { prefix: 'agency/keap-' } };
    expect(() => synth({ config })).toThrow(
      /accounts\.0\.secretId: "keap-sync\/acme" is not named under the secrets prefix "agency\/keap-"/,
    );
    const t = synth({ config: { ...config, accounts: [] } });
    expect(grants(roleStatements(t.app, 'WorkerRole'))).toContainEqual({
      actions: READ_SECRET,
      resource: 'secret:agency/keap-*',
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
