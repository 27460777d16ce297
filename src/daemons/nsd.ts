/** The authoritative NSD instance: checks, nsd-control reloads over its unix socket. */
import type { Config } from '../config/types.js';
import { CheckFailedError, DaemonError } from '../util/errors.js';
import { run } from '../util/exec.js';
import type { Layout } from '../render/layout.js';
import { runningPid, type ReloadOutcome } from './process.js';
import { waitForSerial } from './dns-query.js';

export async function checkNsd(c: Config, stagedConfig: string | undefined, stagedZone: string | undefined): Promise<void> {
  if (stagedConfig) {
    const r = await run('nsd-checkconf', [stagedConfig], { allowFailure: true, timeout: 30_000 });
    if (r.exitCode !== 0) throw new CheckFailedError('NSD (nsd-checkconf)', stagedConfig, r.output);
  }
  if (stagedZone) {
    // A zone NSD cannot load is dropped on reload (SERVFAIL), so this check is what keeps it answering.
    const r = await run('nsd-checkzone', [c.domain, stagedZone], { allowFailure: true, timeout: 60_000 });
    if (r.exitCode !== 0) throw new CheckFailedError('NSD (nsd-checkzone)', stagedZone, r.output);
  }
}

export async function reloadNsd(c: Config, L: Layout, reconfig: boolean, serial: number | null): Promise<ReloadOutcome> {
  const start = performance.now();
  const pid = runningPid(L.nsd.pidFile, 'nsd');
  if (pid === undefined) return { status: 'not-running', detail: `no nsd at ${L.nsd.pidFile}; the new files are used when it starts` };
  const steps = reconfig ? [['reconfig'], ['reload', c.domain]] : [['reload', c.domain]];
  for (const args of steps) {
    const r = await run('nsd-control', ['-c', L.nsd.config, ...args], { allowFailure: true, timeout: 30_000 });
    if (r.exitCode !== 0 || /error/i.test(r.output)) {
      throw new DaemonError('reload_failed', `nsd-control ${args.join(' ')} failed (exit ${r.exitCode}): ${r.output}`, {
        hint: 'The checked files are in place; look at nsd\'s log, then run `pipe2me-ctl apply` again.',
      });
    }
  }
  await waitForSerial(c, serial, 'nsd');
  return { status: 'reloaded', detail: `nsd-control ${steps.map((s) => s.join(' ')).join(', ')}`, servedAfterMs: performance.now() - start };
}

export function nsdArgv(L: Layout): string[] {
  return ['/usr/sbin/nsd', '-d', '-c', L.nsd.config];
}
