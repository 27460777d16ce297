/**
 * Helpers for the operations tests: reading systemd units the way systemd does (enough of it to start a
 * unit's command with its user and capability restrictions where systemd is not PID 1), a Debian root
 * made with debootstrap and entered by chroot, and a network namespace. Everything a helper creates is
 * registered with a Cleanup and removed by it, also when a test fails.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { run, type RunResult } from '../../src/util/exec.js';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const SYSTEMD_DIR = path.join(ROOT, 'systemd');
export const ANSIBLE_DIR = path.join(ROOT, 'ansible');

export function uniqueTag(): string {
  return `${process.pid.toString(36)}${randomBytes(3).toString('hex')}`;
}

/** Runs a program (argv, timeout) and returns its result without throwing on a non-zero exit. */
export function exec(file: string, args: readonly string[], timeoutMs: number, opts: { env?: Record<string, string>; cwd?: string } = {}): Promise<RunResult> {
  return run(file, args, { timeout: timeoutMs, allowFailure: true, ...(opts.env ? { env: opts.env } : {}), ...(opts.cwd ? { cwd: opts.cwd } : {}) });
}

/** Like exec, but a non-zero exit is an error that shows what the program printed. */
export async function must(file: string, args: readonly string[], timeoutMs: number, opts: { env?: Record<string, string>; cwd?: string } = {}): Promise<RunResult> {
  const r = await exec(file, args, timeoutMs, opts);
  if (r.exitCode !== 0) throw new Error(`${r.command} exited ${r.exitCode}:\n${r.output.slice(-6000)}`);
  return r;
}

// ---------------------------------------------------------------------------------------------------
// Units

/** A test's progress log and the time each named step took, reported together at the end. */
export class StepLog {
  readonly timings: Record<string, number> = {};
  constructor(private readonly prefix: string) {}

  log(m: string): void {
    process.stdout.write(`[${this.prefix}] ${m}\n`);
  }

  async timed<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const t0 = Date.now();
    try {
      return await fn();
    } finally {
      this.timings[what] = Date.now() - t0;
      this.log(`${what}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
  }

  summary(): string {
    return `timings: ${Object.entries(this.timings).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`).join(', ')}`;
  }
}

export type UnitFile = Map<string, string[]>;

/** Directives of a unit file as "Section.Key" → values in order (continuation lines joined). */
export function parseUnit(text: string): UnitFile {
  const out: UnitFile = new Map();
  let section = '';
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      continue;
    }
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const key = `${section}.${line.slice(0, eq).trim()}`;
    const list = out.get(key) ?? [];
    list.push(line.slice(eq + 1).trim());
    out.set(key, list);
  }
  return out;
}

export function readUnit(file: string): UnitFile {
  return parseUnit(fs.readFileSync(file, 'utf8'));
}

export function one(u: UnitFile, key: string): string | undefined {
  const v = u.get(key);
  return v?.[v.length - 1];
}

/** Splits an Exec line into words (systemd's quoting: "..." and '...'); drops the -, +, @, ! prefixes. */
export function execWords(line: string): string[] {
  const words: string[] = [];
  let cur = '';
  let quote: string | null = null;
  let inWord = false;
  for (const ch of line) {
    if (quote) {
      if (ch === quote) quote = null;
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  if (words[0]) words[0] = words[0].replace(/^[-+@!:]+/, '');
  return words;
}

/** Reads an EnvironmentFile (KEY=VALUE lines, optional quotes). */
export function readEnvironmentFile(file: string): Record<string, string> {
  const env: Record<string, string> = {};
  if (!fs.existsSync(file)) return env;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2]!.trim();
    if ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'"))) v = v.slice(1, -1);
    env[m[1]!] = v;
  }
  return env;
}

