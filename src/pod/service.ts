/** `pipe2me install-service`: a systemd unit (Linux) or a launchd job (macOS) that runs `pipe2me start`. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PACKAGE_ROOT } from '../package-root.js';
import { renderTemplate } from '../render/templates.js';
import { atomicWrite } from '../util/fsx.js';
import { run } from '../util/exec.js';
import { PodFiles } from './files.js';

export interface ServiceFile {
  kind: 'systemd' | 'launchd';
  path: string;
  content: string;
  name: string;
}

function binPath(): string {
  return path.join(PACKAGE_ROOT, 'bin', 'pipe2me.js');
}

export function renderService(dir: string, platform: NodeJS.Platform = process.platform, user = os.userInfo().username): ServiceFile {
  const s = new PodFiles(dir).read();
  const absDir = path.resolve(dir);
  if (platform === 'darwin') {
    const label = `org.pipe2me.${s.name}`;
    return {
      kind: 'launchd',
      name: label,
      path: process.getuid?.() === 0 ? `/Library/LaunchDaemons/${label}.plist` : path.join(os.homedir(), 'Library', 'LaunchAgents', `${label}.plist`),
      content: renderTemplate('pod/pipe2me.plist.hbs', { fqdn: s.fqdn, label, node: process.execPath, bin: binPath(), dir: absDir }),
    };
  }
  const name = `pipe2me-${s.name}.service`;
  return {
    kind: 'systemd',
    name,
    path: `/etc/systemd/system/${name}`,
    content: renderTemplate('pod/pipe2me.service.hbs', { fqdn: s.fqdn, node: process.execPath, bin: binPath(), dir: absDir, user }),
  };
}

function systemdRunning(): boolean {
  return fs.existsSync('/run/systemd/system');
}

export async function installService(dir: string, opts: { enable: boolean; log: (m: string) => void }): Promise<ServiceFile & { enabled: boolean; note: string | null }> {
  const svc = renderService(dir);
  fs.mkdirSync(path.dirname(svc.path), { recursive: true });
  atomicWrite(svc.path, svc.content, { mode: 0o644 });
  let enabled = false;
  let note: string | null = null;
  if (!opts.enable) note = 'not enabled (--no-enable)';
  else if (svc.kind === 'systemd') {
    if (systemdRunning()) {
      await run('systemctl', ['daemon-reload'], { timeout: 60_000 });
      await run('systemctl', ['enable', '--now', svc.name], { timeout: 60_000 });
      enabled = true;
    } else {
      note = 'systemd is not running on this machine: the unit is installed; enable it with `systemctl enable --now ' + svc.name + '` once it is';
    }
  } else {
    await run('launchctl', ['load', '-w', svc.path], { timeout: 60_000 });
    enabled = true;
  }
  if (note) opts.log(note);
  return { ...svc, enabled, note };
}
