/**
 * The systemd units in systemd/: systemd's own checker accepts each one, they start the daemons with
 * the same argv pipe2me uses (and signals through the same pid files), and their hardening stays at
 * systemd's "OK" exposure level or better. The checks really run systemd-analyze; each has a broken
 * counterpart that must be refused, so a checker that accepts anything fails the test.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/load.js';
import { layout } from '../../src/render/layout.js';
import { sshdArgv } from '../../src/daemons/sshd.js';
import { nginxArgv, nginxOwnSockets } from '../../src/daemons/nginx.js';
import { namedArgv } from '../../src/daemons/bind.js';
import { nsdArgv } from '../../src/daemons/nsd.js';
import { ROOT, SYSTEMD_DIR, exec, execArgv, one, readUnit } from './helpers.js';

const SERVICES = ['pipe2me-sshd', 'pipe2me-nginx', 'pipe2me-named', 'pipe2me-nsd', 'pipe2me-api', 'pipe2me-watch', 'pipe2me-probe', 'pipe2me-pod@'].map((n) => `${n}.service`);
const UNITS = [...SERVICES, 'pipe2me-probe.timer'];

let tmp: string;
let unitDir: string;

/**
 * systemd-analyze verify checks that every Exec binary exists. The units point at the installed
 * /usr/local/bin/pipe2me{,-ctl}, which this machine does not have: the copies checked here point at
 * symlinks to this checkout's bin/ instead, and nothing else is changed.
 */
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-ops-units-'));
  unitDir = path.join(tmp, 'units');
  const bin = path.join(tmp, 'bin');
  fs.mkdirSync(unitDir);
  fs.mkdirSync(bin);
  fs.symlinkSync(path.join(ROOT, 'bin', 'pipe2me-ctl.js'), path.join(bin, 'pipe2me-ctl'));
  fs.symlinkSync(path.join(ROOT, 'bin', 'pipe2me.js'), path.join(bin, 'pipe2me'));
  for (const u of UNITS) {
    fs.writeFileSync(path.join(unitDir, u), fs.readFileSync(path.join(SYSTEMD_DIR, u), 'utf8').replaceAll('/usr/local/bin/', `${bin}/`));
  }
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

async function verify(files: string[]) {
  return exec('systemd-analyze', ['verify', ...files], 60_000);
}

