// Infrastructure (construct): the one way this project builds a Lambda function. It fixes the runtime
// (nodejs24.x), the architecture (arm64), the bundle (ESM, minified, source maps on), an explicit log
// group with retention, and a role of its own with no managed policy. Grant helpers set the
// environment variable and the permission together, so a function can never hold one without the other.

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArnFormat, type Duration, Stack } from 'aws-cdk-lib';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import type { IEventBus } from 'aws-cdk-lib/aws-events';
import { PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Architecture, RecursiveLoop, Runtime } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';
import type { PublisherEnvironment } from '#shared/events/lambda.ts';
import type { LambdaEnvironment } from '#shared/lambda/runtime.ts';

/** The repository root: entries, package-lock.json and node_modules live there. */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * esbuild's ESM output has no `require`; a CommonJS dependency that requires a Node built-in needs
 * one. This is the shim esbuild's documentation gives.
 */
export const REQUIRE_SHIM =
  "import { createRequire as __keapSyncCreateRequire } from 'node:module'; " +
  'const require = __keapSyncCreateRequire(import.meta.url);';

export const KEAP_RUNTIME = Runtime.NODEJS_24_X;
export const KEAP_ARCHITECTURE = Architecture.ARM_64;

export type TableVariable = Extract<keyof LambdaEnvironment, 'LEDGER_TABLE' | 'STATE_TABLE' | 'MIRROR_TABLE'>;
export type QueueVariable =
  | Extract<keyof LambdaEnvironment, 'JOB_QUEUE_URL' | 'DEAD_LETTER_QUEUE_URL'>
  | Extract<keyof PublisherEnvironment, 'EVENTS_DEAD_LETTER_QUEUE_URL'>;
export type BusVariable = Extract<keyof PublisherEnvironment, 'EVENT_BUS_NAME'>;
/** DynamoDB item actions the pipeline uses; nothing that changes a table itself. */
export type TableAction = 'GetItem' | 'BatchGetItem' | 'PutItem' | 'UpdateItem' | 'DeleteItem' | 'Query';

export interface KeapFunctionProps {
  /** The entry file, relative to the repository root (e.g. `functions/worker.ts`). */
  entry: string;
  description: string;
  timeout: Duration;
  memorySize: number;
  logRetention: RetentionDays;
  /** Variables besides the ones the grant helpers set. */
  environment: Record<string, string>;
  /** Retries of an asynchronous invocation (the scheduler's). */
  retryAttempts?: number;
  /** Oldest an asynchronous invocation may be when it runs. */
  maxEventAge?: Duration;
  /** Lambda's recursive loop detection (default: terminate a loop after 16 hops). */
  recursiveLoop?: RecursiveLoop;
  /** Reserved concurrency (the hook receiver's bound on a public URL). */
  reservedConcurrentExecutions?: number;
}

export class KeapFunction extends Construct {
  readonly function: NodejsFunction;
  readonly logGroup: LogGroup;
  readonly role: Role;

  constructor(scope: Construct, id: string, props: KeapFunctionProps) {
    super(scope, id);
    this.logGroup = new LogGroup(this, 'Logs', { retention: props.logRetention });
    // A role of its own: only writing to its own log group, plus what the grant helpers add. (The
    // managed AWSLambdaBasicExecutionRole would allow creating and writing any log group.)
    this.role = new Role(this, 'Role', {
      assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
      description: `${props.description} (execution role)`,
    });
    this.function = new NodejsFunction(this, 'Function', {
      entry: path.join(REPO_ROOT, props.entry),
      handler: 'handler',
      projectRoot: REPO_ROOT,
      depsLockFilePath: path.join(REPO_ROOT, 'package-lock.json'),
      runtime: KEAP_RUNTIME,
      architecture: KEAP_ARCHITECTURE,
      description: props.description,
      timeout: props.timeout,
      memorySize: props.memorySize,
      role: this.role,
      logGroup: this.logGroup,
      retryAttempts: props.retryAttempts,
      maxEventAge: props.maxEventAge,
      recursiveLoop: props.recursiveLoop ?? RecursiveLoop.TERMINATE,
      reservedConcurrentExecutions: props.reservedConcurrentExecutions,
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        ...props.environment,
      },
      bundling: {
        format: OutputFormat.ESM,
        target: 'node24',
        mainFields: ['module', 'main'],
        minify: true,
        sourceMap: true,
        sourcesContent: false,
        banner: REQUIRE_SHIM,
        // The SDK versions the tests ran with, not whichever the runtime carries this month.
        bundleAwsSDK: true,
      },
    });
    this.logGroup.grantWrite(this.role);
  }

  /** Sets `variable` to the table's name and grants exactly `actions` on that table. */
  useTable(variable: TableVariable, table: ITable, actions: readonly TableAction[]): this {
    this.function.addEnvironment(variable, table.tableName);
    if (actions.length > 0) table.grant(this.function, ...actions.map((a) => `dynamodb:${a}`));
    return this;
  }

  /** Sets `variable` to the queue's URL; `send` grants sqs:SendMessage on that queue alone. */
  useQueue(variable: QueueVariable, queue: IQueue, access: 'send' | 'none'): this {
    this.function.addEnvironment(variable, queue.queueUrl);
    if (access === 'send') queue.grant(this.function, 'sqs:SendMessage');
    return this;
  }

  /** Sets `variable` to the bus's name and grants events:PutEvents on that bus alone. */
  publishTo(variable: BusVariable, bus: IEventBus): this {
    this.function.addEnvironment(variable, bus.eventBusName);
    bus.grantPutEventsTo(this.function);
    return this;
  }

  /** Grants reading (GetSecretValue, DescribeSecret) the secrets named in the configuration, nothing else. */
  readSecrets(secrets: readonly ISecret[]): this {
    for (const secret of secrets) secret.grantRead(this.function);
    return this;
  }

  /**
   * Read access to every secret named under `prefix` in this stack's account and region: one grant
   * for every account of the registry, present and future (no deploy when one is added).
   */
  readSecretsUnder(prefix: string): this {
    this.function.addToRolePolicy(
      new PolicyStatement({
        actions: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'],
        resources: [
          Stack.of(this).formatArn({
            service: 'secretsmanager',
            resource: 'secret',
            resourceName: `${prefix}*`,
            arnFormat: ArnFormat.COLON_RESOURCE_NAME,
          }),
        ],
      }),
    );
    NagSuppressions.addResourceSuppressions(this.role.node.findChild('DefaultPolicy'), [
      {
        id: 'AwsSolutions-IAM5',
        reason:
          `Read-only access to the secrets named under the accounts' secrets prefix "${prefix}" in this ` +
          "account and region: the registry's accounts are data, so one grant covers every account's key " +
          'without a deploy per account. Only GetSecretValue and DescribeSecret.',
        appliesTo: [
          {
            regex: `/^Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:${prefix.replace(/[.+/]/g, '\\$&')}\\*$/`,
          },
        ],
      },
    ]);
    return this;
  }
}
