// Test support: the DynamoDB emulators each integration suite runs against. DynamoDB Local needs Java;
// where it is missing the suite says so loudly, and under CI=true it fails instead of skipping.
import {
  javaAvailable,
  type RunningDynamo,
  startDynalite,
  startDynamoDbLocal,
} from '#harness/emulators/dynamo.ts';

export interface EmulatorCase {
  name: 'dynalite' | 'DynamoDB Local';
  start: () => Promise<RunningDynamo>;
  /** Whether a failed conditional write returns the winning item. */
  returnsItemOnConflict: boolean;
}

const hasJava = javaAvailable();

export const JAVA_MISSING_MESSAGE =
  'DynamoDB Local cannot run: no Java runtime on PATH. Install Java 17+ (apt-get install openjdk-17-jre-headless) ' +
  'to run the DynamoDB Local integration suite; only dynalite was tested.';

if (!hasJava) {
  console.error(`\n${'!'.repeat(100)}\n${JAVA_MISSING_MESSAGE}\n${'!'.repeat(100)}\n`);
}

export const emulatorCases: EmulatorCase[] = [
  { name: 'dynalite', start: () => startDynalite(), returnsItemOnConflict: false },
  ...(hasJava
    ? [{ name: 'DynamoDB Local' as const, start: () => startDynamoDbLocal(), returnsItemOnConflict: true }]
    : []),
];

/** Under CI the missing emulator is a failure, not a skip. */
export const missingEmulatorFailure: string | undefined =
  !hasJava && process.env.CI === 'true' ? JAVA_MISSING_MESSAGE : undefined;
