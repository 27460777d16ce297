/**
 * How many live pods one relay can hold, which limit is reached first, and what to do about the limits
 * that are far below the others. Pure: the configuration and the host's facts in (read by
 * src/server/host-facts.ts), a report out; `pipe2me-ctl check-config` and `init` show it.
 *
 * The per-pod figures are measured (OpenSSH 9.2, 2 cores, one idle two-service pod); docs/operations.md
 * ("Capacity of one relay") has the table.
 */
import type { Config } from '../config/types.js';
import { memoryMaxText, SYSTEMD_DEFAULT_TASKS_PERCENT, tasksMaxText, type TasksMax, type UnitLimits } from './sshd-unit.js';

/** What one live pod costs on the relay. */
export const PER_POD = {
  /** sshd's privileged monitor, its session child and the session holder (`cat`). */
  tasks: 3,
  /** 1.05 (session child) + 0.78 (monitor) + 0.10 (cat) MiB PSS, plus page tables and kernel memory. */
  memoryMiB: 2.3,
  /** Open files across those three processes, with no client connected (each client adds one). */
  fds: 27,
} as const;

/** A login in flight holds the monitor, its pre-auth child and, briefly, the key lookup (AuthorizedKeysCommand). */
export const TASKS_PER_LOGIN = 3;
/** The hard bound of `MaxStartups 100:30:200` in templates/sshd/sshd_config.hbs: the most logins in flight. */
export const MAX_LOGINS_IN_FLIGHT = 200;
/** Tasks of the unit that are not pods: the listener and every login MaxStartups lets in at once. */
export const LOGIN_HEADROOM_TASKS = 1 + TASKS_PER_LOGIN * MAX_LOGINS_IN_FLIGHT;
/**
 * Pids the rest of the server needs (kernel threads, nginx, BIND/NSD, the API and the watcher with their
 * threads, cron, the probe); a Debian server runs a few hundred. kernel.pid_max is machine-wide.
 */
export const SYSTEM_RESERVE_PIDS = 2048;
/** Ports one IPv4 address can give out: 1024-65535, less the tunnel sshd's own control port. */
export const IPV4_PORT_CEILING = 64_511;
/** The most a 64-bit kernel allows (and what systemd's own 50-pid-max.conf sets). */
export const PID_MAX_64BIT = 4_194_304;
/** Services of a typical pod (an http and an https service), when nothing says otherwise. */
export const DEFAULT_SERVICES_PER_POD = 2;
/** A first limit is "far below" the next one when the next allows at least this many times as many pods. */
export const FAR_BELOW_FACTOR = 1.25;

const MIB = 1024 * 1024;

export interface HostFacts {
  /** /proc/sys/kernel/pid_max; null where it cannot be read (not Linux). */
  pidMax: number | null;
  /** MemTotal of /proc/meminfo, in bytes. */
  memTotalBytes: number | null;
  /** /proc/sys/fs/file-max. */
  fileMax: number | null;
  /** /proc/sys/net/ipv4/ip_local_port_range: ports outgoing connections take. */
  ephemeralPorts: { first: number; last: number } | null;
  /** The tunnel sshd's unit: as installed on this machine (with its drop-ins), else as pipe2me ships it. */
  unit: { source: 'installed' | 'shipped'; files: string[]; limits: UnitLimits };
}

export type LimitName = 'ports' | 'tasks' | 'pid_max' | 'memory' | 'fds' | 'address';

export interface Limit {
  name: LimitName;
  /** Pods this limit allows; null: it sets no limit, or its fact could not be read (basis says which). */
  pods: number | null;
  /** How the figure was reached, in words. */
  basis: string;
}

export interface Capacity {
  /** The smallest of the limits: what this relay holds. */
  pods: number;
  firstLimit: LimitName;
  /** The first limit in words, e.g. "the port range 20000-29999". */
  firstLimitLabel: string;
  servicesPerPod: number;
  /** Where servicesPerPod comes from. */
  assumption: string;
  /** In the order they are usually met: ports, tasks, pid_max, memory, fds, address. */
  limits: Limit[];
  /** A limit far below the others: what is wrong and what to do. */
  warnings: string[];
  unit: HostFacts['unit'];
}

type RelayConfig = Pick<Config, 'ports' | 'ssh' | 'http'> & { relays?: Pick<Config['relays'], 'slots'> };

