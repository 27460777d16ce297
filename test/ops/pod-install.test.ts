/**
 * The pod install on a fresh Debian 12: `scripts/pack-pod.mjs` makes the pod package, debootstrap makes
 * a minbase root, and `scripts/install-pod` runs inside it by chroot with nothing but the tarball. Then:
 * no server daemon or test tool got installed — only the pod's packages and Node.js 20 — and the
 * installed `pipe2me` (from the root's global npm prefix), run by chroot inside the pod namespace of a
 * test world with a real pipe2me server (test/stack), sets up, starts, and serves a page through its
 * tunnel to a client on the world's internet. A second run of install-pod, from inside the pod
 * namespace where no registry or mirror can be reached, changes nothing and reinstalls offline; a third,
 * there too, with Node.js removed, installs it from --node-tarball and --npm-tarball.
 *
 * Why no cached base root: debootstrap --variant=minbase took 55-59 s alone on the 2-core test machine,
 * and 103 s (this file) and 149 s (the playbook test's, with python3) side by side in a full suite run
 * that took 6.3 min in all: within the suite's budget. A cache would have to be kept in step with the
 * mirror and locked between the files that share it, to save that time.
 *
 * Everything it makes — the world (namespaces, daemons, the server's tunnel user), the root and its
 * mounts, every process rooted there, the temp directory — is removed in afterAll, also when a step fails.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { ADDR, WORLD_ENV, curl, dig } from '../world/index.js';
import { DOMAIN, Stack } from '../stack/stack.js';
import { Cleanup, DebianRoot, ROOT, StepLog, exec, mountsUnder, must, leftBehind, uniqueTag, waitFor } from './helpers.js';

const MIN = 60_000;
const tag = uniqueTag();
// PATH as a login shell on Debian has it; the chroot must not inherit the test process's.
const CHROOT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const WEB_PORT = 18080;
// What a pod must not get: the server's daemons, the test world's router and tools, build tools, and
// Debian's own nodejs/npm (npm alone would bring hundreds of packages).
// (gcc-12-base is not a compiler: minbase has it for libgcc-s1.)
const NOT_ON_A_POD = [/^openssh-server$/, /^nginx/, /^libnginx/, /^bind9/, /^nsd/, /^miniupnpd/, /^ansible/, /^sqlite3$/,
  /^g\+\+(-\d+)?$/, /^gcc(-\d+)?$/, /^cpp(-\d+)?$/, /^make$/, /^build-essential$/, /^python3/, /^nodejs$/, /^npm$/, /^nftables$/, /^curl$/, /^systemd$/];
const POD_PACKAGES = ['openssh-client', 'autossh', 'openssl', 'miniupnpc', 'natpmpc', 'ca-certificates'];

const cleanup = new Cleanup();
let tmp: string;
let root: DebianRoot;
let stack: Stack | undefined;
let tarball: string;
let installLog = '';
let packagesBefore: string[] = [];
let packagesAfter: string[] = [];

const steps = new StepLog(`ops/pod-install ${tag}`);
const log = (m: string) => steps.log(m);
const timed = <T>(what: string, fn: () => Promise<T>) => steps.timed(what, fn);

function inRoot(p: string): string {
  return path.join(root.dir, p);
}

/** argv that runs a command in the root with a clean environment (and the world's marker, for its leak check). */
function chrootArgv(argv: string[]): string[] {
  return ['chroot', root.dir, '/usr/bin/env', '-i', `PATH=${CHROOT_PATH}`, 'HOME=/root', 'LANG=C.UTF-8',
    ...(stack ? [`${WORLD_ENV}=${stack.world.prefix}`] : []), ...argv];
}

/** Installed Debian packages of the root. */
async function installedPackages(): Promise<string[]> {
  const r = await must('chroot', [root.dir, 'dpkg-query', '-W', '-f', '${Package} ${Status}\n'], MIN);
  return r.stdout.split('\n').filter((l) => l.endsWith(' install ok installed')).map((l) => l.split(' ')[0]!).sort();
}

/** install-pod from the root's /root, as root at a shell there; in the host's namespace unless `ns` is given. */
async function installPod(args: string[], ns?: string) {
  const argv = chrootArgv(['bash', '/root/install-pod', ...args]);
  // A proxy the machine's apt or registry access goes through applies in the root too.
  const proxy = ['http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY'].filter((k) => process.env[k]).map((k) => `${k}=${process.env[k]}`);
  argv.splice(argv.indexOf('-i') + 1, 0, ...proxy);
  const full = ns ? ['ip', 'netns', 'exec', ns, ...argv] : argv;
  return exec(full[0]!, full.slice(1), 15 * MIN);
}

