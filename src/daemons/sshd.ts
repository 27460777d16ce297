/** The tunnel sshd instance: checking staged files and reloading. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CheckFailedError } from '../util/errors.js';
import { run } from '../util/exec.js';
import type { Layout } from '../render/layout.js';
import { hangUp, type ReloadOutcome } from './process.js';
import { parseKeyList } from '../ssh/key-index.js';

export const SSHD = '/usr/sbin/sshd';

/** sshd refuses to run, even for -t, without its privilege separation directory. */
export function ensurePrivsepDir(): void {
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
}

export async function checkSshdConfig(stagedConfig: string | undefined, stagedScripts: readonly (string | undefined)[]): Promise<void> {
  ensurePrivsepDir();
  if (stagedConfig) {
    const r = await run(SSHD, ['-t', '-f', stagedConfig], { allowFailure: true, timeout: 20_000 });
    if (r.exitCode !== 0) throw new CheckFailedError('sshd (sshd -t)', stagedConfig, r.output);
  }
  for (const script of stagedScripts) {
    if (!script) continue;
    const s = await run('/bin/sh', ['-n', script], { allowFailure: true, timeout: 10_000 });
    if (s.exitCode !== 0) throw new CheckFailedError('sh -n (sshd helper script)', script, s.output);
  }
}

/**
 * Every line of the key index must parse as an authorized_keys line (ssh-keygen understands their
 * options). Lines that are already live passed this check when they went live, so only new lines are
 * checked: with 10,000 pods, checking them all on every registration costs ~0.2 s.
 */
export async function checkKeyList(staged: string, live: string | undefined): Promise<void> {
  const known = new Set(parseKeyList(live).values());
  const fresh = [...parseKeyList(fs.readFileSync(staged, 'utf8')).values()].filter((l) => !known.has(l));
  if (fresh.length === 0) return;
  const file = path.join(path.dirname(staged), 'new-keys');
  fs.writeFileSync(file, fresh.join('\n') + '\n', { mode: 0o600 });
  const r = await run('ssh-keygen', ['-l', '-f', file], { allowFailure: true, timeout: 60_000 });
  if (r.exitCode !== 0) throw new CheckFailedError('ssh-keygen -l (key index)', staged, r.output);
}

/** Live sessions stay up across the re-exec. */
export function reloadSshd(L: Layout): ReloadOutcome {
  return hangUp(L.sshd.pidFile, 'sshd');
}

export function sshdArgv(L: Layout): string[] {
  // An absolute -f path: SIGHUP re-execs with the same argv, and a relative one would kill it.
  return [SSHD, '-D', '-e', '-f', path.resolve(L.sshd.config)];
}
