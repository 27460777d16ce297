/**
 * pipe2me on top of the test world: a server configured with `pipe2me-ctl` and its daemons started
 * from the files pipe2me rendered, pods set up with `pipe2me`. Everything is driven through the project's
 * own CLIs, run inside the world's namespaces; the world itself only builds the network and runs
 * processes. Used by the end-to-end tests and by the demo.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADDR, ADDR6, World, type HostName, type WorldOptions } from '../world/index.js';
import { layout, type Layout } from '../../src/render/layout.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { nginxArgv } from '../../src/daemons/nginx.js';
import { sshdArgv } from '../../src/daemons/sshd.js';
import { namedArgv } from '../../src/daemons/bind.js';
import { nsdArgv } from '../../src/daemons/nsd.js';
import { trialUsers } from '../../src/server/init.js';
import { startPostgresIn, type PgServer } from './postgres.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CTL = path.join(ROOT, 'bin', 'pipe2me-ctl.js');
export const POD = path.join(ROOT, 'bin', 'pipe2me.js');
export const POD_SERVICE = path.join(ROOT, 'test', 'stack', 'bin', 'pod-service.mjs');
export const DOMAIN = 'pipe.test';

export interface StackOptions extends WorldOptions {
  dns?: 'bind' | 'nsd';
  /** Run a secondary nameserver on ns2 (the other DNS daemon than the primary's, to show they interoperate). */
  secondary?: boolean;
  /** Extra top-level keys appended to pipe2me.yml after init. */
  configExtra?: string;
  /** probe.flap_window (default 2m). */
  flapWindow?: string;
  /** The public port range (default 20000-29999). */
  portRange?: [number, number];
  /** probe.prompt: the API probes a pod as soon as it reports mappings (default true, as shipped). */
  promptProbe?: boolean;
  /** Give the server its IPv6 address too (server.ipv6: sshd, nginx and the nameserver listen on it). */
  ipv6?: boolean;
  /**
   * The state store: SQLite (the default) or PostgreSQL run in the server's namespace (127.0.0.1:5432,
   * password auth), optionally with a streaming standby on 127.0.0.1:5433 listed in state.url too.
   * PIPE2ME_TEST_STORE=postgres makes PostgreSQL the default for every stack.
   */
  store?: 'sqlite' | 'postgres' | 'postgres+standby';
}

export interface CliResult<T = unknown> {
  exitCode: number;
  stdout: string;
  stderr: string;
  json: T;
}

export class CliError extends Error {
  constructor(readonly argv: readonly string[], readonly result: { exitCode: number; stdout: string; stderr: string }) {
    super(`${argv.join(' ')} exited ${result.exitCode}:\n${result.stderr.trim()}\n${result.stdout.trim()}`.slice(0, 4000));
  }
}

/** Runs one of the project's CLIs in a host's namespace; its --json output parsed. Throws CliError on a non-zero exit unless allowFailure. */
export async function runCli<T>(world: World, host: HostName, argv: string[], o: { allowFailure?: boolean; timeout?: number }): Promise<CliResult<T>> {
  const r = await world.inNs(host, argv, { allowFailure: true, timeout: o.timeout ?? 60_000 });
  let json: unknown = undefined;
  try {
    json = r.stdout.trim() ? JSON.parse(r.stdout) : undefined;
  } catch {
    json = undefined;
  }
  const res = { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, json: json as T };
  if (r.exitCode !== 0 && !o.allowFailure) throw new CliError(argv.slice(1), res);
  return res;
}

export class Stack {
  readonly configFile: string;
  readonly serverRoot: string;
  config!: Config;
  layout!: Layout;

  private constructor(readonly world: World, readonly opts: StackOptions) {
    this.serverRoot = world.path('server');
    this.configFile = world.path('server', 'pipe2me.yml');
  }

  /** The tunnel user: `init --root` gives every trial users of its own (users are global on a machine, worlds are not). */
  get tunnelUser(): string {
    return this.config.ssh.tunnelUser;
  }

  static async create(opts: StackOptions = {}): Promise<Stack> {
    const world = await World.create(opts);
    const stack = new Stack(world, opts);
    try {
      stack.resolveVia('pod', ADDR.server);
      stack.resolveVia('cli', ADDR.server);
      for (let i = 2; i <= (opts.pods ?? 1); i++) stack.resolveVia(`pod${i}` as HostName, ADDR.server);
    } catch (e) {
      await world.destroy().catch(() => {});
      throw e;
    }
    return stack;
  }