/** An Exec line as argv: %i replaced, and a word that is exactly $NAME split into the value's words, as systemd does. */
export function execArgv(line: string, opts: { instance?: string; env?: Record<string, string> } = {}): string[] {
  const out: string[] = [];
  for (const w0 of execWords(line)) {
    const w = opts.instance !== undefined ? w0.replace(/%i/g, opts.instance) : w0;
    const m = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(w);
    if (m) out.push(...(opts.env?.[m[1]!] ?? '').split(/\s+/).filter(Boolean));
    else out.push(w);
  }
  return out;
}

/**
 * setpriv options that apply a unit's User=/Group=, CapabilityBoundingSet= and NoNewPrivileges=. This
 * is what can be enforced without systemd as PID 1; the filesystem protections (ProtectSystem=, ...)
 * are checked by systemd-analyze only.
 */
export function setprivArgs(u: UnitFile): string[] {
  const args: string[] = [];
  const user = one(u, 'Service.User');
  if (user && user !== 'root') {
    args.push(`--reuid=${user}`, `--regid=${one(u, 'Service.Group') ?? user}`, '--init-groups', '--reset-env');
  }
  const caps = u.get('Service.CapabilityBoundingSet');
  if (caps) {
    const names = caps.join(' ').split(/\s+/).filter(Boolean).map((c) => c.replace(/^CAP_/i, '').toLowerCase());
    args.push(`--bounding-set=${['-all', ...names.map((n) => `+${n}`)].join(',')}`);
  }
  if (one(u, 'Service.NoNewPrivileges') === 'yes') args.push('--no-new-privs');
  return args;
}

// ---------------------------------------------------------------------------------------------------
// Cleanup

/** Undo steps, run newest first; every step runs even if an earlier one threw. */
export class Cleanup {
  private steps: { what: string; fn: () => Promise<void> | void }[] = [];
  readonly problems: string[] = [];

  add(what: string, fn: () => Promise<void> | void): void {
    this.steps.push({ what, fn });
  }

