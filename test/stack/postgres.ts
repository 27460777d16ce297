/**
 * Throwaway PostgreSQL 15 servers for tests: Debian's binaries (/usr/lib/postgresql/15/bin), run as Debian's
 * unprivileged `postgres` system user (initdb refuses root; tests create no users), each in a fresh 0700
 * directory of its own that holds the data directory, the Unix socket and the server log.
 *
 *   const pg = await startPostgres();                          // 127.0.0.1, a free port, trust auth
 *   const standby = await startPostgres({ standbyOf: pg });    // pg_basebackup -R, started, caught up
 *   await pg.stop('immediate'); await standby.promote();
 *   await closeAllPostgres();                                  // in afterAll: nothing is left behind
 *
 * The server is a child of the test process (`postgres`, not `pg_ctl start`, which would daemonize it),
 * started through `setpriv --pdeathsig SIGQUIT`: if the test process dies without closing it, the kernel
 * sends the postmaster SIGQUIT, an immediate shutdown that also removes its System V shared memory (a
 * SIGKILLed postmaster leaves its segment behind). At process exit, live servers are stopped the same way
 * and their directories removed; directories of test processes that died anyway are swept at the next start.
 *
 * `startPostgresIn(world, …)` runs the server as a daemon of a test world (test/world), in one of its hosts'
 * namespaces, so the world's teardown and leak checks cover it as well.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';
import { run, type RunOptions, type RunResult } from '../../src/util/exec.js';
import type { HostName } from '../world/topology.js';
import type { World } from '../world/world.js';
import { processStartTime } from '../world/procfs.js';

export const PG_BIN = '/usr/lib/postgresql/15/bin';
const SYSTEM_USER = 'postgres';
/** The bootstrap superuser (initdb -U): the harness's own connections; tests use `user`. */
const SUPERUSER = 'postgres';
const DIR_PREFIX = 'pipe2me-pg-';
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 30_000;

export interface PgServer {
  /** libpq-style URL without a password, e.g. postgres://pipe2me@127.0.0.1:54321/pipe2me */
  url: string;
  host: string;
  port: number;
  dataDir: string;
  database: string;
  user: string;
  /** Password of `user` when started with { password }, else undefined (trust auth). */
  password?: string;
  /** Server down, data kept. fast: SIGINT (sessions end, checkpoint); immediate: SIGQUIT (crash recovery at the next start). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Up again on the same host:port. */
  start(): Promise<void>;
  /** Standby → primary (pg_ctl promote), resolves when pg_is_in_recovery() is false. */
  promote(): Promise<void>;
  /** Stop and remove everything. Idempotent. */
  close(): Promise<void>;
}

export interface StartPostgresOptions {
  /** Run the server inside this existing network namespace (ip netns exec), listening on `address`. */
  netns?: string;
  /** Listen address; default 127.0.0.1 (with a free port, unless `port` is given). */
  address?: string;
  /** Default: a free port on the host; 5432 inside a namespace. */
  port?: number;
  /** A streaming-replication standby of that primary (pg_basebackup -R), started and caught up. Its user, database and password are the primary's. */
  standbyOf?: PgServer;
  /** scram-sha-256 for TCP connections instead of trust (also for replication). */
  password?: string;
  /** Default 'pipe2me', owned by `user`. */
  database?: string;
  /** A PostgreSQL role (LOGIN REPLICATION), not a system user. Default 'pipe2me'. */
  user?: string;
}

export interface StartPostgresInOptions extends Omit<StartPostgresOptions, 'netns'> {
  /** The world host whose namespace runs the server; it listens on world.address(host) unless `address` says otherwise. */
  host: HostName;
  /** Daemon name in the world (log file logs/<name>.log). Default `postgres-<host>`, `-2`, `-3`… when taken. */
  name?: string;
}

// ------------------------------------------------------------------------------------- where it runs

/** One run of the postmaster. */
interface Proc {
  pid: number;
  exited: Promise<unknown>;
  running(): boolean;
}

/** What differs between a server on its own and one in a world. */
interface Place {
  label: string;
  netns: string | undefined;
  /** Parent of the server's directory. */
  baseDir: string;
  launch(argv: string[], logFile: string): Proc;
  /** Run once, where the server runs (its namespace). */
  exec(argv: string[], opts: RunOptions): Promise<RunResult>;
  /** Where the log is read from for error reports. */
  logFile(own: string): string;
}

