/** The entry nginx instance: checking a staged configuration set and reloading. */
import { CheckFailedError } from '../util/errors.js';
import { run } from '../util/exec.js';
import type { Layout } from '../render/layout.js';
import { ensureDir } from '../util/fsx.js';
import { hangUp, type ReloadOutcome } from './process.js';

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

export function reloadNginx(L: Layout): ReloadOutcome {
  return hangUp(L.nginx.pidFile, 'nginx');
}

export function nginxArgv(L: Layout): string[] {
  return [NGINX, '-p', L.nginx.prefix, '-e', 'stderr', '-c', L.nginx.config, '-g', 'daemon off;'];
}
