/**
 * Daemons of a world: started as children of the test process inside a namespace, one log file each,
 * stopped and restarted by name; plus readiness waits and the run-once helper `inNs`.
 *
 * Why `spawn('ip', ['netns', 'exec', ns, ...argv], { detached: true })`: `ip netns exec` execs the
 * command, so child.pid is the daemon itself; detached calls setsid(), so the daemon leads its own
 * process group and `process.kill(-pid)` also reaches its children (nginx workers, autossh's ssh).
 * Keeping daemons as our children matters here too: PID 1 on these machines reaps orphans lazily.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run, type RunOptions, type RunResult } from '../../src/util/exec.js';
import { dig, tcpExchange } from './client.js';
import type { NsRunner } from './runner.js';
import { listPids, signalPid } from './procfs.js';
import type { HostName } from './topology.js';
import { sleep, waitFor, WaitTimeoutError, type WaitOptions } from './wait.js';

export const DEFAULT_NS_TIMEOUT_MS = 15_000;

/** Run argv once inside namespace `ns`, with a timeout (default 15 s). Never a shell. */
export async function inNs(ns: string, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  if (argv.length === 0) throw new Error('inNs: empty argv');
  return run('ip', ['netns', 'exec', ns, ...argv], { ...opts, timeout: opts.timeout ?? DEFAULT_NS_TIMEOUT_MS });
}

export interface DaemonSpec {
  /** Unique within the world: used for stop/restart and as the log file name. */
  name: string;
  host: HostName;
  argv: readonly string[];
  env?: Record<string, string>;
  cwd?: string;
  /** Resolves when the daemon serves; run after every (re)start. Throwing fails the start. */
  ready?: (d: Daemon, procs: Processes) => Promise<unknown>;
  /** Signal that asks the daemon to stop (default SIGTERM). */
  stopSignal?: NodeJS.Signals;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class DaemonExitedError extends Error {
  constructor(
    readonly daemon: string,
    readonly exit: ExitInfo,
    readonly logTail: string,
  ) {
    super(`daemon ${daemon} exited (code ${exit.code}, signal ${exit.signal}) while it was awaited; its log ends:\n${logTail}`);
    this.name = 'DaemonExitedError';
  }
}

/** One run of a daemon. A restart makes a new Daemon with the same name. */
export class Daemon {
  /** Set when the process has exited. */
  exit: ExitInfo | undefined;
  readonly exited: Promise<ExitInfo>;
  /** Byte offset in the log where this run's output starts (log matching defaults to it). */
  readonly logOffset: number;
  readonly startedAt = performance.now();

  constructor(
    readonly spec: DaemonSpec,
    readonly pid: number,
    readonly logFile: string,
    readonly generation: number,
    child: ChildProcess,
    logOffset: number,
  ) {
    this.logOffset = logOffset;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
  }

  get name(): string {
    return this.spec.name;
  }

  get host(): HostName {
    return this.spec.host;
  }

  get running(): boolean {
    return this.exit === undefined;
  }
}

export interface ProcessesContext {
  ns(host: HostName): string;
  logDir: string;
  /** Added to every child's environment; marks processes as this world's for leak checks. */
  markerEnv: Record<string, string>;
}

export interface StopOptions {
  signal?: NodeJS.Signals;
  /** Time between the stop signal and SIGKILL (default 3000 ms). */
  graceMs?: number;
}

export interface LogWaitOptions extends WaitOptions {
  /** Fail at once when this matches (e.g. miniupnpd's "Port forwarding is impossible"). */
  failOn?: RegExp;
  /** Byte offset to search from (default: where the daemon's current run started). */
  since?: number;
}

export class Processes {
  private readonly daemons = new Map<string, Daemon>();
  private readonly generations = new Map<string, number>();
  private closed = false;

  constructor(private readonly ctx: ProcessesContext) {}

  /** Start a daemon and wait until its `ready` check passes (if it has one). */
  async start(spec: DaemonSpec): Promise<Daemon> {
    const d = this.spawn(spec);
    if (spec.ready) {
      try {
        await spec.ready(d, this);
      } catch (e) {
        if (e instanceof DaemonExitedError) throw e;
        throw new Error(`daemon ${spec.name} did not get ready: ${(e as Error).message}\n--- ${spec.name} log ---\n${this.tail(spec.name, 30)}`, { cause: e });
      }
    }
    return d;
  }

