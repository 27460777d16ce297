/**
 * The order in which vitest starts the suite's files: the few that take minutes first.
 *
 * vitest's own order runs the files it has never timed by size, largest first. CI always runs in a
 * clean clone, where nothing has been timed, and there the two playbook files (small files, 5–6 minutes
 * each, mostly debootstrap and apt) started last: the suite waited on them alone at its end. Started first,
 * they overlap everything else on the three forks. Then the other files of a minute or more, longest
 * first, so that no long one is left to run alone at the end (the suite's last file was a 73 s one that
 * started late). The list is from the suite's own per-file durations (clean clone, 2 cores); every other
 * file keeps vitest's order after them.
 */
import * as path from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

export const LONGEST_FIRST = [
  'test/ops/playbook.test.ts', // ~290-380 s
  'test/ops/playbook-relays.test.ts', // ~350-370 s
  'test/e2e/relays.test.ts', // ~165 s
  'test/e2e/postgres-acme.test.ts', // ~110-160 s
  'test/e2e/acme.test.ts', // ~105 s
  'test/e2e/api.test.ts', // ~75-105 s
  'test/ops/pod-install.test.ts', // ~85 s
  'test/e2e/server.test.ts', // ~55-85 s
  'test/e2e/postgres-api.test.ts', // ~65-75 s
  'test/e2e/postgres-failover.test.ts', // ~65 s
  'test/e2e/pod.test.ts', // ~55 s
  'test/e2e/first-day.test.ts', // ~55 s
  'test/e2e/postgres-store.test.ts', // ~55 s
  'test/unit/incremental.test.ts', // ~45 s
];

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const base = await super.sort(files);
    const rank = (f: TestSpecification): number => {
      const i = LONGEST_FIRST.indexOf(path.relative(this.ctx.config.root, f.moduleId));
      return i < 0 ? LONGEST_FIRST.length : i;
    };
    return base.map((f, i) => ({ f, i })).sort((a, b) => rank(a.f) - rank(b.f) || a.i - b.i).map((x) => x.f);
  }
}
