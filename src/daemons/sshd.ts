/** The tunnel sshd instance: checking staged files and reloading. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CheckFailedError } from '../util/errors.js';
import { run } from '../util/exec.js';
import type { Layout } from '../render/layout.js';
import { hangUp, type ReloadOutcome } from './process.js';

export const SSHD = '/usr/sbin/sshd';

/** sshd refuses to run, even for -t, without its privilege separation directory. */
export function ensurePrivsepDir(): void {
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
}

export async function checkSshdConfig(stagedConfig: string, stagedScript: string | undefined): Promise<void> {
  ensurePrivsepDir();
  const r = await run(SSHD, ['-t', '-f', stagedConfig], { allowFailure: true, timeout: 20_000 });
  if (r.exitCode !== 0) throw new CheckFailedError('sshd (sshd -t)', stagedConfig, r.output);
  if (stagedScript) {
    const s = await run('/bin/sh', ['-n', stagedScript], { allowFailure: true, timeout: 10_000 });
    if (s.exitCode !== 0) throw new CheckFailedError('sh -n (session command)', stagedScript, s.output);
  }
}

/**
 * Every key line must parse as a public key (ssh-keygen understands authorized_keys options). Lines that
 * are already live passed this check when they went live, so only new lines are checked: with 10,000
 * pods, checking the whole file on every registration costs ~0.2 s.
 */
export async function checkAuthorizedKeys(staged: string, live: string | undefined): Promise<void> {
  const known = new Set((live ?? '').split('\n'));
  const fresh = fs.readFileSync(staged, 'utf8').split('\n').filter((l) => l.trim() && !l.startsWith('#') && !known.has(l));
  if (fresh.length === 0) return;
  const file = path.join(path.dirname(staged), 'new-keys');
  fs.writeFileSync(file, fresh.join('\n') + '\n', { mode: 0o600 });
  const r = await run('ssh-keygen', ['-l', '-f', file], { allowFailure: true, timeout: 60_000 });
  if (r.exitCode !== 0) throw new CheckFailedError('ssh-keygen -l (authorized_keys)', staged, r.output);
}

/** Live sessions stay up across the re-exec. */
export function reloadSshd(L: Layout): ReloadOutcome {
  return hangUp(L.sshd.pidFile, 'sshd');
}

export function sshdArgv(L: Layout): string[] {
  // An absolute -f path: SIGHUP re-execs with the same argv, and a relative one would kill it.
  return [SSHD, '-D', '-e', '-f', path.resolve(L.sshd.config)];
}
