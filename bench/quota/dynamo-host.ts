// Benchmark harness: hosts one dynalite server in its own process and prints its endpoint.
import { startDynalite } from '#harness/emulators/dynamo.ts';

const db = await startDynalite();
process.stdout.write(`${JSON.stringify({ endpoint: db.endpoint })}\n`);
const stop = () => {
  db.close().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
