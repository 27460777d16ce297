/**
 * The resource limits of the tunnel sshd's systemd unit (TasksMax, MemoryMax, LimitNOFILE), read from
 * unit text the way systemd reads them: [Service] only, the last assignment wins, drop-ins after the
 * unit, an empty assignment resets to systemd's default. Pure: the caller reads the files
 * (src/server/host-facts.ts).
 */

/** Tasks the unit's cgroup may hold. A percentage is of the kernel's task limit (kernel.pid_max, roughly). */
export type TasksMax = { kind: 'count'; count: number } | { kind: 'percent'; percent: number } | { kind: 'infinity' };

/** Memory the unit's cgroup may use. A percentage is of the machine's memory (MemTotal). */
export type MemoryMax = { kind: 'bytes'; bytes: number } | { kind: 'percent'; percent: number } | { kind: 'infinity' };

export interface UnitLimits {
  /** null: not set, systemd's default applies (DefaultTasksMax, 15% of the kernel's limit). */
  tasksMax: TasksMax | null;
  /** null: not set, no cap of the unit's own. */
  memoryMax: MemoryMax | null;
  /** The soft RLIMIT_NOFILE each of the unit's processes starts with; null: systemd's default (1024). */
  limitNofileSoft: number | null;
}

/** systemd's DefaultTasksMax (systemd-system.conf(5)): 15% of the kernel's limit. */
export const SYSTEMD_DEFAULT_TASKS_PERCENT = 15;
/** systemd's default soft RLIMIT_NOFILE for services since v240 (DefaultLimitNOFILE=1024:524288). */
export const SYSTEMD_DEFAULT_NOFILE_SOFT = 1024;

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

export function parseTasksMax(value: string): TasksMax | undefined {
  const v = value.trim();
  if (v === 'infinity') return { kind: 'infinity' };
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(v);
  if (pct) return { kind: 'percent', percent: Number(pct[1]) };
  if (/^\d+$/.test(v)) return { kind: 'count', count: Number(v) };
  return undefined;
}

export function parseMemoryMax(value: string): MemoryMax | undefined {
  const v = value.trim();
  if (v === 'infinity') return { kind: 'infinity' };
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(v);
  if (pct) return { kind: 'percent', percent: Number(pct[1]) };
  const size = /^(\d+(?:\.\d+)?)([KMGT]?)$/.exec(v);
  if (size) return { kind: 'bytes', bytes: Math.floor(Number(size[1]) * UNITS[size[2]!]!) };
  return undefined;
}

/** LimitNOFILE=N or SOFT:HARD; "infinity" counts as unlimited (a very large number). */
export function parseLimitNofileSoft(value: string): number | undefined {
  const soft = value.trim().split(':')[0]!.trim();
  if (soft === 'infinity') return Number.MAX_SAFE_INTEGER;
  return /^\d+$/.test(soft) ? Number(soft) : undefined;
}

/** Each [Service] assignment of the three keys, in order ("" for an empty assignment). */
function serviceAssignments(text: string): [string, string][] {
  const out: [string, string][] = [];
  let section = '';
  // Continuation lines (a trailing backslash) are joined first, as systemd does.
  for (const raw of text.replace(/\\\r?\n/g, ' ').split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      continue;
    }
    const eq = line.indexOf('=');
    if (section !== 'Service' || eq < 0) continue;
    out.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return out;
}

/**
 * The limits that a unit file and its drop-ins (in the order systemd applies them) set. An invalid value
 * is ignored, as systemd ignores it (with a warning in its log) and keeps what was set before.
 */
export function unitLimits(texts: readonly string[]): UnitLimits {
  const limits: UnitLimits = { tasksMax: null, memoryMax: null, limitNofileSoft: null };
  for (const text of texts) {
    for (const [key, value] of serviceAssignments(text)) {
      if (key === 'TasksMax') {
        if (value === '') limits.tasksMax = null;
        else limits.tasksMax = parseTasksMax(value) ?? limits.tasksMax;
      } else if (key === 'MemoryMax') {
        if (value === '') limits.memoryMax = null;
        else limits.memoryMax = parseMemoryMax(value) ?? limits.memoryMax;
      } else if (key === 'LimitNOFILE') {
        if (value === '') limits.limitNofileSoft = null;
        else limits.limitNofileSoft = parseLimitNofileSoft(value) ?? limits.limitNofileSoft;
      }
    }
  }
  return limits;
}

export function tasksMaxText(t: TasksMax | null): string {
  if (t === null) return `TasksMax unset (systemd's default, ${SYSTEMD_DEFAULT_TASKS_PERCENT}%)`;
  if (t.kind === 'infinity') return 'TasksMax=infinity';
  return t.kind === 'percent' ? `TasksMax=${t.percent}%` : `TasksMax=${t.count}`;
}

export function memoryMaxText(m: MemoryMax | null): string {
  if (m === null) return 'MemoryMax unset';
  if (m.kind === 'infinity') return 'MemoryMax=infinity';
  return m.kind === 'percent' ? `MemoryMax=${m.percent}%` : `MemoryMax=${m.bytes}`;
}