function standalonePlace(netns: string | undefined): Place {
  const prefix = netns ? ['ip', 'netns', 'exec', netns] : [];
  return {
    label: netns ? `namespace ${netns}` : 'this host',
    netns,
    baseDir: os.tmpdir(),
    launch(argv, logFile) {
      const full = [...prefix, ...argv];
      const fd = fs.openSync(logFile, 'a', 0o644);
      let child: ChildProcess;
      try {
        // detached: its own process group (a last-resort SIGKILL to the group reaches every backend), out of
        // the terminal's: a Ctrl-C goes to the test runner, whose exit stops the server (pdeathsig, exit handler).
        child = spawn(full[0]!, full.slice(1), { stdio: ['ignore', fd, fd], detached: true, cwd: '/' });
      } finally {
        fs.closeSync(fd);
      }
      if (child.pid === undefined) throw new Error(`could not spawn ${full.join(' ')}`);
      child.on('error', (e) => {
        try {
          fs.appendFileSync(logFile, `--- spawn error: ${e.message}\n`);
        } catch {
          /* the directory is gone already */
        }
      });
      let done = false;
      const exited = new Promise((resolve) => child.once('exit', (code, signal) => ((done = true), resolve({ code, signal }))));
      return { pid: child.pid, exited, running: () => !done };
    },
    exec: (argv, opts) => {
      const full = [...prefix, ...argv];
      return run(full[0]!, full.slice(1), opts);
    },
    logFile: (own) => own,
  };
}

function worldPlace(world: World, host: HostName, name: string): Place {
  return {
    label: `world ${world.prefix} host ${host}`,
    netns: world.ns(host),
    baseDir: world.root,
    launch(argv) {
      // No `ready` in the spec: readiness is waited for here. stopSignal SIGINT (fast shutdown): the
      // world's SIGTERM would be a smart shutdown that waits for every client to disconnect.
      const d = world.procs.spawn({ name, host, argv, stopSignal: 'SIGINT' });
      return { pid: d.pid, exited: d.exited, running: () => d.running };
    },
    exec: (argv, opts) => world.inNs(host, argv, opts),
    logFile: () => path.join(world.logDir, `${name}.log`),
  };
}

// ------------------------------------------------------------------------------------------ servers

const live = new Set<Server>();

/** Drop privileges to the postgres system user; the kernel sends SIGQUIT to the process if its parent dies. */
function asPostgres(argv: readonly string[], pdeathsig = false): string[] {
  return ['setpriv', `--reuid=${SYSTEM_USER}`, `--regid=${SYSTEM_USER}`, '--init-groups', ...(pdeathsig ? ['--pdeathsig', 'SIGQUIT'] : []), '--', ...argv];
}

function hostForUrl(h: string): string {
  return h.includes(':') ? `[${h}]` : h;
}

class Server implements PgServer {
  url: string;
  readonly dataDir: string;
  readonly logPath: string;
  private proc: Proc | undefined;
  private shmId: number | undefined;
  private closed: Promise<void> | undefined;
  /** Set for a standby: the server it was copied from. */
  primary: Server | undefined;

  constructor(
    readonly place: Place,
    readonly dir: string,
    readonly host: string,
    readonly port: number,
    readonly database: string,
    readonly user: string,
    readonly password: string | undefined,
  ) {
    this.dataDir = path.join(dir, 'data');
    this.logPath = path.join(dir, 'server.log');
    this.url = this.makeUrl();
  }

  private makeUrl(): string {
    return `postgres://${encodeURIComponent(this.user)}@${hostForUrl(this.host)}:${this.port}/${encodeURIComponent(this.database)}`;
  }

  /** Unix socket directory: the harness's own connections (the namespace does not matter to a Unix socket). */
  get socketDir(): string {
    return this.dir;
  }

  get running(): boolean {
    return this.proc?.running() ?? false;
  }

  argv(): string[] {
    return asPostgres(
      [
        `${PG_BIN}/postgres`, '-D', this.dataDir,
        '-c', `listen_addresses=${this.host}`,
        '-c', `port=${this.port}`,
        '-c', `unix_socket_directories=${this.dir}`,
      ],
      true,
    );
  }