const n = (x: number): string => x.toLocaleString('en-US');
const roundUp = (x: number, step: number): number => Math.ceil(x / step) * step;

/** The unit's TasksMax as a count, or 'infinity', or null when a percentage meets an unknown pid_max. */
function tasksCount(t: TasksMax | null, pidMax: number | null): number | 'infinity' | null {
  const percent = t === null ? SYSTEMD_DEFAULT_TASKS_PERCENT : t.kind === 'percent' ? t.percent : null;
  if (percent !== null) return pidMax === null ? null : Math.floor((pidMax * percent) / 100);
  return t!.kind === 'infinity' ? 'infinity' : (t as { count: number }).count;
}

/** Bytes the unit may use, and how that was reached. */
function memoryBudget(facts: HostFacts): { bytes: number; text: string } | null {
  const total = facts.memTotalBytes;
  if (total === null) return null;
  const m = facts.unit.limits.memoryMax;
  const of = `of ${n(Math.floor(total / MIB))} MiB`;
  if (m === null || m.kind === 'infinity') return { bytes: total, text: `${memoryMaxText(m)}: all ${of}` };
  if (m.kind === 'percent') return { bytes: Math.floor((total * m.percent) / 100), text: `${memoryMaxText(m)} ${of}` };
  return { bytes: Math.min(m.bytes, total), text: `${memoryMaxText(m)}, ${of}` };
}

/** A port range of `ports` ports from `first` upwards, moved down where it would pass 65535. */
function widerRange(first: number, ports: number): { first: number; last: number } {
  const last = first + ports - 1;
  if (last <= 65535) return { first, last };
  return { first: Math.max(1024, 65536 - ports), last: 65535 };
}

/** What else a suggested port range means: the ephemeral range to reserve, ports to move out of it. */
function rangeNotes(r: { first: number; last: number }, c: RelayConfig, facts: HostFacts): string {
  const notes: string[] = [];
  const inside = (p: number) => p >= r.first && p <= r.last;
  if (inside(c.ssh.port)) notes.push(`move ssh.port ${c.ssh.port} out of it`);
  if (inside(c.http.apiPort)) notes.push(`move http.api_port ${c.http.apiPort} out of it`);
  const e = facts.ephemeralPorts;
  if (e && r.first <= e.last && r.last >= e.first) {
    notes.push(`it overlaps the ephemeral port range ${e.first}-${e.last}: reserve it with sysctl -w net.ipv4.ip_local_reserved_ports=${r.first}-${r.last} (and in /etc/sysctl.d/)`);
  }
  return notes.length ? `; ${notes.join('; ')}` : '';
}

/**
 * The relay's capacity. `servicesPerPod` defaults to DEFAULT_SERVICES_PER_POD: the configuration has no
 * typical number of services, only a bound (ports.max_per_subdomain).
 */
