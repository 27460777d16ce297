/**
 * Reads what limits a relay on this machine (src/server/capacity.ts computes with it): kernel.pid_max,
 * MemTotal, fs.file-max, the ephemeral port range, and the tunnel sshd unit's limits — as installed, with
 * its drop-ins (`systemctl edit`), or else as pipe2me ships it. Files only: nothing is run, and a fact
 * that cannot be read (not Linux, no unit) is null rather than an error, since check-config must work
 * on any machine that holds a configuration.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PACKAGE_ROOT } from '../package-root.js';
import type { HostFacts } from './capacity.js';
import { unitLimits } from './sshd-unit.js';

export const SSHD_UNIT = 'pipe2me-sshd.service';

export interface HostFactsPaths {
  /** Where procfs is mounted. */
  proc: string;
  /** systemd's unit directories, highest priority first (systemd.unit(5)). */
  unitDirs: string[];
  /** The unit pipe2me ships (systemd/ in the package). */
  shippedUnit: string;
}

export const DEFAULT_HOST_PATHS: HostFactsPaths = {
  proc: '/proc',
  unitDirs: ['/etc/systemd/system', '/run/systemd/system', '/usr/local/lib/systemd/system', '/usr/lib/systemd/system', '/lib/systemd/system'],
  shippedUnit: path.join(PACKAGE_ROOT, 'systemd', SSHD_UNIT),
};

/** A file's text, or undefined: missing, unreadable (permissions, a directory) or not Linux alike. */
function readFact(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function readNumber(file: string): number | null {
  const text = readFact(file)?.trim();
  return text && /^\d+$/.test(text) ? Number(text) : null;
}

function memTotalBytes(proc: string): number | null {
  const m = /^MemTotal:\s+(\d+)\s+kB$/m.exec(readFact(path.join(proc, 'meminfo')) ?? '');
  return m ? Number(m[1]) * 1024 : null;
}

function ephemeralPorts(proc: string): HostFacts['ephemeralPorts'] {
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(readFact(path.join(proc, 'sys/net/ipv4/ip_local_port_range')) ?? '');
  return m ? { first: Number(m[1]), last: Number(m[2]) } : null;
}

/**
 * The unit's drop-ins in the order systemd applies them: every `<dir>/pipe2me-sshd.service.d/*.conf`,
 * sorted by file name, where a name in a higher-priority directory hides the same name below it.
 */
function dropIns(unitDirs: readonly string[]): string[] {
  const byName = new Map<string, string>();
  for (const dir of [...unitDirs].reverse()) {
    const d = path.join(dir, `${SSHD_UNIT}.d`);
    let names: string[];
    try {
      names = fs.readdirSync(d);
    } catch {
      continue;
    }
    for (const name of names) if (name.endsWith('.conf')) byName.set(name, path.join(d, name));
  }
  return [...byName.keys()].sort().map((k) => byName.get(k)!);
}

function sshdUnit(paths: HostFactsPaths): HostFacts['unit'] {
  for (const dir of paths.unitDirs) {
    const file = path.join(dir, SSHD_UNIT);
    const text = readFact(file);
    // An empty file or a link to /dev/null is a masked unit, not an installed one.
    if (text === undefined || text.trim() === '') continue;
    const extra = dropIns(paths.unitDirs);
    const texts = [text, ...extra.map((f) => readFact(f) ?? '')];
    return { source: 'installed', files: [file, ...extra], limits: unitLimits(texts) };
  }
  return { source: 'shipped', files: [paths.shippedUnit], limits: unitLimits([readFact(paths.shippedUnit) ?? '']) };
}

export function readHostFacts(paths: HostFactsPaths = DEFAULT_HOST_PATHS): HostFacts {
  return {
    pidMax: readNumber(path.join(paths.proc, 'sys/kernel/pid_max')),
    memTotalBytes: memTotalBytes(paths.proc),
    fileMax: readNumber(path.join(paths.proc, 'sys/fs/file-max')),
    ephemeralPorts: ephemeralPorts(paths.proc),
    unit: sshdUnit(paths),
  };
}