  logTail(lines = 30): string {
    let text = '';
    try {
      text = fs.readFileSync(this.place.logFile(this.logPath), 'utf8');
    } catch {
      return '(no server log)';
    }
    return text.split('\n').slice(-lines - 1).join('\n');
  }

  async start(): Promise<void> {
    if (this.closed) throw new Error(`postgres ${this.url} is closed`);
    if (this.running) throw new Error(`postgres ${this.url} is already running (pid ${this.proc!.pid})`);
    const logSize = this.logSize();
    this.proc = this.place.launch(this.argv(), this.logPath);
    await this.waitReady(logSize);
    this.shmId = readShmId(this.dataDir);
  }

  private logSize(): number {
    try {
      return fs.statSync(this.place.logFile(this.logPath)).size;
    } catch {
      return 0;
    }
  }

  /** pg_isready over TCP, from where the server runs, until it accepts connections; fails fast if it exits. */
  private async waitReady(logOffset: number): Promise<void> {
    const deadline = performance.now() + READY_TIMEOUT_MS;
    const proc = this.proc!;
    for (;;) {
      if (!proc.running()) throw new PgStartError(`postgres ${this.url} (${this.place.label}) exited while starting`, this.logTail(), this.logSince(logOffset));
      const r = await this.place.exec([`${PG_BIN}/pg_isready`, '-q', '-h', this.host, '-p', String(this.port), '-t', '1'], { timeout: 5000, allowFailure: true });
      if (r.exitCode === 0) return;
      if (performance.now() > deadline) {
        throw new PgStartError(`postgres ${this.url} (${this.place.label}) did not accept connections within ${READY_TIMEOUT_MS / 1000} s (pg_isready exit ${r.exitCode})`, this.logTail(), this.logSince(logOffset));
      }
      await sleep(50);
    }
  }

  private logSince(offset: number): string {
    try {
      return fs.readFileSync(this.place.logFile(this.logPath)).subarray(offset).toString('utf8');
    } catch {
      return '';
    }
  }

  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    const proc = this.proc;
    if (!proc || !proc.running()) return;
    // What pg_ctl stop -m fast|immediate sends, to the postmaster alone (never its process group: a
    // backend takes SIGINT as "cancel the query", the checkpointer as "checkpoint now").
    signal(proc.pid, mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    if (await exitsWithin(proc, STOP_TIMEOUT_MS)) return;
    this.kill();
    if (!(await exitsWithin(proc, 5000))) throw new Error(`postgres ${this.url} (pid ${proc.pid}) did not exit after SIGKILL`);
  }

  /** Last resort: SIGKILL the whole group and release the shared memory segment it would leave. */
  private kill(): void {
    if (this.proc) signal(-this.proc.pid, 'SIGKILL') || signal(this.proc.pid, 'SIGKILL');
    this.releaseShm();
  }

  /**
   * Remove the postmaster's System V segment if it is still there, i.e. the postmaster was killed. Only a
   * segment with its id *and* created by this postmaster: ids are reused, and another server's must stay.
   * ipcrm marks it for removal; it goes when the last (dying) backend detaches.
   */
  private releaseShm(): void {
    const id = this.shmId;
    const creator = this.proc?.pid;
    this.shmId = undefined;
    if (id === undefined || creator === undefined) return;
    if (shmCreator(id) === creator) spawnSync('ipcrm', ['-m', String(id)], { stdio: 'ignore', timeout: 5000 });
  }

  async promote(): Promise<void> {
    const argv = asPostgres([`${PG_BIN}/pg_ctl`, 'promote', '-D', this.dataDir, '-w', '-t', '30']);
    await run(argv[0]!, argv.slice(1), { timeout: 40_000, cwd: '/' });
    const deadline = performance.now() + READY_TIMEOUT_MS;
    for (;;) {
      const rows = await this.admin<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
      if (rows[0]?.r === false) return;
      if (performance.now() > deadline) throw new Error(`postgres ${this.url} still in recovery ${READY_TIMEOUT_MS / 1000} s after pg_ctl promote; log ends:\n${this.logTail()}`);
      await sleep(50);
    }
  }

