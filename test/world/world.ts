/**
 * A test world: the namespaces of topology.ts, the router's UPnP (upnp.ts), the daemons of the test
 * (processes.ts), a root-owned directory for configs and logs, and a teardown that always leaves the
 * machine as it found it.
 *
 *   const world = await World.create();          // prints "[world p2m-1a2b3c] up in 0.41 s ..."
 *   await world.inNs('pod', ['upnpc', '-u', world.igdUrl, '-i', '-l']);
 *   await world.destroy();                       // prints "[world p2m-1a2b3c] down in 0.3 s ..."
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RunOptions, RunResult } from '../../src/util/exec.js';
import { IGD6_URL, IGD_URL } from './addresses.js';
import { Processes, inNs, waitDns, waitTcp, type Daemon, type DaemonSpec, type ExitInfo } from './processes.js';
import { netnsInodeOfName, pidsInNetns } from './procfs.js';
import {
  SUITE_ENV,
  WORLD_ENV,
  appendJournal,
  currentOwner,
  ensureWorldsDir,
  recordFile,
  removeRecord,
  sweepDeadWorlds,
  worldRoot,
  writeRecord,
  type SweptWorld,
  type WorldRecord,
} from './registry.js';
import type { NsRunner } from './runner.js';
import { Topology, namespaceNames, sweepNamespaces, type HostName } from './topology.js';
import { startRouterUpnp, type RouterProtocols, type RouterUpnp } from './upnp.js';
import { assertUserName, deleteUser, type TrackedUser } from './users.js';
import type { WaitOptions } from './wait.js';

export interface WorldOptions {
  /** Pods behind the router (default 1): "pod", "pod2", ... */
  pods?: number;
  /** Start miniupnpd (and STUN) on the router (default true). */
  upnp?: boolean;
  /** Run the STUN server (default: same as upnp, but off with routerIpv4: false). Without it miniupnpd refuses to forward. */
  stun?: boolean;
  /**
   * What the router's miniupnpd speaks (default both): `{ upnp: false, natpmp: true }` is a router with
   * NAT-PMP only (no IGD at IGD_URL: nothing listens on port 5000), `{ upnp: true, natpmp: false }` one
   * with UPnP IGD only (NAT-PMP requests on UDP 5351 get ICMP port unreachable).
   */
  routerProtocols?: RouterProtocols;
  /**
   * Route the IPv6 prefix 2001:db8:77::/64 to the LAN (default false): router lan0 2001:db8:77::1, pods
   * ::10, ::11 ..., IPv6 forwarded without NAT behind a stateful filter that lets new inbound
   * connections in only through miniupnpd's IGD2 pinholes (`upnpc -6 -u IGD6_URL -A ...`).
   */
  lan6?: boolean;
  /**
   * The router has its IPv4 WAN address 203.0.113.2 and NATs the LAN (default true). false: an IPv6-only
   * uplink, no IPv4 leaves the LAN; with lan6 the pods reach the internet over IPv6 only.
   */
  routerIpv4?: boolean;
  /** Relays (1–3): 2 or 3 add the internet hosts srv2 (srv3) and db (see topology.ts). */
  relays?: number;
  /** How long each daemon may take to get ready during bring-up (default 10 s). */
  readyTimeoutMs?: number;
  /** Time a daemon gets between SIGTERM and SIGKILL at teardown (default 2 s). */
  teardownGraceMs?: number;
  /** Tear the world down on SIGINT/SIGTERM, then die of the signal as usual (default true). */
  handleSignals?: boolean;
  /** Where the up/down lines go (default console.log); `null` silences them. */
  log?: ((line: string) => void) | null;
}

export interface WorldTimings {
  /** World.create() start to ready, ms. */
  upMs: number;
  /** destroy() duration, ms (undefined until destroyed). */
  downMs: number | undefined;
  /** Bring-up phases, ms: sweep, topology, upnp. */
  phases: Record<string, number>;
}