export function relayCapacity(c: RelayConfig, facts: HostFacts, opts: { servicesPerPod?: number } = {}): Capacity {
  const s = opts.servicesPerPod ?? DEFAULT_SERVICES_PER_POD;
  const rangePorts = c.ports.last - c.ports.first + 1;
  const range = `${c.ports.first}-${c.ports.last}`;
  const assumption = opts.servicesPerPod !== undefined
    ? `${s} services per pod (given)`
    : `${s} services per pod (assumed: the configuration sets no typical number; ports.max_per_subdomain ${c.ports.maxPerSubdomain} is only a bound, at which the range holds ${n(Math.floor(rangePorts / c.ports.maxPerSubdomain))} pods)`;

  const limits: Limit[] = [];
  // With address slots the range is there once per slot (ports are unique per slot, not per relay).
  const slots = c.relays?.slots ?? 1;
  const slotText = slots > 1 ? ` in each of ${slots} address slots` : '';
  limits.push({ name: 'ports', pods: Math.floor((rangePorts * slots) / s), basis: `ports ${range}: ${n(rangePorts)} ports${slotText}, ${s} per pod` });

  const tasks = tasksCount(facts.unit.limits.tasksMax, facts.pidMax);
  const tasksText = tasksMaxText(facts.unit.limits.tasksMax);
  const unitText = facts.unit.source === 'installed' ? 'the sshd unit' : 'the sshd unit as shipped';
  if (tasks === 'infinity') limits.push({ name: 'tasks', pods: null, basis: `${unitText}: ${tasksText}, no limit of its own` });
  else if (tasks === null) limits.push({ name: 'tasks', pods: null, basis: `${unitText}: ${tasksText}, unknown (kernel.pid_max could not be read)` });
  else {
    const pods = Math.max(0, Math.floor((tasks - LOGIN_HEADROOM_TASKS) / PER_POD.tasks));
    const count = facts.unit.limits.tasksMax?.kind === 'count' ? '' : ` = ${n(tasks)}`;
    limits.push({ name: 'tasks', pods, basis: `${unitText}: ${tasksText}${count}, less ${n(LOGIN_HEADROOM_TASKS)} for the listener and ${n(MAX_LOGINS_IN_FLIGHT)} logins in flight, ${PER_POD.tasks} per pod` });
  }

  if (facts.pidMax === null) limits.push({ name: 'pid_max', pods: null, basis: 'kernel.pid_max: unknown (/proc/sys/kernel/pid_max could not be read)' });
  else {
    const pods = Math.max(0, Math.floor((facts.pidMax - SYSTEM_RESERVE_PIDS - LOGIN_HEADROOM_TASKS) / PER_POD.tasks));
    limits.push({ name: 'pid_max', pods, basis: `kernel.pid_max ${facts.pidMax}, less ${n(SYSTEM_RESERVE_PIDS + LOGIN_HEADROOM_TASKS)} for the rest of the machine, the listener and logins in flight, ${PER_POD.tasks} per pod` });
  }

  const budget = memoryBudget(facts);
  if (budget === null) limits.push({ name: 'memory', pods: null, basis: 'memory: unknown (/proc/meminfo could not be read)' });
  else limits.push({ name: 'memory', pods: Math.floor(budget.bytes / (PER_POD.memoryMiB * MIB)), basis: `${n(Math.floor(budget.bytes / MIB))} MiB for the sshd unit (${budget.text}), ${PER_POD.memoryMiB} MiB per pod` });

  if (facts.fileMax === null) limits.push({ name: 'fds', pods: null, basis: 'open files: unknown (/proc/sys/fs/file-max could not be read)' });
  // systemd as PID 1 raises file-max to LONG_MAX at boot (memory accounting bounds open files instead).
  else if (facts.fileMax > Number.MAX_SAFE_INTEGER) limits.push({ name: 'fds', pods: null, basis: 'fs.file-max at its maximum: no limit' });
  else limits.push({ name: 'fds', pods: Math.floor(facts.fileMax / PER_POD.fds), basis: `fs.file-max ${facts.fileMax}: ${PER_POD.fds} open files per pod` });

  limits.push({ name: 'address', pods: Math.floor(IPV4_PORT_CEILING / s), basis: `one IPv4 address: ${n(IPV4_PORT_CEILING)} ports at most, ${s} per pod` });

  // The first limit: the smallest; on a tie, the one met first in the order above.
  let first = limits[0]!;
  for (const l of limits) if (l.pods !== null && l.pods < first.pods!) first = l;

  const label = (l: Limit): string => {
    switch (l.name) {
      case 'ports': return `the port range ${range}`;
      case 'tasks': return `the sshd unit's ${tasksText}`;
      case 'pid_max': return `kernel.pid_max ${facts.pidMax}`;
      case 'memory': return `memory (${n(Math.floor(budget!.bytes / MIB))} MiB for the sshd unit)`;
      case 'fds': return `fs.file-max ${facts.fileMax}`;
      case 'address': return 'one IPv4 address';
    }
  };

  const warnings: string[] = [];
  const portsPods = limits[0]!.pods!;
  const handsOut = `fewer than the ${n(portsPods)} the port range ${range} hands out`;
  for (const l of limits) {
    if (l.pods === null || l.pods >= portsPods) continue;
    if (l.name === 'tasks') {
      const need = roundUp(PER_POD.tasks * portsPods + LOGIN_HEADROOM_TASKS, 1000);
      warnings.push(`${label(l)} allows ${n(l.pods)} pods, ${handsOut}: logins past that fail. Raise it to TasksMax=${need} (systemctl edit pipe2me-sshd.service, in [Service]) or narrow the port range.`);
    } else if (l.name === 'pid_max') {
      const need = PER_POD.tasks * portsPods + LOGIN_HEADROOM_TASKS + SYSTEM_RESERVE_PIDS;
      warnings.push(`${label(l)} allows ~${n(l.pods)} pods, ${handsOut}: past that the whole machine runs out of process ids. Raise it (${n(portsPods)} pods need at least ${n(need)}) with sysctl -w kernel.pid_max=${PID_MAX_64BIT} and keep that in /etc/sysctl.d/ (the Ansible role does both).`);
    } else if (l.name === 'memory') {
      const m = facts.unit.limits.memoryMax;
      const needBytes = portsPods * PER_POD.memoryMiB * MIB;
      const share = m?.kind === 'percent' ? m.percent / 100 : 1;
      const fix = m?.kind === 'bytes' && needBytes <= facts.memTotalBytes!
        ? `raise the unit's MemoryMax to ${Math.ceil(needBytes / MIB)}M`
        : `give the machine at least ${n(roundUp(needBytes / share / MIB, 1024))} MiB of memory`;
      const narrow = c.ports.first + l.pods * s - 1;
      warnings.push(`${label(l)} allows ~${n(l.pods)} pods at ${PER_POD.memoryMiB} MiB each, ${handsOut}: past that the kernel ends sshd processes of the unit (pods' sessions, or the listener). ${fix[0]!.toUpperCase()}${fix.slice(1)}, or narrow the port range to ${n(l.pods)} pods (ports.last ${narrow}).`);
    } else if (l.name === 'fds') {
      const need = roundUp(PER_POD.fds * portsPods + 65536, 1024);
      warnings.push(`${label(l)} allows ~${n(l.pods)} pods at ${PER_POD.fds} open files each, ${handsOut}: past that opening files fails machine-wide. Raise it with sysctl -w fs.file-max=${need} and keep that in /etc/sysctl.d/.`);
    }
  }

  // The port range first, with room above it: say how wide it could be — only when the machine's own
  // limits are known (off Linux, the address's ceiling alone would suggest far too much).
  if (first.name === 'ports' && facts.pidMax !== null && facts.memTotalBytes !== null) {
    let next: Limit | undefined;
    for (const l of limits.slice(1)) if (l.pods !== null && (next === undefined || l.pods < next.pods!)) next = l;
    if (next && next.pods! >= portsPods * FAR_BELOW_FACTOR) {
      // A round number of ports (a little below the next limit leaves that limit some room).
      const exact = Math.min(next.pods! * s, IPV4_PORT_CEILING);
      const round = Math.floor(exact / 1000) * 1000;
      const r = widerRange(c.ports.first, round > rangePorts ? round : exact);
      const keys = r.first === c.ports.first ? `ports.last ${r.last}` : `ports.first ${r.first}, ports.last ${r.last}`;
      warnings.push(`the port range ${range} allows ${n(portsPods)} pods of ${s} services, but ${label(next)} allows ${n(next.pods!)}: widen it to ${r.first}-${r.last} (${keys}) to hold ${n(Math.floor((r.last - r.first + 1) / s))}${rangeNotes(r, c, facts)}.`);
    }
  }

  return { pods: first.pods!, firstLimit: first.name, firstLimitLabel: label(first), servicesPerPod: s, assumption, limits, warnings, unit: facts.unit };
}

