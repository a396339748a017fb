// Infrastructure (stateful stack): everything that holds data, so it is protected (RETAIN, deletion
// protection, point-in-time recovery) while the code in the app stack is redeployed freely. The
// ledger, state and mirror tables, the job queue with its dead-letter queue, and the change events'
// bus (the user's rules live on it) with the events' dead-letter queue.
import { CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import { AttributeType, BillingMode, StreamViewType, Table, TableEncryption } from 'aws-cdk-lib/aws-dynamodb';
import { EventBus, type IEventBus } from 'aws-cdk-lib/aws-events';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { NagSuppressions } from 'cdk-nag';
import type { Construct } from 'constructs';
import type { AppConfig } from '#shared/config/app-config.ts';
import { MIRROR_TABLE, STATE_TABLE } from '#shared/store/tables.ts';

/** The ledger's partition key (shared/quota/table.ts and store.ts write `pk`, a string). */
export const LEDGER_PARTITION_KEY = 'pk';

/** AWS's guidance: a queue feeding Lambda is invisible for at least 6x the function timeout. */
export const VISIBILITY_TIMEOUT_FACTOR = 6;

export interface DataStackProps extends StackProps {
  config: AppConfig;
  /** The event source's batching window, which AWS adds to the 6x (seconds). */
  maxBatchingWindowSeconds: number;
  /** The change events' bus: created with this name, or, with `existing`, an existing bus of this name. */
  changeEventBus: { name: string; existing: boolean };
}

export class KeapSyncDataStack extends Stack {
  readonly ledgerTable: Table;
  readonly stateTable: Table;
  readonly mirrorTable: Table;
  readonly jobQueue: Queue;
  readonly deadLetterQueue: Queue;
  /** Where the publisher puts the change events. */
  readonly changeEventBus: IEventBus;
  /** Change events that could not be published, and stream batches the publisher gave up on. */
  readonly eventDeadLetterQueue: Queue;

  constructor(scope: Construct, id: string, props: DataStackProps) {
    super(scope, id, props);
    const { worker } = props.config;

    // Every table: on-demand, point-in-time recovery, encrypted with the AWS managed key
    // (aws/dynamodb: auditable in CloudTrail, no key to pay for or lose), kept on stack deletion.
    const tableDefaults = {
      billingMode: BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: TableEncryption.AWS_MANAGED,
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    } as const;

    this.ledgerTable = new Table(this, 'LedgerTable', {
      ...tableDefaults,
      partitionKey: { name: LEDGER_PARTITION_KEY, type: AttributeType.STRING },
    });
    this.stateTable = new Table(this, 'StateTable', {
      ...tableDefaults,
      partitionKey: { name: STATE_TABLE.partitionKey, type: AttributeType.STRING },
      sortKey: { name: STATE_TABLE.sortKey, type: AttributeType.STRING },
      timeToLiveAttribute: STATE_TABLE.ttlAttribute,
    });
    this.mirrorTable = new Table(this, 'MirrorTable', {
      ...tableDefaults,
      partitionKey: { name: MIRROR_TABLE.partitionKey, type: AttributeType.STRING },
      sortKey: { name: MIRROR_TABLE.sortKey, type: AttributeType.STRING },
      stream: StreamViewType[MIRROR_TABLE.streamViewType],
      // Tombstones expire after mirror.tombstoneDays (their REMOVE publishes no second Deleted event).
      timeToLiveAttribute: MIRROR_TABLE.ttlAttribute,
    });

    // At most 6 x 900 + 300 s (the settings' limits), well under SQS's 12 hours.
    const visibilitySeconds =
      VISIBILITY_TIMEOUT_FACTOR * worker.timeoutSeconds + props.maxBatchingWindowSeconds;
    // Both queues: encrypted at rest (SSE-SQS, so no key policy for the functions to need) and a
    // policy denying any request not made over TLS.
    this.deadLetterQueue = new Queue(this, 'DeadLetterQueue', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // Longer than the job queue's: a dead letter's age counts from its first enqueue.
      retentionPeriod: Duration.days(14),
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.jobQueue = new Queue(this, 'JobQueue', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout: Duration.seconds(visibilitySeconds),
      retentionPeriod: Duration.days(4),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: worker.maxReceiveCount },
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // Kept on stack deletion, like the data: the rules other systems attach to it live on the bus.
    this.changeEventBus = props.changeEventBus.existing
      ? EventBus.fromEventBusName(this, 'ChangeEventBus', props.changeEventBus.name)
      : new EventBus(this, 'ChangeEventBus', {
          eventBusName: props.changeEventBus.name,
          description: 'keap-sync change events: one per created, updated or deleted Keap record',
        });
    if (this.changeEventBus instanceof EventBus) this.changeEventBus.applyRemovalPolicy(RemovalPolicy.RETAIN);
    // A dead-letter queue itself: the publisher sends what it could not publish (with the reason), and
    // Lambda sends the stream batches it gave up on (shard and sequence numbers, to read again).
    this.eventDeadLetterQueue = new Queue(this, 'EventDeadLetterQueue', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      removalPolicy: RemovalPolicy.RETAIN,
    });
    NagSuppressions.addResourceSuppressions(this.eventDeadLetterQueue, [
      {
        id: 'AwsSolutions-SQS3',
        reason:
          "It is a dead-letter queue: the publisher's dead letters and the stream event source's on-failure " +
          "destination. cdk-nag recognises only queues named in another queue's redrive policy as DLQs.",
      },
    ]);

    const output = (id: string, value: string, description: string) =>
      new CfnOutput(this, id, { value, description });
    output('JobQueueUrl', this.jobQueue.queueUrl, 'Send sync and write jobs here (aws sqs send-message)');
    output('JobQueueArn', this.jobQueue.queueArn, 'Destination of a dead-letter redrive');
    output('DeadLetterQueueUrl', this.deadLetterQueue.queueUrl, 'Poison and failed jobs, with reasons');
    output('DeadLetterQueueArn', this.deadLetterQueue.queueArn, 'Source of a dead-letter redrive');
    output('LedgerTableName', this.ledgerTable.tableName, 'Quota ledger');
    output('StateTableName', this.stateTable.tableName, 'Cursors, leases, account status, write outcomes');
    output('MirrorTableName', this.mirrorTable.tableName, 'The mirrored Keap records');
    output('ChangeEventBusName', this.changeEventBus.eventBusName, 'Change events: attach your rules here');
    output('ChangeEventBusArn', this.changeEventBus.eventBusArn, 'Change events bus ARN');
    output(
      'EventDeadLetterQueueUrl',
      this.eventDeadLetterQueue.queueUrl,
      'Change events not published, with reasons',
    );
    if (this.mirrorTable.tableStreamArn) {
      output(
        'MirrorTableStreamArn',
        this.mirrorTable.tableStreamArn,
        'Changes to the mirror, for your consumers',
      );
    }
  }
}
