/**
 * The first day of an operator and a pod owner, as they live it: a configuration change that every
 * running process follows, applies that return only when the daemons serve what they applied, trials
 * under one root that touch nothing else and stay out of each other's way, DNS that follows a pod whose
 * router got a new address, and a pod told plainly when its subdomain is gone.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ADDR, changeRouterPublicAddress, curl, dig, waitFor, type HostName } from '../world/index.js';
import { CTL, DOMAIN, POD, ROOT } from '../stack/stack.js';
import { useStack } from '../stack/hooks.js';
import { trialUsers } from '../../src/server/init.js';

const OVERLAY = path.join(ROOT, 'test', 'stack', 'bin', 'overlay-run.mjs');

interface SetupJson { name: string; fqdn: string; id: string; services: { protocol: string; port: number; url: string }[] }

let token: string;
let caPin: string;
let web: SetupJson;

const stack = useStack({ pods: 1 }, async (s) => {
  await s.startServer();
  const t = await s.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--label', 'first-day', '--max-ports', '4', '--max-subdomains', '50']);
  token = t.json.token;
  caPin = t.json.ca_pin;
  web = (await s.pod<SetupJson>(['setup', '--server', `https://server.${DOMAIN}`, '--token', token, '--ca-pin', caPin, '--protocols', 'http,https', '--ports', '8080,8443'], { timeout: 120_000 })).json;
  await s.startPodService('pod');
  await s.startPod('pod');
}, 240_000);

async function apiCreate(protocols = ['http']): Promise<{ status: number; fqdn: string }> {
  const r = await curl(stack().world, `https://server.${DOMAIN}/v1/subdomains`, {
    method: 'POST', cacert: stack().caFile(), resolve: [`server.${DOMAIN}:443:${ADDR.server}`],
    headers: { 'content-type': 'application/json' }, data: JSON.stringify({ token, protocols }),
  });
  return { status: r.status, fqdn: r.status === 201 ? (JSON.parse(r.body) as { fqdn: string }).fqdn : '' };
}

const sha = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

function editConfig(fn: (text: string) => string): void {
  const file = stack().configFile;
  fs.writeFileSync(file, fn(fs.readFileSync(file, 'utf8')));
}

describe('every long-running process follows the configuration as it is now', () => {
  it('a secondary added to pipe2me.yml stays in named.conf and the zone through the API\'s applies, and its transfers get the new pods', async () => {
    const s = stack();
    editConfig((t) => t.replace(/^dns:\n/m, `dns:\n  secondaries: [{name: ns2.${DOMAIN}, ipv4: ${ADDR.ns2}}]\n`));
    await s.ctl(['apply']);
    const notify = new RegExp(`also-notify \\{ ${ADDR.ns2.replace(/\./g, '\\.')};\\s+\\}`);
    expect(fs.readFileSync(s.layout.bind.config, 'utf8')).toMatch(notify);
    await s.startSecondary();
    // The API started before the change; what it applies now must keep the secondary.
    const created = await apiCreate();
    expect(created.status).toBe(201);
    expect(fs.readFileSync(s.layout.bind.config, 'utf8')).toMatch(notify);
    expect(fs.readFileSync(s.layout.bind.zone, 'utf8')).toMatch(new RegExp(`IN NS ns2\\.${DOMAIN.replace('.', '\\.')}\\.`));
    await waitFor('the secondary to have the new pod', async () => (await dig(s.world, { server: ADDR.ns2, name: created.fqdn })).answers.some((a) => a.type === 'A'), { timeoutMs: 10_000, intervalMs: 100 });
  });

  it('the watcher and the API agree: the daemons\' files never flip back and forth, the serial moves once per change', async () => {
    const s = stack();
    await s.world.start({ name: 'watch', host: 'srv', argv: [process.execPath, CTL, '-c', s.configFile, 'watch', '--debounce', '100'], ready: (d, p) => p.waitLog(d.name, 'watching') });
    const conf = sha(s.layout.bind.config);
    const serials: number[] = [];
    for (let i = 0; i < 3; i++) {
      expect((await apiCreate()).status).toBe(201);
      await new Promise((r) => setTimeout(r, 600)); // the watcher's turn
      expect(sha(s.layout.bind.config), `named.conf after change ${i + 1}`).toBe(conf);
      serials.push((await dig(s.world, { server: ADDR.server, name: DOMAIN, type: 'SOA' })).answers[0]!.data.split(' ').map(Number)[2]!);
    }
    expect(serials[1]).toBeGreaterThan(serials[0]!);
    expect(serials[2]).toBeGreaterThan(serials[1]!);
    // Neither process reloaded anything it had not been asked to.
    expect(s.world.procs.log('watch')).not.toMatch(/changed \d+ file\(s\) in dns.*named\.conf/s);
    await s.world.stop('watch');
  });

  it('a file that does not validate is reported and the last good configuration kept: pods still register, apply refuses', async () => {
    const s = stack();
    const good = fs.readFileSync(s.configFile, 'utf8');
    const logAt = s.world.procs.log('api').length;
    editConfig((t) => t.replace(/^ {2}ttl: \d+$/m, '  ttl: 9999'));
    try {
      expect((await apiCreate()).status).toBe(201);
      await waitFor('the API to say so', async () => /is not used, the last good configuration .* is kept: .*"dns\.ttl" must be <= 300/s.test(s.world.procs.log('api').slice(logAt)), { timeoutMs: 5000 })
        .catch((e) => {
          throw new Error(`${(e as Error).message}; the API said:\n${s.world.procs.log('api').slice(logAt)}`);
        });
      const r = await s.ctl(['apply'], { allowFailure: true });
      expect(r.exitCode).toBe(3);
      expect(r.stderr).toMatch(/dns\.ttl/);
    } finally {
      fs.writeFileSync(s.configFile, good);
    }
    await waitFor('the API to use the file again', async () => /is valid again|configuration reloaded/.test(s.world.procs.log('api').slice(logAt)), { timeoutMs: 5000 });
  });
});

describe('a command that applies returns when the daemons serve what it applied', () => {
  it('right after add-subdomain the entry redirects and DNS answers; right after remove they have forgotten it', async () => {
    const s = stack();
    for (let i = 0; i < 4; i++) {
      const name = `served-${i}`;
      const added = await s.ctl<{ ports: { port: number }[]; applied: { zone_serial: number } }>(['add-subdomain', '--ports', 'http', '--name', name]);
      const [page, answer] = await Promise.all([
        curl(s.world, `http://${name}.${DOMAIN}/x`, { resolve: [`${name}.${DOMAIN}:80:${ADDR.server}`] }),
        dig(s.world, { server: ADDR.server, name: `${name}.${DOMAIN}` }),
      ]);
      expect(page.status, `http://${name}/ right after add-subdomain`).toBe(302);
      expect(answer.answers.some((a) => a.type === 'A'), `dig ${name} right after add-subdomain`).toBe(true);
      await s.ctl(['remove', name]);
      const gone = await curl(s.world, `http://${name}.${DOMAIN}/x`, { resolve: [`${name}.${DOMAIN}:80:${ADDR.server}`] });
      expect(gone.status, `http://${name}/ right after remove`).toBe(404);
      expect((await dig(s.world, { server: ADDR.server, name: `${name}.${DOMAIN}` })).status).toBe('NXDOMAIN');
    }
  });
});

describe('trials on one machine (`init --root`)', () => {
  it('a trial writes nothing outside its root but its two users (checked behind overlays in a mount namespace)', async () => {
    const s = stack();
    const root = s.world.path('trial-overlay');
    const users = trialUsers(root);
    s.world.trackUser(users.tunnel);
    s.world.trackUser(users.keys);
    const cfg = path.join(root, 'etc', 'pipe2me', 'pipe2me.yml');
    const commands = [
      [process.execPath, CTL, 'init', '--root', root, '--domain', 'trial.test', '--ipv4', ADDR.ns2, '--dns', 'nsd', '--ssh-port', '4455'],
      [process.execPath, CTL, '-c', cfg, 'apply'],
      [process.execPath, CTL, '-c', cfg, 'add-subdomain', '--ports', 'http', '--name', 'inside'],
    ];
    const r = await s.world.inNs('ns2', ['unshare', '--mount', '--propagation', 'private', process.execPath, OVERLAY, JSON.stringify(commands)], { timeout: 180_000 });
    const out = JSON.parse(r.stdout) as { results: { argv: string[]; code: number; output: string }[]; written: string[] };
    for (const x of out.results) expect(x.code, `${x.argv.slice(2).join(' ')}:\n${x.output}`).toBe(0);
    expect(out.results).toHaveLength(3);
    // init ends with what this machine lets the relay hold (reading it wrote nothing: see below).
    expect(out.results[0]!.output).toMatch(/^ {2}checked capacity of this relay: [\d,]+ pods of 2 services, first limit .+ \(pipe2me-ctl check-config shows every limit\)/m);
    // Users are the machine's, not the trial's: their entries are the one trace a trial leaves elsewhere.
    const userDb = /^\/etc\/(passwd|group|shadow|gshadow)-?$|^\/etc\/\.pwd\.lock$|^\/etc\/(subuid|subgid)-?$/;
    const outside = out.written.filter((p) => !(p + '/').startsWith(root + '/') && !userDb.test(p) && p !== '/run/sshd/');
    // The overlay over /run also shows the parents of the root (new to the lower /run only as the root's directory).
    const parents = new Set<string>();
    for (let d = path.dirname(root); d !== '/'; d = path.dirname(d)) parents.add(d + '/');
    expect(outside.filter((p) => !parents.has(p))).toEqual([]);
    expect(out.written.some((p) => p.startsWith(path.join(root, 'var', 'lib', 'pipe2me')))).toBe(true);
  });

  it('a root that cannot work is refused before anything is written: under /tmp, 0700, a configuration whose paths are elsewhere', async () => {
    const s = stack();
    const tmp = fs.mkdtempSync('/tmp/p2m-trial-');
    s.world.onCleanup('trial under /tmp', () => fs.rmSync(tmp, { recursive: true, force: true }));
    const under = await s.world.inNs('srv', [process.execPath, CTL, 'init', '--root', path.join(tmp, 'r'), '--domain', 'x.test', '--ipv4', ADDR.serverAlt], { allowFailure: true, timeout: 60_000 });
    expect(under.exitCode).toBe(3);
    expect(under.stderr).toMatch(/\/tmp is writable by everyone.*outside \/tmp/s);
    const closed = s.world.mkdir('trial-0700', 0o700);
    const c700 = await s.world.inNs('srv', [process.execPath, CTL, 'init', '--root', path.join(closed, 'r'), '--domain', 'x.test', '--ipv4', ADDR.serverAlt], { allowFailure: true, timeout: 60_000 });
    expect(c700.exitCode).toBe(3);
    expect(c700.stderr).toMatch(/mode 700.*chmod 755/s);
    const elsewhere = s.world.mkdir('trial-paths', 0o755);
    const cfg = path.join(elsewhere, 'pipe2me.yml');
    fs.writeFileSync(cfg, `domain: x.test\nserver:\n  ipv4: ${ADDR.serverAlt}\n`);
    const paths = await s.world.inNs('srv', [process.execPath, CTL, '-c', cfg, 'init', '--root', elsewhere], { allowFailure: true, timeout: 60_000 });
    expect(paths.exitCode).toBe(3);
    expect(paths.stderr).toMatch(/paths\.state is \/var\/lib\/pipe2me/);
    expect(fs.readdirSync(elsewhere)).toEqual(['pipe2me.yml']);
    expect(fs.readdirSync(closed)).toEqual([]);
  });

  it('two trials side by side run their own daemons (`daemons --run`) with their own users; removing one leaves the other working', async () => {
    const s = stack();
    const trial = (tag: string, ip: string, n: number) => {
      const root = s.world.path(`trial-${tag}`);
      const users = trialUsers(root);
      s.world.trackUser(users.tunnel);
      s.world.trackUser(users.keys);
      return { root, ip, n, users, cfg: path.join(root, 'etc', 'pipe2me', 'pipe2me.yml') };
    };
    execFileSync('ip', ['-n', s.world.ns('ns2'), 'address', 'add', '203.0.113.8/24', 'dev', 'wan0'], { timeout: 10_000 });
    execFileSync('ip', ['-n', s.world.ns('ns2'), 'address', 'add', '203.0.113.9/24', 'dev', 'wan0'], { timeout: 10_000 });
    const a = trial('a', '203.0.113.8', 1);
    const b = trial('b', '203.0.113.9', 2);
    expect(a.users.tunnel).not.toBe(b.users.tunnel);
    for (const t of [a, b]) {
      await s.world.inNs('ns2', [process.execPath, CTL, 'init', '--root', t.root, '--domain', `trial${t.n}.test`, '--ipv4', t.ip, '--dns', 'nsd',
        '--ssh-port', String(4460 + t.n), '--api-port', String(8480 + t.n), '--ports', `${30000 + t.n * 1000}-${30000 + t.n * 1000 + 99}`], { timeout: 120_000 });
      await s.world.inNs('ns2', [process.execPath, CTL, '-c', t.cfg, 'apply'], { timeout: 120_000 });
      await s.world.start({ name: `trial-${t.n}`, host: 'ns2', argv: [process.execPath, CTL, '-c', t.cfg, 'daemons', '--run'], ready: (d, p) => p.waitLog(d.name, 'all daemons started') });
      await s.world.waitDns('cli', t.ip, `server.trial${t.n}.test`);
      await s.world.inNs('ns2', [process.execPath, CTL, '-c', t.cfg, 'add-subdomain', '--ports', 'http', '--name', 'demo'], { timeout: 60_000 });
    }
    for (const t of [a, b]) {
      const page = await curl(s.world, `http://demo.trial${t.n}.test/`, { resolve: [`demo.trial${t.n}.test:80:${t.ip}`] });
      expect(page.status, t.root).toBe(302);
      expect(page.location).toBe(`http://demo.trial${t.n}.test:${30000 + t.n * 1000}/`);
    }
    // Trial a goes away with its users; b keeps serving and keeps its own.
    await s.world.stop('trial-1');
    for (const u of [a.users.tunnel, a.users.keys]) execFileSync('userdel', [u], { timeout: 10_000 });
    execFileSync('getent', ['passwd', b.users.tunnel], { timeout: 10_000 });
    const still = await curl(s.world, `http://demo.trial2.test/`, { resolve: [`demo.trial2.test:80:${b.ip}`] });
    expect(still.status).toBe(302);
    await s.world.stop('trial-2');
  });
});

describe('DNS follows the pod', () => {
  it('after the router\'s public address changes the name is back on the server within seconds, then direct again at the new address', async () => {
    const s = stack();
    const name = web.fqdn;
    const aRecord = async () => (await dig(s.world, { server: ADDR.server, name })).answers.find((x) => x.type === 'A')?.data;
    // The pod's mappings were reported at start: the API probed it at once.
    await waitFor('the pod to go direct', async () => (await aRecord()) === ADDR.routerWan, { timeoutMs: 20_000, intervalMs: 200 });
    const t0 = performance.now();
    await changeRouterPublicAddress(s.world);
    await waitFor('the name back on the server', async () => (await aRecord()) === ADDR.server, { timeoutMs: 15_000, intervalMs: 50 });
    const back = (performance.now() - t0) / 1000;
    await waitFor('the name at the new router address', async () => (await aRecord()) === ADDR.routerWanAlt, { timeoutMs: 30_000, intervalMs: 100 });
    const direct = (performance.now() - t0) / 1000;
    console.log(`router address change: DNS back on the server after ${back.toFixed(1)} s, direct at the new address after ${direct.toFixed(1)} s`);
    expect(back).toBeLessThan(10);
    const st = await s.pod<{ route: { route: string; direct_ipv4: string; source: string } }>(['status']);
    expect(st.json.route).toMatchObject({ route: 'direct', direct_ipv4: ADDR.routerWanAlt, source: 'server' });
    await changeRouterPublicAddress(s.world, ADDR.routerWan);
  });
});

describe('a pod is told plainly', () => {
  it('a removed subdomain\'s pod says it was removed and when, and stops (exit 9)', async () => {
    const s = stack();
    const dir = s.world.path('pods', 'gone');
    const host: HostName = 'pod';
    const set = (await s.pod<SetupJson>(['setup', '--server', `https://server.${DOMAIN}`, '--token', token, '--ca-pin', caPin, '--protocols', 'tcp', '--ports', '9999'], { host, dir })).json;
    await s.world.start({ name: 'gone-pod', host, argv: [process.execPath, POD, '--dir', dir, 'start', '--no-upnp', '--status-interval', '1'], ready: (d, p) => p.waitLog(d.name, 'tunnel up') });
    await s.ctl(['remove', set.name]);
    const d = s.world.procs.get('gone-pod');
    const exit = await d.exited;
    expect(exit.code).toBe(9);
    expect(s.world.procs.log('gone-pod')).toMatch(new RegExp(`${set.fqdn.replace(/\./g, '\\.')} was removed at \\d{4}-\\d\\d-\\d\\dT.*removed by the operator`));
  });

  it('a refused key backs off from the first failure, with jitter, instead of retrying in a tight loop', async () => {
    const s = stack();
    const dir = s.world.path('pods', 'refused');
    const set = (await s.pod<SetupJson>(['setup', '--server', `https://server.${DOMAIN}`, '--token', token, '--ca-pin', caPin, '--protocols', 'tcp', '--ports', '9998'], { dir })).json;
    // The operator registers another key for it: this pod's own is refused from now on.
    const other = s.world.path('keys', 'other');
    fs.mkdirSync(path.dirname(other), { recursive: true });
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other], { timeout: 30_000 });
    await s.ctl(['set-key', set.name, `${other}.pub`]);
    await s.world.start({ name: 'refused-pod', host: 'pod', argv: [process.execPath, POD, '--dir', dir, 'start', '--no-upnp'] });
    await new Promise((r) => setTimeout(r, 8000));
    const refusals = (s.world.procs.log('refused-pod').match(/tunnel down: .*Permission denied/g) ?? []).length;
    console.log(`a refused key: ${refusals} connection attempts in 8 s`);
    expect(refusals).toBeGreaterThanOrEqual(1);
    expect(refusals).toBeLessThanOrEqual(5);
    await s.world.stop('refused-pod');
  });
});