export interface TeardownReport {
  prefix: string;
  downMs: number;
  /** Daemons that ignored SIGTERM for the whole grace and were SIGKILLed. */
  sigkilled: string[];
  /** Processes still in the namespaces after the daemons were stopped (session children, nsd's child...). */
  sweptPids: number;
  errors: string[];
}

export class WorldSetupError extends Error {
  constructor(
    readonly prefix: string,
    cause: unknown,
    readonly teardown: TeardownReport | undefined,
  ) {
    super(`world ${prefix} could not be set up (and was torn down): ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'WorldSetupError';
  }
}

export class WorldTeardownError extends Error {
  constructor(readonly report: TeardownReport) {
    super(`world ${report.prefix} teardown left problems:\n  ${report.errors.join('\n  ')}`);
    this.name = 'WorldTeardownError';
  }
}

type Cleanup = { label: string; fn: () => Promise<void> | void };

export class World implements NsRunner {
  readonly prefix: string;
  /** /run/pipe2me-worlds/<prefix>: root-owned, 0755 all the way up (usable for sshd AuthorizedKeysFile). */
  readonly root: string;
  readonly logDir: string;
  readonly scratchDir: string;
  readonly topology: Topology;
  readonly procs: Processes;
  readonly igdUrl = IGD_URL;
  /** The IGD over IPv6 (lan6 worlds): what `upnpc -6 -u` takes to open pinholes. */
  readonly igd6Url = IGD6_URL;
  readonly timings: WorldTimings = { upMs: 0, downMs: undefined, phases: {} };
  /** Worlds of dead owners that this world's creation swept away. */
  readonly swept: SweptWorld[] = [];
  upnp: RouterUpnp | undefined;

  private readonly record: WorldRecord;
  private readonly users: TrackedUser[] = [];
  private readonly cleanups: Cleanup[] = [];
  private teardown: Promise<TeardownReport> | undefined;
  private finished = false;
  private scratchCounter = 0;

  private constructor(
    prefix: string,
    readonly options: Required<Omit<WorldOptions, 'log'>> & { log: ((line: string) => void) | null },
  ) {
    this.prefix = prefix;
    this.root = worldRoot(prefix);
    this.logDir = path.join(this.root, 'logs');
    this.scratchDir = path.join(this.root, 'scratch');
    this.topology = new Topology({ prefix, pods: options.pods, lan6: options.lan6, routerIpv4: options.routerIpv4, relays: options.relays });
    this.procs = new Processes({
      ns: (h) => this.ns(h),
      logDir: this.logDir,
      markerEnv: this.markerEnv(),
    });
    this.record = {
      prefix,
      ...currentOwner(),
      namespaces: namespaceNames({ prefix, pods: options.pods, relays: options.relays }),
      inodes: [],
      users: [],
      root: this.root,
      suite: process.env[SUITE_ENV] ?? null,
      createdAt: new Date().toISOString(),
    };
  }

  /** Build a world and wait until it is ready. On any failure it is torn down and WorldSetupError thrown. */
  static async create(opts: WorldOptions = {}): Promise<World> {
    const t0 = performance.now();
    if (process.getuid?.() !== 0) throw new Error('a test world needs root (network namespaces, nftables, miniupnpd, userdel)');
    const upnp = opts.upnp ?? true;
    const routerProtocols = { upnp: opts.routerProtocols?.upnp ?? true, natpmp: opts.routerProtocols?.natpmp ?? true };
    if (!routerProtocols.upnp && !routerProtocols.natpmp) throw new Error('routerProtocols: miniupnpd must speak UPnP or NAT-PMP (for neither, use upnp: false)');
    const options = {
      pods: opts.pods ?? 1,
      upnp,
      // An IPv6-only router has no use for STUN (IPv4 only), so no stund unless asked for.
      stun: opts.stun ?? (upnp && (opts.routerIpv4 ?? true)),
      routerProtocols,
      lan6: opts.lan6 ?? false,
      routerIpv4: opts.routerIpv4 ?? true,
      relays: opts.relays ?? 1,
      readyTimeoutMs: opts.readyTimeoutMs ?? 10_000,
      teardownGraceMs: opts.teardownGraceMs ?? 2000,
      handleSignals: opts.handleSignals ?? true,
      log: opts.log === undefined ? (line: string) => console.log(line) : opts.log,
    };
    ensureWorldsDir();
    const swept = await sweepDeadWorlds();
    const tSweep = performance.now();

    const world = new World(uniquePrefix(), options);
    world.swept.push(...swept);
    world.timings.phases['sweep'] = tSweep - t0;
    // Recorded before anything exists, so a crash at any later point leaves a sweepable record.
    writeRecord(world.record);
    appendJournal({ event: 'world', prefix: world.prefix, namespaces: world.record.namespaces, root: world.root, pid: process.pid });
    liveWorlds.add(world);
    if (options.handleSignals) installSignalHandlers();
    installExitHandler();

    try {
      fs.mkdirSync(world.root, { mode: 0o755 });
      fs.chmodSync(world.root, 0o755);
      world.mkdir('logs');
      world.mkdir('scratch', 0o700);

      let t = performance.now();
      try {
        await world.topology.build();
      } finally {
        world.record.inodes = [...world.topology.inodes.values()];
        writeRecord(world.record);
        appendJournal({ event: 'inodes', prefix: world.prefix, inodes: world.record.inodes });
      }
      world.timings.phases['topology'] = performance.now() - t;

      if (options.upnp) {
        t = performance.now();
        world.upnp = await startRouterUpnp(world, {
          stun: options.stun,
          readyTimeoutMs: options.readyTimeoutMs,
          protocols: options.routerProtocols,
          lan6: options.lan6,
          routerIpv4: options.routerIpv4,
        });
        world.timings.phases['upnp'] = performance.now() - t;
      }
    } catch (e) {
      let report: TeardownReport | undefined;
      try {
        report = await world.destroy();
      } catch (te) {
        report = (te as WorldTeardownError).report;
      }
      throw new WorldSetupError(world.prefix, e, report);
    }
    world.timings.upMs = performance.now() - t0;
    const phases = Object.entries(world.timings.phases)
      .map(([k, v]) => `${k} ${Math.round(v)} ms`)
      .join(', ');
    world.say(`[world ${world.prefix}] up in ${Math.round(world.timings.upMs)} ms (${phases})`);
    return world;
  }

  // ------------------------------------------------------------------------------------ addressing

  /** Namespace name of a host, for tools that take one (`ip -n`, `ip netns exec`). */
  ns(host: HostName): string {
    return this.topology.ns(host);
  }

  /** The host's main address (for "rtr": its current public address; throws with routerIpv4: false). */
  address(host: HostName): string {
    return this.topology.address(host);
  }

  /** The host's IPv6 address (internet hosts always, "rtr" its wan0; pods only with lan6). */
  address6(host: HostName): string {
    return this.topology.address6(host);
  }

  get lan6(): boolean {
    return this.topology.lan6;
  }

  get routerIpv4(): boolean {
    return this.topology.routerIpv4;
  }

  get routerPublicAddress(): string {
    return this.topology.routerPublicAddress;
  }

  get pods(): readonly HostName[] {
    return this.topology.pods;
  }

  // ------------------------------------------------------------------------------------- processes

  /** Run a command once inside a host (argv only, timeout default 15 s). */
  inNs(host: HostName, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    return inNs(this.ns(host), argv, { ...opts, env: { ...this.markerEnv(), ...opts.env } });
  }

  /** Start a daemon in a host and wait for its `ready` check. */
  start(spec: DaemonSpec): Promise<Daemon> {
    return this.procs.start(spec);
  }

  stop(name: string): Promise<ExitInfo> {
    return this.procs.stop(name);
  }

  restart(name: string): Promise<Daemon> {
    return this.procs.restart(name);
  }

  waitTcp(from: HostName, address: string, port: number, opts?: WaitOptions): Promise<void> {
    return waitTcp(this, from, address, port, opts);
  }

  waitDns(from: HostName, server: string, name: string, opts?: Parameters<typeof waitDns>[4]): Promise<void> {
    return waitDns(this, from, server, name, opts);
  }

  /** The tail of every daemon's log: print it when a test fails. */
  dumpLogs(lines = 40): string {
    return `world ${this.prefix} (root ${this.root})\n${this.procs.dumpLogs(lines)}`;
  }

  // ------------------------------------------------------------------------------------------ files

  /** A path inside the world's root directory. */
  path(...parts: string[]): string {
    const p = path.resolve(this.root, ...parts);
    if (p !== this.root && !p.startsWith(this.root + path.sep)) throw new Error(`${parts.join('/')} leaves the world's root`);
    return p;
  }

  /** mkdir -p inside the root, with an exact mode (not subject to umask). */
  mkdir(rel: string, mode = 0o755): string {
    const p = this.path(rel);
    fs.mkdirSync(p, { recursive: true, mode });
    fs.chmodSync(p, mode);
    return p;
  }

  /** A fresh, unused file name in the scratch directory. */
  scratchPath(stem: string): string {
    return path.join(this.scratchDir, `${stem}-${++this.scratchCounter}-${randomBytes(3).toString('hex')}`);
  }

  // ------------------------------------------------------------------------------------- teardown

  /** Remove this user at teardown (userdel; with removeHome, userdel -r). */
  trackUser(name: string, opts: { removeHome?: boolean } = {}): void {
    assertUserName(name);
    if (this.users.some((u) => u.name === name)) return;
    const user = { name, removeHome: opts.removeHome ?? false };
    this.users.push(user);
    this.record.users = [...this.users];
    writeRecord(this.record);
    appendJournal({ event: 'user', prefix: this.prefix, name });
  }

  /** Run `fn` at teardown, before daemons are stopped (last registered runs first). */
  onCleanup(label: string, fn: () => Promise<void> | void): void {
    this.cleanups.push({ label, fn });
  }

  get destroyed(): boolean {
    return this.finished;
  }

  /**
   * Tear everything down; every step runs even if an earlier one failed. Safe to call twice (the second
   * call gets the same result) and after a partial set-up. Rejects with WorldTeardownError if something
   * could not be undone.
   */
  destroy(): Promise<TeardownReport> {
    this.teardown ??= this.runTeardown();
    return this.teardown.then((r) => {
      if (r.errors.length > 0) throw new WorldTeardownError(r);
      return r;
    });
  }

  private async runTeardown(): Promise<TeardownReport> {
    const t0 = performance.now();
    const errors: string[] = [];
    const step = async (what: string, fn: () => Promise<void> | void) => {
      try {
        await fn();
      } catch (e) {
        errors.push(`${what}: ${(e as Error).message}`);
      }
    };

    for (const c of [...this.cleanups].reverse()) {
      await step(`cleanup "${c.label}"`, () => withTimeout(Promise.resolve().then(c.fn), 15_000, `cleanup "${c.label}"`));
    }
    let sigkilled: string[] = [];
    await step('stopping daemons', async () => {
      sigkilled = await this.procs.stopAll(this.options.teardownGraceMs);
    });
    let sweptPids = 0;
    await step('sweeping namespaces', async () => {
      const r = await sweepNamespaces(this.record.namespaces, this.options.teardownGraceMs);
      sweptPids = r.signalled;
      errors.push(...r.errors);
    });
    for (const u of [...this.users].reverse()) await step(`removing user ${u.name}`, () => deleteUser(u));
    await step('removing the root directory', () => fs.rmSync(this.root, { recursive: true, force: true }));

    const report: TeardownReport = { prefix: this.prefix, downMs: performance.now() - t0, sigkilled, sweptPids, errors };
    // A failed teardown keeps its record, so the next world (after this process is gone) retries it.
    if (errors.length === 0) removeRecord(this.prefix);
    appendJournal({ event: 'destroyed', prefix: this.prefix, downMs: report.downMs, errors });
    this.timings.downMs = report.downMs;
    this.finished = true;
    liveWorlds.delete(this);
    if (liveWorlds.size === 0) uninstallSignalHandlers();
    const extra = [sigkilled.length ? `SIGKILL: ${sigkilled.join(',')}` : '', errors.length ? `${errors.length} errors` : ''].filter(Boolean).join('; ');
    this.say(`[world ${this.prefix}] down in ${Math.round(report.downMs)} ms${extra ? ` (${extra})` : ''}`);
    return report;
  }

  /**
   * Last resort when the process exits without having awaited destroy(): synchronous, SIGKILL only.
   * Runs from the 'exit' handler, where no promise will ever settle.
   */
  destroySync(): void {
    if (this.finished) return;
    this.finished = true;
    for (const d of this.procs.list()) {
      try {
        process.kill(-d.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    // By name, not by the inodes recorded at creation: those may have been reused by now.
    const inodes = new Set(this.record.namespaces.map(netnsInodeOfName).filter((i): i is number => i !== undefined));
    for (let round = 0; round < 20; round++) {
      const left = pidsInNetns(inodes);
      if (left.length === 0) break;
      for (const pid of left) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
    spawnSync('ip', ['-force', '-batch', '-'], { input: this.record.namespaces.map((n) => `netns del ${n}`).join('\n') + '\n', timeout: 5000, stdio: ['pipe', 'ignore', 'ignore'] });
    for (const u of this.users) spawnSync('userdel', u.removeHome ? ['-r', u.name] : [u.name], { timeout: 5000, stdio: 'ignore' });
    fs.rmSync(this.root, { recursive: true, force: true });
    fs.rmSync(recordFile(this.prefix), { force: true });
    liveWorlds.delete(this);
  }

  private markerEnv(): Record<string, string> {
    return { [WORLD_ENV]: this.prefix };
  }

  private say(line: string): void {
    this.options.log?.(line);
  }
}

function uniquePrefix(): string {
  for (;;) {
    const prefix = `p2m-${randomBytes(3).toString('hex')}`;
    if (!fs.existsSync(recordFile(prefix)) && !fs.existsSync(worldRoot(prefix)) && !fs.existsSync(`/run/netns/${prefix}-hub`)) return prefix;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]);
}

// ------------------------------------------------------------------------ process-wide safety nets

const liveWorlds = new Set<World>();

/** Worlds of this process that are not destroyed yet. */
export function liveWorldsOfThisProcess(): readonly World[] {
  return [...liveWorlds];
}

let signalsInstalled = false;
let signalling = false;

function onSignal(signal: NodeJS.Signals): void {
  if (signalling) {
    // A second Ctrl-C while tearing down: stop waiting, clean up synchronously, die.
    for (const w of liveWorlds) w.destroySync();
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
  }
  signalling = true;
  void Promise.allSettled([...liveWorlds].map((w) => w.destroy())).then(() => {
    uninstallSignalHandlers();
    // Die of the signal as if we had never caught it, so the parent sees the usual status.
    process.kill(process.pid, signal);
  });
}

function installSignalHandlers(): void {
  if (signalsInstalled) return;
  signalsInstalled = true;
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function uninstallSignalHandlers(): void {
  if (!signalsInstalled) return;
  signalsInstalled = false;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}

let exitInstalled = false;
function installExitHandler(): void {
  if (exitInstalled) return;
  exitInstalled = true;
  process.on('exit', () => {
    for (const w of liveWorlds) w.destroySync();
  });
}