  /** Start without waiting for readiness. */
  spawn(spec: DaemonSpec): Daemon {
    if (this.closed) throw new Error(`cannot start ${spec.name}: the world is being torn down`);
    if (!/^[\w.-]+$/.test(spec.name)) throw new Error(`daemon name "${spec.name}" must be letters, digits, _ . - (it names the log file)`);
    const current = this.daemons.get(spec.name);
    if (current?.running) throw new Error(`daemon ${spec.name} is already running (pid ${current.pid})`);
    if (spec.argv.length === 0) throw new Error(`daemon ${spec.name}: empty argv`);

    const generation = (this.generations.get(spec.name) ?? 0) + 1;
    this.generations.set(spec.name, generation);
    const logFile = path.join(this.ctx.logDir, `${spec.name}.log`);
    const fd = fs.openSync(logFile, 'a', 0o644);
    let child: ChildProcess;
    let offset: number;
    try {
      fs.writeSync(fd, `--- start #${generation} in ${spec.host}: ${spec.argv.join(' ')}\n`);
      offset = fs.fstatSync(fd).size;
      child = spawn('ip', ['netns', 'exec', this.ctx.ns(spec.host), ...spec.argv], {
        stdio: ['ignore', fd, fd],
        detached: true,
        cwd: spec.cwd,
        env: { ...process.env, ...this.ctx.markerEnv, ...spec.env },
      });
    } finally {
      fs.closeSync(fd);
    }
    if (child.pid === undefined) throw new Error(`could not spawn ${spec.name} (is iproute2 installed?)`);
    // Without a listener an 'error' event would crash the test process.
    child.on('error', (e) => appendQuietly(logFile, `--- spawn error: ${e.message}\n`));
    const d = new Daemon(spec, child.pid, logFile, generation, child, offset);
    void d.exited.then((x) => appendQuietly(logFile, `--- exit #${generation}: code ${x.code} signal ${x.signal}\n`));
    this.daemons.set(spec.name, d);
    return d;
  }

  get(name: string): Daemon {
    const d = this.daemons.get(name);
    if (!d) throw new Error(`no daemon named ${name} (have: ${[...this.daemons.keys()].join(', ') || 'none'})`);
    return d;
  }

  has(name: string): boolean {
    return this.daemons.has(name);
  }

  list(): Daemon[] {
    return [...this.daemons.values()];
  }

  /** Stop the daemon's whole process group: stop signal, then SIGKILL after the grace. */
  async stop(name: string, opts: StopOptions = {}): Promise<ExitInfo> {
    const d = this.get(name);
    await stopGroups([d], opts.signal ?? d.spec.stopSignal ?? 'SIGTERM', opts.graceMs ?? 3000);
    return d.exit ?? (await d.exited);
  }

  /** Stop, start again with the same spec, and wait for readiness. */
  async restart(name: string, opts: StopOptions = {}): Promise<Daemon> {
    const old = this.get(name);
    await this.stop(name, opts);
    return this.start(old.spec);
  }

  /** Teardown: stop every daemon at once. Returns the names that needed SIGKILL. */
  async stopAll(graceMs: number): Promise<string[]> {
    this.closed = true;
    return stopGroups(this.list(), undefined, graceMs);
  }

  /** The daemon's log, from where its current run started (or from `since`). */
  log(name: string, since?: number): string {
    const d = this.get(name);
    return readFrom(d.logFile, since ?? d.logOffset);
  }

  /** Current size of the daemon's log: pass as `since` to match only what comes after an action. */
  logSize(name: string): number {
    try {
      return fs.statSync(this.get(name).logFile).size;
    } catch {
      return 0;
    }
  }

  /** Wait until the log (of the current run, or since an offset) matches. Fails fast if the daemon exits. */
  async waitLog(name: string, pattern: RegExp | string, opts: LogWaitOptions = {}): Promise<string> {
    const d = this.get(name);
    const since = opts.since ?? d.logOffset;
    const matches = (text: string) => (typeof pattern === 'string' ? text.includes(pattern) : pattern.test(text));
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      opts.abortIf?.();
      // Read the exit state before the log: a line written just before the exit still counts.
      const running = d.running;
      const text = readFrom(d.logFile, since);
      if (matches(text)) return text;
      if (opts.failOn?.test(text)) throw new DaemonFailedError(name, opts.failOn, this.tail(name, 30));
      if (!running) throw new DaemonExitedError(name, d.exit!, this.tail(name, 30));
      if (performance.now() >= deadline) {
        throw new WaitTimeoutError(`${name} to log ${String(pattern)}`, timeoutMs, new Error(`log ends:\n${this.tail(name, 15)}`));
      }
      await sleep(opts.intervalMs ?? 10);
    }
  }