  /**
   * `ip netns exec` bind-mounts /etc/netns/<ns>/resolv.conf over /etc/resolv.conf: the pod and the client
   * then resolve names through pipe2me's own nameserver, as they would on the internet after delegation.
   */
  resolveVia(host: HostName, nameserver: string): void {
    const dir = path.join('/etc/netns', this.world.ns(host));
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'resolv.conf'), `nameserver ${nameserver}\noptions timeout:1 attempts:2\n`);
    this.world.onCleanup(`resolv.conf of ${host}`, () => fs.rmSync(dir, { recursive: true, force: true }));
  }

  /** Runs pipe2me-ctl in the server's namespace. Throws CliError on a non-zero exit unless allowFailure. */
  async ctl<T = unknown>(args: readonly string[], o: { allowFailure?: boolean; timeout?: number; json?: boolean } = {}): Promise<CliResult<T>> {
    const argv = [process.execPath, CTL, '-c', this.configFile, ...(o.json === false ? [] : ['--json']), ...args];
    return this.exec<T>('srv', argv, o);
  }

  /** Runs pipe2me on a pod host with that pod's tunnel-set directory. */
  async pod<T = unknown>(args: readonly string[], o: { host?: HostName; allowFailure?: boolean; timeout?: number; json?: boolean; dir?: string } = {}): Promise<CliResult<T>> {
    const host = o.host ?? 'pod';
    const argv = [process.execPath, POD, '--dir', o.dir ?? this.podDir(host), ...(o.json === false ? [] : ['--json']), ...args];
    return this.exec<T>(host, argv, o);
  }

  podDir(host: HostName = 'pod'): string {
    return this.world.path('pods', host);
  }

  private exec<T>(host: HostName, argv: string[], o: { allowFailure?: boolean; timeout?: number }): Promise<CliResult<T>> {
    return runCli<T>(this.world, host, argv, o);
  }

  /** `pipe2me-ctl init` with a test configuration, then the daemons started from what apply rendered. */
  async startServer(o: { configExtra?: string } = {}): Promise<void> {
    const dns = this.opts.dns ?? 'bind';
    // Tracked before init creates them, so that a failing init leaves no user behind either.
    const users = trialUsers(this.serverRoot);
    this.world.trackUser(users.tunnel);
    this.world.trackUser(users.keys);
    const store = this.opts.store ?? (process.env.PIPE2ME_TEST_STORE === 'postgres' ? 'postgres' : 'sqlite');
    // PostgreSQL first, so that init makes the configuration with it (--state-url) and migrates it.
    const state = store === 'sqlite' ? [] : await this.startPostgres(store === 'postgres+standby');
    if (store !== 'sqlite') console.log(`[stack] the state store is PostgreSQL (${this.pg.map((p) => `${p.host}:${p.port}`).join(', ')})`);
    await this.ctl(['init', '--domain', DOMAIN, '--ipv4', ADDR.server, '--root', this.serverRoot, '--dns', dns, '--ttl', '30',
      ...(this.opts.portRange ? ['--ports', this.opts.portRange.join('-')] : []),
      ...(this.opts.ipv6 ? ['--ipv6', ADDR6.server] : []),
      ...(this.opts.secondary ? ['--secondary', `ns2.${DOMAIN}=${ADDR.ns2}`] : []), ...state], { timeout: 120_000 });
    // The test config shortens the probe.
    const text = fs.readFileSync(this.configFile, 'utf8') + `\nprobe:\n  timeout_ms: 1500\n  flap_window: ${this.opts.flapWindow ?? '2m'}\n  prompt: ${this.opts.promptProbe ?? true}\n` + (this.opts.configExtra ?? '') + (o.configExtra ?? '');
    fs.writeFileSync(this.configFile, text);
    await this.ctl(['init'], { timeout: 120_000 });
    this.config = loadConfig(this.configFile);
    this.layout = layout(this.config);
    await this.ctl(['apply'], { timeout: 120_000 });

    const L = this.layout;
    await this.world.start({ name: 'sshd', host: 'srv', argv: sshdArgv(L), ready: (d, p) => p.waitLog(d.name, 'Server listening').then(() => undefined) });
    await this.world.start({ name: 'nginx', host: 'srv', argv: nginxArgv(L), ready: () => this.world.waitTcp('cli', ADDR.server, 80) });
    const dnsArgv = dns === 'bind' ? namedArgv(L) : nsdArgv(L);
    await this.world.start({ name: dns === 'bind' ? 'named' : 'nsd', host: 'srv', argv: dnsArgv, ready: () => this.world.waitDns('cli', ADDR.server, `server.${DOMAIN}`) });
    // The secondary's first transfer before anything can change the zone: a primary reloading during that AXFR
    // (the API's first ACME order renders a TXT record at once) resets it, and a BIND secondary that never had
    // the zone waits its own retry time before it asks again (longer than the 15 s the test waits: seen in CI).
    if (this.opts.secondary) await this.startSecondary();
    await this.world.start({
      name: 'api', host: 'srv', argv: [process.execPath, CTL, '-c', this.configFile, 'serve'],
      ready: () => this.world.waitTcp('srv', '127.0.0.1', this.config.http.apiPort),
    });
  }

  /** The PostgreSQL servers of the state store (when the stack uses PostgreSQL): the primary first. */
  pg: PgServer[] = [];

  /** PostgreSQL for the state store in the server's namespace, and init's flags that point at it. */
  private async startPostgres(standby: boolean): Promise<string[]> {
    const password = randomBytes(12).toString('hex');
    const primary = await startPostgresIn(this.world, { host: 'srv', name: 'postgres', address: '127.0.0.1', port: 5432, password });
    this.pg = [primary];
    if (standby) this.pg.push(await startPostgresIn(this.world, { host: 'srv', name: 'postgres-standby', address: '127.0.0.1', port: 5433, standbyOf: primary }));
    const passwordFile = path.join(this.serverRoot, 'etc', 'pipe2me', 'db.password');
    fs.mkdirSync(path.dirname(passwordFile), { recursive: true });
    fs.writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
    const hosts = this.pg.map((p) => `127.0.0.1:${p.port}`).join(',');
    const url = `postgres://${primary.user}@${hosts}/${primary.database}?connect_timeout=2${standby ? '&target_session_attrs=read-write' : ''}`;
    return ['--state-url', url, '--state-password-file', passwordFile];
  }

  /** A secondary on ns2 that learns the zone by NOTIFY + AXFR from the primary. */
  async startSecondary(): Promise<void> {
    const dir = this.world.mkdir('ns2', 0o755);
    const primaryIsBind = (this.opts.dns ?? 'bind') === 'bind';
    // The other daemon than the primary's: BIND primary → NSD secondary, NSD primary → BIND secondary.
    const r = await this.ctl(['secondary-config', '--daemon', primaryIsBind ? 'nsd' : 'bind', '--dir', dir, '--listen', ADDR.ns2], { json: false });
    fs.writeFileSync(path.join(dir, primaryIsBind ? 'nsd.conf' : 'named.conf'), r.stdout);
    const argv = primaryIsBind ? ['/usr/sbin/nsd', '-d', '-c', path.join(dir, 'nsd.conf')] : ['/usr/sbin/named', '-g', '-c', path.join(dir, 'named.conf')];
    await this.world.start({ name: 'ns2', host: 'ns2', argv, ready: () => this.world.waitDns('cli', ADDR.ns2, `server.${DOMAIN}`, { timeoutMs: 15_000 } as never) });
  }

  /** The pod's demo services: http on 8080, https on 8443 with the pod's certificate (bound to every address). */
  async startPodService(host: HostName = 'pod', ports = { http: 8080, https: 8443 }, name = host): Promise<void> {
    const dir = this.podDir(host);
    await this.world.start({
      name: `${host}-service`, host,
      argv: [process.execPath, POD_SERVICE, name, String(ports.http), String(ports.https), path.join(dir, 'tls.key'), path.join(dir, 'fullchain.pem')],
      ready: () => this.world.waitTcp(host, '127.0.0.1', ports.http),
    });
  }

  /** `pipe2me start` on a pod, as a daemon of the world; ready when the server's session holder said hello. */
  async startPod(host: HostName = 'pod', extra: readonly string[] = []): Promise<void> {
    await this.world.start({
      name: `${host}-pipe2me`, host,
      argv: [process.execPath, POD, '--dir', this.podDir(host), 'start', '--igd', this.world.igdUrl, '--upnp-lease', '120', '--status-interval', '2', ...extra],
      ready: (d, p) => p.waitLog(d.name, 'tunnel up').then(() => undefined),
    });
  }

  /** The CA certificate clients trust (a copy the client namespace can read). */
  caFile(): string {
    return this.layout.caCertFile;
  }

  async destroy(): Promise<void> {
    await this.world.destroy();
  }
}
