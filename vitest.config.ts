import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Native module (better-sqlite3) and child processes in network namespaces: separate processes are safer than threads.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
    // Leak check around the whole run: fails the run if a test world left anything behind.
    globalSetup: ['test/world/global-setup.ts'],
  },
});
