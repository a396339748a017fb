import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // The DynamoDB Local JVM and the multi-process test are heavy on a 2-core machine.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
