/**
 * A fleet of relays on top of the test world: PostgreSQL on the db host, relay-a on srv and relay-b (and
 * relay-c) on srv2 (srv3), each with its own trial root, its own daemons (sshd, nginx, BIND, the API,
 * the watcher) rendered by its own `pipe2me-ctl`, all sharing the one store. The configuration files
 * differ only in `relay:` and the paths of each root. Every relay signs with a CA key of its own: the
 * first holds the root, the others are approved there (docs/operations.md "Several relays").
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import yaml from 'js-yaml';
import { ADDR, SLOT1, World, type HostName, type WorldOptions } from '../world/index.js';
import { pidsInNetns, signalPid } from '../world/procfs.js';
import { layout } from '../../src/render/layout.js';
import { loadConfig } from '../../src/config/load.js';
import { nginxArgv, nginxOwnSockets } from '../../src/daemons/nginx.js';
import { sshdArgv } from '../../src/daemons/sshd.js';
import { namedArgv } from '../../src/daemons/bind.js';
import { trialUsers } from '../../src/server/init.js';
import { startPostgresIn, type PgServer } from './postgres.js';
import { acmeConfig, startPebble, type Pebble } from './pebble.js';
import { CTL, DOMAIN, POD, POD_SERVICE, runCli, type CliResult } from './stack.js';

export interface RelayHost {
  name: string;
  host: 'srv' | 'srv2' | 'srv3';
  address: string;
  /** Its addresses, one per slot (the first is `address`). */
  slotAddresses: string[];
  root: string;
  configFile: string;
}

export interface FleetOptions extends WorldOptions {
  relays: 2 | 3;
  /** The zone's TTL (default 5 s: the failover tests wait for clients that honour it). */
  ttl?: number;
  /** Address slots (default 1): with 2, every relay publishes on its two addresses (ADDR's and SLOT1's). */
  slots?: 1 | 2;
  /** The public port range (default init's 20000-29999). */
  ports?: { first: number; last: number };
  /**
   * Certificates from a public ACME CA (Pebble in the world's `ca` namespace) instead of the private CA.
   * Pebble asks the last relay's nameserver for dns-01 records: an order worked on another relay is asked
   * to validate only once that nameserver serves its record.
   */
  acme?: boolean;
}

/** A blackhole on the relay's own side: loopback still works (its daemons keep talking to each other). */
const CUT_RULES = `table inet p2m_test_cut {
  chain in { type filter hook input priority -300; policy accept; iifname "wan0" drop; }
  chain out { type filter hook output priority -300; policy accept; oifname "wan0" drop; }
}
`;

const HOSTS = [['relay-a', 'srv'], ['relay-b', 'srv2'], ['relay-c', 'srv3']] as const;

export class RelayFleet {
  readonly relays: RelayHost[];
  pg!: PgServer;
  /** With `acme`: the public CA. */
  pebble?: Pebble;

  private constructor(readonly world: World, readonly opts: FleetOptions) {
    this.relays = HOSTS.slice(0, opts.relays).map(([name, host]) => ({
      name, host, address: world.address(host), slotAddresses: [world.address(host), ...(opts.slots === 2 ? [SLOT1[host]] : [])], root: world.path('relays', name), configFile: world.path('relays', name, 'pipe2me.yml'),
    }));
  }

  static async create(opts: FleetOptions): Promise<RelayFleet> {
    const world = await World.create(opts);
    const fleet = new RelayFleet(world, opts);
    try {
      // Pods and the client resolve through the relays' own nameservers, every one of them.
      for (const h of ['cli', ...world.pods] as HostName[]) fleet.resolveVia(h, fleet.relays.map((r) => r.address));
    } catch (e) {
      await world.destroy().catch(() => {});
      throw e;
    }
    return fleet;
  }

  relay(name: string): RelayHost {
    const r = this.relays.find((x) => x.name === name);
    if (!r) throw new Error(`no relay ${name}`);
    return r;
  }

