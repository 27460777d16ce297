/** The tunnel user's per-connection sshd processes in the server's namespace (to kill sessions in tests). */
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import type { Stack } from './stack.js';

export function pidsOfSshdSessions(stack: Stack): number[] {
  const uid = Number(execFileSync('id', ['-u', stack.tunnelUser], { encoding: 'utf8', timeout: 5000 }).trim());
  const nsPids = execFileSync('ip', ['netns', 'pids', stack.world.ns('srv')], { encoding: 'utf8', timeout: 5000 }).split('\n').filter(Boolean).map(Number);
  return nsPids.filter((pid) => {
    try {
      const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      return /^Name:\s+sshd$/m.test(status) && new RegExp(`^Uid:\\s+${uid}\\s`, 'm').test(status);
    } catch {
      return false;
    }
  });
}
