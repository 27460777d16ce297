#!/usr/bin/env node
// Runs commands with the machine's top-level trees behind overlays, and lists what they wrote there:
// the test of "a trial (`init --root`) writes nothing outside its root". Run it in a private mount
// namespace (`unshare --mount --propagation private node overlay-run.mjs ...`): the overlays, their
// tmpfs and everything written into them vanish with the namespace, and the machine never sees them.
//
//   overlay-run.mjs COMMANDS_JSON        COMMANDS_JSON: [[argv...], ...], run one after the other
//
// Prints one JSON object: { results: [{argv, code, output}], written: ["/etc/passwd", ...] } — every path
// created or changed under /etc /var /usr /opt /srv /root /tmp /run (overlayfs's upper directories).
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const commands = JSON.parse(process.argv[2]);
const TREES = ['/etc', '/var', '/usr', '/opt', '/srv', '/root', '/tmp', '/run'];
// A private tmpfs for the upper layers (mounted over /dev/shm inside this namespace only).
const scratch = '/dev/shm';
execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0700', 'p2m-overlay', scratch], { timeout: 10_000 });
for (const tree of TREES) {
  const name = tree.slice(1);
  for (const d of ['upper', 'work', 'lower']) fs.mkdirSync(path.join(scratch, name, d), { recursive: true });
  // The tree as it was, to tell a new directory from one that only holds something new.
  execFileSync('mount', ['--bind', tree, path.join(scratch, name, 'lower')], { timeout: 10_000 });
}
// /run last: the uppers are reached through /dev/shm, which no overlay hides.
for (const tree of TREES) {
  const name = tree.slice(1);
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${tree},upperdir=${path.join(scratch, name, 'upper')},workdir=${path.join(scratch, name, 'work')}`, tree], { timeout: 10_000 });
}
const results = [];
for (const argv of commands) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 120_000 });
  results.push({ argv, code: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}`.slice(-4000) });
  if (r.status !== 0) break;
}
const written = [];
const walk = (upper, lower, shown) => {
  for (const e of fs.readdirSync(upper, { withFileTypes: true })) {
    const at = path.join(shown, e.name);
    // A directory that only holds something new is listed through what it holds; a new one itself too.
    if (e.isDirectory()) {
      if (!fs.existsSync(path.join(lower, e.name))) written.push(at + '/');
      walk(path.join(upper, e.name), path.join(lower, e.name), at);
    } else {
      written.push(at);
    }
  }
};
for (const tree of TREES) walk(path.join(scratch, tree.slice(1), 'upper'), path.join(scratch, tree.slice(1), 'lower'), tree);
process.stdout.write(JSON.stringify({ results, written }) + '\n');
