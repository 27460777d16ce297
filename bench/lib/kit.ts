/**
 * What the benchmark scripts need from a world beyond test/stack: the bench's own helper clients
 * (bench/bin), a poller that finds the moment a path serves again, a runner that timestamps each line a
 * command prints, a plain sshd as the baseline pipe2me is compared with, and CPU time of processes in a
 * namespace. Everything runs inside the world's namespaces and is started through the world (or, for
 * runTimed, killed on its timeout), so the world's teardown removes it.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ADDR, WORLD_ENV, waitFor, type Daemon, type HostName, type World } from '../../test/world/index.js';
import type { Stack } from '../../test/stack/stack.js';
import { run } from '../../src/util/exec.js';

export const BENCH_BIN = fileURLToPath(new URL('../bin/', import.meta.url));

export function benchHelperArgv(script: string, args: readonly (string | number)[]): string[] {
  return [process.execPath, path.join(BENCH_BIN, script), ...args.map(String)];
}

/** Epoch milliseconds with fractions: comparable with what helpers in other processes print. */
export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Daemon logs written by pipe2me start things as "2026-11-25T13:10:36.123Z message". */
export function isoLines(log: string): { at: number; text: string }[] {
  const out: { at: number; text: string }[] = [];
  for (const line of log.split('\n')) {
    const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (.*)$/.exec(line);
    if (m) out.push({ at: Date.parse(m[1]!), text: m[2]! });
  }
  return out;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------ poller

export interface PollResult {
  ok: boolean;
  startedAt: number;
  firstAttemptAt: number | null;
  attempts: number;
  failures: number;
  firstFailureAt: number | null;
  firstFailureStartedAt: number | null;
  firstFailure: string | null;
  successAt?: number;
  successStartedAt?: number;
  error?: string;
}

export interface Poller {
  daemon: Daemon;
  /** Resolves with the poller's result once it has one (or its maxMs ran out). */
  result: Promise<PollResult>;
}

let pollerCount = 0;

/** Starts bench/bin/poll.mjs in `from` (default cli) and resolves once it is polling. */
export async function startPoller(world: World, o: { address: string; port: number; intervalMs?: number; requestTimeoutMs?: number; maxMs?: number; mode: 'first-success' | 'after-failure'; from?: HostName }): Promise<Poller> {
  const name = `poll-${++pollerCount}`;
  const maxMs = o.maxMs ?? 60_000;
  const daemon = await world.start({
    name,
    host: o.from ?? 'cli',
    argv: benchHelperArgv('poll.mjs', [o.address, o.port, o.intervalMs ?? 100, o.requestTimeoutMs ?? 1000, maxMs, o.mode]),
    ready: (d, p) => p.waitLog(d.name, 'polling'),
  });
  const result = (async () => {
    let timer: NodeJS.Timeout | undefined;
    const exited = await Promise.race([daemon.exited, new Promise<null>((r) => (timer = setTimeout(() => r(null), maxMs + 10_000)))]);
    clearTimeout(timer);
    if (exited === null) await world.stop(name);
    const line = world.procs.log(name).split('\n').find((l) => l.startsWith('result '));
    if (!line) throw new Error(`poller ${name} gave no result:\n${world.procs.tail(name, 10)}`);
    return JSON.parse(line.slice('result '.length)) as PollResult;
  })();
  return { daemon, result };
}

// ------------------------------------------------------------------------------------- runTimed

export interface TimedLine {
  /** epochNow() when the line arrived. */
  at: number;
  stream: 'stdout' | 'stderr';
  text: string;
}

export interface TimedRun {
  exitCode: number | null;
  startedAt: number;
  endedAt: number;
  lines: TimedLine[];
  stdout: string;
}

/**
 * Runs argv once in a host and notes when each line of its output arrives: the progress lines of a CLI
 * then tell where its time went. Killed (its whole group) at the timeout.
 */
export function runTimed(world: World, host: HostName, argv: readonly string[], timeoutMs: number): Promise<TimedRun> {
  return new Promise((resolve, reject) => {
    const startedAt = epochNow();
    const child = spawn('ip', ['netns', 'exec', world.ns(host), ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env: { ...process.env, [WORLD_ENV]: world.prefix },
    });
    const lines: TimedLine[] = [];
    let stdout = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, timeoutMs);
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    readline.createInterface({ input: child.stdout! }).on('line', (text) => lines.push({ at: epochNow(), stream: 'stdout', text }));
    readline.createInterface({ input: child.stderr! }).on('line', (text) => lines.push({ at: epochNow(), stream: 'stderr', text }));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const endedAt = epochNow();
      if (timedOut) reject(new Error(`${argv.join(' ')} did not finish within ${timeoutMs} ms:\n${lines.map((l) => l.text).join('\n').slice(-2000)}`));
      else resolve({ exitCode: code, startedAt, endedAt, lines, stdout });
    });
  });
}

/** Wall time of one run of argv in a host (including `ip netns exec`, a few ms). */
export async function timeOnce(world: World, host: HostName, argv: readonly string[], timeoutMs = 30_000): Promise<number> {
  const t0 = performance.now();
  await world.inNs(host, argv, { timeout: timeoutMs });
  return performance.now() - t0;
}

// ------------------------------------------------------------------------------------ plain sshd

