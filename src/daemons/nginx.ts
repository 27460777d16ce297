/** The entry nginx instance: checking a staged configuration set and reloading. */
import { CheckFailedError, DaemonError } from '../util/errors.js';
import { run } from '../util/exec.js';
import type { Layout } from '../render/layout.js';
import { ensureDir } from '../util/fsx.js';
import { childrenOf, hangUp, processComm, processTitle, runningPid, waitUntil, type ReloadOutcome } from './process.js';

export const NGINX = '/usr/sbin/nginx';

export function ensureNginxDirs(L: Layout): void {
  ensureDir(L.nginx.prefix, 0o755);
  ensureDir(L.nginx.tmpDir, 0o755);
}

/**
 * `nginx -t` on the staged nginx.conf: its includes are relative, so the staged maps next to it are
 * what gets checked. nginx -t really binds its listen addresses, so it must run where the server's
 * addresses exist (it does, on the server).
 */
export async function checkNginx(L: Layout, stagedConfig: string): Promise<void> {
  ensureNginxDirs(L);
  const r = await run(NGINX, ['-t', '-q', '-p', L.nginx.prefix, '-e', 'stderr', '-c', stagedConfig], { allowFailure: true, timeout: 60_000 });
  if (r.exitCode !== 0) throw new CheckFailedError('nginx (nginx -t)', stagedConfig, r.output);
}

/** The master's workers (polled every few ms during a reload: its own children file, not a walk of /proc). */
function workers(master: number): { pid: number; shuttingDown: boolean }[] {
  return childrenOf(master).filter((pid) => processComm(pid) === 'nginx')
    .map((pid) => ({ pid, shuttingDown: /shutting down/.test(processTitle(pid)) }));
}

/**
 * SIGHUP, then wait until nginx serves the new files: its master has started new workers and told every
 * old one to stop accepting (an old worker may live on "shutting down" while it finishes a long stream,
 * but it takes no new connection). If the master refused the new configuration, its old workers stay:
 * after `timeoutMs` that is an error that says where nginx wrote why.
 */
export async function reloadNginx(L: Layout, timeoutMs = 10_000): Promise<ReloadOutcome> {
  const master = runningPid(L.nginx.pidFile, 'nginx');
  if (master === undefined) return hangUp(L.nginx.pidFile, 'nginx');
  const before = new Set(workers(master).map((w) => w.pid));
  const r = hangUp(L.nginx.pidFile, 'nginx');
  if (r.status !== 'reloaded') return r;
  const took = await waitUntil(() => {
    const now = workers(master);
    return now.some((w) => !before.has(w.pid)) && now.every((w) => !before.has(w.pid) || w.shuttingDown);
  }, timeoutMs);
  if (took === null) {
    throw new DaemonError('reload_timeout', `nginx did not take its new configuration within ${timeoutMs / 1000} s: its old workers still serve.`, {
      hint: `Look at ${L.nginx.errorLog}; the checked files are in place, run \`pipe2me-ctl apply\` again once nginx is fixed.`,
    });
  }
  return { ...r, servedAfterMs: took };
}

/**
 * The unix sockets nginx listens on itself (not the API's, in the same directory). A master that was
 * killed leaves them behind and the next start fails with "Address already in use": whoever starts nginx
 * removes them first (systemd/pipe2me-nginx.service does, with these paths).
 */
export function nginxOwnSockets(L: Layout): string[] {
  return [L.nginx.httpsSocket, L.nginx.passthroughSocket];
}

export function nginxArgv(L: Layout): string[] {
  return [NGINX, '-p', L.nginx.prefix, '-e', 'stderr', '-c', L.nginx.config, '-g', 'daemon off;'];
}
