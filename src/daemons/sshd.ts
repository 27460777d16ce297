/** The tunnel sshd instance: checking staged files and reloading. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CheckFailedError, DaemonError } from '../util/errors.js';
import { run } from '../util/exec.js';
import type { Layout } from '../render/layout.js';
import * as net from 'node:net';
import { hangUp, waitUntil, type ReloadOutcome } from './process.js';
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
export async function checkKeyList(staged: string, was: { live: string | undefined } | { added: string[] }): Promise<void> {
  let fresh: string[];
  if ('added' in was) fresh = [...parseKeyList(was.added.join('\n')).values()];
  else {
    const known = new Set(parseKeyList(was.live).values());
    fresh = [...parseKeyList(fs.readFileSync(staged, 'utf8')).values()].filter((l) => !known.has(l));
  }
  if (fresh.length === 0) return;
  const file = path.join(path.dirname(staged), 'new-keys');
  fs.writeFileSync(file, fresh.join('\n') + '\n', { mode: 0o600 });
  const r = await run('ssh-keygen', ['-l', '-f', file], { allowFailure: true, timeout: 60_000 });
  if (r.exitCode !== 0) throw new CheckFailedError('ssh-keygen -l (key index)', staged, r.output);
}

/** Does something at address:port greet like an ssh server within `timeoutMs`? */
function sshGreets(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('data', (d) => done(d.toString('latin1').startsWith('SSH-')));
    sock.once('error', () => done(false));
  });
}

/**
 * SIGHUP (live sessions stay up across sshd's re-exec), then wait until the re-executed listener greets
 * again: the new configuration is in force from then on.
 */
export async function reloadSshd(L: Layout, listen: { host: string; port: number }, timeoutMs = 10_000): Promise<ReloadOutcome> {
  const r = hangUp(L.sshd.pidFile, 'sshd');
  if (r.status !== 'reloaded') return r;
  const start = performance.now();
  // The old listener closes its socket before it re-executes; a greeting this soon could still be its.
  await new Promise((res) => setTimeout(res, 50));
  const took = await waitUntil(() => sshGreets(listen.host, listen.port, 500), timeoutMs, 20);
  if (took === null) {
    throw new DaemonError('reload_timeout', `sshd did not listen again within ${timeoutMs / 1000} s of its reload.`, {
      hint: 'Look at sshd\'s log (journalctl -u pipe2me-sshd); the checked files are in place.',
    });
  }
  return { ...r, servedAfterMs: performance.now() - start };
}

export function sshdArgv(L: Layout): string[] {
  // An absolute -f path: SIGHUP re-execs with the same argv, and a relative one would kill it.
  return [SSHD, '-D', '-e', '-f', path.resolve(L.sshd.config)];
}