  resolveVia(host: HostName, nameservers: string[]): void {
    const dir = path.join('/etc/netns', this.world.ns(host));
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'resolv.conf'), `${nameservers.map((n) => `nameserver ${n}`).join('\n')}\noptions timeout:1 attempts:2\n`);
    this.world.onCleanup(`resolv.conf of ${host}`, () => fs.rmSync(dir, { recursive: true, force: true }));
  }

  async ctl<T = unknown>(relay: string, args: readonly string[], o: { allowFailure?: boolean; timeout?: number } = {}): Promise<CliResult<T>> {
    const r = this.relay(relay);
    return this.exec<T>(r.host, [process.execPath, CTL, '-c', r.configFile, '--json', ...args], o);
  }

  async pod<T = unknown>(host: HostName, args: readonly string[], o: { allowFailure?: boolean; timeout?: number } = {}): Promise<CliResult<T>> {
    return this.exec<T>(host, [process.execPath, POD, '--dir', this.podDir(host), '--json', ...args], o);
  }

  podDir(host: HostName): string {
    return this.world.path('pods', host);
  }

  /** The relay the pod's tunnel is up on, from its status file (null while it is not up). */
  relayOf(host: HostName): string | null {
    try {
      const st = JSON.parse(fs.readFileSync(path.join(this.podDir(host), 'status.json'), 'utf8')) as { tunnel: { state: string; relay?: string | null } };
      return st.tunnel.state === 'up' ? st.tunnel.relay ?? null : null;
    } catch {
      return null;
    }
  }

  private exec<T>(host: HostName, argv: string[], o: { allowFailure?: boolean; timeout?: number }): Promise<CliResult<T>> {
    return runCli<T>(this.world, host, argv, o);
  }

  /** PostgreSQL, then every relay: init, configuration, apply, daemons. */
  async start(): Promise<void> {
    const first = this.relays[0]!;
    const users = trialUsers(first.root);
    this.world.trackUser(users.tunnel);
    this.world.trackUser(users.keys);
    const password = randomBytes(12).toString('hex');
    this.pg = await startPostgresIn(this.world, { host: 'db', name: 'postgres', address: ADDR.db, port: 5432, password });
    for (const r of this.relays) {
      fs.mkdirSync(path.join(r.root, 'etc', 'pipe2me'), { recursive: true });
      fs.writeFileSync(path.join(r.root, 'etc', 'pipe2me', 'db.password'), `${password}\n`, { mode: 0o600 });
    }
    if (this.opts.acme) this.pebble = await startPebble(this.world, { dnsServer: this.relays[this.relays.length - 1]!.address });
    const url = `postgres://${this.pg.user}@${ADDR.db}:5432/${this.pg.database}?connect_timeout=2`;
    await this.ctl(first.name, ['init', '--domain', DOMAIN, '--ipv4', first.address, '--root', first.root, '--dns', 'bind', '--ttl', String(this.opts.ttl ?? 5),
      '--state-url', url, '--state-password-file', path.join(first.root, 'etc', 'pipe2me', 'db.password')], { timeout: 120_000 });
    // The shared configuration: relays and this relay's name; every other key as init wrote it.
    const doc = yaml.load(fs.readFileSync(first.configFile, 'utf8')) as Record<string, Record<string, unknown>>;
    delete doc['server']!['ipv4'];
    doc['relays'] = this.relays.map((r) => ({ name: r.name, ipv4: r.slotAddresses.length > 1 ? r.slotAddresses : r.address })) as never;
    doc['probe'] = { timeout_ms: 1500, flap_window: '2m', prompt: true };
    if (this.opts.ports) doc['ports'] = { ...(doc['ports'] ?? {}), first: this.opts.ports.first, last: this.opts.ports.last };
    // Per-pod series: the tests read each pod's tunnel bytes at the relay its session is on.
    doc['metrics'] = { ...(doc['metrics'] ?? {}), per_pod: true };
    // The tests send bursts of requests from the one client address.
    doc['api'] = { ...(doc['api'] ?? {}), rate_per_minute: 600 };
    if (this.pebble) doc['ca'] = { ...(doc['ca'] ?? {}), ...(yaml.load(acmeConfig(this.pebble)) as { ca: Record<string, unknown> }).ca };
    for (const r of this.relays) {
      const text = yaml.dump({ ...doc, relay: r.name }).split(first.root).join(r.root);
      fs.writeFileSync(r.configFile, text);
    }
    // init again on the first relay, now with relays: it puts the root in the store for the others.
    await this.ctl(first.name, ['init', '--root', first.root], { timeout: 120_000 });
    for (const r of this.relays.slice(1)) await this.joinCa(r.name);
    for (const r of this.relays) await this.startRelay(r.name);
  }

  /**
   * A relay's own CA key, as an operator makes it: init there (makes the key and a request, exits 9 until
   * it is approved), approve on the relay that holds the root, init there again.
   */
  async joinCa(name: string): Promise<{ keySha256: string }> {
    const r = this.relay(name);
    const first = this.relays[0]!;
    // The root's pin, as the operator reads it on the root's holder.
    const pin = 'sha256:' + new X509Certificate(fs.readFileSync(layout(loadConfig(first.configFile)).caCertFile, 'utf8')).fingerprint256.replace(/:/g, '').toLowerCase();
    // Another pin: the store's root is not the pinned one, and nothing is made (no key, no request).
    const wrongPin = await this.ctl(name, ['init', '--root', r.root, '--ca-pin', `sha256:${'0'.repeat(64)}`], { timeout: 120_000, allowFailure: true });
    if (wrongPin.exitCode !== 9 || !(wrongPin.stdout + wrongPin.stderr).includes('ca_root_mismatch')) throw new Error(`init on ${name} with a wrong --ca-pin exited ${wrongPin.exitCode}: ${(wrongPin.stdout + wrongPin.stderr).slice(0, 600)}`);
    if (fs.existsSync(path.join(loadConfig(r.configFile).paths.ca, 'private', 'ca.key'))) throw new Error(`init on ${name} with a wrong --ca-pin made a CA key`);
    const asked = await this.ctl<{ error: { code: string; data?: { key_sha256?: string } } }>(name, ['init', '--root', r.root, '--ca-pin', pin], { timeout: 120_000, allowFailure: true });
    const text = asked.stdout + asked.stderr;
    if (asked.exitCode !== 9 || !text.includes('relay_ca_not_approved')) throw new Error(`init on ${name} did not wait for approval (exit ${asked.exitCode}): ${text.slice(0, 600)}`);
    if (!text.includes(`The root in the state store is ${pin}, as pinned`)) throw new Error(`init on ${name} did not say which root it found: ${text.slice(0, 600)}`);
    const keySha256 = /key sha256 ([0-9a-f]{64})/.exec(text)?.[1] ?? '';
    // A sha256 that is not the request's key signs nothing (the operator read another relay's, say).
    const wrong = await this.ctl(first.name, ['relay', 'approve', name, '--key-sha256', '0'.repeat(64)], { allowFailure: true });
    if (wrong.exitCode !== 9) throw new Error(`approve with a wrong key sha256 exited ${wrong.exitCode}, not 9`);
    const approved = await this.ctl<{ key_sha256: string }>(first.name, ['relay', 'approve', name, '--key-sha256', keySha256]);
    if (approved.json.key_sha256 !== keySha256) throw new Error(`approve signed key ${approved.json.key_sha256}, init on ${name} made ${keySha256}`);
    await this.ctl(name, ['init', '--root', r.root, '--ca-pin', pin], { timeout: 120_000 });
    return { keySha256 };
  }


  /** A relay's apply and daemons; ready when its API answers and the store has its heartbeat. */
  async startRelay(name: string): Promise<void> {
    const r = this.relay(name);
    await this.ctl(name, ['apply'], { timeout: 120_000 });
    const c = loadConfig(r.configFile);
    const L = layout(c);
    const d = (n: string) => `${r.name}-${n}`;
    await this.world.start({ name: d('sshd'), host: r.host, argv: sshdArgv(L), ready: (x, p) => p.waitLog(x.name, 'Server listening').then(() => undefined) });
    // After killRelay: what a crashed nginx left (see nginxOwnSockets).
    for (const sock of nginxOwnSockets(L)) fs.rmSync(sock, { force: true });
    await this.world.start({ name: d('nginx'), host: r.host, argv: nginxArgv(L), ready: () => this.world.waitTcp('cli', r.address, 80) });
    await this.world.start({ name: d('named'), host: r.host, argv: namedArgv(L), ready: () => this.world.waitDns('cli', r.address, `server.${DOMAIN}`) });
    await this.world.start({ name: d('api'), host: r.host, argv: [process.execPath, CTL, '-c', r.configFile, 'serve'], ready: () => this.world.waitTcp(r.host, '127.0.0.1', c.http.apiPort) });
    await this.world.start({ name: d('watch'), host: r.host, argv: [process.execPath, CTL, '-c', r.configFile, 'watch'], ready: (x, p) => p.waitLog(x.name, 'watching').then(() => undefined) });
  }

  /** Everything of a relay dies at once (its daemons, the pods' sessions on it): what a crashed machine does. */
  killRelay(name: string): number {
    const r = this.relay(name);
    const inode = this.world.topology.inodes.get(this.world.ns(r.host));
    if (inode === undefined) throw new Error(`no namespace for ${r.host}`);
    const pids = pidsInNetns(new Set([inode]));
    for (const pid of pids) signalPid(pid, 'SIGKILL');
    return pids.length;
  }

  /** The relay's link blackholed: every packet in and out dropped (nft in its own namespace), nothing told. */
  async cutRelay(name: string): Promise<void> {
    const r = this.relay(name);
    await this.world.inNs(r.host, ['nft', '-f', '-'], { input: CUT_RULES, timeout: 10_000 });
  }

  async restoreRelay(name: string): Promise<void> {
    const r = this.relay(name);
    await this.world.inNs(r.host, ['nft', 'delete', 'table', 'inet', 'p2m_test_cut'], { timeout: 10_000, allowFailure: true });
  }

  /** The pod's demo service (http 8080, https 8443 with its certificate). */
  async startPodService(host: HostName): Promise<void> {
    const dir = this.podDir(host);
    await this.world.start({
      name: `${host}-service`, host,
      argv: [process.execPath, POD_SERVICE, host, '8080', '8443', path.join(dir, 'tls.key'), path.join(dir, 'fullchain.pem')],
      ready: () => this.world.waitTcp(host, '127.0.0.1', 8080),
    });
  }

  async startPod(host: HostName, extra: readonly string[] = []): Promise<void> {
    await this.world.start({
      name: `${host}-pipe2me`, host,
      argv: [process.execPath, POD, '--dir', this.podDir(host), 'start', '--no-upnp', '--status-interval', '2', ...extra],
      ready: (d, p) => p.waitLog(d.name, 'tunnel up').then(() => undefined),
    });
  }

  async destroy(): Promise<void> {
    await this.world.destroy();
  }
}
