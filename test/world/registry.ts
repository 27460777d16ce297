/**
 * Every world is recorded under /run/pipe2me-worlds/ before it creates anything: its prefix, its owner
 * (pid plus start time, so a reused pid is not mistaken for the owner), its namespaces, the users it
 * tracks and its root directory. A world whose owner died without tearing down (SIGKILL, a crashed
 * worker) is swept by the next world that is created. Worlds of live owners are never touched, so test
 * runs in parallel (other worktrees, other vitest workers) leave each other alone.
 *
 * The same directory holds each world's root directory (/run/pipe2me-worlds/<prefix>/): root-owned,
 * 0755 on every component and not under /tmp, because sshd's StrictModes refuses an authorized_keys
 * file below a world-writable directory and the tunnel user must be able to traverse it.
 *
 * A vitest run also keeps a journal (suites/<id>.jsonl) of the worlds and users it created, which the
 * global teardown reads to prove nothing leaked (see leaks.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { atomicWrite } from '../../src/util/fsx.js';
import { isProcessAlive, processStartTime } from './procfs.js';
import { sweepNamespaces } from './topology.js';
import { deleteUser, type TrackedUser } from './users.js';

export const WORLDS_DIR = '/run/pipe2me-worlds';
export const SUITES_DIR = path.join(WORLDS_DIR, 'suites');
/** Set by the vitest global setup; worker processes inherit it. */
export const SUITE_ENV = 'P2M_TEST_SUITE';
/** Set in every process a world starts: marks it as that world's (leak checks read /proc/PID/environ). */
export const WORLD_ENV = 'P2M_WORLD';
/** Prefix of every world's namespaces (and of the world's name). */
export const WORLD_PREFIX_PATTERN = /^p2m-[0-9a-f]{6}$/;

export interface WorldRecord {
  prefix: string;
  ownerPid: number;
  ownerStartTime: string;
  namespaces: string[];
  /** nsfs inodes, once the namespaces exist. */
  inodes: number[];
  users: TrackedUser[];
  root: string;
  suite: string | null;
  createdAt: string;
}

export function recordFile(prefix: string): string {
  return path.join(WORLDS_DIR, `${prefix}.json`);
}

export function worldRoot(prefix: string): string {
  return path.join(WORLDS_DIR, prefix);
}

/** Create /run/pipe2me-worlds (root, 0755) and refuse to go on if any ancestor is writable by others. */
export function ensureWorldsDir(): void {
  fs.mkdirSync(WORLDS_DIR, { recursive: true, mode: 0o755 });
  fs.chmodSync(WORLDS_DIR, 0o755);
  fs.mkdirSync(SUITES_DIR, { recursive: true, mode: 0o755 });
  assertSafeAncestors(WORLDS_DIR);
}

/** Every component from / down must be root-owned and not group/world-writable (sshd StrictModes). */
export function assertSafeAncestors(dir: string): void {
  let p = path.resolve(dir);
  for (;;) {
    const st = fs.statSync(p);
    if (st.uid !== 0 || (st.mode & 0o022) !== 0) {
      throw new Error(`${p} must be owned by root and not writable by group/others (uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)})`);
    }
    const parent = path.dirname(p);
    if (parent === p) return;
    p = parent;
  }
}

export function currentOwner(): { ownerPid: number; ownerStartTime: string } {
  const t = processStartTime(process.pid);
  if (t === undefined) throw new Error('cannot read our own /proc/self/stat');
  return { ownerPid: process.pid, ownerStartTime: t };
}

export function writeRecord(rec: WorldRecord): void {
  atomicWrite(recordFile(rec.prefix), JSON.stringify(rec, null, 2) + '\n', { mode: 0o644 });
}

export function removeRecord(prefix: string): void {
  fs.rmSync(recordFile(prefix), { force: true });
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

export function readRecords(): WorldRecord[] {
  let names: string[];
  try {
    names = fs.readdirSync(WORLDS_DIR);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.endsWith('.json'))
    .map((n) => readJson<WorldRecord>(path.join(WORLDS_DIR, n)))
    .filter((r): r is WorldRecord => r !== undefined && WORLD_PREFIX_PATTERN.test(r.prefix));
}

export interface SweptWorld {
  prefix: string;
  ownerPid: number;
  errors: string[];
}

/**
 * Tear down worlds whose owner process is dead. Each is claimed first by renaming its record to
 * `<prefix>.json.sweep-<our pid>`, so two worlds starting at once never sweep the same world; a claim
 * whose sweeper died is taken over.
 */
export async function sweepDeadWorlds(): Promise<SweptWorld[]> {
  let names: string[];
  try {
    names = fs.readdirSync(WORLDS_DIR);
  } catch {
    return [];
  }
  const swept: SweptWorld[] = [];
  for (const name of names) {
    const file = path.join(WORLDS_DIR, name);
    const claim = /^(p2m-[0-9a-f]{6})\.json(?:\.sweep-(\d+))?$/.exec(name);
    if (!claim) continue;
    const rec = readJson<WorldRecord>(file);
    if (!rec) continue;
    const sweeper = claim[2] === undefined ? undefined : Number(claim[2]);
    const dead = sweeper === undefined ? !isProcessAlive(rec.ownerPid, rec.ownerStartTime) : !isProcessAlive(sweeper);
    if (!dead) continue;
    const mine = path.join(WORLDS_DIR, `${rec.prefix}.json.sweep-${process.pid}`);
    try {
      fs.renameSync(file, mine);
    } catch {
      continue; // someone else claimed it first
    }
    swept.push({ prefix: rec.prefix, ownerPid: rec.ownerPid, errors: await teardownRecord(rec) });
    fs.rmSync(mine, { force: true });
  }
  return swept;
}

/** Undo everything a record says a world had. Returns what could not be undone. */
export async function teardownRecord(rec: WorldRecord): Promise<string[]> {
  const sweep = await sweepNamespaces(rec.namespaces, 1000);
  const errors = [...sweep.errors];
  for (const u of [...rec.users].reverse()) {
    try {
      await deleteUser(u);
    } catch (e) {
      errors.push((e as Error).message);
    }
  }
  if (rec.root === worldRoot(rec.prefix)) fs.rmSync(rec.root, { recursive: true, force: true });
  return errors;
}

// ------------------------------------------------------------------------------------ suite journal

export type JournalEvent =
  | { event: 'world'; prefix: string; namespaces: string[]; root: string; pid: number }
  | { event: 'inodes'; prefix: string; inodes: number[] }
  | { event: 'user'; prefix: string; name: string }
  | { event: 'destroyed'; prefix: string; downMs: number; errors: string[] };

export function journalFile(suite: string): string {
  return path.join(SUITES_DIR, `${suite}.jsonl`);
}

/** Append one event. O_APPEND writes this small are atomic, so parallel workers can share the file. */
export function appendJournal(event: JournalEvent): void {
  const suite = process.env[SUITE_ENV];
  if (!suite || !/^[\w-]+$/.test(suite)) return;
  fs.appendFileSync(journalFile(suite), JSON.stringify(event) + '\n', { mode: 0o644 });
}

export function readJournal(suite: string): JournalEvent[] {
  let text: string;
  try {
    text = fs.readFileSync(journalFile(suite), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as JournalEvent);
}
