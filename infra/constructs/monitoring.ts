// Infrastructure (construct): alarms and the dashboard. The functions publish their metrics as EMF log
// lines (namespace KeapSync, dimensions account / resource / reason, plus the `service` dimension
// Powertools adds); alarms and graphs read them with Metrics Insights queries filtered by account, so
// they match whatever dimension set a metric carries. Alarm notifications go to an optional SNS topic,
// encrypted with a key CloudWatch may use.
import { Aws, Duration, RemovalPolicy } from 'aws-cdk-lib';
import {
  Alarm,
  AlarmStatusWidget,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type IMetric,
  MathExpression,
  TextWidget,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { Effect, PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { AppConfig } from '#shared/config/app-config.ts';
import type { MetricName } from '#shared/pipeline/ports.ts';
import { type DeploySettings, ledgerLimits } from '../settings.ts';
import type { KeapFunction } from './keap-function.ts';

/** The namespace the functions publish to (their METRICS_NAMESPACE). */
export const METRICS_NAMESPACE = 'KeapSync';

/** Every alarm looks at 5-minute periods, one period at a time. */
export const ALARM_PERIOD = Duration.minutes(5);

type Aggregate = 'SUM' | 'MIN' | 'MAX' | 'AVG';

/**
 * A Metrics Insights query over one of the app's metrics, across every dimension set it is published
 * with (account ids are validated as [a-z0-9-], so they are safe inside the quotes).
 */
export function metricsQuery(
  aggregate: Aggregate,
  metric: MetricName,
  account?: string,
  groupBy?: 'resource' | 'reason' | 'account',
): string {
  const where = account === undefined ? '' : ` WHERE account = '${account}'`;
  const group = groupBy === undefined ? '' : ` GROUP BY ${groupBy}`;
  return `SELECT ${aggregate}(${metric}) FROM ${METRICS_NAMESPACE}${where}${group}`;
}

function query(
  aggregate: Aggregate,
  metric: MetricName,
  options: {
    account?: string;
    groupBy?: 'resource' | 'reason' | 'account';
    label?: string;
    period?: Duration;
  } = {},
): MathExpression {
  return new MathExpression({
    expression: metricsQuery(aggregate, metric, options.account, options.groupBy),
    period: options.period ?? ALARM_PERIOD,
    // No label for a GROUP BY query: CloudWatch then names each line by its group (resource, reason).
    label: options.label ?? (options.groupBy === undefined ? metric : ''),
  });
}

export interface MonitoringProps {
  config: AppConfig;
  settings: DeploySettings;
  worker: KeapFunction;
  scheduler: KeapFunction;
  jobQueue: IQueue;
  deadLetterQueue: IQueue;
  /** The change events publisher and its dead-letter queue. */
  publisher?: KeapFunction;
  eventDeadLetterQueue?: IQueue;
  /** The REST hook receiver (its Function URL's answers, its refusals, hooks gone Inactive). */
  hookReceiver?: KeapFunction;
}

export class Monitoring extends Construct {
  readonly alarms: Alarm[] = [];
  readonly dashboard: Dashboard;
  readonly topic: Topic | undefined;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const { config, settings, worker, scheduler, deadLetterQueue } = props;
    this.topic = settings.alarmEmail === undefined ? undefined : this.createTopic(settings.alarmEmail);

    // Alarms for the whole deployment.
    this.alarm('DeadLettersAlarm', {
      description: 'Messages are in the dead-letter queue: poison jobs or jobs that failed every retry.',
      metric: deadLetterQueue.metricApproximateNumberOfMessagesVisible({
        period: ALARM_PERIOD,
        statistic: 'Maximum',
      }),
      threshold: 0,
      comparison: ComparisonOperator.GREATER_THAN_THRESHOLD,
      missing: TreatMissingData.NOT_BREACHING,
    });
    for (const [name, fn] of [
      ['Worker', worker],
      ['Scheduler', scheduler],
    ] as const) {
      this.alarm(`${name}ErrorsAlarm`, {
        description: `The ${name.toLowerCase()} function failed (an error or a timeout of a whole invocation).`,
        metric: fn.function.metricErrors({ period: ALARM_PERIOD, statistic: 'Sum' }),
        threshold: settings.functionErrorsAlarmThreshold,
        comparison: ComparisonOperator.GREATER_THAN_THRESHOLD,
        missing: TreatMissingData.NOT_BREACHING,
      });
    }

    // Calls leaving close to the ledger's lateness tolerance eat into the spike margin: stalls on the
    // worker (CPU throttling, GC, cold connections) that, a little worse, would cost Keap 429s.
    const tolerance = config.limits.lateToleranceMs ?? 50;
    this.alarm('SendLatenessAlarm', {
      description:
        `Worker calls left ${Math.round(tolerance * 0.8)} ms or more after their ledger slot (tolerance ` +
        `${tolerance} ms): give the worker more memory (CPU) or find what stalls it.`,
      metric: query('MAX', 'SendLatenessMaxMs'),
      threshold: Math.round(tolerance * 0.8),
      comparison: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      missing: TreatMissingData.NOT_BREACHING,
    });

    // Hand-overs between workers are where the spike margin is thinnest: a gap near Keap's spike
    // interval means calls of two workers nearly met (a clock or a stall the margin barely absorbed).
    const spikeInterval = config.limits.spikeIntervalMs ?? 100;
    const handoverFloor = handoverFloorMs(config);
    this.alarm('HandoverGapAlarm', {
      description:
        `Two workers' calls of one key were ${handoverFloor} ms or less apart at a hand-over (Keap's spike ` +
        `interval is ${spikeInterval} ms): check the workers' clocks (ClockSkewError logs) and stalls.`,
      metric: query('MIN', 'HandoverGapMinMs'),
      threshold: handoverFloor,
      comparison: ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD,
      missing: TreatMissingData.NOT_BREACHING,
    });

    if (props.publisher && props.eventDeadLetterQueue) {
      this.alarm('EventDeadLettersAlarm', {
        description:
          'Change events were not published: entries EventBridge kept rejecting, unreadable mirror items, ' +
          'or stream batches the publisher gave up on. Each message says why.',
        metric: props.eventDeadLetterQueue.metricApproximateNumberOfMessagesVisible({
          period: ALARM_PERIOD,
          statistic: 'Maximum',
        }),
        threshold: 0,
        comparison: ComparisonOperator.GREATER_THAN_THRESHOLD,
        missing: TreatMissingData.NOT_BREACHING,
      });
      this.alarm('PublisherErrorsAlarm', {
        description:
          'The publisher failed (EventBridge or SQS unreachable, or a timeout): the stream retries and bisects.',
        metric: props.publisher.function.metricErrors({ period: ALARM_PERIOD, statistic: 'Sum' }),
        threshold: settings.functionErrorsAlarmThreshold,
        comparison: ComparisonOperator.GREATER_THAN_THRESHOLD,
        missing: TreatMissingData.NOT_BREACHING,
      });
    }

    if (props.hookReceiver) this.hookAlarms(props.hookReceiver, settings);

    // Alarms over every account: accounts are data (the registry), so one alarm per kind watches all
    // of them, present and future; the dashboard's per-account lines (GROUP BY account) say which.
    this.alarm('Keap429sAlarm', {
      description: 'Keap answered 429 (too many requests) to an account: something else shares its quota.',
      metric: query('SUM', 'Keap429s'),
      threshold: 0,
      comparison: ComparisonOperator.GREATER_THAN_THRESHOLD,
      missing: TreatMissingData.NOT_BREACHING,
    });
    this.alarm('KeyRejectedAlarm', {
      description:
        "Keap rejected an account's key; its syncs stop until a new key is stored (keap-sync status).",
      metric: query('SUM', 'KeyRejected'),
      threshold: 0,
      comparison: ComparisonOperator.GREATER_THAN_THRESHOLD,
      missing: TreatMissingData.NOT_BREACHING,
    });
    this.alarm('QuotaDayLeftAlarm', {
      description: `An account has fewer than ${settings.quotaDayLeftAlarmBelow} Keap calls left today.`,
      metric: query('MIN', 'QuotaDayLeft'),
      threshold: settings.quotaDayLeftAlarmBelow,
      comparison: ComparisonOperator.LESS_THAN_THRESHOLD,
      // Published once per scheduler run: between runs the alarm keeps its state.
      missing: TreatMissingData.IGNORE,
    });
    this.alarm('SyncLagAlarm', {
      description: `A sync finished more than ${settings.syncLagAlarmMinutes} minutes behind Keap.`,
      metric: query('MAX', 'SyncLagMs'),
      threshold: settings.syncLagAlarmMinutes * 60_000,
      comparison: ComparisonOperator.GREATER_THAN_THRESHOLD,
      missing: TreatMissingData.IGNORE,
    });

    this.dashboard = this.createDashboard(props);
  }

  /**
   * Deliveries failing: the receiver answered Keap 5xx (it could not queue, or it failed) or refused
   * many requests (a stale token, unregistered keys, or someone probing the URL); and, per account, a
   * hook Keap turned Inactive (found by the scheduler's hook check, which re-verifies it).
   */
  private hookAlarms(receiver: KeapFunction, settings: DeploySettings): void {
    this.alarm('HookDeliveriesFailingAlarm', {
      description:
        'The hook receiver answered Keap with 5xx (a delivery not queued, or the function failed): Keap ' +
        'retries 3 times, then turns the hook Inactive.',
      metric: new MathExpression({
        expression: 'FILL(url5xx, 0) + FILL(errors, 0)',
        usingMetrics: {
          url5xx: receiver.function.metric('Url5xxCount', { period: ALARM_PERIOD, statistic: 'Sum' }),
          errors: receiver.function.metricErrors({ period: ALARM_PERIOD, statistic: 'Sum' }),
        },
        period: ALARM_PERIOD,
        label: 'receiver 5xx and errors',
      }),
      threshold: settings.functionErrorsAlarmThreshold,
      comparison: ComparisonOperator.GREATER_THAN_THRESHOLD,
      missing: TreatMissingData.NOT_BREACHING,
    });
    this.alarm('HookRejectionsAlarm', {
      description:
        `More than ${settings.hookRejectionsAlarmThreshold} hook requests were refused in 5 minutes (wrong or ` +
        'missing token, unregistered event key, bad or oversized body): check the hooks registered with Keap.',
      metric: query('SUM', 'HookDeliveriesRejected'),
      threshold: settings.hookRejectionsAlarmThreshold,
      comparison: ComparisonOperator.GREATER_THAN_THRESHOLD,
      missing: TreatMissingData.NOT_BREACHING,
    });
    // One alarm over every account (accounts are data): the dashboard's per-account lines say which.
    this.alarm('HookInactiveAlarm', {
      description:
        "Keap turned an account's REST hook Inactive (deliveries stopped); the scheduler re-verifies it " +
        'and runs a catch-up sync, and polling covers the gap meanwhile.',
      metric: query('MAX', 'HooksInactive'),
      threshold: 0,
      comparison: ComparisonOperator.GREATER_THAN_THRESHOLD,
      missing: TreatMissingData.NOT_BREACHING,
    });
  }

  private alarm(
    id: string,
    spec: {
      description: string;
      metric: IMetric;
      threshold: number;
      comparison: ComparisonOperator;
      missing: TreatMissingData;
    },
  ): Alarm {
    const alarm = new Alarm(this, id, {
      alarmDescription: spec.description,
      metric: spec.metric,
      threshold: spec.threshold,
      comparisonOperator: spec.comparison,
      evaluationPeriods: 1,
      datapointsToAlarm: 1,
      treatMissingData: spec.missing,
    });
    if (this.topic) alarm.addAlarmAction(new SnsAction(this.topic));
    this.alarms.push(alarm);
    return alarm;
  }

  /**
   * SNS encrypts at rest only with KMS, and CloudWatch can publish to an encrypted topic only if the
   * key lets it: the AWS managed aws/sns key does not, so the topic gets a key of its own.
   */
  private createTopic(email: string): Topic {
    const key = new Key(this, 'AlarmTopicKey', {
      description: 'Encrypts keap-sync alarm notifications (SNS topic)',
      enableKeyRotation: true,
      // It protects notifications in transit through SNS only; nothing stored depends on it.
      removalPolicy: RemovalPolicy.DESTROY,
      pendingWindow: Duration.days(7),
    });
    key.addToResourcePolicy(
      new PolicyStatement({
        sid: 'AllowCloudWatchAlarmsToPublish',
        principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
      }),
    );
    const topic = new Topic(this, 'AlarmTopic', {
      displayName: 'keap-sync alarms',
      masterKey: key,
      enforceSSL: true,
    });
    // The topic's policy replaces the default one: let this account's alarms publish.
    topic.addToResourcePolicy(
      new PolicyStatement({
        sid: 'AllowThisAccountsAlarmsToPublish',
        effect: Effect.ALLOW,
        principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [topic.topicArn],
        conditions: {
          StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
          ArnLike: {
            'aws:SourceArn': `arn:${Aws.PARTITION}:cloudwatch:${Aws.REGION}:${Aws.ACCOUNT_ID}:alarm:*`,
          },
        },
      }),
    );
    topic.addSubscription(new EmailSubscription(email));
    return topic;
  }

  private createDashboard(props: MonitoringProps): Dashboard {
    const { config, settings, worker, scheduler, jobQueue, deadLetterQueue } = props;
    const limits = ledgerLimits(config);
    const tolerance = config.limits.lateToleranceMs ?? 50;
    const quotaPeriod = Duration.minutes(Math.max(5, config.scheduler.everyMinutes));
    const dashboard = new Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.days(1),
    });
    dashboard.addWidgets(
      new TextWidget({
        markdown:
          '# keap-sync\n' +
          'Accounts are data: `keap-sync accounts list --aws` shows the registry; every graph has a line per account. ' +
          'Quota "used" is the ledger limit minus what is left (Keap may lower the limit for a while after a 429).',
        width: 24,
        height: 2,
      }),
      new AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24, height: 3 }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Send lateness after the ledger slot (ms) and calls refused at the last check',
        left: [
          query('MAX', 'SendLatenessP50Ms', { label: 'p50' }),
          query('MAX', 'SendLatenessP99Ms', { label: 'p99' }),
          query('MAX', 'SendLatenessMaxMs', { label: 'max' }),
        ],
        leftAnnotations: [{ value: tolerance, label: 'tolerance: later calls are refused' }],
        right: [query('SUM', 'CallsRefused', { label: 'refused' })],
        width: 12,
      }),
      new GraphWidget({
        title: "Smallest hand-over gap: a call after another worker's slot of the key (ms)",
        left: [query('MIN', 'HandoverGapMinMs', { label: 'min gap' })],
        leftAnnotations: [{ value: handoverFloorMs(config), label: 'alarm: close to the spike interval' }],
        width: 12,
      }),
    );
    // One line per account (GROUP BY account): the registry's accounts appear as they publish.
    const perAccount = { groupBy: 'account' as const, period: quotaPeriod };
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Keap quota left, minute window (calls, lowest per account)',
        left: [query('MIN', 'QuotaMinuteLeft', perAccount)],
        leftAnnotations: [{ value: limits.minute, label: 'limit' }],
        leftYAxis: { min: 0 },
        period: quotaPeriod,
        width: 12,
      }),
      new GraphWidget({
        title: 'Keap quota left, day window (calls, lowest per account)',
        left: [query('MIN', 'QuotaDayLeft', perAccount)],
        leftAnnotations: [
          { value: limits.day, label: 'limit' },
          { value: settings.quotaDayLeftAlarmBelow, label: 'alarm: left below' },
        ],
        leftYAxis: { min: 0 },
        period: quotaPeriod,
        width: 12,
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Keap calls per account',
        left: [query('SUM', 'KeapCalls', { groupBy: 'account' })],
        width: 8,
      }),
      new GraphWidget({
        title: 'Keap 429s per account',
        left: [query('SUM', 'Keap429s', { groupBy: 'account' })],
        width: 8,
      }),
      new GraphWidget({
        title: 'Deferrals by reason',
        left: [query('SUM', 'Deferrals', { groupBy: 'reason' })],
        width: 8,
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Jobs enqueued and skipped',
        left: [
          query('SUM', 'JobsEnqueued', { label: 'enqueued' }),
          query('SUM', 'JobsSkipped', { label: 'skipped' }),
        ],
        width: 8,
      }),
      new GraphWidget({
        title: 'Records synced per resource',
        left: [query('SUM', 'RecordsWritten', { groupBy: 'resource' })],
        width: 8,
      }),
      new GraphWidget({
        title: 'Sync lag per account (ms)',
        left: [query('MAX', 'SyncLagMs', { groupBy: 'account' })],
        leftAnnotations: [{ value: settings.syncLagAlarmMinutes * 60_000, label: 'alarm' }],
        width: 8,
      }),
    );
    const fiveMinutes = { period: ALARM_PERIOD };
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Job queue',
        left: [
          jobQueue.metricApproximateNumberOfMessagesVisible({ ...fiveMinutes, label: 'waiting' }),
          jobQueue.metricApproximateNumberOfMessagesNotVisible({
            ...fiveMinutes,
            label: 'in flight or delayed',
          }),
          deadLetterQueue.metricApproximateNumberOfMessagesVisible({ ...fiveMinutes, label: 'dead letters' }),
        ],
        right: [jobQueue.metricApproximateAgeOfOldestMessage({ ...fiveMinutes, label: 'oldest (s)' })],
        width: 8,
      }),
      new GraphWidget({
        title: 'Functions: invocations and errors',
        left: [
          worker.function.metricInvocations({ ...fiveMinutes, label: 'worker invocations' }),
          scheduler.function.metricInvocations({ ...fiveMinutes, label: 'scheduler invocations' }),
        ],
        right: [
          worker.function.metricErrors({ ...fiveMinutes, label: 'worker errors' }),
          scheduler.function.metricErrors({ ...fiveMinutes, label: 'scheduler errors' }),
          worker.function.metricThrottles({ ...fiveMinutes, label: 'worker throttles' }),
        ],
        width: 8,
      }),
      new GraphWidget({
        title: 'Functions: duration (ms, p95)',
        left: [
          worker.function.metricDuration({ ...fiveMinutes, statistic: 'p95', label: 'worker' }),
          scheduler.function.metricDuration({ ...fiveMinutes, statistic: 'p95', label: 'scheduler' }),
        ],
        width: 8,
      }),
    );
    return dashboard;
  }
}

/** The hand-over gap alarm's threshold: Keap's spike interval plus half the lateness tolerance. */
function handoverFloorMs(config: { limits: { spikeIntervalMs?: number; lateToleranceMs?: number } }): number {
  return (config.limits.spikeIntervalMs ?? 100) + Math.round((config.limits.lateToleranceMs ?? 50) / 2);
}