/** The installed pipe2me, by chroot inside the world's pod namespace. */
async function pod<T = unknown>(args: string[], timeoutMs = MIN): Promise<{ exitCode: number; stdout: string; stderr: string; json: T }> {
  const r = await stack!.world.inNs('pod', chrootArgv(['/usr/local/bin/pipe2me', ...args]), { allowFailure: true, timeout: timeoutMs });
  let json: unknown;
  try {
    json = r.stdout.trim() ? JSON.parse(r.stdout) : undefined;
  } catch {
    json = undefined;
  }
  return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, json: json as T };
}

beforeAll(async () => {
  tmp = fs.mkdtempSync('/tmp/p2m-ops-pod-');
  root = new DebianRoot(path.join(tmp, 'root'));
  cleanup.add('temp directory', () => {
    if (mountsUnder(tmp).length) throw new Error(`${tmp} kept: something is still mounted below it`);
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  cleanup.add('Debian root', () => root.remove());

  // The package, from the sources, into this test's directory (dist/, which other test files import while
  // they run, is not touched).
  const packed = await timed('pack the pod package', () => must(process.execPath, [path.join(ROOT, 'scripts', 'pack-pod.mjs'), '--out', path.join(tmp, 'pkg')], 3 * MIN));
  tarball = packed.stdout.trim().split('\n').pop()!;
  expect(path.basename(tarball)).toMatch(/^pipe2me-pod-\d+\.\d+\.\d+\.tgz$/);

  await timed('debootstrap (minbase)', () => root.create([], path.join(tmp, 'debootstrap.log')));
  await root.mount();
  packagesBefore = await installedPackages();
  // This machine may reach the registry through a proxy that has a CA of its own: a site's local CAs
  // live in /usr/local/share/ca-certificates, and the root gets the same ones (ca-certificates, which
  // install-pod installs, adds them), so that it trusts what this machine trusts. Nothing else is copied.
  const localCas = '/usr/local/share/ca-certificates';
  if (fs.existsSync(localCas)) fs.cpSync(localCas, inRoot(localCas), { recursive: true });

  // What an operator copies to a pod: the tarball and the script.
  fs.copyFileSync(tarball, inRoot(`root/${path.basename(tarball)}`));
  fs.copyFileSync(path.join(ROOT, 'scripts', 'install-pod'), inRoot('root/install-pod'));
  const r = await timed('install-pod (Debian packages, Node.js 20 and npm from the registry, the package)', () => installPod([`/root/${path.basename(tarball)}`]));
  installLog = r.output;
  fs.writeFileSync(path.join(tmp, 'install-pod.log'), r.output);
  expect(r.exitCode, r.output.slice(-4000)).toBe(0);
  // debootstrap writes no /etc/hosts (an installer does): install-pod says that localhost, the tunnel's
  // default target, does not resolve; the root then gets the /etc/hosts every installed Debian has.
  expect(r.stderr).toContain('the name localhost does not resolve here');
  fs.writeFileSync(inRoot('etc/hosts'), '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n');
  packagesAfter = await installedPackages();
  log(`install-pod added ${packagesAfter.filter((p) => !packagesBefore.includes(p)).join(' ')}`);
}, 25 * MIN);

afterAll(async () => {
  if (stack) {
    const s = stack;
    await timed('world teardown', () => s.destroy());
  }
  await cleanup.run();
  log(steps.summary());
  expect(leftBehind({ cleanup, root, tmp })).toEqual([]);
}, 5 * MIN);

afterEach((ctx: TestContext) => {
  if (ctx.task.result?.state !== 'fail') return;
  if (stack) console.log(stack.world.dumpLogs(40));
  else if (installLog) console.log(`install-pod printed:\n${installLog.slice(-4000)}`);
});

describe('the pod install on a fresh Debian 12', () => {
  it('installs the pod\'s packages, Node.js 20 and pipe2me, and no server daemon, test tool or build tool', async () => {
    for (const p of POD_PACKAGES) expect(packagesAfter, p).toContain(p);
    const unwanted = packagesAfter.filter((p) => NOT_ON_A_POD.some((re) => re.test(p)));
    expect(unwanted).toEqual([]);

    // pipe2me is a global npm package of the root's own npm, in /usr/local, with no dependencies.
    const prefix = (await must('chroot', chrootArgv(['npm', 'prefix', '--global']).slice(1), MIN)).stdout.trim();
    expect(prefix).toBe('/usr/local');
    const ls = JSON.parse((await must('chroot', chrootArgv(['npm', 'ls', '--global', '--json', '--all']).slice(1), MIN)).stdout) as {
      dependencies: Record<string, { version: string; dependencies?: unknown }>;
    };
    expect(Object.keys(ls.dependencies)).toEqual(['pipe2me-pod']);
    expect(ls.dependencies['pipe2me-pod']!.dependencies).toBeUndefined();
    expect(fs.readlinkSync(inRoot(`${prefix}/bin/pipe2me`))).toBe('../lib/node_modules/pipe2me-pod/bin/pipe2me.js');
    expect(fs.existsSync(inRoot(`${prefix}/lib/node_modules/pipe2me-pod/node_modules`))).toBe(false);
    const pkg = JSON.parse(fs.readFileSync(inRoot(`${prefix}/lib/node_modules/pipe2me-pod/package.json`), 'utf8')) as Record<string, unknown>;
    expect(pkg.dependencies).toBeUndefined();

    const node = await must('chroot', chrootArgv(['node', '--version']).slice(1), MIN);
    expect(node.stdout).toMatch(/^v20\./);
    expect(fs.readlinkSync(inRoot('usr/local/bin/node'))).toBe('/opt/pipe2me-node/bin/node');
    const help = await must('chroot', chrootArgv(['pipe2me', 'setup', '--help']).slice(1), MIN);
    expect(help.stdout).toContain('--server <url>');
  });

  it('refuses bad usage before it changes anything (exit 2)', async () => {
    const none = await installPod([]);
    expect(none.exitCode).toBe(2);
    expect(none.stderr).toContain('usage: bash install-pod');
    fs.writeFileSync(inRoot('root/something-else.tgz'), '');
    const other = await installPod(['/root/something-else.tgz']);
    expect(other.exitCode).toBe(2);
    expect(other.stderr).toContain('is not the pod package');
  });

  describe('the installed pipe2me, in the pod namespace of a world with a real server', () => {
    let token: { token: string; ca_pin: string };

    beforeAll(async () => {
      // No UPnP in this world: the pod is checked through its tunnel (test/e2e covers the direct route).
      const s = await timed('world up', () => Stack.create({ upnp: false }));
      stack = s;
      await timed('server up (pipe2me-ctl init, apply; sshd, nginx, BIND, API)', () => s.startServer());
      token = (await s.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--label', 'pod install', '--max-ports', '2', '--lifespan', '1d'])).json;
      // The root resolves names through the world's nameserver, as a pod does once the domain is delegated
      // (`ip netns exec` puts the world's resolv.conf over the host's /etc, not over the root's).
      fs.writeFileSync(inRoot('etc/resolv.conf'), `nameserver ${ADDR.server}\noptions timeout:1 attempts:2\n`);
    }, 5 * MIN);

    it('install-pod again, where no registry or mirror is reachable: it changes no package and reinstalls pipe2me offline', async () => {
      const r = await timed('install-pod again (offline, in the pod namespace)', () => installPod([`/root/${path.basename(tarball)}`], stack!.world.ns('pod')));
      expect(r.exitCode, r.output.slice(-4000)).toBe(0);
      expect(r.stderr).not.toContain('installing Debian packages');
      expect(r.stderr).not.toContain('installing Node.js');
      expect(await installedPackages()).toEqual(packagesAfter);
    }, 3 * MIN);

    it('sets up, starts and serves a page through its tunnel to a client on the internet', async () => {
      const s = stack!;
      // The pod's service: a tiny http server run by the root's own Node.js.
      const web = "const t=process.argv[1];require('node:http').createServer((q,s)=>{s.setHeader('content-type','text/plain');s.end('hello from the installed pod '+t+' at '+q.url+'\\n')}).listen(" + WEB_PORT + ",'127.0.0.1')";
      await s.world.start({ name: 'pod-web', host: 'pod', argv: chrootArgv(['/usr/local/bin/node', '-e', web, tag]), ready: () => s.world.waitTcp('pod', '127.0.0.1', WEB_PORT) });

      const setup = await timed('pipe2me setup', () => pod<{ fqdn: string; services: { port: number; url: string }[] }>(
        ['--json', 'setup', '--server', `https://server.${DOMAIN}`, '--token', token.token, '--ca-pin', token.ca_pin, '--protocols', 'http', '--ports', String(WEB_PORT)], 2 * MIN));
      expect(setup.exitCode, setup.stderr).toBe(0);
      const { fqdn, services } = setup.json;
      const port = services[0]!.port;
      // The keys were made in the root, as root's default tunnel set.
      for (const f of ['id_ed25519', 'tls.key', 'fullchain.pem']) expect(fs.existsSync(inRoot(`var/lib/pipe2me-pod/default/${f}`)), f).toBe(true);

      await timed('pipe2me start until the tunnel is up', () => s.world.start({
        name: 'pod-pipe2me', host: 'pod', argv: chrootArgv(['/usr/local/bin/pipe2me', 'start', '--no-upnp', '--status-interval', '2']),
        ready: (d, p) => p.waitLog(d.name, 'tunnel up', { timeoutMs: 30_000 }),
      }));

      const d = await dig(s.world, { server: ADDR.server, name: fqdn });
      expect(d.answers.find((a) => a.type === 'A')?.data).toBe(ADDR.server);
      const body = await timed('the first answer through the tunnel', () => waitFor('the page through the tunnel', async () => {
        const r = await curl(s.world, `http://${fqdn}:${port}/through-the-tunnel`, { resolve: [`${fqdn}:${port}:${ADDR.server}`] });
        return r.ok && r.status === 200 ? r.body : undefined;
      }, 30_000, 250));
      expect(body).toBe(`hello from the installed pod ${tag} at /through-the-tunnel\n`);
      // The name's entry redirect on the server leads there too.
      const entry = await curl(s.world, `http://${fqdn}/entry`, { resolve: [`${fqdn}:80:${ADDR.server}`, `${fqdn}:${port}:${ADDR.server}`], followRedirects: true });
      expect(entry.body).toBe(`hello from the installed pod ${tag} at /entry\n`);

      const status = await pod<{ running: boolean; tunnel: { state: string } }>(['--json', 'status']);
      expect(status.exitCode, status.stderr).toBe(0);
      expect(status.json.running).toBe(true);
      expect(status.json.tunnel.state).toBe('up');

      // The service file is rendered from the package's own templates/pod/, for the installed files.
      const svc = await pod<{ content: string }>(['--json', 'install-service', '--print']);
      expect(svc.exitCode, svc.stderr).toBe(0);
      expect(svc.json.content).toContain('ExecStart=/opt/pipe2me-node/bin/node /usr/local/lib/node_modules/pipe2me-pod/bin/pipe2me.js start --dir /var/lib/pipe2me-pod/default');

      const stop = await timed('pipe2me stop', () => pod<{ was_running: boolean }>(['--json', 'stop']));
      expect(stop.exitCode, stop.stderr).toBe(0);
      expect(stop.json.was_running).toBe(true);
      const exit = await s.world.procs.get('pod-pipe2me').exited;
      expect(exit.code).toBe(0);
    }, 5 * MIN);

    it('with no Node.js and no registry, --node-tarball and --npm-tarball install Node.js from files', async () => {
      // The two files as the README says to get them, on a machine that reaches the registry (this one).
      const dir = path.join(tmp, 'node');
      fs.mkdirSync(dir);
      const nodePkg = `node-linux-${process.arch}`;
      const env = { PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ''}`, npm_config_cache: path.join(tmp, 'npm-cache'), npm_config_update_notifier: 'false' };
      const packed = await timed('npm pack of Node.js and npm', () => must('npm', ['pack', `${nodePkg}@20`, 'npm@10', '--pack-destination', dir, '--json', '--loglevel=error'], 5 * MIN, { env }));
      const files = (JSON.parse(packed.stdout) as { filename: string }[]).map((f) => f.filename);
      for (const f of files) fs.copyFileSync(path.join(dir, f), inRoot(`root/${f}`));
      const nodeFile = files.find((f) => f.startsWith(`${nodePkg}-`))!;
      const npmFile = files.find((f) => f.startsWith('npm-'))!;

      // The pod loses its Node.js; then install-pod runs where nothing but the world can be reached.
      fs.rmSync(inRoot('opt/pipe2me-node'), { recursive: true });
      for (const b of ['node', 'npm', 'npx']) fs.rmSync(inRoot(`usr/local/bin/${b}`));
      const r = await timed('install-pod with Node.js and npm from files (offline)', () => installPod(
        ['--node-tarball', `/root/${nodeFile}`, '--npm-tarball', `/root/${npmFile}`, `/root/${path.basename(tarball)}`], stack!.world.ns('pod')));
      expect(r.exitCode, r.output.slice(-4000)).toBe(0);
      expect(r.stderr).toContain('installing Node.js 20');
      expect(r.stderr).not.toContain('downloading');
      const node = await must('chroot', chrootArgv(['node', '--version']).slice(1), MIN);
      expect(`node-linux-${process.arch}-${node.stdout.trim().slice(1)}.tgz`).toBe(nodeFile);
      const help = await must('chroot', chrootArgv(['pipe2me', '--help']).slice(1), MIN);
      expect(help.stdout).toContain('Usage: pipe2me');
    }, 8 * MIN);
  });
});