describe('systemd units', () => {
  it('systemd-analyze verify accepts every unit without a warning', async () => {
    const r = await verify(UNITS.map((u) => path.join(unitDir, u)));
    expect(r.output).toBe('');
    expect(r.exitCode).toBe(0);
  });

  it('systemd-analyze verify refuses a unit with a misspelt directive or a missing program', async () => {
    const typo = path.join(unitDir, 'pipe2me-typo.service');
    fs.writeFileSync(typo, fs.readFileSync(path.join(unitDir, 'pipe2me-api.service'), 'utf8').replace('ProtectSystem=strict', 'ProtectSytem=strict'));
    const missing = path.join(unitDir, 'pipe2me-missing.service');
    fs.writeFileSync(missing, fs.readFileSync(path.join(unitDir, 'pipe2me-api.service'), 'utf8').replace(/^ExecStart=.*$/m, 'ExecStart=/nonexistent/pipe2me-ctl serve'));
    try {
      const r1 = await verify([typo]);
      expect(r1.output).toMatch(/Unknown key 'ProtectSytem'/);
      const r2 = await verify([missing]);
      expect(r2.output).toMatch(/is not executable/);
      expect(r2.exitCode).not.toBe(0);
    } finally {
      fs.rmSync(typo);
      fs.rmSync(missing);
    }
  });

  it.each(SERVICES)('%s keeps systemd\'s exposure level at "OK" or better', async (u) => {
    const r = await exec('systemd-analyze', ['security', '--offline=yes', '--no-pager', path.join(unitDir, u)], 60_000);
    const m = /Overall exposure level for \S+: (\d+\.\d)/.exec(r.output);
    expect(m, r.output).not.toBeNull();
    // systemd rates below 5.0 as OK and up to 2.0 as SAFE; pipe2me's root daemons sit around 4.
    expect(Number(m![1])).toBeLessThan(5.0);
  });

  it('start the daemons with the argv pipe2me itself uses, for the default paths', () => {
    const L = layout(parseConfigText('domain: pipe.example.com\nserver: {ipv4: 198.51.100.10}\n', 'default'));
    const start = (u: string) => execArgv(one(readUnit(path.join(SYSTEMD_DIR, u)), 'Service.ExecStart')!);
    expect(start('pipe2me-sshd.service')).toEqual(sshdArgv(L));
    expect(start('pipe2me-named.service')).toEqual(namedArgv(L));
    expect(start('pipe2me-nsd.service')).toEqual(nsdArgv(L));
    // nginx daemonizes under the unit (Type=forking): pipe2me's argv without "-g 'daemon off;'".
    expect([...start('pipe2me-nginx.service'), '-g', 'daemon off;']).toEqual(nginxArgv(L));
    // A killed master's unix listeners are removed before a start (else "Address already in use" forever),
    // exactly nginx's own two: never the API's socket beside them.
    const pre = (readUnit(path.join(SYSTEMD_DIR, 'pipe2me-nginx.service')).get('Service.ExecStartPre') ?? []).map((l) => execArgv(l));
    expect(pre).toContainEqual(['/bin/rm', '-f', ...nginxOwnSockets(L)]);
    expect(nginxOwnSockets(L)).not.toContain(L.nginx.apiSocket);
  });

  it('track and signal the same pid files that pipe2me renders and signals', () => {
    const L = layout(parseConfigText('domain: pipe.example.com\nserver: {ipv4: 198.51.100.10}\n', 'default'));
    const nginx = readUnit(path.join(SYSTEMD_DIR, 'pipe2me-nginx.service'));
    expect(one(nginx, 'Service.Type')).toBe('forking');
    expect(one(nginx, 'Service.PIDFile')).toBe(L.nginx.pidFile);
    for (const u of ['pipe2me-sshd', 'pipe2me-nginx', 'pipe2me-named', 'pipe2me-nsd']) {
      const reload = readUnit(path.join(SYSTEMD_DIR, `${u}.service`)).get('Service.ExecReload') ?? [];
      expect(reload.some((l) => /^\/bin\/kill (-s )?-?HUP \$MAINPID$/.test(l)), `${u}: ${reload.join(' | ')}`).toBe(true);
    }
    const tmpfiles = fs.readFileSync(path.join(SYSTEMD_DIR, 'pipe2me.tmpfiles.conf'), 'utf8');
    for (const dir of [path.dirname(L.nginx.pidFile), L.sessionsDir, L.connsDir, L.nginx.prefix, L.nginx.tmpDir, L.nginx.socketDir]) {
      expect(tmpfiles).toMatch(new RegExp(`^d\\s+${dir}\\s`, 'm'));
    }
  });

  it('the pod template does not restart a pod the server refused for good (exit 9)', () => {
    const pod = readUnit(path.join(SYSTEMD_DIR, 'pipe2me-pod@.service'));
    expect(one(pod, 'Service.RestartPreventExitStatus')).toBe('9');
    expect(execArgv(one(pod, 'Service.ExecStart')!, { instance: 'web', env: { PIPE2ME_START_OPTS: '--no-upnp' } }))
      .toEqual(['/usr/local/bin/pipe2me', 'start', '--dir', '/var/lib/pipe2me-pod/web', '--no-upnp']);
  });

  it('the probe timer fires every minute and its service cannot overlap itself', () => {
    expect(one(readUnit(path.join(SYSTEMD_DIR, 'pipe2me-probe.timer')), 'Timer.OnCalendar')).toBe('*-*-* *:*:00');
    expect(one(readUnit(path.join(SYSTEMD_DIR, 'pipe2me-probe.service')), 'Service.Type')).toBe('oneshot');
    const cron = fs.readFileSync(path.join(SYSTEMD_DIR, 'cron', 'pipe2me-probe'), 'utf8');
    const line = cron.split('\n').find((l) => /^\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+root\s/.test(l));
    expect(line).toMatch(/^\* \* \* \* \* root flock -n \S+ timeout \S+ pipe2me-ctl --quiet probe/);
  });
});
