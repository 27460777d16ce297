/** The authoritative BIND instance: checks, rndc reloads. */
import type { Config } from '../config/types.js';
import { CheckFailedError, DaemonError } from '../util/errors.js';
import { run } from '../util/exec.js';
import type { Layout } from '../render/layout.js';
import { runningPid, type ReloadOutcome } from './process.js';
import { waitForSerial } from './dns-query.js';

export async function checkBind(c: Config, stagedConfig: string | undefined, stagedZone: string | undefined): Promise<void> {
  if (stagedConfig) {
    const r = await run('named-checkconf', [stagedConfig], { allowFailure: true, timeout: 30_000 });
    if (r.exitCode !== 0) throw new CheckFailedError('BIND (named-checkconf)', stagedConfig, r.output);
  }
  if (stagedZone) {
    const r = await run('named-checkzone', ['-k', 'fail', '-n', 'fail', '-i', 'local', c.domain, stagedZone], { allowFailure: true, timeout: 60_000 });
    if (r.exitCode !== 0) throw new CheckFailedError('BIND (named-checkzone)', stagedZone, r.output);
  }
}

function rndc(c: Config, L: Layout, args: string[]) {
  return run('rndc', ['-k', L.bind.rndcKey, '-s', '127.0.0.1', '-p', String(c.dns.controlPort), ...args], { allowFailure: true, timeout: 30_000 });
}

export async function reloadBind(c: Config, L: Layout, reconfig: boolean, serial: number | null): Promise<ReloadOutcome> {
  const start = performance.now();
  const pid = runningPid(L.bind.pidFile, 'named');
  if (pid === undefined) return { status: 'not-running', detail: `no named at ${L.bind.pidFile}; the new files are used when it starts` };
  const steps = reconfig ? [['reconfig'], ['reload', c.domain]] : [['reload', c.domain]];
  for (const args of steps) {
    const r = await rndc(c, L, args);
    if (r.exitCode !== 0) {
      throw new DaemonError('reload_failed', `rndc ${args.join(' ')} failed (exit ${r.exitCode}): ${r.output}`, {
        hint: 'The checked files are in place; look at named\'s log, then run `pipe2me-ctl apply` again.',
      });
    }
  }
  await waitForSerial(c, serial, 'named');
  return { status: 'reloaded', detail: `rndc ${steps.map((s) => s.join(' ')).join(', ')}`, servedAfterMs: performance.now() - start };
}

export function namedArgv(L: Layout): string[] {
  return ['/usr/sbin/named', '-g', '-c', L.bind.config];
}

/** A named.conf `key` clause: named includes it and `rndc -k` reads it. Written 0600 by the caller. */
export async function generateRndcKey(): Promise<string> {
  const r = await run('tsig-keygen', ['-a', 'hmac-sha256', 'rndc-key'], { timeout: 10_000 });
  return r.stdout;
}