  /** The last `lines` lines of one daemon's log. */
  tail(name: string, lines = 40): string {
    const d = this.daemons.get(name);
    if (!d) return '';
    return tailText(readFrom(d.logFile, 0), lines);
  }

  /** The tail of every daemon's log, for a failing test's report. */
  dumpLogs(lines = 40): string {
    return this.list()
      .map((d) => {
        const state = d.running ? `running, pid ${d.pid}` : `exited (code ${d.exit?.code}, signal ${d.exit?.signal})`;
        return `===== ${d.name} in ${d.host} (${state}) — ${d.logFile}\n${this.tail(d.name, lines)}`;
      })
      .join('\n');
  }
}

export class DaemonFailedError extends Error {
  constructor(daemon: string, pattern: RegExp, logTail: string) {
    super(`daemon ${daemon} logged a failure (${String(pattern)}); its log ends:\n${logTail}`);
    this.name = 'DaemonFailedError';
  }
}

/**
 * Signal each daemon's process group, wait for the leaders to exit and the groups to empty, then
 * SIGKILL whatever remains. Returns the names that needed SIGKILL.
 */
async function stopGroups(daemons: readonly Daemon[], signal: NodeJS.Signals | undefined, graceMs: number): Promise<string[]> {
  const live = daemons.filter((d) => d.running || groupAlive(d.pid));
  for (const d of live) signalGroup(d.pid, signal ?? d.spec.stopSignal ?? 'SIGTERM');
  const done = (d: Daemon) => !d.running && !groupAlive(d.pid);
  const deadline = performance.now() + graceMs;
  while (live.some((d) => !done(d)) && performance.now() < deadline) await sleep(10);
  const stubborn = live.filter((d) => !done(d));
  for (const d of stubborn) signalGroup(d.pid, 'SIGKILL');
  const killDeadline = performance.now() + 2000;
  while (stubborn.some((d) => !done(d)) && performance.now() < killDeadline) await sleep(10);
  return stubborn.map((d) => d.name);
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  // The group id is the leader's pid (setsid). Fall back to the pid alone if the group is gone.
  if (!signalPid(-pgid, signal)) signalPid(pgid, signal);
}

/** Is any live (non-zombie) process left in process group `pgid`? kill(-pgid, 0) would count zombies. */
function groupAlive(pgid: number): boolean {
  for (const pid of listPids()) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue;
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[2] === String(pgid) && fields[0] !== 'Z' && fields[0] !== 'X') return true;
  }
  return false;
}

/** Append a harness note to a log; the log may already be gone with the world's directory. */
function appendQuietly(file: string, text: string): void {
  try {
    fs.appendFileSync(file, text);
  } catch {
    /* torn down */
  }
}

function readFrom(file: string, offset: number): string {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return '';
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size <= offset) return '';
    const buf = Buffer.alloc(size - offset);
    fs.readSync(fd, buf, 0, buf.length, offset);
    return buf.toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

function tailText(text: string, lines: number): string {
  return text.split('\n').slice(-lines - 1).join('\n');
}

// ---------------------------------------------------------------------------------- readiness waits

/** Wait until a TCP connect from `from` to address:port succeeds (a real connect, inside the namespace). */
export async function waitTcp(runner: NsRunner, from: HostName, address: string, port: number, opts: WaitOptions = {}): Promise<void> {
  await waitFor(
    `TCP ${address}:${port} from ${from}`,
    async () => {
      const r = await tcpExchange(runner, { from, address, port, timeoutMs: 1000, idleMs: 1 });
      return r.connected || undefined;
    },
    { intervalMs: 20, ...opts },
  );
}

/** Wait until a nameserver answers a UDP query for `name` (with `expect` passing, if given). */
export async function waitDns(
  runner: NsRunner,
  from: HostName,
  server: string,
  name: string,
  opts: WaitOptions & { type?: string; expect?: (answers: string[]) => boolean } = {},
): Promise<void> {
  await waitFor(
    `DNS ${name} ${opts.type ?? 'A'} from ${server}`,
    async () => {
      const r = await dig(runner, { from, server, name, type: opts.type ?? 'A', timeoutMs: 1000 });
      if (!r.ok) return undefined;
      const data = r.answers.map((a) => a.data);
      return (opts.expect ? opts.expect(data) : r.status === 'NOERROR' && data.length > 0) || undefined;
    },
    { intervalMs: 20, ...opts },
  );
}
