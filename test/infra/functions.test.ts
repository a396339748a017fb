// Tests (infrastructure): the two functions, their event source and schedule, and the environment
// contract with shared/lambda/runtime.ts.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadLambdaEnvironment } from '#shared/lambda/runtime.ts';
import { build, logicalId, REPO_ROOT, type Synth, synth, testConfig } from './support.ts';

type Variables = Record<string, unknown>;

function variables(s: Synth, prefix: 'WorkerFunction' | 'SchedulerFunction'): Variables {
  const id = logicalId(s.app, 'AWS::Lambda::Function', prefix);
  const fn = s.app.findResources('AWS::Lambda::Function')[id] as {
    Properties: { Environment: { Variables: Variables } };
  };
  return fn.Properties.Environment.Variables;
}

/** Stand-ins for the values CloudFormation fills in at deploy time. */
function deployTimeValue(value: unknown): string {
  if (typeof value === 'string') return value;
  const text = JSON.stringify(value);
  return /Queue/.test(text)
    ? 'https://sqs.eu-west-1.amazonaws.com/111122223333/keap-sync-queue'
    : 'keap-sync-table';
}

describe('functions', () => {
  let s: Synth;
  beforeAll(() => {
    s = synth();
  });

  it('runs both functions on nodejs24.x on arm64 from an ESM bundle', () => {
    for (const prefix of ['WorkerFunction', 'SchedulerFunction']) {
      s.app.hasResourceProperties('AWS::Lambda::Function', {
        Description: Match.stringLikeRegexp(prefix === 'WorkerFunction' ? 'worker' : 'scheduler'),
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        Environment: { Variables: Match.objectLike({ NODE_OPTIONS: '--enable-source-maps' }) },
      });
    }
  });

  it('gives the worker the configured timeout and a whole vCPU of memory by default', () => {
    s.app.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('worker'),
      Timeout: 200,
      MemorySize: 1769,
    });
  });

  it('lets the worker, and only the worker, re-enqueue its own jobs past the 16-hop loop limit', () => {
    s.app.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('worker'),
      RecursiveLoop: 'Allow',
    });
    s.app.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('scheduler'),
      RecursiveLoop: 'Terminate',
    });
  });

  it('takes memory sizes from context', () => {
    const t = synth({ context: { workerMemoryMb: 1024, schedulerMemoryMb: '128' } });
    t.app.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('worker'),
      MemorySize: 1024,
    });
    t.app.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('scheduler'),
      MemorySize: 128,
    });
  });

  it('writes each function to its own log group, kept 30 days by default', () => {
    for (const name of ['Worker', 'Scheduler']) {
      const logs = logicalId(s.app, 'AWS::Logs::LogGroup', `${name}Logs`);
      s.app.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
      s.app.hasResourceProperties('AWS::Lambda::Function', {
        LoggingConfig: { LogGroup: { Ref: logs } },
        Role: { 'Fn::GetAtt': [Match.stringLikeRegexp(`^${name}Role`), 'Arn'] },
      });
    }
  });

  it('takes the log retention from context', () => {
    const t = synth({ context: { logRetentionDays: '90' } });
    expect(
      Object.values(t.app.findResources('AWS::Logs::LogGroup')).map((g) => g.Properties.RetentionInDays),
    ).toEqual([90, 90, 90, 90]);
  });

  it('feeds the worker from the job queue with partial batch failures and the configured scaling', () => {
    s.app.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: logicalId(s.app, 'AWS::Lambda::Function', 'WorkerFunction') },
      EventSourceArn: { 'Fn::ImportValue': Match.stringLikeRegexp('JobQueue.*Arn') },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      BatchSize: 7,
      ScalingConfig: { MaximumConcurrency: 6 },
      MaximumBatchingWindowInSeconds: Match.absent(),
    });
  });

  it('sets the batching window from context', () => {
    const t = synth({ context: { workerMaxBatchingWindowSeconds: 30 } });
    t.app.hasResourceProperties('AWS::Lambda::EventSourceMapping', { MaximumBatchingWindowInSeconds: 30 });
  });

  it('starts the scheduler every scheduler.everyMinutes with EventBridge Scheduler', () => {
    s.app.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(10 minutes)',
      State: 'ENABLED',
      Target: {
        Arn: { 'Fn::GetAtt': [logicalId(s.app, 'AWS::Lambda::Function', 'SchedulerFunction'), 'Arn'] },
        RetryPolicy: { MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: 600 },
      },
    });
  });

  it('never retries a scheduler run Lambda accepted: the next run does its work', () => {
    s.app.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: logicalId(s.app, 'AWS::Lambda::Function', 'SchedulerFunction') },
      MaximumRetryAttempts: 0,
      MaximumEventAgeInSeconds: 600,
    });
  });

  it('passes the configuration file minified and without its accounts to both functions', () => {
    const { accounts: _accounts, ...settings } = testConfig();
    const expected = JSON.stringify(settings);
    for (const prefix of ['WorkerFunction', 'SchedulerFunction'] as const) {
      expect(variables(s, prefix).KEAP_SYNC_CONFIG).toBe(expected);
      // Accounts are data (the registry): no account id, tenant or secret in any environment.
      expect(JSON.stringify(variables(s, prefix))).not.toMatch(/acme|globex|ab103|xy987/);
    }
  });

  it('sets every variable the Lambda runtime checks at cold start, and it accepts them', () => {
    for (const prefix of ['WorkerFunction', 'SchedulerFunction'] as const) {
      const env = Object.fromEntries(
        Object.entries(variables(s, prefix)).map(([k, v]) => [k, deployTimeValue(v)]),
      );
      const loaded = loadLambdaEnvironment(env);
      expect(loaded.METRICS_NAMESPACE).toBe('KeapSync');
      expect(loaded.LOG_LEVEL).toBe('INFO');
      expect(loaded.config.worker.maxReceiveCount).toBe(9);
    }
  });

  it('points each table and queue variable at the right resource', () => {
    for (const prefix of ['WorkerFunction', 'SchedulerFunction'] as const) {
      const env = variables(s, prefix);
      expect(JSON.stringify(env.LEDGER_TABLE)).toMatch(/Ref.*LedgerTable/);
      expect(JSON.stringify(env.STATE_TABLE)).toMatch(/Ref.*StateTable/);
      expect(JSON.stringify(env.MIRROR_TABLE)).toMatch(/Ref.*MirrorTable/);
      expect(JSON.stringify(env.JOB_QUEUE_URL)).toMatch(/Ref.*JobQueue/);
      expect(JSON.stringify(env.DEAD_LETTER_QUEUE_URL)).toMatch(/Ref.*DeadLetterQueue/);
    }
  });

  it('synthesizes the shipped keap-sync.config.json when configFile is not set', () => {
    const shipped = readFileSync(path.join(REPO_ROOT, 'keap-sync.config.json'), 'utf8');
    const { deployment } = build();
    expect(deployment.loaded.source).toBe('keap-sync.config.json');
    Template.fromStack(deployment.app).hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          KEAP_SYNC_CONFIG: JSON.stringify({ ...JSON.parse(shipped), accounts: undefined }),
        }),
      },
    });
  });
});
