/**
 * System users a world is responsible for. The harness never creates users itself (pipe2me's own code
 * creates the tunnel user); a world only tracks names and removes them at teardown.
 */
import * as fs from 'node:fs';
import { run } from '../../src/util/exec.js';
import { sleep } from './wait.js';

export interface TrackedUser {
  name: string;
  /** Also remove the home directory (userdel -r). Off by default: a home may be shared or "/". */
  removeHome: boolean;
}

const USERNAME = /^[a-z_][a-z0-9_-]{0,31}$/;

export function assertUserName(name: string): void {
  if (!USERNAME.test(name)) throw new Error(`"${name}" is not a user name the harness will manage (${USERNAME})`);
  if (name === 'root') throw new Error('refusing to track root');
}

/** Read /etc/passwd directly: cheap enough to call in leak checks, and needs no NSS lookup. */
export function userExists(name: string): boolean {
  try {
    return fs
      .readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .some((l) => l.startsWith(`${name}:`));
  } catch {
    return false;
  }
}

/**
 * userdel, retried while /etc/passwd is locked (exit 10: another world's useradd/userdel) or the user
 * still has a process (exit 8: a session sshd that is just exiting). A missing user is success.
 */
export async function deleteUser(user: TrackedUser, deadlineMs = 5000): Promise<void> {
  assertUserName(user.name);
  const args = user.removeHome ? ['-r', user.name] : [user.name];
  const deadline = performance.now() + deadlineMs;
  for (;;) {
    if (!userExists(user.name)) return;
    const r = await run('userdel', args, { timeout: 10_000, allowFailure: true });
    // 0 ok; 6 no such user; 12 (with -r) home could not be removed — the account itself is gone.
    if (r.exitCode === 0 || r.exitCode === 6 || (user.removeHome && r.exitCode === 12 && !userExists(user.name))) return;
    if ((r.exitCode === 10 || r.exitCode === 8 || r.exitCode === 1) && performance.now() < deadline) {
      await sleep(50);
      continue;
    }
    throw new Error(`userdel ${args.join(' ')} failed (exit ${r.exitCode}): ${r.output}`);
  }
}
