import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Native kernels use every core; running test files one after another keeps timings sane
    // on the 2-core CI machine.
    fileParallelism: false,
    pool: 'forks',
    // --expose-gc lets test/memory.test.ts check the FinalizationRegistry backstop.
    poolOptions: { forks: { execArgv: ['--expose-gc'] } },
  },
});