  /** One query as the superuser over the Unix socket. */
  async admin<R>(sql: string, params: unknown[] = [], database = 'postgres'): Promise<R[]> {
    const c = new pg.Client({ host: this.socketDir, port: this.port, user: SUPERUSER, database, connectionTimeoutMillis: 5000 });
    c.on('error', () => {}); // a server stopped under an idle client must not crash the test process
    await c.connect();
    try {
      return (await c.query(sql, params)).rows as R[];
    } finally {
      await c.end().catch(() => {});
    }
  }

  close(): Promise<void> {
    this.closed ??= (async () => {
      try {
        await this.stop('fast').catch(() => this.kill());
      } finally {
        this.releaseShm();
        fs.rmSync(this.dir, { recursive: true, force: true });
        live.delete(this);
      }
    })();
    return this.closed;
  }

  /** From the exit handler: nothing asynchronous runs any more. SIGQUIT, a short wait, SIGKILL. */
  closeSync(): void {
    if (this.proc?.running()) {
      signal(this.proc.pid, 'SIGQUIT');
      for (let i = 0; i < 100 && processStartTime(this.proc.pid) !== undefined; i++) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
      if (processStartTime(this.proc.pid) !== undefined) this.kill();
    }
    this.releaseShm();
    fs.rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }
}

export class PgStartError extends Error {
  constructor(
    what: string,
    readonly logTail: string,
    readonly thisRun: string,
  ) {
    super(`${what}; its log ends:\n${logTail}`);
    this.name = 'PgStartError';
  }
}

function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

