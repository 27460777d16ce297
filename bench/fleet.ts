/**
 * The tunnel sshd with a fleet: what one login costs as the key index grows (1, 10,000, 100,000 keys),
 * where sshd's CPU per login goes (the key exchange, the key lookup, the session holder), what a live pod
 * costs the server (processes, PSS, fds at 100, 1,000, 2,000 pods, then 5,000 held at once), and a restart
 * of the server's sshd under 1,000 connected pods that reconnect with the real policy (autossh running
 * pipe2me's ssh wrapper with its jittered backoff).
 *
 * Simulated pods are real ssh clients with the pod's own options (tunnelArgv of src/pod/tunnel.ts; plus a
 * cheaper key exchange, see POD_KEX, and at nice 10, because they share the server's cores here), each with
 * its own registered key and its own ports, all in the pod's namespace. The pods that run the real reconnect
 * policy come each from an address of its own (SPREAD_CIDR, routed by the router without NAT, as a fleet spread
 * over the internet is); the restart is then run again with the same pods behind the NAT router, one source
 * address to sshd, as many pods behind one carrier-grade NAT address would be. The others are behind the NAT.
 *
 *   npx vite-node bench/all.ts fleet               # about 13 minutes; BENCH_QUICK=1: small sizes, about 1 minute
 *   BENCH_FLEET_PARTS=storm BENCH_FLEET_LOGS=/tmp/x npx vite-node bench/all.ts fleet   # one part, logs kept
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { WORLD_ENV, listPids, netnsInodeOfName, pidsInNetns, waitFor, type World } from '../test/world/index.js';
import { DOMAIN, Stack } from '../test/stack/stack.js';
import { randomEd25519Key } from '../test/stack/seed.js';
import { storeTargetOf } from '../src/server/context.js';
import { seedRows, type SeedRows } from './lib/seed.js';
import { newId } from '../src/util/secrets.js';
import { keyIndexFile } from '../src/ssh/key-index.js';
import { PodFiles, type PodState } from '../src/pod/files.js';
import { sshWrapperScript, tunnelArgv, tunnelEnv } from '../src/pod/tunnel.js';
import { run } from '../src/util/exec.js';
import { statFields } from '../src/daemons/process.js';
import { loadAverage, QUICK, mr, progress, ratio, standalone, stats, table, type BenchSection, type Stats } from './lib/report.js';
import { benchHelperArgv, epochNow, sleep } from './lib/kit.js';
import { newPodKey } from './lib/pod-key.js';
import { bindArgs, sourcesFromEnv, sourcesText, SpreadSources, SPREAD_CIDR, type Sources } from './lib/spread.js';
import { CLOSED_BEFORE_AUTH, sshSaid } from './lib/ssh-said.js';

// ------------------------------------------------------------------------------------------ sizes

const INDEX_LEVELS = [1, 10_000, 100_000];
/** Login CPU comes in 10 ms ticks: it is read per batch of logins, and the batches rotate between configurations. */
const BATCHES = QUICK ? 1 : 4;
const PER_BATCH = QUICK ? 2 : 5;
const LOOKUPS = QUICK ? 10 : 100;
/** Pods connected before the restart: they run the pods' real reconnect policy, and are the first fleet steps. */
const STORM = QUICK ? 50 : 1000;
const HOLD = QUICK ? 100 : 5000;
/** Pods starting at once during a bring-up: below PerSourceMaxStartups (64), since most of them are one source. */
const BRINGUP_CONCURRENCY = 32;
const IDLE_WINDOW_MS = QUICK ? 3000 : 10_000;
const STORM_LIMIT_MS = QUICK ? 60_000 : 150_000;
/** autossh counts an ssh that died within 10 s of starting as a quick death: the storm starts from settled pods. */
const STORM_SETTLE_MS = 11_000;
/**
 * The simulated fleet's key exchange. The pods' own (OpenSSH's default, sntrup761) costs each client ~140 ms
 * of CPU per login against ~22 ms for curve25519 (part 2), and here the clients share the server's 2 cores: with
 * it, 1,000 reconnecting clients alone need ~140 core-seconds. BENCH_FLEET_POD_KEX=default runs them with the
 * pods' default anyway.
 */
const POD_KEX = process.env['BENCH_FLEET_POD_KEX'] ?? 'curve25519-sha256';
const POD_KEX_ARGS = POD_KEX === 'default' ? [] : ['-o', `KexAlgorithms=${POD_KEX}`];
const POD_KEX_TEXT = POD_KEX === 'default' ? "OpenSSH's default key exchange (sntrup761)" : `\`KexAlgorithms=${POD_KEX}\``;
/** The simulated pods run at this niceness, so that the server's sshd (on its own cores in real life) gets the CPU first. */
const POD_NICE = 10;
const T0 = performance.now();
const say = (m: string) => progress(`[${((performance.now() - T0) / 1000).toFixed(0).padStart(4)} s] ${m}`);
/** Stop adding pods when the machine gets close to its memory or pid limits (it is shared). */
const MIN_MEM_AVAILABLE_KIB = 3 * 1024 * 1024;
const PID_HEADROOM = 3000;
const SERVICES = [
  { protocol: 'http' as const, localPort: 8080 },
  { protocol: 'https' as const, localPort: 8443 },
  { protocol: 'tcp' as const, localPort: 7007 },
];
/** BENCH_FLEET_PARTS=logins,memory,storm (the default: all) runs only some parts, to look into one. */
const PARTS = new Set((process.env['BENCH_FLEET_PARTS'] ?? 'logins,memory,storm').split(','));
/** Where the restarting pods come from (bench/lib/spread.ts); BENCH_FLEET_SOURCES=own or =one runs only one of the two restarts. */
const SOURCES = sourcesFromEnv('BENCH_FLEET_SOURCES');
const KEX_SNTRUP = 'sntrup761x25519-sha512@openssh.com';
const KEX_CURVE = 'curve25519-sha256';

// ------------------------------------------------------------------------------------------- keys

// ----------------------------------------------------------------------------------------- /proc


/** utime + stime (+ cutime + cstime with children) in 10 ms ticks. */
function cpuTicksOf(pid: number, withChildren: boolean): number {
  const f = statFields(pid);
  if (!f) return NaN;
  return Number(f[11]) + Number(f[12]) + (withChildren ? Number(f[13]) + Number(f[14]) : 0);
}

/** Time on CPU so far, ns (the first field of /proc/PID/schedstat), kept across exec. */
function schedstatMs(pid: number): number {
  try {
    return Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return NaN;
  }
}

