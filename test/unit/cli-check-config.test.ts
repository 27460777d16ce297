/**
 * `pipe2me-ctl check-config`, as built (dist/): a valid file exits 0 and reports the relay's capacity on
 * this machine (text and --json), warnings included; an invalid one still exits 3 and reports no capacity.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const CTL = path.join(import.meta.dirname, '..', '..', 'bin', 'pipe2me-ctl.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-check-config-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function ctl(args: string[]) {
  const r = spawnSync(process.execPath, [CTL, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function configFile(name: string, text: string): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, text);
  return file;
}

describe('pipe2me-ctl check-config', () => {
  // A port range of 2,000 ports (1,000 two-service pods): far below what any test machine allows.
  const valid = configFile('valid.yml', 'domain: pipe.example.com\nserver:\n  ipv4: 198.51.100.10\nports:\n  first: 20000\n  last: 21999\n');

  it('--json: valid, with the capacity, every limit and the warning; exit 0', () => {
    const r = ctl(['--json', '-c', valid, 'check-config']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ config: valid, valid: true, domain: 'pipe.example.com', dns_daemon: 'bind' });
    expect(j.capacity).toMatchObject({ services_per_pod: 2, per_pod: { tasks: 3, memory_mib: 2.3, fds: 27, ports: 2 } });
    expect(j.capacity.limits.map((l: { limit: string }) => l.limit)).toEqual(['ports', 'tasks', 'pid_max', 'memory', 'fds', 'address']);
    expect(j.capacity.limits[0]).toEqual({ limit: 'ports', pods: 1000, basis: 'ports 20000-21999: 2,000 ports, 2 per pod' });
    const known = j.capacity.limits.filter((l: { pods: number | null }) => l.pods !== null).map((l: { pods: number }) => l.pods);
    expect(j.capacity.pods).toBe(Math.min(...known));
    if (j.capacity.first_limit === 'ports') {
      // This machine allows more than 1,250 pods, so the warning says how wide the range could be.
      expect(j.capacity.warnings.some((w: string) => w.startsWith('the port range 20000-21999 allows 1,000 pods of 2 services, but '))).toBe(true);
    }
    expect(['installed', 'shipped']).toContain(j.capacity.sshd_unit.source);
  });

  it('text: the validity line, then the capacity table', () => {
    const r = ctl(['-c', valid, 'check-config']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${valid.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is valid \\(domain pipe\\.example\\.com, DNS by bind\\)\n\nCapacity of this relay: [\\d,]+ pods, first limit `));
    expect(r.stdout).toMatch(/^ {2}limit {4}pods +from$/m);
    expect(r.stdout).toMatch(/^ {2}ports {4}1,000 +ports 20000-21999: 2,000 ports, 2 per pod$/m);
  });

  it('an invalid file: exit 3, the problems, no capacity', () => {
    const bad = configFile('bad.yml', 'domain: pipe.example.com\nserver:\n  ipv4: 198.51.100.10\nports:\n  first: 30000\n  last: 20000\n');
    const r = ctl(['--json', '-c', bad, 'check-config']);
    expect(r.code).toBe(3);
    const j = JSON.parse(r.stdout);
    expect(j.error.code).toBe('config_invalid');
    expect(j.capacity).toBeUndefined();
  });
});