export interface PlainSsh {
  port: number;
  user: string;
  keyFile: string;
  knownHosts: string;
  /**
   * ssh from a pod to the plain sshd with OpenSSH's default client options: only what authentication
   * needs (this key, this known_hosts, no prompts) and ExitOnForwardFailure, so that "up" means "forwarded".
   */
  argv(extra: readonly string[], command?: readonly string[]): string[];
}

/**
 * A plain sshd on the server's namespace, on its own port, with a minimal configuration of its own:
 * the baseline a user would run without pipe2me. Every cipher, MAC, KEX and keepalive setting is OpenSSH's
 * default. It reuses pipe2me's tunnel user (the world removes it) with this bench key only.
 */
export async function startPlainSshd(stack: Stack, port: number, name = 'plain-sshd'): Promise<PlainSsh> {
  const w = stack.world;
  const dir = w.mkdir(name, 0o755);
  const hostKey = path.join(dir, 'host_ed25519');
  const keyFile = path.join(w.mkdir(`${name}-client`, 0o700), 'id_ed25519');
  await w.inNs('srv', ['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'bench plain sshd', '-f', hostKey], { timeout: 20_000 });
  await w.inNs('pod', ['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'bench plain ssh', '-f', keyFile], { timeout: 20_000 });
  const authorizedKeys = path.join(dir, 'authorized_keys');
  fs.writeFileSync(authorizedKeys, fs.readFileSync(`${keyFile}.pub`, 'utf8'), { mode: 0o644 });
  const knownHosts = path.join(path.dirname(keyFile), 'known_hosts');
  const hostPub = fs.readFileSync(`${hostKey}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
  fs.writeFileSync(knownHosts, `[${ADDR.server}]:${port} ${hostPub}\n`, { mode: 0o644 });
  const config = path.join(dir, 'sshd_config');
  fs.writeFileSync(config, [
    `Port ${port}`,
    `ListenAddress ${ADDR.server}`,
    `HostKey ${hostKey}`,
    `PidFile ${path.join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${authorizedKeys}`,
    `AllowUsers ${stack.tunnelUser}`,
    // The tunnel user has no password and there is no PAM stack to consult: keys only.
    'UsePAM no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    // What a user publishing a port with ssh -R needs: the listener on the public address.
    'GatewayPorts yes',
    'LogLevel INFO',
    '',
  ].join('\n'), { mode: 0o644 });
  await w.start({ name, host: 'srv', argv: ['/usr/sbin/sshd', '-D', '-e', '-f', config], ready: (d, p) => p.waitLog(d.name, 'Server listening') });
  return {
    port,
    user: stack.tunnelUser,
    keyFile,
    knownHosts,
    argv: (extra, command = []) => [
      'ssh', '-F', '/dev/null', '-i', keyFile, '-o', 'IdentitiesOnly=yes', '-o', 'IdentityAgent=none', '-o', 'BatchMode=yes',
      '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'ExitOnForwardFailure=yes',
      '-p', String(port), ...extra, `${stack.tunnelUser}@${ADDR.server}`, ...command,
    ],
  };
}

// ------------------------------------------------------------------------------------- listeners

/** Is something listening on this TCP port in the host (ss, no connection made)? */
export async function listening(world: World, host: HostName, port: number): Promise<boolean> {
  const r = await world.inNs(host, ['ss', '-Htln', `sport = :${port}`], { timeout: 5000, allowFailure: true });
  return r.exitCode === 0 && r.stdout.trim() !== '';
}

export async function waitListening(world: World, host: HostName, port: number, timeoutMs = 15_000): Promise<void> {
  await waitFor(`port ${port} listening in ${host}`, () => listening(world, host, port), { timeoutMs, intervalMs: 50 });
}

// ------------------------------------------------------------------------------------------- CPU

/** Sum of user+system clock ticks of the processes named `comm` in a host's namespace, by pid. */
export async function cpuTicks(world: World, host: HostName, comm: string): Promise<Map<number, number>> {
  const pids = await pidsInNs(world, host);
  const out = new Map<number, number>();
  for (const pid of pids) {
    try {
      if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== comm) continue;
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(pid, Number(f[11]) + Number(f[12]));
    } catch {
      /* exited */
    }
  }
  return out;
}

async function pidsInNs(world: World, host: HostName): Promise<number[]> {
  const r = await run('ip', ['netns', 'pids', world.ns(host)], { timeout: 5000, allowFailure: true });
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

/** CPU% (of one core) used between two cpuTicks snapshots over `wallMs`, by processes present in both. */
export function cpuPercent(before: Map<number, number>, after: Map<number, number>, wallMs: number): number {
  let ticks = 0;
  for (const [pid, t] of after) ticks += t - (before.get(pid) ?? t);
  // USER_HZ is 100 on Linux.
  return (ticks / 100 / (wallMs / 1000)) * 100;
}

/**
 * Wall time until argv's own process exits, ignoring its output: for `ssh -f`, whose backgrounded child
 * keeps any inherited pipe open (a runner that waits for its output would wait for the child too).
 */
export function timeUntilExit(world: World, host: HostName, argv: readonly string[], timeoutMs: number): Promise<{ ms: number; exitCode: number | null }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('ip', ['netns', 'exec', world.ns(host), ...argv], { stdio: 'ignore', env: { ...process.env, [WORLD_ENV]: world.prefix } });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${argv.join(' ')} did not exit within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ ms: performance.now() - t0, exitCode: code });
    });
  });
}