async function exitsWithin(proc: Proc, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const ok = await Promise.race([proc.exited.then(() => true as const), timeout]);
  clearTimeout(timer);
  return ok;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** postmaster.pid line 7 is "<shm key> <shm id>" of its System V segment. */
function readShmId(dataDir: string): number | undefined {
  try {
    const line = fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[6] ?? '';
    const id = Number(line.trim().split(/\s+/)[1]);
    return Number.isInteger(id) && id >= 0 ? id : undefined;
  } catch {
    return undefined;
  }
}

/** The creator pid of System V shared memory segment `id` (/proc/sysvipc/shm), if it exists. */
function shmCreator(id: number): number | undefined {
  const lines = safeRead('/proc/sysvipc/shm').trim().split('\n');
  const cols = (lines[0] ?? '').trim().split(/\s+/);
  const [idCol, cpidCol] = [cols.indexOf('shmid'), cols.indexOf('cpid')];
  for (const l of lines.slice(1)) {
    const f = l.trim().split(/\s+/);
    if (Number(f[idCol]) === id) return Number(f[cpidCol]);
  }
  return undefined;
}

async function freePort(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, address, () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** The server's own directory: 0700, owned by postgres, with a note of who made it (for the sweep). */
function makeDir(base: string): string {
  const dir = fs.mkdtempSync(path.join(base, DIR_PREFIX));
  fs.writeFileSync(path.join(dir, 'owner'), `${process.pid} ${processStartTime(process.pid) ?? ''}\n`);
  const pw = pgSystemIds();
  if (!pw) throw new Error(`the ${SYSTEM_USER} system user does not exist: apt-get install postgresql-15 (postgresql-common creates it)`);
  fs.chownSync(dir, pw.uid, pw.gid);
  fs.chownSync(path.join(dir, 'owner'), pw.uid, pw.gid);
  fs.chmodSync(dir, 0o700);
  return dir;
}

function pgSystemIds(): { uid: number; gid: number } | undefined {
  const line = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${SYSTEM_USER}:`));
  if (!line) return undefined;
  const f = line.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

/** Directories left by test processes that died (SIGKILL, OOM): their servers got SIGQUIT from the kernel. */
function sweepDeadOwners(): void {
  let names: string[];
  try {
    names = fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith(DIR_PREFIX));
  } catch {
    return;
  }
  for (const n of names) {
    const dir = path.join(os.tmpdir(), n);
    let owner: string[];
    try {
      owner = fs.readFileSync(path.join(dir, 'owner'), 'utf8').trim().split(' ');
    } catch {
      continue; // being made right now, or not ours
    }
    const [pid, start] = owner;
    if (pid && processStartTime(Number(pid)) !== undefined && processStartTime(Number(pid)) === start) continue;
    const postmaster = Number(safeRead(path.join(dir, 'data', 'postmaster.pid')).split('\n')[0]);
    if (postmaster > 0 && processStartTime(postmaster) !== undefined) signal(postmaster, 'SIGQUIT');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function safeRead(f: string): string {
  try {
    return fs.readFileSync(f, 'utf8');
  } catch {
    return '';
  }
}

const SETTINGS = `
# pipe2me test harness: a throwaway server, fast and small.
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 16MB
max_connections = 40
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
wal_keep_size = 64MB
hot_standby = on
password_encryption = 'scram-sha-256'
# In the data directory, not /dev/shm: nothing outlives the directory.
dynamic_shared_memory_type = mmap
logging_collector = off
log_connections = off
`;

function hba(method: string): string {
  return [
    '# pipe2me test harness',
    'local all         all trust',
    'local replication all trust',
    `host  all         all 0.0.0.0/0 ${method}`,
    `host  all         all ::/0      ${method}`,
    `host  replication all 0.0.0.0/0 ${method}`,
    `host  replication all ::/0      ${method}`,
    '',
  ].join('\n');
}

async function create(place: Place, opts: StartPostgresOptions, defaultAddress: string): Promise<Server> {
  const primary = opts.standbyOf;
  if (primary !== undefined && !(primary instanceof Server)) throw new Error('standbyOf: a server from startPostgres/startPostgresIn');
  const address = opts.address ?? defaultAddress;
  const user = primary?.user ?? opts.user ?? 'pipe2me';
  const database = primary?.database ?? opts.database ?? 'pipe2me';
  const password = primary ? primary.password : opts.password;
  if (primary && opts.password !== undefined && opts.password !== primary.password) throw new Error('standbyOf: a standby has its primary\'s password (its catalog is a copy)');
  if (!/^[a-z_][a-z0-9_]*$/.test(user) || !/^[a-z_][a-z0-9_]*$/.test(database)) throw new Error(`user and database: lower-case SQL identifiers (got ${user}, ${database})`);

  const pickPort = opts.port === undefined && place.netns === undefined;
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (pickPort ? await freePort(address) : 5432);
    const dir = makeDir(place.baseDir);
    const server = new Server(place, dir, address, port, database, user, password);
    server.primary = primary;
    live.add(server);
    installExitHandler();
    try {
      if (primary) await basebackup(server, primary);
      else await initdb(server);
      await server.start();
      if (primary) await waitStandbyCaughtUp(server, primary);
      else await createRoleAndDatabase(server);
      return server;
    } catch (e) {
      await server.close().catch(() => {});
      // A free port found here may be taken by another test before the server binds it: try another.
      if (pickPort && attempt < 3 && e instanceof PgStartError && /could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(e.thisRun)) continue;
      throw e;
    }
  }
}

async function initdb(s: Server): Promise<void> {
  const argv = asPostgres([`${PG_BIN}/initdb`, '-D', s.dataDir, '-U', SUPERUSER, '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions']);
  await run(argv[0]!, argv.slice(1), { timeout: 60_000, cwd: '/' });
  fs.appendFileSync(path.join(s.dataDir, 'postgresql.conf'), SETTINGS);
  fs.writeFileSync(path.join(s.dataDir, 'pg_hba.conf'), hba(s.password === undefined ? 'trust' : 'scram-sha-256'));
}

async function createRoleAndDatabase(s: Server): Promise<void> {
  const c = new pg.Client({ host: s.socketDir, port: s.port, user: SUPERUSER, database: 'postgres', connectionTimeoutMillis: 5000 });
  c.on('error', () => {});
  await c.connect();
  try {
    // Sent over the Unix socket, never on a command line; not logged (log_statement is none).
    const pw = s.password === undefined ? '' : ` PASSWORD ${c.escapeLiteral(s.password)}`;
    await c.query(`CREATE ROLE ${c.escapeIdentifier(s.user)} LOGIN REPLICATION${pw}`);
    await c.query(`CREATE DATABASE ${c.escapeIdentifier(s.database)} OWNER ${c.escapeIdentifier(s.user)}`);
  } finally {
    await c.end().catch(() => {});
  }
}

/** pg_basebackup over TCP from where the standby runs, as the primary's user (a REPLICATION role); -R writes primary_conninfo. */
async function basebackup(s: Server, primary: Server): Promise<void> {
  if (!primary.running) throw new Error(`standbyOf: the primary ${primary.url} is not running`);
  const argv = asPostgres([
    `${PG_BIN}/pg_basebackup`, '-h', primary.host, '-p', String(primary.port), '-U', primary.user,
    '-D', s.dataDir, '-R', '-X', 'stream', '-c', 'fast', '--no-sync', '-w',
  ]);
  await s.place.exec(argv, {
    timeout: 120_000,
    cwd: '/',
    env: primary.password === undefined ? {} : { PGPASSWORD: primary.password },
    display: `pg_basebackup -h ${primary.host} -p ${primary.port} -U ${primary.user} -D ${s.dataDir} -R`,
  });
}

/** The standby streams from the primary and has replayed everything the primary had written when it started. */
async function waitStandbyCaughtUp(s: Server, primary: Server): Promise<void> {
  // The insert position, not pg_current_wal_lsn (the write position): with synchronous_commit off a commit
  // can be inserted but not yet written out, and a standby equal to the write position lacks it (seen: the
  // promoted standby had no table the primary had created).
  const lsn = (await primary.admin<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn'))[0]!.lsn;
  const deadline = performance.now() + READY_TIMEOUT_MS;
  let last = '';
  for (;;) {
    const r = (
      await s.admin<{ ok: boolean | null; status: string | null }>(
        'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok, (SELECT status FROM pg_stat_wal_receiver) AS status',
        [lsn],
      )
    )[0];
    if (r?.ok && r.status === 'streaming') return;
    last = `replayed past ${lsn}: ${r?.ok}, receiver: ${r?.status ?? 'none'}`;
    if (performance.now() > deadline) throw new Error(`standby ${s.url} did not catch up with ${primary.url} within ${READY_TIMEOUT_MS / 1000} s (${last}); its log ends:\n${s.logTail()}`);
    await sleep(50);
  }
}

// ------------------------------------------------------------------------------------------ the API

/** A throwaway server on this host (or in an existing namespace): see the top of this file. */
export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PgServer> {
  if (process.getuid?.() !== 0) throw new Error('startPostgres needs root (it runs the server as the postgres system user)');
  sweepDeadOwners();
  return create(standalonePlace(opts.netns), opts, '127.0.0.1');
}

/**
 * A server as a daemon of `world`, in host `opts.host`'s namespace (default address world.address(host),
 * port 5432), its directory under the world's root: the world's teardown stops it and removes the
 * directory, and its leak check counts it. close() or closeAllPostgres() may still be called first.
 */
export async function startPostgresIn(world: World, opts: StartPostgresInOptions): Promise<PgServer> {
  const { host, name, ...rest } = opts;
  let daemon = name;
  for (let i = 1; daemon === undefined; i++) {
    const n = i === 1 ? `postgres-${host}` : `postgres-${host}-${i}`;
    if (!world.procs.has(n)) daemon = n;
  }
  const server = await create(worldPlace(world, host, daemon), rest, world.address(host));
  // Before the world stops its daemons: a fast shutdown (and the segment released), not SIGKILL.
  world.onCleanup(`postgres ${daemon}`, () => server.close());
  return server;
}

/**
 * Wait until a standby has replayed everything its primary has written so far. Servers run with
 * synchronous_commit=off, so a committed write reaches the standby only after the primary's WAL writer
 * flushes it (up to ~0.6 s): stopping the primary at once (immediate) would lose it, as a real
 * asynchronous failover would. Call this between "written" and "primary down" when the test needs the data.
 */
export async function waitCaughtUp(standby: PgServer): Promise<void> {
  if (!(standby instanceof Server) || !standby.primary) throw new Error('waitCaughtUp: a standby from startPostgres({ standbyOf })');
  await waitStandbyCaughtUp(standby, standby.primary);
}

/** Close every server this process started (for vitest's afterAll; safe to call at any time). */
export async function closeAllPostgres(): Promise<void> {
  const errors: string[] = [];
  // Standbys first: a primary's fast shutdown waits for its walsenders to send everything.
  for (const s of [...live].reverse()) {
    await s.close().catch((e: Error) => errors.push(`${s.url}: ${e.message}`));
  }
  if (errors.length > 0) throw new Error(`closeAllPostgres:\n  ${errors.join('\n  ')}`);
}

let exitInstalled = false;
function installExitHandler(): void {
  if (exitInstalled) return;
  exitInstalled = true;
  process.on('exit', () => {
    for (const s of [...live].reverse()) s.closeSync();
  });
}
