// Benchmark harness: hosts one DynamoDB emulator in its own process and prints its endpoint:
// dynalite (the default), or DynamoDB Local when BENCH_STORE=dynamodb-local (it returns the winning
// item on a failed condition, as DynamoDB does, so a lost race costs no read).
import { type RunningDynamo, startDynalite, startDynamoDbLocal } from '#harness/emulators/dynamo.ts';

const db: RunningDynamo =
  process.env.BENCH_STORE === 'dynamodb-local' ? await startDynamoDbLocal() : await startDynalite();
process.stdout.write(`${JSON.stringify({ endpoint: db.endpoint })}\n`);
const stop = () => {
  db.close().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