  async run(): Promise<void> {
    while (this.steps.length) {
      const s = this.steps.pop()!;
      try {
        await s.fn();
      } catch (e) {
        this.problems.push(`${s.what}: ${(e as Error).message}`);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Processes

export function pidsRootedAt(dir: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (fs.readlinkSync(`/proc/${e}/root`) === dir) out.push(Number(e));
    } catch {
      /* gone, or a kernel thread */
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function killAll(pids: number[], graceMs = 3000): Promise<void> {
  for (const p of pids) {
    try {
      process.kill(p, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  const deadline = Date.now() + graceMs;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const p of pids.filter(alive)) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

/** A background process with its output in a log file. */
export class Background {
  readonly child: ChildProcess;
  /** Set by stop(): an exit after that was asked for. */
  stopped = false;
  constructor(readonly name: string, argv: string[], readonly logFile: string) {
    const fd = fs.openSync(logFile, 'a');
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
  }

  log(): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.child.pid && !this.exited) await killAll([this.child.pid]);
  }
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// ---------------------------------------------------------------------------------------------------
// Mounts, a Debian root, a network namespace

/**
 * What a test's teardown left behind: its cleanup steps that failed, processes still rooted in its Debian
 * root, mounts under its temp directory, the directory itself. Empty when nothing remains.
 */
export function leftBehind(o: { cleanup: Cleanup; root?: DebianRoot; tmp?: string }): string[] {
  const out = [...o.cleanup.problems];
  if (o.root) for (const pid of pidsRootedAt(o.root.dir)) out.push(`process ${pid} still runs in ${o.root.dir}`);
  if (o.tmp) {
    for (const m of mountsUnder(o.tmp)) out.push(`still mounted: ${m}`);
    if (fs.existsSync(o.tmp)) out.push(`${o.tmp} still exists`);
  }
  return out;
}

export function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = line.split(' ')[4];
    if (mp && (mp === dir || mp.startsWith(dir + '/'))) out.push(mp.replace(/\\040/g, ' '));
  }
  return out;
}

/** The first Debian mirror this machine's apt uses (one-line or deb822 sources). */
export function debianMirror(): string {
  const files = ['/etc/apt/sources.list', ...(fs.existsSync('/etc/apt/sources.list.d') ? fs.readdirSync('/etc/apt/sources.list.d').map((f) => `/etc/apt/sources.list.d/${f}`) : [])];
  for (const f of files) {
    let text: string;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const m of text.matchAll(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/gm)) return m[1]!;
    for (const stanza of text.split(/\n\s*\n/)) {
      const uris = /^URIs:\s*(\S+)/m.exec(stanza);
      const suites = /^Suites:\s*(.+)$/m.exec(stanza);
      if (uris && suites && suites[1]!.split(/\s+/).includes('bookworm') && /debian\/?$/.test(uris[1]!)) return uris[1]!;
    }
  }
  return 'http://deb.debian.org/debian';
}

/**
 * A Debian 12 root made by debootstrap, with /proc and /dev mounted and a policy-rc.d that keeps the
 * packages' daemons from starting. remove() kills every process rooted there, unmounts and deletes it;
 * it refuses to delete while anything is still mounted below it.
 */
export class DebianRoot {
  constructor(readonly dir: string) {}

  async create(include: string[], log: string): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true });
    const r = await exec('debootstrap', ['--variant=minbase', ...(include.length ? [`--include=${include.join(',')}`] : []), 'bookworm', this.dir, debianMirror()], 15 * 60_000);
    fs.writeFileSync(log, r.output);
    if (r.exitCode !== 0) throw new Error(`debootstrap failed (exit ${r.exitCode}); see ${log}:\n${r.output.slice(-3000)}`);
    fs.writeFileSync(path.join(this.dir, 'usr/sbin/policy-rc.d'), '#!/bin/sh\n# Installing packages must not start their daemons here.\nexit 101\n', { mode: 0o755 });
  }

  async mount(): Promise<void> {
    await must('mount', ['-t', 'proc', 'proc', path.join(this.dir, 'proc')], 30_000);
    await must('mount', ['--bind', '/dev', path.join(this.dir, 'dev')], 30_000);
  }

  async remove(): Promise<void> {
    if (!fs.existsSync(this.dir)) return;
    await killAll(pidsRootedAt(this.dir));
    for (let i = 0; i < 5; i++) {
      const left = mountsUnder(this.dir).sort((a, b) => b.length - a.length);
      if (!left.length) break;
      for (const m of left) {
        const r = await exec('umount', [m], 30_000);
        if (r.exitCode !== 0 && i >= 2) await exec('umount', ['--lazy', m], 30_000);
      }
    }
    const left = mountsUnder(this.dir);
    if (left.length) throw new Error(`still mounted, so ${this.dir} was NOT deleted: ${left.join(', ')}`);
    // --one-file-system: even if a mount appeared meanwhile, rm never crosses into it.
    await must('rm', ['-rf', '--one-file-system', this.dir], 5 * 60_000);
  }
}

export class Netns {
  constructor(readonly name: string) {}

  async create(): Promise<void> {
    await must('ip', ['netns', 'add', this.name], 30_000);
    await must('ip', ['-n', this.name, 'link', 'set', 'lo', 'up'], 30_000);
  }

  argv(argv: string[]): string[] {
    return ['ip', 'netns', 'exec', this.name, ...argv];
  }

  async pids(): Promise<number[]> {
    const r = await exec('ip', ['netns', 'pids', this.name], 30_000);
    return r.stdout.split(/\s+/).filter(Boolean).map(Number);
  }

  async remove(): Promise<void> {
    const names = (await exec('ip', ['netns', 'list'], 30_000)).stdout;
    if (!names.split('\n').some((l) => l.split(' ')[0] === this.name)) return;
    await killAll(await this.pids());
    await must('ip', ['netns', 'del', this.name], 30_000);
  }
}