function comm(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

function childrenOf(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Every descendant of root (from one scan of /proc: parent links), not root itself. */
function descendants(root: number): number[] {
  const kids = new Map<number, number[]>();
  for (const pid of listPids()) {
    const f = statFields(pid);
    if (!f || f[0] === 'Z') continue;
    const ppid = Number(f[1]);
    let list = kids.get(ppid);
    if (!list) kids.set(ppid, (list = []));
    list.push(pid);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length) {
    for (const c of kids.get(queue.pop()!) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

function pssKiB(pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

function fdCount(pid: number): number {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

/** Runnable tasks on the whole machine right now (the 4th field of /proc/loadavg, "running/total", minus this reader). */
function runnableNow(): number {
  return Number(fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[3]!.split('/')[0]) - 1;
}

function memAvailableKiB(): number {
  return Number(/^MemAvailable:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0);
}

const PID_MAX = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8'));

// ---------------------------------------------------------------------------------------- the bench

interface SimPod {
  index: number;
  name: string;
  files: PodFiles;
  state: PodState;
}

interface LoginSample {
  wallMs: number;
  /** The ssh client's CPU until the session line (schedstat). */
  clientCpuMs: number;
  /** The session holder's CPU (sh, the script, then cat: one pid), read once it is in cat. */
  holderCpuMs: number | null;
}

interface LoginConfig {
  key: string;
  label: string;
  level: number;
  extra: string[];
  /** session: until the session holder's line, as the pod runs; forward-only: ssh -N, until every forward is confirmed. */
  mode: 'session' | 'forward-only';
}

interface LookupTimes {
  first: number[];
  second: number[];
  floor: number[];
  cpuMs: { first: number; second: number; floor: number };
}

interface FleetEvent {
  kind: 'online' | 'stderr' | 'exit';
  index: number;
  at: number;
  rest: string;
}

interface ServerSnapshot {
  pods: number;
  procs: number;
  pssKiB: number;
  fds: number;
  roles: Record<'listener' | 'monitor' | 'child' | 'holder' | 'other', { n: number; pss: number[]; fds: number[] }>;
}

class Fleet {
  readonly world: World;
  realPod!: SimPod;
  realLine = '';
  pods: SimPod[] = [];
  fleetDir = '';
  private fleetNames: string[] = [];

  constructor(readonly stack: Stack) {
    this.world = stack.world;
  }

  get L() {
    return this.stack.layout;
  }

  listener(): number {
    return this.world.procs.get('sshd').pid;
  }

  async build(): Promise<void> {
    const { stack } = this;
    say('fleet: pipe2me server (ports 20000-59999) and one real pod (pipe2me setup, http + https + tcp)');
    await stack.startServer();
    const t = (await stack.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--label', 'fleet', '--max-ports', '3'])).json;
    await stack.pod(['setup', '--server', `https://server.${DOMAIN}`, '--token', t.token, '--ca-pin', t.ca_pin, '--protocols', 'http,https,tcp', '--ports', '8080,8443,7007'], { timeout: 120_000 });
    const files = new PodFiles(stack.podDir('pod'));
    const state = files.read();
    this.realPod = { index: -1, name: state.name, files, state };
    const fp = (await this.world.inNs('pod', ['ssh-keygen', '-l', '-E', 'sha256', '-f', files.sshPub], { timeout: 10_000 })).stdout.split(/\s+/)[1]!;
    this.realLine = fs.readFileSync(path.join(this.L.sshd.keysDir, keyIndexFile(fp)), 'utf8').trim();
    this.realFingerprint = fp;
    const n = fs.readdirSync(this.L.sshd.keysDir).filter((f) => !f.startsWith('.')).length;
    if (n !== 1) throw new Error(`the key index should hold the real pod's key only, it holds ${n}`);
  }

  realFingerprint = '';

  /** The pod's own tunnel argv, as `ssh` (autossh's `-M 0` dropped), with extra options before the destination. */
  sshArgv(pod: SimPod, extra: readonly string[] = []): string[] {
    const a = tunnelArgv(pod.state, pod.files);
    if (a[0] !== 'autossh' || a[1] !== '-M' || a[2] !== '0') throw new Error(`tunnelArgv no longer starts with autossh -M 0: ${a.slice(0, 3).join(' ')}`);
    const dest = a[a.length - 1]!;
    return ['ssh', ...a.slice(3, -1), ...extra, dest];
  }

  // -------------------------------------------------------------------------------- 1 + 2: logins

  /**
   * One login from the pod's namespace. session: until the session holder's "online" line (then stdin is
   * closed and ssh ends); forward-only (`-N`, client LogLevel DEBUG1): until every forward is confirmed.
   */
  login(argv: readonly string[], mode: LoginConfig['mode'], forwards: number): Promise<LoginSample> {
    return new Promise((resolve, reject) => {
      const t0 = performance.now();
      const child = spawn('ip', ['netns', 'exec', this.world.ns('pod'), ...argv], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, [WORLD_ENV]: this.world.prefix } });
      let done = false;
      let confirmed = 0;
      let stderr = '';
      const timer = setTimeout(() => finish(new Error(`login did not complete within 20 s: ${stderr.slice(-800)}`)), 20_000);
      const finish = (e: Error | null, s?: LoginSample) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        const exited = new Promise<void>((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())));
        if (mode === 'session') child.stdin!.end();
        else child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
        void exited.then(() => {
          clearTimeout(killer);
          if (e) reject(e);
          else resolve(s!);
        });
      };
      const up = async () => {
        const wallMs = performance.now() - t0;
        const clientCpuMs = schedstatMs(child.pid!);
        let holderCpuMs: number | null = null;
        if (mode === 'session') {
          // The holder is the one cat below the listener (logins run one at a time); wait until it has exec'd cat.
          const deadline = performance.now() + 500;
          while (performance.now() < deadline) {
            const cat = descendants(this.listener()).find((p) => comm(p) === 'cat');
            if (cat !== undefined) {
              holderCpuMs = schedstatMs(cat);
              break;
            }
            await sleep(2);
          }
        }
        finish(null, { wallMs, clientCpuMs, holderCpuMs });
      };
      child.on('error', (e) => finish(e));
      child.stdin!.on('error', () => {});
      readline.createInterface({ input: child.stdout! }).on('line', (line) => {
        if (mode === 'session' && /^pipe2me-session: online /.test(line)) void up();
      });
      readline.createInterface({ input: child.stderr! }).on('line', (line) => {
        stderr += line + '\n';
        if (mode === 'forward-only' && /remote forward success for: listen/.test(line) && ++confirmed === forwards) void up();
      });
      child.on('exit', (code) => {
        if (!done) finish(new Error(`ssh exited (${code}) before the login completed:\n${stderr.slice(-1200)}`));
      });
    });
  }

  /** Until the listener has reaped every process of the last connection (its CPU is then in cutime/cstime). */
  async reaped(): Promise<void> {
    await waitFor('the connection\'s sshd processes to be reaped', () => childrenOf(this.listener()).length === 0, { timeoutMs: 10_000, intervalMs: 5 });
  }

  /** Fills keys directories with 10,000 and 100,000 keys (the real pod's file plus generated ones in the index's exact format). */
  fillIndexes(levels: readonly number[]): Map<number, string> {
    const dirs = new Map<number, string>();
    const real = this.realLine;
    const realName = this.realPod.name;
    const realKey = /ssh-ed25519 (\S+)/.exec(real)![1]!;
    const realFile = keyIndexFile(this.realFingerprint);
    // The largest index is written; each smaller one is hard links to the first of its files (same content, fewer writes).
    const sizes = levels.filter((l) => l > 1).sort((a, b) => b - a);
    const names: string[] = [];
    for (const [n, level] of sizes.entries()) {
      const dir = `${this.L.sshd.keysDir}.${level}`;
      fs.mkdirSync(dir, { mode: 0o755 });
      fs.chmodSync(dir, 0o755);
      fs.copyFileSync(path.join(this.L.sshd.keysDir, realFile), path.join(dir, realFile));
      if (n === 0) {
        for (let i = 1; i < level; i++) {
          const k = randomEd25519Key();
          const name = `filler-${i}`;
          let p = 0;
          const line = real
            .split(realName).join(name)
            .replace(realKey, k.publicKey.split(' ')[1]!)
            .replace(/permitlisten="\d+"/g, () => `permitlisten="${20000 + ((i * 3 + p++) % 40000)}"`);
          const file = keyIndexFile(k.fingerprint);
          fs.writeFileSync(path.join(dir, file), line + '\n', { mode: 0o644 });
          names.push(file);
        }
      } else {
        const from = dirs.get(sizes[0]!)!;
        for (const file of names.slice(0, level - 1)) fs.linkSync(path.join(from, file), path.join(dir, file));
      }
      dirs.set(level, dir);
    }
    for (const [level, dir] of dirs) {
      const n = fs.readdirSync(dir).length;
      if (n !== level) throw new Error(`${dir} holds ${n} keys, not ${level}`);
    }
    return dirs;
  }

  async keyLookupTimes(): Promise<LookupTimes> {
    const id = (flag: string) => this.world.inNs('srv', ['id', flag, this.stack.config.ssh.keysUser], { timeout: 5000 }).then((r) => r.stdout.trim());
    const [uid, gid] = [await id('-u'), await id('-g')];
    const r = await this.world.inNs('srv', benchHelperArgv('key-lookup-timer.mjs', [
      this.L.sshd.keysCommand, uid, gid, this.stack.tunnelUser, this.realFingerprint, path.join(this.L.connsDir, this.realPod.name), LOOKUPS,
    ]), { timeout: 120_000 });
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as LookupTimes;
  }

  // ---------------------------------------------------------------------------- 3 + 4: the fleet

  /** Registers `count` simulated pods straight in the state (a subdomain with 3 ports and its key each), then one apply. */
  async seedFleet(count: number): Promise<void> {
    const { stack } = this;
    this.fleetDir = this.world.mkdir('fleet', 0o700);
    const knownHosts = fs.readFileSync(this.realPod.files.knownHosts, 'utf8');
    const pods: SimPod[] = [];
    await seedRows(storeTargetOf(stack.config), (maxPort) => {
      const rows: SeedRows = { subdomains: [], ports: [], ssh_keys: [] };
      let p = (maxPort ?? stack.config.ports.first - 1) + 1;
      for (let i = 0; i < count; i++) {
        const id = newId();
        const name = `fleet-${i}`;
        const fqdn = `${name}.${stack.config.domain}`;
        rows.subdomains.push({ id, name, fqdn, status: 'active', created_at: 1 });
        const services = SERVICES.map((s, pos) => {
          const n = p++;
          rows.ports.push({ port: n, subdomain_id: id, protocol: s.protocol, position: pos });
          return { protocol: s.protocol, port: n, localHost: '127.0.0.1', localPort: s.localPort };
        });
        const k = newPodKey(`fleet ${name}`);
        rows.ssh_keys.push({ subdomain_id: id, algorithm: 'ssh-ed25519', public_key: k.publicKey, fingerprint: k.fingerprint, bits: 256, added_at: 1 });
        const dir = path.join(this.fleetDir, `p${i}`);
        fs.mkdirSync(dir, { mode: 0o700 });
        const files = new PodFiles(dir);
        fs.writeFileSync(files.sshKey, k.privateKey, { mode: 0o600 });
        fs.writeFileSync(files.sshPub, `${k.publicKey} fleet ${name}\n`, { mode: 0o644 });
        fs.writeFileSync(files.knownHosts, knownHosts, { mode: 0o644 });
        pods.push({ index: i, name, files, state: { ...this.realPod.state, id, name, fqdn, services } });
      }
      return rows;
    });
    // The generated private key must be one ssh reads: ssh-keygen -y gives back its public key.
    const back = (await this.world.inNs('pod', ['ssh-keygen', '-y', '-f', pods[0]!.files.sshKey], { timeout: 10_000 })).stdout.trim().split(' ').slice(0, 2).join(' ');
    const want = fs.readFileSync(pods[0]!.files.sshPub, 'utf8').trim().split(' ').slice(0, 2).join(' ');
    if (back !== want) throw new Error(`ssh-keygen reads the generated key as ${back}, not ${want}`);
    await stack.ctl(['apply'], { timeout: 600_000 });
    const indexed = fs.readdirSync(this.L.sshd.keysDir).filter((f) => !f.startsWith('.')).length;
    if (indexed !== count + 1) throw new Error(`the key index holds ${indexed} keys after apply, not ${count + 1}`);
    this.pods = pods;
  }

  /** Starts bench/bin/fleet-pods.mjs in the pod's namespace with these pods. */
  async startFleet(name: string, pods: readonly SimPod[], mode: 'ssh' | 'autossh', extra0: readonly string[] = [], sources: Sources = 'one'): Promise<void> {
    const manifest = this.world.path(`${name}.json`);
    if (sources === 'own') await (this.spread ??= new SpreadSources(this.world, ['srv'])).add(pods.map((p) => p.index));
    const entries = pods.map((p) => {
      const extra = sources === 'own' ? [...extra0, ...bindArgs(p.index)] : extra0;
      // The pods run niced (nice execs them: same pid); the helper itself does not, so that its timestamps stay close to the events.
      const nice = ['nice', '-n', String(POD_NICE)];
      if (mode === 'ssh') return { index: p.index, argv: [...nice, ...this.sshArgv(p, extra)], state: null };
      // The real reconnect policy: autossh with pipe2me's ssh wrapper (its backoff state) and pipe2me's environment.
      fs.writeFileSync(p.files.sshWrapper, sshWrapperScript(p.files.backoffState, '/usr/bin/ssh'), { mode: 0o700 });
      fs.writeFileSync(p.files.autosshLog, '', { mode: 0o644 });
      const a = tunnelArgv(p.state, p.files);
      return { index: p.index, argv: [...nice, ...a.slice(0, -1), ...extra, a[a.length - 1]!], env: tunnelEnv(p.files.autosshLog, p.files.sshWrapper), state: p.files.backoffState };
    });
    fs.writeFileSync(manifest, JSON.stringify({ pods: entries }));
    this.fleetNames.push(name);
    this.startedAt.set(name, epochNow());
    await this.world.start({ name, host: 'pod', argv: benchHelperArgv('fleet-pods.mjs', [manifest, BRINGUP_CONCURRENCY]), ready: (d, p) => p.waitLog(d.name, 'started') });
  }

  private spread: SpreadSources | undefined;
  /** When each fleet was started (epoch ms). */
  readonly startedAt = new Map<string, number>();

  /** Starts the restart's pods again (every other fleet stopped first), from these sources: the fleet's name. */
  async restartStormPods(sources: Sources): Promise<string> {
    await this.stopFleets([], 0);
    const name = `storm-${sources}`;
    const pods = this.pods.slice(0, STORM);
    say(`fleet: starting the ${STORM} autossh pods again, ${sourcesText(sources)}`);
    await this.startFleet(name, pods, 'autossh', POD_KEX_ARGS, sources);
    return name;
  }

  events(names: string | readonly string[]): FleetEvent[] {
    const out: FleetEvent[] = [];
    for (const line of [names].flat().flatMap((n) => this.world.procs.log(n).split('\n'))) {
      const m = /^(online|stderr|exit) (\d+) (\d+) ?(.*)$/.exec(line);
      if (m) out.push({ kind: m[1] as FleetEvent['kind'], index: Number(m[2]), at: Number(m[3]), rest: m[4] ?? '' });
    }
    return out;
  }

  /**
   * Waits until every pod of a fleet has been online (after `since`), or the limit, or the machine's memory or
   * pid headroom runs out. Returns who came online and when.
   */
  async waitOnline(names: string | readonly string[], indices: readonly number[], o: { since: number; limitMs: number; label: string; guard?: boolean }): Promise<{ online: Map<number, FleetEvent>; exited: number; stopped: string | null }> {
    const want = new Set(indices);
    let last = 0;
    for (;;) {
      const online = new Map<number, FleetEvent>();
      const exitedSet = new Set<number>();
      for (const e of this.events(names)) {
        if (!want.has(e.index) || e.at < o.since) continue;
        if (e.kind === 'online' && !online.has(e.index)) online.set(e.index, e);
        if (e.kind === 'exit') exitedSet.add(e.index);
      }
      const exited = [...exitedSet].filter((i) => !online.has(i)).length;
      const elapsed = epochNow() - o.since;
      let stopped: string | null = null;
      if (online.size + exited >= want.size) return { online, exited, stopped };
      if (elapsed > o.limitMs) stopped = `the ${(o.limitMs / 1000).toFixed(0)} s limit`;
      if (o.guard) {
        const mem = memAvailableKiB();
        if (mem < MIN_MEM_AVAILABLE_KIB) stopped = `MemAvailable fell to ${(mem / 1024 / 1024).toFixed(1)} GiB`;
        if (listPids().length > PID_MAX - PID_HEADROOM) stopped = `${listPids().length} processes of pid_max ${PID_MAX}`;
      }
      for (const n of [names].flat()) if (!this.world.procs.get(n).running) stopped = `${n} exited`;
      if (stopped) return { online, exited, stopped };
      if (performance.now() - last > 5000) {
        last = performance.now();
        say(`  ${o.label}: ${online.size}/${want.size} online${exited ? `, ${exited} exited` : ''} after ${(elapsed / 1000).toFixed(0)} s (load ${loadAverage()}, MemAvailable ${(memAvailableKiB() / 1024 / 1024).toFixed(1)} GiB)`);
      }
      await sleep(500);
    }
  }

  /** Stops fleets (all but `keep`) and waits until the server has ended their sessions (EOF when a pod's ssh is gone). */
  async stopFleets(keep: readonly string[] = [], keepPods = 0): Promise<void> {
    for (const name of [...this.fleetNames]) {
      if (keep.includes(name)) continue;
      this.fleetNames.splice(this.fleetNames.indexOf(name), 1);
      if (this.world.procs.get(name).running) await this.world.stop(name);
    }
    await waitFor('the server\'s sessions to end', () => descendants(this.listener()).length <= 3 * keepPods, { timeoutMs: 60_000, intervalMs: 200 });
  }

  /** CPU (10 ms ticks) of the simulated pods: autossh with what it reaped, and every live ssh. */
  podSideTicks(): number {
    const ino = netnsInodeOfName(this.world.ns('pod'));
    let ticks = 0;
    for (const pid of pidsInNetns(new Set(ino === undefined ? [] : [ino]))) {
      const c = comm(pid);
      if (c === 'autossh') ticks += cpuTicksOf(pid, true) || 0;
      else if (c === 'ssh') ticks += cpuTicksOf(pid, false) || 0;
    }
    return ticks;
  }

  serverSnapshot(pods: number): ServerSnapshot {
    const listener = this.listener();
    const empty = () => ({ n: 0, pss: [] as number[], fds: [] as number[] });
    const roles: ServerSnapshot['roles'] = { listener: empty(), monitor: empty(), child: empty(), holder: empty(), other: empty() };
    let pss = 0;
    let fds = 0;
    const all = [listener, ...descendants(listener)];
    for (const pid of all) {
      const c = comm(pid);
      const line = cmdline(pid);
      const role = pid === listener ? 'listener' : c === 'cat' ? 'holder' : c === 'sshd' && /\[priv\]/.test(line) ? 'monitor' : c === 'sshd' ? 'child' : 'other';
      const p = pssKiB(pid);
      const f = fdCount(pid);
      if (!Number.isFinite(p) || !Number.isFinite(f)) continue;
      roles[role].n++;
      roles[role].pss.push(p);
      roles[role].fds.push(f);
      pss += p;
      fds += f;
    }
    return { pods, procs: all.length, pssKiB: pss, fds, roles };
  }

  /** CPU of the server's sshd (listener and every live session process) over a window with nothing but idle pods, % of one core. */
  async idleCpuPercent(): Promise<{ cpu: number; runnable: Stats }> {
    const pids = [this.listener(), ...descendants(this.listener())];
    const before = new Map(pids.map((p) => [p, cpuTicksOf(p, false)]));
    const t0 = performance.now();
    const runnable: number[] = [];
    while (performance.now() - t0 < IDLE_WINDOW_MS) {
      runnable.push(runnableNow());
      await sleep(250);
    }
    let ticks = 0;
    for (const [p, b] of before) {
      const a = cpuTicksOf(p, false);
      if (Number.isFinite(a) && Number.isFinite(b)) ticks += a - b;
    }
    return { cpu: (ticks / 100 / ((performance.now() - t0) / 1000)) * 100, runnable: stats(runnable) };
  }

  clientPssKiB(): { procs: number; pssKiB: number } {
    const ino = netnsInodeOfName(this.world.ns('pod'));
    let procs = 0;
    let pss = 0;
    for (const pid of pidsInNetns(new Set(ino === undefined ? [] : [ino]))) {
      if (!['ssh', 'autossh'].includes(comm(pid))) continue;
      const p = pssKiB(pid);
      if (!Number.isFinite(p)) continue;
      procs++;
      pss += p;
    }
    return { procs, pssKiB: pss };
  }
}

// -------------------------------------------------------------------------------- part 1 and 2

interface LoginResults {
  configs: LoginConfig[];
  samples: Map<string, LoginSample[]>;
  /** sshd CPU per login, ms: one value per batch (the batch's CPU / its logins). */
  cpu: Map<string, number[]>;
  lookups: Map<number, LookupTimes>;
  fillMs: number;
  nsExecMs: Stats;
}

async function measureLogins(b: Fleet): Promise<LoginResults> {
  const kex = (k: string) => ['-o', `KexAlgorithms=${k}`];
  const configs: LoginConfig[] = [
    ...INDEX_LEVELS.map((level) => ({ key: `keys-${level}`, label: `${level.toLocaleString('en-US')} keys`, level, extra: [], mode: 'session' as const })),
    { key: 'kex-sntrup', label: KEX_SNTRUP, level: 1, extra: kex(KEX_SNTRUP), mode: 'session' },
    { key: 'kex-curve', label: KEX_CURVE, level: 1, extra: kex(KEX_CURVE), mode: 'session' },
    { key: 'no-session', label: 'no session (`-N`), until the forwards are confirmed', level: 1, extra: ['-N', '-o', 'LogLevel=DEBUG1'], mode: 'forward-only' },
  ];
  const keysDir = b.L.sshd.keysDir;
  say(`fleet: filling key indexes of ${INDEX_LEVELS.slice(1).map((l) => l.toLocaleString('en-US')).join(' and ')} keys`);
  const tFill = performance.now();
  const parked = b.fillIndexes(INDEX_LEVELS);
  const fillMs = performance.now() - tFill;
  parked.set(1, `${keysDir}.1`);
  let current = 1;
  // Levels are swapped in by renaming whole directories (atomic, instant), so that configurations can rotate.
  const useLevel = (level: number) => {
    if (level === current) return;
    fs.renameSync(keysDir, parked.get(current)!);
    fs.renameSync(parked.get(level)!, keysDir);
    current = level;
  };
  const samples = new Map<string, LoginSample[]>(configs.map((c) => [c.key, []]));
  const cpu = new Map<string, number[]>(configs.map((c) => [c.key, []]));
  const lookups = new Map<number, LookupTimes>();
  const nsExec: number[] = [];
  try {
    const forwards = b.realPod.state.services.length;
    // One login first, untimed: page cache, sshd's first connection.
    await b.login(b.sshArgv(b.realPod), 'session', forwards);
    await b.reaped();
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await b.world.inNs('pod', ['true'], { timeout: 5000 });
      nsExec.push(performance.now() - t);
    }
    for (let round = 0; round < BATCHES; round++) {
      const order = configs.map((_, i) => configs[(i + round) % configs.length]!);
      say(`fleet: logins, round ${round + 1}/${BATCHES} (${order.map((c) => c.key).join(', ')})`);
      for (const c of order) {
        useLevel(c.level);
        await b.reaped();
        const before = cpuTicksOf(b.listener(), true);
        for (let i = 0; i < PER_BATCH; i++) {
          samples.get(c.key)!.push(await b.login(b.sshArgv(b.realPod, c.extra), c.mode, forwards));
          await b.reaped();
        }
        cpu.get(c.key)!.push(((cpuTicksOf(b.listener(), true) - before) * 10) / PER_BATCH);
      }
    }
    for (const level of INDEX_LEVELS) {
      say(`fleet: key lookup ×${LOOKUPS} at ${level.toLocaleString('en-US')} keys`);
      useLevel(level);
      lookups.set(level, await b.keyLookupTimes());
    }
  } finally {
    try {
      useLevel(1);
    } catch (e) {
      say(`fleet: could not put the real key index back: ${(e as Error).message}`);
    }
    for (const [level, dir] of parked) if (level !== 1) fs.rmSync(dir, { recursive: true, force: true });
  }
  return { configs, samples, cpu, lookups, fillMs, nsExecMs: stats(nsExec) };
}

// ---------------------------------------------------------------------------------------- part 3

interface MemoryStep {
  pods: number;
  added: string;
  snap: ServerSnapshot;
  bringUpS: number;
  idleCpu: number;
  runnable: Stats;
  load: string;
  client: { procs: number; pssKiB: number };
  stopped: string | null;
}

interface MemoryResult {
  base: ServerSnapshot;
  steps: MemoryStep[];
  hold: MemoryStep | null;
  /** The fleets that run the real reconnect policy (kept for the restart). */
  stormFleets: string[];
}

/**
 * Grows the fleet step by step. The first STORM pods run exactly as pods run (autossh, tunnelArgv, the ssh
 * wrapper) and stay connected for the restart; the rest are plain `ssh` with tunnelArgv's options. All use
 * POD_KEX (see there) and run at nice POD_NICE. The server's memory per pod does not depend on either.
 */
async function measureMemory(b: Fleet): Promise<MemoryResult> {
  const base = b.serverSnapshot(0);
  const steps: MemoryStep[] = [];
  const stormFleets: string[] = [];
  const plan = QUICK
    ? [{ to: 20, real: true }, { to: STORM, real: true }, { to: 80, real: false }, { to: HOLD, real: false }]
    : [{ to: 100, real: true }, { to: STORM, real: true }, { to: 2000, real: false }, { to: HOLD, real: false }];
  let have = 0;
  const chosen = PARTS.has('memory') ? plan : plan.filter((p) => p.real);
  for (const [i, step] of chosen.entries()) {
    const pods = b.pods.slice(have, step.to);
    const name = `fleet-${step.to}`;
    const hold = i === chosen.length - 1;
    const added = `${step.real ? 'autossh + wrapper' : 'ssh'}${POD_KEX === 'default' ? '' : ` + ${POD_KEX}`}`;
    say(`fleet: ${hold ? 'hold: ' : ''}connecting pods ${have + 1}–${step.to} (${added}; ${BRINGUP_CONCURRENCY} starting at once)`);
    const since = epochNow();
    await b.startFleet(name, pods, step.real ? 'autossh' : 'ssh', POD_KEX_ARGS, step.real ? SOURCES[0] : 'one');
    if (step.real) stormFleets.push(name);
    const r = await b.waitOnline(name, pods.map((p) => p.index), { since, limitMs: 900_000, label: `${step.to} pods`, guard: true });
    const bringUpS = (Math.max(...[...r.online.values()].map((e) => e.at), since) - since) / 1000;
    if (r.exited) say(`  ${r.exited} pods exited without a session: ${b.events(name).filter((e) => e.kind === 'stderr').slice(0, 3).map((e) => e.rest).join(' | ')}`);
    have = step.to;
    await sleep(2000);
    const snap = b.serverSnapshot(descendants(b.listener()).filter((p) => comm(p) === 'cat').length);
    const idle = await b.idleCpuPercent();
    const idleCpu = idle.cpu;
    const m: MemoryStep = { pods: snap.pods, added, snap, bringUpS, idleCpu, runnable: idle.runnable, load: loadAverage(), client: b.clientPssKiB(), stopped: r.stopped };
    say(`  ${snap.pods} pods live: ${((snap.pssKiB - base.pssKiB) / Math.max(1, snap.pods) / 1024).toFixed(2)} MiB PSS and ${((snap.procs - base.procs) / Math.max(1, snap.pods)).toFixed(2)} processes per pod; sshd idle ${idleCpu.toFixed(1)}% of a core; runnable ${idle.runnable.median}, load ${m.load}; ${pods.length} pods in ${bringUpS.toFixed(0)} s`);
    if (hold) return { base, steps, hold: m, stormFleets };
    steps.push(m);
    if (r.stopped) return { base, steps, hold: null, stormFleets };
  }
  return { base, steps, hold: null, stormFleets };
}

// ---------------------------------------------------------------------------------------- part 4

interface StormResult {
  sources: Sources;
  pods: number;
  killedProcs: number;
  nftMs: number;
  checkMs: number;
  startMs: number;
  listeningMs: number;
  back: Map<number, FleetEvent>;
  /** Pods with a session record after the kill, and when the helper saw the last pod back. */
  serverBack: number;
  helperLastMs: number | null;
  lastBackMs: number | null;
  backAt: { s: number; n: number }[];
  attempts: number[];
  autosshStarts: number[];
  sshdAccepted: number;
  sshdAuthenticated: number;
  sshdDrops: number;
  /** sshd's MaxStartups (begin:rate:full) as rendered, and the drops by cause: below begin only PerSourceMaxStartups drops; from begin on, MaxStartups' random early drop. */
  maxStartups: { begin: number; rate: number; full: number };
  sshdDropsPerSource: number;
  sshdDropsEarly: number;
  throttling: number;
  closedBeforeAuth: number;
  nftDropped: number | null;
  client: Record<string, number>;
  loadBefore: string;
  runnableBefore: number;
  runnable: Stats;
  loadAfter: string;
  loadLater: string;
  limitMs: number;
  wallS: number;
  /** CPU core-seconds over the storm: the new sshd tree, the simulated pods, the server's other daemons, the benchmark's own processes, the whole machine (busy). */
  cpu: { sshd: number; pods: number; daemons: number; bench: number; machine: number };
}

function nsPids(world: World, host: 'srv' | 'pod'): number[] {
  const ino = netnsInodeOfName(world.ns(host));
  return pidsInNetns(new Set(ino === undefined ? [] : [ino]));
}

function ticksOf(pids: readonly number[], withChildren: boolean): Map<number, { t: number; withChildren: boolean }> {
  return new Map(pids.map((p) => [p, { t: cpuTicksOf(p, withChildren), withChildren }]));
}

/** Ticks used since `before` by the processes of `before` that still live. */
function ticksDelta(before: Map<number, { t: number; withChildren: boolean }>): number {
  let sum = 0;
  for (const [p, b] of before) {
    const a = cpuTicksOf(p, b.withChildren);
    if (Number.isFinite(a) && Number.isFinite(b.t)) sum += a - b.t;
  }
  return sum;
}

function machineBusyTicks(): number {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq (steal is the hypervisor's, not ours): busy = all but idle and iowait.
  return f.slice(0, 7).reduce((a, b) => a + b, 0) - f[3]! - f[4]!;
}


async function measureStorm(b: Fleet, fleets: readonly string[], sources: Sources): Promise<StormResult> {
  const { world, L } = b;
  const pods = b.pods.slice(0, STORM);
  const indices = pods.map((p) => p.index);
  say(`fleet: restart with ${STORM} connected pods (autossh + pipe2me's ssh wrapper; ${sourcesText(sources)}); ending the other pods' sessions first`);
  await b.stopFleets(fleets, STORM);
  const up = await b.waitOnline(fleets, indices, { since: Math.min(...fleets.map((f) => b.startedAt.get(f) ?? 0)), limitMs: 120_000, label: `${STORM} autossh pods` });
  if (up.online.size < STORM) throw new Error(`only ${up.online.size} of ${STORM} autossh pods are online (${up.stopped ?? `${up.exited} exited`})`);
  // autossh counts an ssh that dies within 10 s of its start as a quick death: start from settled pods.
  const lastUp = Math.max(...b.events(fleets).filter((e) => e.kind === 'online').map((e) => e.at));
  await sleep(Math.max(5000, STORM_SETTLE_MS - (epochNow() - lastUp)));

  // Ending 4,000 sessions leaves the machine busy for a while: start from a calm run queue (at most 30 s more).
  const calmFrom = performance.now();
  let calm = 0;
  while (calm < 4 && performance.now() - calmFrom < 30_000) {
    calm = runnableNow() <= 8 ? calm + 1 : 0;
    await sleep(250);
  }
  const logSizes = pods.map((p) => fs.statSync(p.files.autosshLog).size);
  const loadBefore = loadAverage();
  const runnableBefore = runnableNow();
  const spec = world.procs.get('sshd').spec;
  const daemon = world.procs.get('sshd');
  const listener = daemon.pid;
  const victims = descendants(listener);
  const podsBefore = b.podSideTicks();
  const machineBefore = machineBusyTicks();
  const windowStart = epochNow();
  // The server's other daemons (API, nginx, BIND) and the benchmark's own processes (this one, the fleet helpers).
  const oldTree = new Set([listener, ...victims]);
  const daemonsBefore = ticksOf(nsPids(world, 'srv').filter((p) => !oldTree.has(p)), true);
  const helpersBefore = ticksOf(nsPids(world, 'pod').filter((p) => comm(p) === 'node'), false);
  const benchBefore = process.cpuUsage();
  say(`  killing the sshd listener and its ${victims.length} session processes (SIGKILL)`);
  const kill = epochNow();
  process.kill(listener, 'SIGKILL');
  for (const p of victims) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  await Promise.race([daemon.exited, sleep(5000)]);
  // As pipe2me-sshd.service starts it: its ExecStartPre lines (pipe2me's nftables table, sshd -t), then sshd.
  let t = performance.now();
  await world.inNs('srv', ['/usr/sbin/nft', '-f', L.sshd.firewall], { timeout: 20_000 });
  const nftMs = performance.now() - t;
  t = performance.now();
  await world.inNs('srv', ['/usr/sbin/sshd', '-t', '-f', L.sshd.config], { timeout: 20_000 });
  const checkMs = performance.now() - t;
  const tStart = epochNow();
  await world.start(spec);
  const listeningMs = epochNow() - kill;
  const startMs = epochNow() - tStart;
  say(`  sshd listening again ${(listeningMs / 1000).toFixed(2)} s after the kill`);
  const newListener = b.listener();

  const runnable: number[] = [];
  let sampling = true;
  void (async () => {
    while (sampling) {
      runnable.push(runnableNow());
      await sleep(250);
    }
  })();
  const r = await b.waitOnline(fleets, indices, { since: kill, limitMs: STORM_LIMIT_MS, label: 'reconnecting' });
  sampling = false;
  // The CPU snapshots first, one right after the other: on a machine this loaded, a scan of /proc can take seconds.
  const machineAfter = machineBusyTicks();
  const windowEnd = epochNow();
  const benchUsage = process.cpuUsage(benchBefore);
  const podsAfter = b.podSideTicks();
  const cpu = {
    sshd: NaN,
    pods: (podsAfter - podsBefore) / 100,
    daemons: ticksDelta(daemonsBefore) / 100,
    bench: (benchUsage.user + benchUsage.system) / 1e6 + ticksDelta(helpersBefore) / 100,
    machine: (machineAfter - machineBefore) / 100,
  };
  const wallS = (windowEnd - windowStart) / 1000;
  const loadAfter = loadAverage();
  const back = r.online;
  // When each pod was back, as the server saw it: the session holder's record (its mtime) of the pod's first session
  // after the kill. The helper's own timestamps (when it read the line) lag when the machine is this busy.
  const serverBack = new Map<number, number>();
  for (const p of pods) {
    const dir = path.join(L.sessionsDir, p.name);
    let first = Infinity;
    for (const f of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
      const m = fs.statSync(path.join(dir, f)).mtimeMs;
      if (m >= kill && m < first) first = m;
    }
    if (first !== Infinity) serverBack.set(p.index, first);
  }
  const backTimes = [...serverBack.values()].map((at) => at - kill);
  const lastBackMs = serverBack.size === pods.length ? Math.max(...backTimes) : null;
  const helperLastMs = back.size === pods.length ? Math.max(...[...back.values()].map((e) => e.at - kill)) : null;
  const backAt = [2, 5, 10, 20, 30, 60, 120].filter((s) => s * 1000 <= STORM_LIMIT_MS).map((s) => ({ s, n: backTimes.filter((x) => x <= s * 1000).length }));
  const attempts = [...back.values()].map((e) => Number(e.rest)).filter((n) => Number.isFinite(n));
  const autosshStarts = pods.map((p, i) => {
    try {
      const fd = fs.openSync(p.files.autosshLog, 'r');
      try {
        const size = fs.fstatSync(fd).size;
        const buf = Buffer.alloc(Math.max(0, size - logSizes[i]!));
        fs.readSync(fd, buf, 0, buf.length, logSizes[i]!);
        return (buf.toString('utf8').match(/starting ssh \(count/g) ?? []).length;
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      return NaN;
    }
  });
  const sshdLog = world.procs.log('sshd');
  const drops = [...sshdLog.matchAll(/drop connection #(\d+) from/g)].map((m) => Number(m[1]));
  // "drop connection #N": N is the unauthenticated connections at that moment (sshd.c, drop_connection).
  const ms = /^MaxStartups (\d+):(\d+):(\d+)$/m.exec(fs.readFileSync(L.sshd.config, 'utf8'));
  if (!ms) throw new Error(`no MaxStartups begin:rate:full line in ${L.sshd.config}`);
  const maxStartups = { begin: Number(ms[1]), rate: Number(ms[2]), full: Number(ms[3]) };
  let nftDropped: number | null = null;
  const nft = await world.inNs('srv', ['/usr/sbin/nft', 'list', 'table', 'inet', b.stack.config.firewall.table], { timeout: 10_000, allowFailure: true });
  if (nft.exitCode === 0) nftDropped = [...nft.stdout.matchAll(/counter packets (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
  const client = sshSaid((function* () {
    for (const e of b.events(fleets)) if (e.kind === 'stderr' && e.at >= kill) yield { index: e.index, text: e.rest };
  })(), 'connection refused (sshd not listening yet)');
  const closedBeforeAuth = client[CLOSED_BEFORE_AUTH] ?? 0;
  // sshd's CPU: the 10 ms ticks of a live process are truncated one by one (by up to a tick each), but what a parent
  // reaps is summed exactly: so the pods' sessions are ended and every process of the new sshd reaped into its listener
  // first. The figure then also holds each session's end and its keepalives until then (a few ms each).
  const tStop = performance.now();
  await b.stopFleets([], 0);
  cpu.sshd = cpuTicksOf(newListener, true) / 100;
  say(`  the pods' sessions ended and were reaped in ${((performance.now() - tStop) / 1000).toFixed(1)} s; sshd used ${cpu.sshd.toFixed(1)} core-seconds since its restart`);
  // The 1-minute load average lags: read it again a while after the storm.
  await sleep(QUICK ? 1000 : 10_000);
  return {
    sources, pods: pods.length, killedProcs: victims.length + 1, nftMs, checkMs, startMs, listeningMs, back, serverBack: serverBack.size, helperLastMs, lastBackMs, backAt, attempts, autosshStarts,
    sshdAccepted: (sshdLog.match(/^Connection from /gm) ?? []).length, sshdAuthenticated: (sshdLog.match(/^Accepted publickey/gm) ?? []).length,
    sshdDrops: drops.length, maxStartups, sshdDropsPerSource: drops.filter((n) => n < maxStartups.begin).length, sshdDropsEarly: drops.filter((n) => n >= maxStartups.begin).length, throttling: (sshdLog.match(/beginning MaxStartups throttling/g) ?? []).length,
    closedBeforeAuth, nftDropped, client, loadBefore, runnableBefore, runnable: stats(runnable), loadAfter, loadLater: loadAverage(), limitMs: STORM_LIMIT_MS, wallS, cpu,
  };
}

// ---------------------------------------------------------------------------------------- report

const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);
const verdict = (ok: boolean) => (ok ? '**met**' : '**missed**');

function reportLogins(r: LoginResults): string {
  const S = (k: string) => r.samples.get(k)!;
  const wall = (k: string) => stats(S(k).map((s) => s.wallMs));
  const cpu = (k: string) => stats(r.cpu.get(k)!);
  const client = (k: string) => stats(S(k).map((s) => s.clientCpuMs));
  const base = 'keys-1';
  const levelRows = INDEX_LEVELS.map((level) => {
    const k = `keys-${level}`;
    const l = r.lookups.get(level)!;
    return [
      level.toLocaleString('en-US'), mr(wall(k), 0), ratio(wall(k).median, wall(base).median), mr(cpu(k), 1), ratio(cpu(k).median, cpu(base).median), mr(client(k), 1),
      mr(stats(l.first), 2), mr(stats(l.second), 2), `${f2(l.cpuMs.first)} / ${f2(l.cpuMs.second)}`,
    ];
  });
  const floor = stats([...r.lookups.values()].flatMap((l) => l.floor));
  const w100k = wall('keys-100000').median / wall(base).median;
  const c100k = cpu('keys-100000').median / cpu(base).median;
  const lookupMax = Math.max(...[...r.lookups.values()].map((l) => stats(l.first).median));
  const lookupNet = lookupMax - floor.median;
  const kexRows = [['kex-sntrup', KEX_SNTRUP], ['kex-curve', KEX_CURVE]].map(([k, label]) => [`\`${label}\``, mr(wall(k!), 0), mr(cpu(k!), 1), ratio(cpu(k!).median, cpu('kex-sntrup').median), mr(client(k!), 1)]);
  const sn = cpu('kex-sntrup').median;
  const cu = cpu('kex-curve').median;
  const holder = stats(S(base).concat(S('kex-sntrup'), S('kex-curve')).map((s) => s.holderCpuMs).filter((x): x is number => x !== null));
  const noSession = cpu('no-session').median;
  const withSession = cpu(base).median;
  const lookupsPerLogin = 2 * (r.lookups.get(1)!.cpuMs.first + r.lookups.get(1)!.cpuMs.second) / 2;
  const n = BATCHES * PER_BATCH;
  return [
    '### 1. Login cost against the size of the key index',
    '',
    `One login of the real pod (registered with \`pipe2me setup\`) from the pod's namespace, with the pod's own ssh options (tunnelArgv, as \`ssh\`), until the`,
    'session holder\'s "online" line arrives; then stdin is closed and the session ends. The index holds the real pod\'s file and generated ones in its exact',
    `format (${f1(r.fillMs / 1000)} s to write ${(Math.max(...INDEX_LEVELS) - 1).toLocaleString('en-US')} of them; the smaller index is hard links to the first of those); the sizes are swapped in by renaming whole directories, so that the configurations`,
    `rotate (${BATCHES} rounds of ${PER_BATCH} logins each, n=${n} per configuration). Wall time is from the spawn of \`ip netns exec … ssh\` (about ${f1(r.nsExecMs.median)} ms by itself) to the line.`,
    'sshd CPU is the listener\'s utime+stime+cutime+cstime (/proc, 10 ms ticks) after every process of the connection was reaped: the pre-auth child, the',
    `monitor, the post-auth child, both key lookups and the session holder; one value per batch of ${PER_BATCH} (median [min–max] over the batches). The key lookup`,
    `is timed by itself too (bench/bin/key-lookup-timer.mjs, ${LOOKUPS} calls each, exec'd as the keys user as sshd does): the first call of a connection records it and`,
    `counts the pod's live connections, the second (sshd's signature check) finds the record. Spawning /bin/true the same way costs ${mr(floor, 2)} ms.`,
    '',
    table(['keys in the index', 'login wall, ms', '× 1 key', 'sshd CPU per login, ms', '× 1 key', 'ssh client CPU, ms', 'lookup, 1st call, ms', 'lookup, 2nd call, ms', 'lookup CPU per call (1st / 2nd), ms'], levelRows),
    '',
    `Targets at 100,000 keys against 1: wall ≤ 1.1× — ${verdict(w100k <= 1.1)} (${f2(w100k)}×); sshd CPU ≤ 1.2× — ${verdict(c100k <= 1.2)} (${f2(c100k)}×); key lookup ≤ 5 ms per call — ${verdict(lookupMax <= 5)} with the spawn included (slowest median ${f2(lookupMax)} ms), ${verdict(lookupNet <= 5)} net of the spawn floor (${f2(lookupNet)} ms); its CPU per call is in the last column.`,
    '',
    '### 2. Where sshd\'s CPU per login goes',
    '',
    `Same logins at 1 key, the client choosing the key exchange (\`-o KexAlgorithms=…\`; the server offers both; the pod sets none, so OpenSSH 9.2's default, ${KEX_SNTRUP}, is what pods use today).`,
    '',
    table(['key exchange', 'login wall, ms', 'sshd CPU per login, ms', '× sntrup761', 'ssh client CPU, ms'], kexRows),
    '',
    table(['piece', 'CPU per login, ms', 'how it was measured'], [
      ['whole login, session as the pod runs it', mr(cpu(base), 1), 'as in table 1 (1 key)'],
      ['the same without a session (`ssh -N`, until the 3 forwards are confirmed)', mr(cpu('no-session'), 1), 'same method; the difference is the session: sshd\'s session setup and the holder'],
      ['the session holder (sh → pipe2me-session → exec cat, one pid)', mr(holder, 2), '/proc/PID/schedstat of the cat once it runs (ns resolution), n=' + holder.n],
      ['the two key lookups of a login', f2(lookupsPerLogin), 'key-lookup-timer: CPU of a 1st plus a 2nd call'],
      [`the key exchange: ${KEX_SNTRUP} instead of ${KEX_CURVE}`, f1(sn - cu), 'difference of the two rows of the table above'],
    ]),
    '',
    `**${cu < sn ? KEX_CURVE : KEX_SNTRUP} is cheaper**: ${f1(Math.min(cu, sn))} ms against ${f1(Math.max(cu, sn))} ms of sshd CPU per login (${ratio(Math.max(cu, sn), Math.min(cu, sn))}, ${f1(Math.abs(sn - cu))} ms per login).`,
    `A login with a session against one with \`-N\`: ${withSession - noSession >= 0 ? '+' : ''}${f1(withSession - noSession)} ms of sshd CPU (medians of batches of ${PER_BATCH}, resolution ${f1(10 / PER_BATCH)} ms; batch ranges ${mr(cpu(base), 0)} and ${mr(cpu('no-session'), 0)}): within the noise;`,
    `the holder's own CPU, measured directly, is ${f2(holder.median)} ms per login (two shells' start-up, /proc reads, a record file, then exec cat).`,
  ].join('\n');
}

function reportMemory(m: MemoryResult): string {
  const per = (s: MemoryStep) => {
    const n = Math.max(1, s.pods);
    return { procs: (s.snap.procs - m.base.procs) / n, pssMiB: (s.snap.pssKiB - m.base.pssKiB) / n / 1024, fds: (s.snap.fds - m.base.fds) / n };
  };
  const role = (s: MemoryStep, r: keyof ServerSnapshot['roles']) => (s.snap.roles[r].n ? `${(stats(s.snap.roles[r].pss).median / 1024).toFixed(2)} / ${stats(s.snap.roles[r].fds).median}` : '–');
  const all = [...m.steps, ...(m.hold ? [m.hold] : [])];
  let prev = 0;
  const rows = all.map((s) => {
    const p = per(s);
    const added = s.pods - prev;
    prev = s.pods;
    return [
      s === m.hold ? `**${s.pods.toLocaleString('en-US')}** (hold)` : s.pods.toLocaleString('en-US'), f2(p.procs), `**${f2(p.pssMiB)}**`, f1(p.fds),
      role(s, 'monitor'), role(s, 'child'), role(s, 'holder'), (s.snap.pssKiB / 1024 / 1024).toFixed(2), f1(s.idleCpu), `${mr(s.runnable, 0)} / ${s.load}`,
      `${added.toLocaleString('en-US')}: ${s.added}`, s.bringUpS > 0 ? `${f1(s.bringUpS)} s (${f1(added / s.bringUpS)}/s)` : '–',
    ];
  });
  const measured = all.filter((s) => s.pods > 0).map(per);
  const maxProcs = Math.max(...measured.map((p) => p.procs));
  const maxPss = Math.max(...measured.map((p) => p.pssMiB));
  const hold = m.hold;
  const last = all[all.length - 1];
  const clientPer = last ? last.client.pssKiB / Math.max(1, last.pods) / 1024 : NaN;
  return [
    '### 3. Memory per live pod',
    '',
    'Every simulated pod has its own key registered in the state (a subdomain with http, https and tcp ports, seeded as bench/control-plane.ts seeds, then',
    'one `apply`), its own directory (key, known_hosts, ssh wrapper and backoff state), its stdin an open pipe and its session holder running. They log in',
    `from the pod's namespace, at most ${BRINGUP_CONCURRENCY} starting at once (bench/bin/fleet-pods.mjs). The first`,
    `${STORM.toLocaleString('en-US')} run as pods run (autossh, tunnelArgv, tunnelEnv, pipe2me's ssh wrapper)${SOURCES[0] === 'own' ? ', each from an address of its own (part 4),' : ''} and stay for part 4; the rest are plain \`ssh\` with tunnelArgv's options, behind the NAT router (one source address to sshd).`,
    `All of them add ${POD_KEX_TEXT}${POD_KEX === 'default' ? '' : ' to the pod\'s options: their ssh runs on the same 2 cores as the server, and with OpenSSH\'s default (sntrup761) each client login costs about 6× the CPU (part 2)'},`,
    `and run at nice ${POD_NICE}, so that the server's sshd, which has its cores to itself in a real deployment, gets the CPU first.`,
    'The server side is the sshd listener and every process below it (/proc): per pod = (total − the listener alone: '
      + `${(m.base.pssKiB / 1024).toFixed(1)} MiB PSS, ${m.base.fds} fds) / live pods. PSS from /proc/PID/smaps_rollup; by process: median PSS MiB / fds.`,
    `"sshd idle CPU" is that tree's utime+stime over ${IDLE_WINDOW_MS / 1000} s with nothing but keepalives (ClientAliveInterval 3 s, the pods' ServerAliveInterval 5 s); runnable tasks`,
    'are sampled every 250 ms in the same window from /proc/loadavg (its "running" count, the whole machine).',
    '',
    table(['live pods', 'server processes per pod', 'PSS per pod, MiB', 'fds per pod', 'monitor', 'post-auth child', 'holder (cat)', 'sshd total PSS, GiB', 'sshd idle CPU, % of a core', 'machine: runnable tasks / load average (1 min)', 'pods added: how they run', 'bring-up of the added pods'], rows),
    '',
    `Targets: 3 processes per pod — ${verdict(maxProcs <= 3.0001)} (${f2(maxProcs)}); ≤ 2.3 MiB per pod — ${verdict(maxPss <= 2.3)} (up to ${f2(maxPss)} MiB).`,
    hold
      ? `Hold ${HOLD.toLocaleString('en-US')} live pods at once: ${hold.pods >= HOLD ? '**held**' : `**not held**: ${hold.pods.toLocaleString('en-US')} (${hold.stopped ?? 'some pods exited'})`}: ${(hold.snap.pssKiB / 1024 / 1024).toFixed(2)} GiB PSS for sshd, ${hold.snap.procs.toLocaleString('en-US')} sshd processes, ${hold.snap.fds.toLocaleString('en-US')} fds; sshd idle at ${f1(hold.idleCpu)}% of a core.`
      : `The ${HOLD.toLocaleString('en-US')}-pod hold was not reached: the growth stopped at ${last?.pods} (${last?.stopped}).`,
    `What the simulation itself costs on the pod side (not the server's): ${f2(clientPer)} MiB PSS per pod (ssh, and autossh for the first ${STORM.toLocaleString('en-US')}).`,
  ].join('\n');
}

function reportStorm(runs: readonly StormResult[], loginMs: number | null): string {
  const s0 = runs[0]!;
  /** One row: a measure, its value in each run, and the target with each run's verdict. */
  type Row = [string, (s: StormResult) => string, ((s: StormResult) => boolean)?, string?];
  const att = (s: StormResult) => stats(s.attempts);
  const allBack = (s: StormResult) => s.lastBackMs !== null;
  const others = (s: StormResult) => Math.max(0, s.cpu.machine - s.cpu.sshd - s.cpu.pods - s.cpu.daemons - s.cpu.bench);
  const rows: Row[] = [
    ['sshd listening again after the kill', (s) => `**${f2(s.listeningMs / 1000)} s**`, (s) => s.listeningMs <= 2000, '≤ 2 s'],
    ['all pods back (from the kill; the session holder\'s record of each pod\'s new session)', (s) => (allBack(s) ? `**${f1(s.lastBackMs! / 1000)} s**` : `**not within ${s.limitMs / 1000} s**: ${s.serverBack} of ${s.pods}`), (s) => allBack(s) && s.lastBackMs! <= 30_000, '≤ 30 s'],
    ['… as the pods saw it (the helper read the last "online" line)', (s) => (s.helperLastMs === null ? `${s.back.size} of ${s.pods} within the limit` : `${f1(s.helperLastMs / 1000)} s`)],
    [`pods back within ${s0.backAt.map((x) => x.s).join(' / ')} s`, (s) => s.backAt.map((x) => x.n).join(' / ')],
    ['ssh attempts per pod that came back (wrapper state), median / max', (s) => (s.attempts.length ? `${att(s).median} / ${att(s).max}` : '–'), (s) => s.attempts.length === s.pods && att(s).max <= 2, '≤ 2'],
    ['pods by attempts', (s) => histogram(s.attempts) || '–'],
    ['autossh "starting ssh" per pod since the kill, median / max', (s) => { const x = stats(s.autosshStarts.filter((n) => Number.isFinite(n))); return `${x.median} / ${x.max}`; }],
    ['connections sshd accepted / authenticated (its log)', (s) => `${s.sshdAccepted} / ${s.sshdAuthenticated}`],
    [`connections sshd dropped ("drop connection #N … past MaxStartups"): all; by PerSourceMaxStartups (N below MaxStartups' begin, ${s0.maxStartups.begin}); by MaxStartups' random early drop (N ≥ ${s0.maxStartups.begin}: ${s0.maxStartups.rate}% rising to 100% at ${s0.maxStartups.full}); throttling episodes`, (s) => `${s.sshdDrops}; ${s.sshdDropsPerSource}; ${s.sshdDropsEarly}; ${s.throttling}`],
    ['connections sshd closed before authentication without a word (the pods\' ssh: "Connection closed by …")', (s) => String(s.closedBeforeAuth)],
    ['SYNs dropped by pipe2me\'s nftables per-source limit (counter since the reload)', (s) => (s.nftDropped === null ? '–' : String(s.nftDropped))],
    ['CPU from the kill until the wait ended, core-seconds: sshd / simulated pods (ssh, autossh, the wrapper) / API + nginx + BIND / the benchmark\'s own processes / the rest (kernel work not charged to a process — the namespaces\' network, process exits — and other users of this shared machine); the window; the machine busy, % of its 2 cores (sshd\'s figure also holds the sessions\' close)',
      (s) => `${f1(s.cpu.sshd)} / ${f1(s.cpu.pods)} / ${f1(s.cpu.daemons)} / ${f1(s.cpu.bench)} / ${f1(others(s))}; ${f1(s.wallS)} s; ${f1((s.cpu.machine / s.wallS / 2) * 100)}%`],
    [`sshd CPU per pod back: all its attempts (dropped and timed-out ones included) and, at the end, its session's close${loginMs ? ` (one login and its close alone, part 2: ${f1(loginMs)} ms)` : ''}`, (s) => (s.back.size ? `${f1((s.cpu.sshd * 1000) / s.back.size)} ms` : '–')],
    ['the same reconnection with sshd alone on these 2 cores would need at least (its CPU / 2 cores)', (s) => `${f1(s.cpu.sshd / 2)} s`],
    ['runnable tasks on the machine (/proc/loadavg "running", every 250 ms): before the kill / during the wait', (s) => `${s.runnableBefore} / ${mr(s.runnable, 0)}`],
    ['load average (1 min) before / when the wait ended / 10 s later', (s) => `${s.loadBefore} / ${s.loadAfter} / ${s.loadLater}`],
  ];
  const header = ['measure', ...runs.map((s) => sourcesText(s.sources)), 'target'];
  const body = rows.map(([label, value, ok, target]) => [
    label,
    ...runs.map(value),
    ok && target ? `${target} — ${runs.map((s) => `${verdict(ok(s))}${runs.length > 1 ? ` (${s.sources === 'own' ? 'own addresses' : 'one address'})` : ''}`).join(', ')}` : '',
  ]);
  const kinds = [...new Set(runs.flatMap((s) => Object.keys(s.client)))].sort((x, y) => Math.max(...runs.map((s) => s.client[y] ?? 0)) - Math.max(...runs.map((s) => s.client[x] ?? 0)));
  return [
    '### 4. Restart of the server\'s sshd with connected pods',
    '',
    `${s0.pods.toLocaleString('en-US')} simulated pods connected, each running the real reconnect policy: \`autossh\` with tunnelArgv and tunnelEnv (AUTOSSH_PATH = pipe2me's ssh wrapper`,
    'from sshWrapperScript, with the pod\'s own backoff state file; bench/bin/fleet-pods.mjs writes "now" before the first attempt and 0 when a session comes up, as',
    `\`pipe2me start\` does), the pod's ssh options with ${POD_KEX_TEXT}, at nice ${POD_NICE} (see part 3). The sshd listener and all ${s0.killedProcs - 1} processes below it got SIGKILL at once;`,
    `then sshd was started as pipe2me-sshd.service starts it: \`nft -f\` pipe2me's table (${s0.nftMs.toFixed(0)} ms), \`sshd -t\` (${s0.checkMs.toFixed(0)} ms), \`sshd -D\` until "Server listening" (${s0.startMs.toFixed(0)} ms).`,
    'Attempts per pod is what the wrapper\'s state file held when the pod\'s session came back (the wrapper\'s runs since the kill); autossh\'s log counts "starting ssh".',
    `Where the pods come from: *each from an address of its own* is a fleet spread over the internet (every pod's ssh binds an address of ${SPREAD_CIDR} on the pod namespace's eth0 with`,
    '`BindAddress`; the router routes them without NAT); *behind one address* is the same pods behind the NAT router, as behind one carrier-grade NAT address:',
    'to sshd\'s PerSourceMaxStartups and to pipe2me\'s per-source SYN limit they are then one source. The same pods, restarted in between.',
    '',
    table(header, body),
    '',
    runs.map((s) => {
      const busy = s.cpu.machine / s.wallS / 2;
      const pods = s.cpu.pods + others(s);
      return `${sourcesText(s.sources)[0]!.toUpperCase()}${sourcesText(s.sources).slice(1)}: the machine's 2 cores were ${f1(busy * 100)}% busy over the wait, ${f1(s.cpu.machine)} core-seconds in all, of them ${f1(pods)} on the pods' side `
        + `(their ssh and wrapper, and what no process was charged with: the kernel's work for them, and any other user of this shared machine) that a real relay does not carry; sshd's ${f1(s.cpu.sshd)} core-seconds alone need ${f1(s.cpu.sshd / 2)} s of these 2 cores. `
        + (busy >= 0.85 ? 'The reconnection was bound by this machine\'s CPU, not by the admission or the backoff.' : 'The machine had CPU to spare: the admission or the backoff held the pods back.');
    }).join('\n\n'),
    '',
    'What the pods\' ssh printed after the kill (one line per failed attempt):',
    '',
    kinds.length ? table(['ssh said', ...runs.map((s) => sourcesText(s.sources))], kinds.map((k) => [k, ...runs.map((s) => String(s.client[k] ?? 0))])) : '(nothing)',
  ].join('\n');
}

function histogram(xs: readonly number[]): string {
  const hist = new Map<number, number>();
  for (const a of xs) hist.set(a, (hist.get(a) ?? 0) + 1);
  return [...hist.entries()].sort((a, b) => a[0] - b[0]).map(([a, n]) => `${a}: ${n}`).join(', ');
}

// ------------------------------------------------------------------------------------------- main

export async function main(): Promise<BenchSection> {
  const t0 = performance.now();
  const stack = await Stack.create({ upnp: false, log: (l) => say(l), portRange: [20000, 59999] });
  const parts: string[] = [];
  const failures: string[] = [];
  let prefix = stack.world.prefix;
  // BENCH_FLEET_LOGS=DIR keeps the daemons' and simulated pods' logs (the world's root goes at teardown).
  const keep = process.env['BENCH_FLEET_LOGS'];
  if (keep) stack.world.onCleanup('keeping the logs', () => fs.cpSync(stack.world.logDir, path.join(keep, stack.world.prefix), { recursive: true }));
  try {
    const b = new Fleet(stack);
    await b.build();
    prefix = stack.world.prefix;
    let loginCpu: number | null = null;
    if (PARTS.has('logins')) {
      const l = await measureLogins(b);
      parts.push(reportLogins(l));
      const k = POD_KEX === KEX_CURVE ? 'kex-curve' : POD_KEX === 'default' ? 'keys-1' : null;
      loginCpu = k ? stats(l.cpu.get(k)!).median : null;
    }
    say(`fleet: registering ${HOLD.toLocaleString('en-US')} simulated pods (state + one apply)`);
    const tSeed = performance.now();
    await b.seedFleet(HOLD);
    say(`  seeded and applied in ${((performance.now() - tSeed) / 1000).toFixed(1)} s`);
    let stormFleets: string[] = [];
    try {
      const m = await measureMemory(b);
      stormFleets = m.stormFleets;
      if (PARTS.has('memory')) parts.push(reportMemory(m));
    } catch (e) {
      failures.push(`memory: ${(e as Error).message}`);
      say(`fleet: the memory part failed: ${(e as Error).message}`);
    }
    if (PARTS.has('storm') && stormFleets.length) {
      const runs: StormResult[] = [];
      for (const [i, sources] of SOURCES.entries()) {
        try {
          // The first restart takes the pods the memory part left connected; each later one the same pods started again.
          if (i > 0) stormFleets = [await b.restartStormPods(sources)];
          runs.push(await measureStorm(b, stormFleets, sources));
        } catch (e) {
          failures.push(`restart (${sourcesText(sources)}): ${(e as Error).message}`);
          say(`fleet: the restart part failed: ${(e as Error).message}`);
          break;
        }
      }
      if (runs.length) parts.push(reportStorm(runs, loginCpu));
    }
    await b.stopFleets().catch(() => {});
  } finally {
    await stack.destroy();
  }
  const left = (await run('ip', ['netns', 'list'], { timeout: 5000 })).stdout.split('\n').filter((l) => l.startsWith(`${prefix}-`));
  if (left.length) failures.push(`namespaces left behind: ${left.join(', ')}`);
  const md = [
    `Run time ${((performance.now() - t0) / 1000).toFixed(0)} s${QUICK ? ' (BENCH_QUICK=1: reduced sizes, figures mean nothing)' : ''}; the machine is shared and has 2 cores: the simulated pods' ssh clients run on the same cores as the server's sshd.`,
    '',
    ...parts.flatMap((p) => [p, '']),
    ...(failures.length ? ['**Failed:**', '', ...failures.map((f) => `- ${f.slice(0, 600)}`)] : []),
  ].join('\n');
  return { title: 'Fleet: logins, memory per pod, restart under load', markdown: md };
}

await standalone(import.meta, main);
