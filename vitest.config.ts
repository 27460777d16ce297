import { defineConfig } from 'vitest/config';
import LongestFirst from './test/world/sequencer.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Native module (better-sqlite3) and child processes in network namespaces: separate processes are safer than threads.
    pool: 'forks',
    // Most end-to-end files wait on the network and on daemons rather than on the CPU, and every world is
    // isolated (its own namespaces, users and directories): three files at once roughly halve the suite's
    // wall time on two cores, the playbook test's debootstrap overlapping the rest.
    poolOptions: { forks: { minForks: 1, maxForks: 3 } },
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // The files that take minutes start first (see the sequencer: CI's clean clone has no timings).
    sequence: { sequencer: LongestFirst },
    reporters: ['default'],
    // Leak check around the whole run: fails the run if a test world left anything behind.
    globalSetup: ['test/world/global-setup.ts'],
  },
});
