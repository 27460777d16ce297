/**
 * The relay's capacity (src/server/capacity.ts): pods allowed by each limit, the first limit, and the
 * warnings with their fixes, for several machine shapes; the sshd unit's limits as systemd reads them;
 * the host-facts reader on a fake /proc and unit directories; and the figures the shipped files rely on
 * (the unit's TasksMax, sshd's MaxStartups) checked against the module's constants.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  IPV4_PORT_CEILING, LOGIN_HEADROOM_TASKS, MAX_LOGINS_IN_FLIGHT, PER_POD, PID_MAX_64BIT, SYSTEM_RESERVE_PIDS,
  capacityJson, capacitySummary, relayCapacity, type Capacity, type HostFacts, type LimitName,
} from '../../src/server/capacity.js';
import { readHostFacts } from '../../src/server/host-facts.js';
import { parseMemoryMax, parseTasksMax, unitLimits, type UnitLimits } from '../../src/server/sshd-unit.js';
import { testConfig } from '../helpers/fixtures.js';

const ROOT = path.join(import.meta.dirname, '..', '..');
const GiB = 1024 ** 3;
const SHIPPED: UnitLimits = { tasksMax: { kind: 'count', count: 103_000 }, memoryMax: { kind: 'percent', percent: 75 }, limitNofileSoft: null };

function machine(o: Partial<Omit<HostFacts, 'unit'>> & { limits?: Partial<UnitLimits>; installed?: boolean } = {}): HostFacts {
  return {
    pidMax: o.pidMax === undefined ? PID_MAX_64BIT : o.pidMax,
    memTotalBytes: o.memTotalBytes === undefined ? 24 * GiB : o.memTotalBytes,
    fileMax: o.fileMax === undefined ? 9_223_372_036_854_775_807 : o.fileMax,
    ephemeralPorts: o.ephemeralPorts === undefined ? { first: 32768, last: 60999 } : o.ephemeralPorts,
    unit: { source: o.installed ? 'installed' : 'shipped', files: ['/etc/systemd/system/pipe2me-sshd.service'], limits: { ...SHIPPED, ...o.limits } },
  };
}

const ports = (first: number, last: number) => testConfig({ ports: { first, last } });
const pods = (cap: Capacity, name: LimitName) => cap.limits.find((l) => l.name === name)!.pods;

describe('relay capacity', () => {
  it('the default configuration on a 24 GiB machine: the port range comes first, and widening it is suggested', () => {
    const cap = relayCapacity(testConfig(), machine());
    expect(cap.servicesPerPod).toBe(2);
    expect(cap.assumption).toMatch(/^2 services per pod \(assumed: .*ports\.max_per_subdomain 16 is only a bound, at which the range holds 625 pods\)$/);
    expect(pods(cap, 'ports')).toBe(5000);
    expect(pods(cap, 'tasks')).toBe(Math.floor((103_000 - LOGIN_HEADROOM_TASKS) / 3)); // 34,133
    expect(pods(cap, 'pid_max')).toBe(Math.floor((PID_MAX_64BIT - SYSTEM_RESERVE_PIDS - LOGIN_HEADROOM_TASKS) / 3));
    expect(pods(cap, 'memory')).toBe(Math.floor((24 * 1024 * 0.75) / 2.3)); // 8,013
    expect(pods(cap, 'address')).toBe(32_255);
    // systemd's LONG_MAX: no limit.
    expect(cap.limits.find((l) => l.name === 'fds')).toEqual({ name: 'fds', pods: null, basis: 'fs.file-max at its maximum: no limit' });
    expect(cap.limits.map((l) => l.name)).toEqual(['ports', 'tasks', 'pid_max', 'memory', 'fds', 'address']);
    expect(cap.pods).toBe(5000);
    expect(cap.firstLimit).toBe('ports');
    expect(cap.firstLimitLabel).toBe('the port range 20000-29999');
    // Memory is next (8,013 pods, 16,026 ports): 16,000 ports from 20000, which crosses the ephemeral range.
    expect(cap.warnings).toEqual([
      'the port range 20000-29999 allows 5,000 pods of 2 services, but memory (18,432 MiB for the sshd unit) allows 8,013: widen it to 20000-35999 (ports.last 35999) to hold 8,000; ' +
      'it overlaps the ephemeral port range 32768-60999: reserve it with sysctl -w net.ipv4.ip_local_reserved_ports=20000-35999 (and in /etc/sysctl.d/).',
    ]);
    expect(capacitySummary(cap)).toBe('capacity of this relay: 5,000 pods of 2 services, first limit the port range 20000-29999 (pipe2me-ctl check-config shows every limit); a warning follows');
  });

  it('TasksMax far above the port range: "the port range allows 5,000 pods but TasksMax allows 8,000: widen"', () => {
    const cap = relayCapacity(testConfig(), machine({ limits: { tasksMax: { kind: 'count', count: 24_601 } }, memTotalBytes: 64 * GiB }));
    expect(pods(cap, 'tasks')).toBe(8000);
    expect(cap.firstLimit).toBe('ports');
    expect(cap.warnings).toHaveLength(1);
    expect(cap.warnings[0]).toMatch(/^the port range 20000-29999 allows 5,000 pods of 2 services, but the sshd unit's TasksMax=24601 allows 8,000: widen it to 20000-35999 \(ports\.last 35999\) to hold 8,000; it overlaps/);
  });

  it('no warning when the next limit is close above the port range', () => {
    // TasksMax=18000: 5,799 pods, less than 1.25 x 5,000.
    const cap = relayCapacity(testConfig(), machine({ installed: true, limits: { tasksMax: { kind: 'count', count: 18_000 } } }));
    expect(pods(cap, 'tasks')).toBe(5799);
    expect(cap.firstLimit).toBe('ports');
    expect(cap.warnings).toEqual([]);
  });

  it('a 2 GiB machine: memory comes first, below the port range — add memory or narrow the range', () => {
    const cap = relayCapacity(testConfig(), machine({ memTotalBytes: 2 * GiB }));
    expect(cap.pods).toBe(667); // 1,536 MiB / 2.3
    expect(cap.firstLimit).toBe('memory');
    expect(cap.warnings).toEqual([
      'memory (1,536 MiB for the sshd unit) allows ~667 pods at 2.3 MiB each, fewer than the 5,000 the port range 20000-29999 hands out: past that the kernel ends sshd processes of the unit ' +
      "(pods' sessions, or the listener). Give the machine at least 15,360 MiB of memory, or narrow the port range to 667 pods (ports.last 21333).",
    ]);
  });

  it('MemoryMax in bytes below what the pods need: raise MemoryMax', () => {
    const cap = relayCapacity(testConfig(), machine({ limits: { memoryMax: { kind: 'bytes', bytes: 4 * GiB } } }));
    expect(pods(cap, 'memory')).toBe(Math.floor(4096 / 2.3));
    expect(cap.warnings[0]).toMatch(/^memory \(4,096 MiB for the sshd unit\) allows ~1,780 pods .* Raise the unit's MemoryMax to 11500M, or narrow the port range/);
  });

  it('kernel.pid_max 32768 with a wide port range: pid_max comes first — raise it with sysctl', () => {
    const c = ports(10000, 32767);
    const cap = relayCapacity(c, machine({ pidMax: 32768, memTotalBytes: 64 * GiB }));
    expect(pods(cap, 'ports')).toBe(11_384);
    expect(cap.pods).toBe(Math.floor((32768 - 2048 - 601) / 3)); // 10,039
    expect(cap.firstLimit).toBe('pid_max');
    expect(cap.firstLimitLabel).toBe('kernel.pid_max 32768');
    expect(cap.warnings).toEqual([
      'kernel.pid_max 32768 allows ~10,039 pods, fewer than the 11,384 the port range 10000-32767 hands out: past that the whole machine runs out of process ids. ' +
      `Raise it (11,384 pods need at least 36,801) with sysctl -w kernel.pid_max=4194304 and keep that in /etc/sysctl.d/ (the Ansible role does both).`,
    ]);
  });

  it('an installed unit with a low TasksMax below the port range: raise TasksMax, with the value', () => {
    const cap = relayCapacity(ports(20000, 49999), machine({ installed: true, limits: { tasksMax: { kind: 'count', count: 24_000 } } }));
    expect(cap.firstLimit).toBe('tasks');
    expect(cap.pods).toBe(7799);
    expect(cap.limits.find((l) => l.name === 'tasks')!.basis).toBe('the sshd unit: TasksMax=24000, less 601 for the listener and 200 logins in flight, 3 per pod');
    // 15,000 pods: 45,000 tasks + 601, rounded up to the thousand.
    expect(cap.warnings.find((w) => w.startsWith("the sshd unit's TasksMax=24000"))).toBe(
      "the sshd unit's TasksMax=24000 allows 7,799 pods, fewer than the 15,000 the port range 20000-49999 hands out: logins past that fail. Raise it to TasksMax=46000 (systemctl edit pipe2me-sshd.service, in [Service]) or narrow the port range.",
    );
  });

  it('several limits below the port range: one warning each', () => {
    const cap = relayCapacity(ports(10000, 64999), machine({ pidMax: 32768, memTotalBytes: 8 * GiB, fileMax: 65536, limits: { tasksMax: { kind: 'count', count: 24_000 } } }));
    expect(cap.firstLimit).toBe('fds');
    expect(cap.pods).toBe(Math.floor(65536 / PER_POD.fds));
    const starts = ["the sshd unit's TasksMax=24000 allows", 'kernel.pid_max 32768 allows', 'memory (6,144 MiB for the sshd unit) allows', 'fs.file-max 65536 allows'];
    expect(cap.warnings).toHaveLength(starts.length);
    starts.forEach((start, i) => expect(cap.warnings[i]!.startsWith(start), cap.warnings[i]).toBe(true));
    expect(cap.warnings.at(-1)).toMatch(/fs\.file-max 65536 allows ~2,427 pods at 27 open files each, fewer than the 27,500 .*\. Raise it with sysctl -w fs\.file-max=808960 and keep that in \/etc\/sysctl\.d\/\./);
  });

  it('TasksMax as a percentage, unset (systemd\'s 15%) or infinity', () => {
    const pct = relayCapacity(testConfig(), machine({ pidMax: 32768, limits: { tasksMax: { kind: 'percent', percent: 50 } } }));
    expect(pods(pct, 'tasks')).toBe(Math.floor((16384 - LOGIN_HEADROOM_TASKS) / 3));
    expect(pct.limits[1]!.basis).toMatch(/^the sshd unit as shipped: TasksMax=50% = 16,384, less/);
    const unset = relayCapacity(testConfig(), machine({ pidMax: PID_MAX_64BIT, limits: { tasksMax: null } }));
    expect(pods(unset, 'tasks')).toBe(Math.floor((Math.floor(PID_MAX_64BIT * 0.15) - LOGIN_HEADROOM_TASKS) / 3));
    const inf = relayCapacity(testConfig(), machine({ limits: { tasksMax: { kind: 'infinity' } } }));
    expect(pods(inf, 'tasks')).toBeNull();
    expect(inf.limits[1]!.basis).toMatch(/no limit of its own/);
  });

  it('off Linux (no /proc): the port range alone, nothing unknown counted, no widening suggested', () => {
    const cap = relayCapacity(testConfig(), machine({ pidMax: null, memTotalBytes: null, fileMax: null, ephemeralPorts: null, limits: { tasksMax: null } }));
    expect(cap.pods).toBe(5000);
    expect(cap.firstLimit).toBe('ports');
    expect(['tasks', 'pid_max', 'memory', 'fds'].map((l) => pods(cap, l as LimitName))).toEqual([null, null, null, null]);
    expect(cap.limits.find((l) => l.name === 'pid_max')!.basis).toMatch(/unknown/);
    expect(cap.warnings).toEqual([]);
  });

  it('the widest range one address holds: the ceiling, and a suggestion moves the range down below 65535', () => {
    const wide = testConfig({ ports: { first: 1024, last: 65535 }, ssh: { tunnel_user: 'p2m-golden', port: 1022 }, http: { api_port: 1023 } });
    const full = relayCapacity(wide, machine({ memTotalBytes: 512 * GiB }));
    expect(pods(full, 'address')).toBe(Math.floor(IPV4_PORT_CEILING / 2));
    expect(full.firstLimit).toBe('address');
    expect(full.warnings).toEqual([]);
    const high = relayCapacity(ports(60000, 64999), machine({ memTotalBytes: 64 * GiB, limits: { tasksMax: { kind: 'count', count: 24_601 } } }));
    expect(high.warnings[0]).toMatch(/widen it to 49536-65535 \(ports\.first 49536, ports\.last 65535\) to hold 8,000; it overlaps the ephemeral port range/);
  });

  it('a suggested range that would take in ssh.port and http.api_port says to move them', () => {
    const c = testConfig({ ports: { first: 2000, last: 3999 }, ssh: { tunnel_user: 'p2m-golden', port: 4444 } });
    const cap = relayCapacity(c, machine({ ephemeralPorts: null }));
    expect(cap.warnings[0]).toMatch(/widen it to 2000-17999 \(ports\.last 17999\) to hold 8,000; move ssh\.port 4444 out of it; move http\.api_port 8470 out of it\.$/);
  });

  it('services per pod can be given: 3 per pod', () => {
    const cap = relayCapacity(testConfig(), machine(), { servicesPerPod: 3 });
    expect(pods(cap, 'ports')).toBe(3333);
    expect(pods(cap, 'address')).toBe(21_503);
    expect(cap.assumption).toBe('3 services per pod (given)');
  });

  it('--json form: snake_case, every limit, the warnings', () => {
    const j = capacityJson(relayCapacity(testConfig(), machine({ memTotalBytes: 2 * GiB })));
    expect(j).toMatchObject({ pods: 667, first_limit: 'memory', services_per_pod: 2, per_pod: { tasks: 3, memory_mib: 2.3, fds: 27, ports: 2 }, sshd_unit: { source: 'shipped' } });
    expect(j.limits.map((l) => l.limit)).toEqual(['ports', 'tasks', 'pid_max', 'memory', 'fds', 'address']);
    expect(j.warnings).toHaveLength(1);
  });
});

describe("the sshd unit's limits as systemd reads them", () => {
  it('values', () => {
    expect(parseTasksMax('24000')).toEqual({ kind: 'count', count: 24000 });
    expect(parseTasksMax('15%')).toEqual({ kind: 'percent', percent: 15 });
    expect(parseTasksMax('infinity')).toEqual({ kind: 'infinity' });
    expect(parseTasksMax('lots')).toBeUndefined();
    expect(parseMemoryMax('75%')).toEqual({ kind: 'percent', percent: 75 });
    expect(parseMemoryMax('4G')).toEqual({ kind: 'bytes', bytes: 4 * GiB });
    expect(parseMemoryMax('1536M')).toEqual({ kind: 'bytes', bytes: 1536 * 1024 * 1024 });
    expect(parseMemoryMax('1000')).toEqual({ kind: 'bytes', bytes: 1000 });
  });

  it('[Service] only, last assignment wins, drop-ins after the unit, an empty assignment resets, invalid values ignored', () => {
    const unit = '[Unit]\nTasksMax=1\n[Service]\n# TasksMax=2\nTasksMax=24000\nMemoryMax=75%\nLimitNOFILE=4096:524288\n';
    expect(unitLimits([unit])).toEqual({ tasksMax: { kind: 'count', count: 24000 }, memoryMax: { kind: 'percent', percent: 75 }, limitNofileSoft: 4096 });
    expect(unitLimits([unit, '[Service]\nTasksMax=60000\n'])).toMatchObject({ tasksMax: { kind: 'count', count: 60000 } });
    expect(unitLimits([unit, '[Service]\nTasksMax=\nMemoryMax=lots\n'])).toMatchObject({ tasksMax: null, memoryMax: { kind: 'percent', percent: 75 } });
  });

  it('the shipped unit: TasksMax holds the most two-service pods one IPv4 address can, with the login headroom', () => {
    const limits = unitLimits([fs.readFileSync(path.join(ROOT, 'systemd', 'pipe2me-sshd.service'), 'utf8')]);
    expect(limits).toEqual(SHIPPED);
    const count = (limits.tasksMax as { count: number }).count;
    expect(count).toBeGreaterThanOrEqual(PER_POD.tasks * Math.floor(IPV4_PORT_CEILING / 2) + LOGIN_HEADROOM_TASKS);
    // And the unit never comes first for the default configuration on an ordinary machine.
    expect(relayCapacity(testConfig(), machine({ limits })).firstLimit).not.toBe('tasks');
  });

  it("sshd's MaxStartups hard bound is the one the login headroom counts", () => {
    const tpl = fs.readFileSync(path.join(ROOT, 'templates', 'sshd', 'sshd_config.hbs'), 'utf8');
    expect(/^MaxStartups \d+:\d+:(\d+)$/m.exec(tpl)?.[1]).toBe(String(MAX_LOGINS_IN_FLIGHT));
  });

  it("the Ansible role's pid_max target is above what the shipped TasksMax needs", () => {
    const vars = fs.readFileSync(path.join(ROOT, 'ansible', 'roles', 'server', 'vars', 'main.yml'), 'utf8');
    expect(vars).toContain(`pipe2me_pid_max: ${PID_MAX_64BIT}`);
    expect(vars).toContain(`pipe2me_sshd_tasks_max | int + ${SYSTEM_RESERVE_PIDS}`);
  });
});

describe('the host-facts reader', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-capacity-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const write = (rel: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(tmp, rel)), { recursive: true });
    fs.writeFileSync(path.join(tmp, rel), text);
  };

  it('reads /proc, the installed unit and its drop-ins (a name in /etc hides the same name in /usr/lib)', () => {
    write('proc/sys/kernel/pid_max', '32768\n');
    write('proc/meminfo', 'MemTotal:        2097152 kB\nMemFree:          100 kB\n');
    write('proc/sys/fs/file-max', '9223372036854775807\n');
    write('proc/sys/net/ipv4/ip_local_port_range', '32768\t60999\n');
    write('usr/lib/systemd/system/pipe2me-sshd.service', '[Service]\nTasksMax=24000\nMemoryMax=75%\n');
    write('usr/lib/systemd/system/pipe2me-sshd.service.d/50-tasks.conf', '[Service]\nTasksMax=1\n');
    write('etc/systemd/system/pipe2me-sshd.service.d/50-tasks.conf', '[Service]\nTasksMax=60000\n');
    write('etc/systemd/system/pipe2me-sshd.service.d/60-memory.conf', '[Service]\nMemoryMax=1G\n');
    const facts = readHostFacts({ proc: path.join(tmp, 'proc'), unitDirs: [path.join(tmp, 'etc/systemd/system'), path.join(tmp, 'usr/lib/systemd/system')], shippedUnit: path.join(ROOT, 'systemd', 'pipe2me-sshd.service') });
    expect(facts).toEqual({
      pidMax: 32768,
      memTotalBytes: 2 * GiB,
      fileMax: 9223372036854775807,
      ephemeralPorts: { first: 32768, last: 60999 },
      unit: {
        source: 'installed',
        files: [path.join(tmp, 'usr/lib/systemd/system/pipe2me-sshd.service'), path.join(tmp, 'etc/systemd/system/pipe2me-sshd.service.d/50-tasks.conf'), path.join(tmp, 'etc/systemd/system/pipe2me-sshd.service.d/60-memory.conf')],
        limits: { tasksMax: { kind: 'count', count: 60000 }, memoryMax: { kind: 'bytes', bytes: GiB }, limitNofileSoft: null },
      },
    });
  });

  it('no unit installed (or masked): the shipped one; no /proc: every fact null', () => {
    write('masked/pipe2me-sshd.service', '');
    const shipped = path.join(ROOT, 'systemd', 'pipe2me-sshd.service');
    const facts = readHostFacts({ proc: path.join(tmp, 'no-proc'), unitDirs: [path.join(tmp, 'masked'), path.join(tmp, 'none')], shippedUnit: shipped });
    expect(facts).toEqual({ pidMax: null, memTotalBytes: null, fileMax: null, ephemeralPorts: null, unit: { source: 'shipped', files: [shipped], limits: SHIPPED } });
  });
});
