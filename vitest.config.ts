import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // One file at a time: the DynamoDB Local JVM, the emulators and the multi-process test each want
    // the whole of a 2-core machine, and timing-sensitive suites must not starve each other.
    fileParallelism: false,
  },
});
