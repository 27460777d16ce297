/**
 * A trial server under one directory (`pipe2me-ctl init --root DIR`): every file pipe2me writes lives
 * under DIR, or init refuses and says which key points elsewhere. The root is checked before anything is
 * written: sshd runs the key lookup and the session holder only from directories that are root-owned
 * and writable by nobody else all the way up (a root under /tmp fails that), and nginx's workers, the
 * key lookup's user and the tunnel user must be able to pass through every directory (a 0700 root from
 * mktemp -d fails that: ca.pem is then a 403 and every login is refused).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Config } from '../config/types.js';
import { ConfigError } from '../util/errors.js';

/** The problems of a directory chain for a trial root, each with its fix; empty when it is usable. */
export function rootProblems(root: string): string[] {
  const abs = path.resolve(root);
  const problems: string[] = [];
  // The root itself may not exist yet: check what exists, from / down.
  const parts = abs.split('/').filter(Boolean);
  let cur = '/';
  for (let i = 0; i <= parts.length; i++) {
    let st: fs.Stats;
    try {
      st = fs.statSync(cur);
    } catch {
      break;
    }
    if (!st.isDirectory()) {
      problems.push(`${cur} is not a directory.`);
      break;
    }
    if (st.uid !== 0) problems.push(`${cur} belongs to uid ${st.uid}: sshd runs its helpers only from root-owned directories (chown root ${cur}, or choose a root elsewhere, e.g. /srv/pipe2me-trial).`);
    if (st.mode & 0o022) {
      problems.push(`${cur} is writable by ${st.mode & 0o002 ? 'everyone' : 'its group'} (mode ${(st.mode & 0o7777).toString(8)}): sshd refuses helpers below it${cur === '/tmp' || cur.startsWith('/tmp/') ? ' — choose a root outside /tmp, e.g. /srv/pipe2me-trial' : ` (chmod go-w ${cur})`}.`);
    }
    if (!(st.mode & 0o001)) problems.push(`${cur} is mode ${(st.mode & 0o7777).toString(8)}: nginx's workers and the tunnel users cannot pass through it (chmod 755 ${cur}).`);
    if (i < parts.length) cur = path.join(cur, parts[i]!);
  }
  return problems;
}

export function assertUsableRoot(root: string): void {
  const problems = rootProblems(root);
  if (problems.length) {
    throw new ConfigError(`${path.resolve(root)} cannot hold a trial server:\n${problems.map((p) => `  - ${p}`).join('\n')}`, {
      hint: 'Fix the modes above, or choose another --root (root-owned directories, mode 755, outside /tmp).',
    });
  }
}

const inside = (root: string, p: string) => {
  const rel = path.relative(root, path.resolve(p));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
};

/** Every `paths` key (and the configuration file itself) must lie under the root. */
export function assertUnderRoot(root: string, configFile: string, c?: Config): void {
  const abs = path.resolve(root);
  const outside = Object.entries(c?.paths ?? {}).filter(([, p]) => !inside(abs, p)).map(([k, p]) => `paths.${k} is ${p}`);
  if (!inside(abs, configFile)) outside.unshift(`the configuration file is ${configFile}`);
  if (outside.length) {
    throw new ConfigError(`--root ${abs} means every file pipe2me writes lives under it, but ${outside.join(', ')}.`, {
      hint: `Set those keys to directories under ${abs} (a new configuration written by \`init --root\` does), or leave --root out.`,
    });
  }
}

/** Where `init --root DIR` keeps the configuration when no --config was given. */
export function rootConfigFile(root: string): string {
  return path.join(path.resolve(root), 'etc', 'pipe2me', 'pipe2me.yml');
}
