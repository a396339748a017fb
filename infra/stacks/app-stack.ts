// Infrastructure (stateless stack): the code and what watches it. The worker (fed by the job queue),
// the scheduler (started by EventBridge Scheduler), the publisher (fed by the mirror's stream), one read-only grant on the accounts' key
// secrets (a name prefix), alarms and the dashboard. Holds no data: destroy and redeploy it freely.
import { Aws, CfnOutput, Duration, Stack, type StackProps } from 'aws-cdk-lib';
import { Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { FunctionUrlAuthType, InvokeMode, RecursiveLoop, StartingPosition } from 'aws-cdk-lib/aws-lambda';
import { DynamoEventSource, SqsDlq, SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { Schedule, ScheduleExpression } from 'aws-cdk-lib/aws-scheduler';
import { LambdaInvoke } from 'aws-cdk-lib/aws-scheduler-targets';
import { NagSuppressions } from 'cdk-nag';
import type { Construct } from 'constructs';
import { KeapFunction } from '../constructs/keap-function.ts';
import { METRICS_NAMESPACE, Monitoring } from '../constructs/monitoring.ts';
import type { DeploySettings, LoadedConfig } from '../settings.ts';
import type { KeapSyncDataStack } from './data-stack.ts';

export interface AppStackProps extends StackProps {
  loaded: LoadedConfig;
  settings: DeploySettings;
  data: KeapSyncDataStack;
}

export class KeapSyncAppStack extends Stack {
  readonly worker: KeapFunction;
  readonly scheduler: KeapFunction;
  /** Publishes the mirror's changes (its stream) to the change events bus. */
  readonly publisher: KeapFunction;
  /** Receives Keap's REST hooks on its Function URL and queues them as hook jobs. */
  readonly hookReceiver: KeapFunction;
  readonly schedule: Schedule;
  readonly monitoring: Monitoring;
  /** The one secret name prefix the worker and the scheduler may read (`<prefix>*`). */
  readonly secretsPrefix: string;

  constructor(scope: Construct, id: string, props: AppStackProps) {
    super(scope, id, props);
    const { loaded, settings, data } = props;
    const { config } = loaded;
    this.secretsPrefix = config.secrets.prefix;
    const environment = {
      KEAP_SYNC_CONFIG: loaded.json,
      LOG_LEVEL: settings.logLevel,
      METRICS_NAMESPACE,
    };

    // The worker: every access below is one the pipeline makes (shared/pipeline, shared/store,
    // shared/quota); nothing else, and nothing on the tables themselves.
    this.worker = new KeapFunction(this, 'Worker', {
      entry: 'functions/worker.ts',
      description: 'keap-sync worker: runs the sync and write jobs from the job queue',
      timeout: Duration.seconds(config.worker.timeoutSeconds),
      memorySize: settings.workerMemoryMb,
      logRetention: settings.logRetention,
      environment,
      // The worker sends jobs to the queue it reads: a long sync continues in a new message, a quota
      // deferral comes back after its delay, a job of a rejected key waits 15 minutes at a time. Each
      // hop is a deliberate step of one job (its `attempt` grows), so Lambda must not cut the chain
      // after 16 hops; maxConcurrency and the quota ledger bound what the chain can spend.
      recursiveLoop: RecursiveLoop.ALLOW,
    })
      // Ledger: read, conditional put, key registration (UpdateItem ADD).
      .useTable('LEDGER_TABLE', data.ledgerTable, ['GetItem', 'PutItem', 'UpdateItem'])
      // State: cursors, checkpoints, leases (released with DeleteItem), account status, write records,
      // the registry entry of a job's account (GetItem), and the ids a sweep continued across
      // messages keeps (its own partition, read back with Query).
      .useTable('STATE_TABLE', data.stateTable, ['GetItem', 'PutItem', 'UpdateItem', 'DeleteItem', 'Query'])
      // Mirror: newer-wins conditional puts, one record at a time; the reconciliation sweep reads a
      // list's partition (Query) to compare it with Keap's ids.
      .useTable('MIRROR_TABLE', data.mirrorTable, ['PutItem', 'Query'])
      // Continuations and deferrals go back to the job queue; poison goes to the DLQ with its reason.
      .useQueue('JOB_QUEUE_URL', data.jobQueue, 'send')
      .useQueue('DEAD_LETTER_QUEUE_URL', data.deadLetterQueue, 'send')
      .readSecretsUnder(this.secretsPrefix);
    this.worker.function.addEventSource(
      new SqsEventSource(data.jobQueue, {
        batchSize: config.worker.batchSize,
        maxConcurrency: config.worker.concurrency,
        reportBatchItemFailures: true,
        ...(settings.workerMaxBatchingWindowSeconds > 0
          ? { maxBatchingWindow: Duration.seconds(settings.workerMaxBatchingWindowSeconds) }
          : {}),
      }),
    );

    // The scheduler: reads the registry (Query) and every account's quota, key status and cursors
    // (BatchGetItem), takes leases, counts the mirror, enqueues sync jobs (SendMessageBatch), and
    // re-reads a rejected account's key to see whether a new one was stored.
    const interval = Duration.minutes(config.scheduler.everyMinutes);
    // A run that cannot start before the next one is due is dropped: the next one does its work.
    const maxEventAge = Duration.minutes(Math.min(Math.max(config.scheduler.everyMinutes, 1), 360));
    this.scheduler = new KeapFunction(this, 'Scheduler', {
      entry: 'functions/scheduler.ts',
      description: 'keap-sync scheduler: enqueues the sync jobs that are due',
      timeout: Duration.seconds(settings.schedulerTimeoutSeconds),
      memorySize: settings.schedulerMemoryMb,
      logRetention: settings.logRetention,
      environment,
      retryAttempts: 0,
      maxEventAge,
    })
      .useTable('LEDGER_TABLE', data.ledgerTable, ['GetItem', 'BatchGetItem'])
      .useTable('STATE_TABLE', data.stateTable, [
        'GetItem',
        'BatchGetItem',
        'Query',
        'PutItem',
        'UpdateItem',
        'DeleteItem',
      ])
      .useTable('MIRROR_TABLE', data.mirrorTable, ['Query'])
      .useQueue('JOB_QUEUE_URL', data.jobQueue, 'send')
      // Required at cold start by the shared runtime; the scheduler never sends to it.
      .useQueue('DEAD_LETTER_QUEUE_URL', data.deadLetterQueue, 'none')
      .readSecretsUnder(this.secretsPrefix);

    // EventBridge Scheduler's role, only for schedules of this account's default group.
    const scheduleRole = new Role(this, 'ScheduleRole', {
      description: 'EventBridge Scheduler: invokes the keap-sync scheduler function',
      assumedBy: new ServicePrincipal('scheduler.amazonaws.com', {
        conditions: {
          StringEquals: {
            'aws:SourceAccount': Aws.ACCOUNT_ID,
            'aws:SourceArn': `arn:${Aws.PARTITION}:scheduler:${Aws.REGION}:${Aws.ACCOUNT_ID}:schedule-group/default`,
          },
        },
      }),
    });
    this.schedule = new Schedule(this, 'SchedulerSchedule', {
      description: `Runs the keap-sync scheduler every ${config.scheduler.everyMinutes} minute(s)`,
      schedule: ScheduleExpression.rate(interval),
      target: new LambdaInvoke(this.scheduler.function, {
        role: scheduleRole,
        retryAttempts: 2,
        maxEventAge,
      }),
    });
    // The policy the target just wrote on the role (Role's `DefaultPolicy`), and nothing else.
    NagSuppressions.addResourceSuppressions(scheduleRole.node.findChild('DefaultPolicy'), [
      {
        id: 'AwsSolutions-IAM5',
        reason:
          'EventBridge Scheduler may invoke the scheduler function and its versions ("<function arn>:*"): ' +
          "the grant Lambda's grantInvoke writes for one function. No other function matches.",
        appliesTo: [{ regex: '/^Resource::<SchedulerFunction[0-9A-F]+\\.Arn>:\\*$/' }],
      },
    ]);

    // The publisher: reads the mirror's stream (the event source's grant) and puts events on the bus;
    // the mirror table is named in its pointers to large records, never read.
    this.publisher = new KeapFunction(this, 'Publisher', {
      entry: 'functions/publisher.ts',
      description: 'keap-sync publisher: one EventBridge event per change of the mirror',
      timeout: Duration.seconds(settings.publisherTimeoutSeconds),
      memorySize: settings.publisherMemoryMb,
      logRetention: settings.logRetention,
      environment: { LOG_LEVEL: settings.logLevel, METRICS_NAMESPACE },
    })
      .useTable('MIRROR_TABLE', data.mirrorTable, [])
      .publishTo('EVENT_BUS_NAME', data.changeEventBus)
      .useQueue('EVENTS_DEAD_LETTER_QUEUE_URL', data.eventDeadLetterQueue, 'send');
    this.publisher.function.addEventSource(
      new DynamoEventSource(data.mirrorTable, {
        // From the oldest record the stream holds: a new or replaced mapping misses no change (a replay
        // is de-duplicated by eventId), where LATEST would drop the changes made meanwhile.
        startingPosition: StartingPosition.TRIM_HORIZON,
        batchSize: settings.publisherBatchSize,
        reportBatchItemFailures: true,
        bisectBatchOnError: true,
        retryAttempts: settings.publisherRetryAttempts,
        maxRecordAge: Duration.hours(settings.publisherMaxRecordAgeHours),
        onFailure: new SqsDlq(data.eventDeadLetterQueue),
      }),
    );
    // The event source's stream grant (DynamoDB's grantStreamRead) includes dynamodb:ListStreams,
    // which IAM only grants on "*"; everything else names the mirror's stream.
    NagSuppressions.addResourceSuppressions(this.publisher.role.node.findChild('DefaultPolicy'), [
      {
        id: 'AwsSolutions-IAM5',
        reason:
          'dynamodb:ListStreams has no resource-level permissions (IAM requires "*"); it lists stream ARNs ' +
          "only. Reading records is granted on the mirror table's stream alone.",
        appliesTo: ['Resource::*'],
      },
    ]);

    // The hook receiver: reads the accounts' hook endpoints (token, event keys) and queues hook jobs;
    // nothing else. Its Function URL has no IAM auth because Keap cannot sign requests: the URL's
    // per-account token (state table) is checked on every request, and a refusal does no work.
    this.hookReceiver = new KeapFunction(this, 'HookReceiver', {
      entry: 'functions/hook-receiver.ts',
      description: 'keap-sync hook receiver: checks the URL token and queues Keap REST hook deliveries',
      timeout: Duration.seconds(settings.hookReceiverTimeoutSeconds),
      memorySize: settings.hookReceiverMemoryMb,
      logRetention: settings.logRetention,
      environment: {
        LOG_LEVEL: settings.logLevel,
        METRICS_NAMESPACE,
        HOOK_MAX_BODY_BYTES: String(settings.hookMaxBodyBytes),
      },
      ...(settings.hookReceiverReservedConcurrency > 0
        ? { reservedConcurrentExecutions: settings.hookReceiverReservedConcurrency }
        : {}),
    })
      .useTable('STATE_TABLE', data.stateTable, ['GetItem'])
      .useQueue('JOB_QUEUE_URL', data.jobQueue, 'send');
    const hookUrl = this.hookReceiver.function.addFunctionUrl({
      authType: FunctionUrlAuthType.NONE,
      invokeMode: InvokeMode.BUFFERED,
    });

    this.monitoring = new Monitoring(this, 'Monitoring', {
      config,
      settings,
      worker: this.worker,
      scheduler: this.scheduler,
      jobQueue: data.jobQueue,
      deadLetterQueue: data.deadLetterQueue,
      publisher: this.publisher,
      eventDeadLetterQueue: data.eventDeadLetterQueue,
      hookReceiver: this.hookReceiver,
    });

    new CfnOutput(this, 'HookReceiverUrl', {
      description: 'Base URL of the REST hook receiver (keap-sync hooks register --aws --url <this>)',
      value: hookUrl.url,
    });

    new CfnOutput(this, 'DashboardUrl', {
      description: 'CloudWatch dashboard: quota, calls, deferrals, records synced, lag',
      value: `https://console.aws.amazon.com/cloudwatch/home?region=${Aws.REGION}#dashboards:name=${this.monitoring.dashboard.dashboardName}`,
    });
    new CfnOutput(this, 'WorkerFunctionName', { value: this.worker.function.functionName });
    new CfnOutput(this, 'SchedulerFunctionName', { value: this.scheduler.function.functionName });
    new CfnOutput(this, 'WorkerLogGroupName', { value: this.worker.logGroup.logGroupName });
    new CfnOutput(this, 'SchedulerLogGroupName', { value: this.scheduler.logGroup.logGroupName });
    new CfnOutput(this, 'PublisherFunctionName', { value: this.publisher.function.functionName });
    new CfnOutput(this, 'PublisherLogGroupName', { value: this.publisher.logGroup.logGroupName });
    new CfnOutput(this, 'ScheduleName', { value: this.schedule.scheduleName });
    if (this.monitoring.topic) {
      new CfnOutput(this, 'AlarmTopicArn', { value: this.monitoring.topic.topicArn });
    }
  }
}