/** One line: the capacity and what limits it. */
export function capacitySummary(cap: Capacity): string {
  const more = cap.warnings.length ? `; ${cap.warnings.length === 1 ? 'a warning follows' : `${cap.warnings.length} warnings follow`}` : '';
  return `capacity of this relay: ${n(cap.pods)} pods of ${cap.servicesPerPod} services, first limit ${cap.firstLimitLabel} (pipe2me-ctl check-config shows every limit)${more}`;
}

/** The report for --json (snake_case, like every other result). */
export function capacityJson(cap: Capacity) {
  return {
    pods: cap.pods,
    first_limit: cap.firstLimit,
    first_limit_label: cap.firstLimitLabel,
    services_per_pod: cap.servicesPerPod,
    assumption: cap.assumption,
    per_pod: { tasks: PER_POD.tasks, memory_mib: PER_POD.memoryMiB, fds: PER_POD.fds, ports: cap.servicesPerPod },
    limits: cap.limits.map((l) => ({ limit: l.name, pods: l.pods, basis: l.basis })),
    sshd_unit: { source: cap.unit.source, files: cap.unit.files },
    warnings: cap.warnings,
  };
}

export type CapacityJson = ReturnType<typeof capacityJson>;

/** Pods as text, for tables. */
export function podsText(pods: number | null): string {
  return pods === null ? '-' : n(pods);
}
