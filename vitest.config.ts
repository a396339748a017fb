import { defineConfig } from 'vitest/config';

/**
 * The suites that judge the quota at saturation or run several OS processes against one ledger: each
 * wants the whole of a 2-core machine, so they run one file at a time, after everything else.
 */
const SERIAL = [
  'test/drills/**/*.test.ts',
  'test/quota/ledger.processes.test.ts',
  'test/quota/ledger.dynamo.test.ts',
  'test/pipeline/quota.test.ts',
  'test/cli/processes.test.ts',
];

/**
 * A time limit only catches a hang; it asserts nothing about speed. A test that takes 15 s on a quiet
 * machine takes twice that beside a CPU hog (issue 11's drill), so the limits leave that much room.
 */
const shared = {
  testTimeout: 60_000,
  hookTimeout: 120_000,
};

export default defineConfig({
  test: {
    projects: [
      {
        // Most suites wait on the clock (quota pacing, page latency, timeouts, intervals) far more
        // than they use the CPU: two files at a time.
        test: {
          ...shared,
          name: 'suite',
          include: ['test/**/*.test.ts'],
          exclude: SERIAL,
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          ...shared,
          name: 'serial',
          include: SERIAL,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
