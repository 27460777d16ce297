/**
 * `pipe2me-ctl init`: everything a server needs before its first apply — the configuration (written
 * only if missing), directories with their modes, the tunnel user, the sshd host key, BIND's rndc key,
 * the state store. Idempotent: a second run keeps what exists and says so.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadConfig, parseConfigText } from '../config/load.js';
import type { Config } from '../config/types.js';
import { layout } from '../render/layout.js';
import { renderTemplate } from '../render/templates.js';
import { openStore } from '../state/db.js';
import { storeTargetOf } from './context.js';
import { ConfigError, ConflictError, InputError } from '../util/errors.js';
import { run } from '../util/exec.js';
import { atomicWrite, ensureDir } from '../util/fsx.js';
import { generateRndcKey } from '../daemons/bind.js';
import { ensurePrivsepDir } from '../daemons/sshd.js';
import { ensureNginxDirs } from '../daemons/nginx.js';
import { userUid } from '../daemons/sessions.js';
import { initCa } from './ca.js';
import { addressScope } from '../net/address.js';
import { assertUnderRoot, assertUsableRoot } from './trial-root.js';
import { capacityJson, capacitySummary, relayCapacity, type CapacityJson } from './capacity.js';
import { readHostFacts } from './host-facts.js';

export interface InitOptions {
  configFile: string;
  /** Values for a new configuration file (ignored when the file exists). */
  domain?: string;
  ipv4?: string;
  ipv6?: string;
  dnsDaemon?: 'bind' | 'nsd';
  sshPort?: number;
  portsFirst?: number;
  portsLast?: number;
  apiPort?: number;
  ttl?: number;
  secondaries?: { name: string; ipv4: string }[];
  /** Put every path under this directory (tests, demos, unprivileged trials). */
  root?: string;
  /** sha256:HEX of the CA root this machine must end with (a relay joining a fleet's CA pins the store's root). */
  caPin?: string;
  /** A PostgreSQL store for a new configuration (state.url), and the file holding its password. */
  stateUrl?: string;
  statePasswordFile?: string;
  progress?: (m: string) => void;
}

export interface InitStep {
  what: string;
  /** 'checked': a finding about this machine (the relay's capacity), not a change. */
  status: 'created' | 'kept' | 'updated' | 'warning' | 'checked';
  path?: string;
}

/**
 * Public ports inside the kernel's ephemeral range can be taken by any outgoing connection of the server
 * (to the API, to a secondary...), and a pod's tunnel then fails to listen there. Returns a warning, if so.
 */
export function ephemeralOverlap(first: number, last: number, rangeText: string | undefined): string | undefined {
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(rangeText ?? '');
  if (!m) return undefined;
  const [lo, hi] = [Number(m[1]), Number(m[2])];
  if (last < lo || first > hi) return undefined;
  return `the public port range ${first}-${last} overlaps this machine's ephemeral port range ${lo}-${hi}: reserve it (sysctl net.ipv4.ip_local_reserved_ports=${first}-${last}) or move ports.first/ports.last`;
}

export interface InitReport {
  config: string;
  steps: InitStep[];
  /** How many pods this relay can hold and what limits it (the same report as check-config's). */
  capacity: CapacityJson;
}

/**
 * The system users a new configuration names. A trial (`--root`) gets users of its own, derived from its
 * root, so that two trials on one machine never share one (nor delete the other's at teardown).
 */
export function trialUsers(root: string | undefined): { tunnel: string; keys: string; table: string } {
  if (!root) return { tunnel: 'pipe2me-tunnel', keys: 'pipe2me-keys', table: 'pipe2me' };
  const tag = createHash('sha256').update(path.resolve(root)).digest('hex').slice(0, 8);
  return { tunnel: `p2m-t-${tag}`, keys: `p2m-k-${tag}`, table: `pipe2me_${tag}` };
}

/** The text of a new configuration from init's flags (pure: what writeConfigSkeleton writes). */
export function newConfigText(o: InitOptions): string {
  if (!o.domain || !o.ipv4) {
    throw new ConfigError(`No configuration at ${o.configFile}, and not enough to write one.`, {
      hint: 'Pass --domain and --ipv4 (e.g. pipe2me-ctl init --domain pipe.example.com --ipv4 198.51.100.10), or write the file from config/pipe2me.example.yml.',
    });
  }
  const users = trialUsers(o.root);
  const scope = addressScope(o.ipv4);
  return renderTemplate('config/pipe2me.yml.hbs', {
    domain: o.domain.toLowerCase(),
    serverName: 'server',
    ipv4: o.ipv4,
    ipv6: o.ipv6 ?? null,
    sshPort: o.sshPort ?? 4444,
    tunnelUser: users.tunnel,
    keysUser: users.keys,
    firewallTable: users.table,
    allowNonGlobal: scope !== null && scope !== 'global',
    serverScope: scope ?? 'none',
    portsFirst: o.portsFirst ?? 20000,
    portsLast: o.portsLast ?? 29999,
    apiPort: o.apiPort ?? 8470,
    dnsDaemon: o.dnsDaemon ?? 'bind',
    ttl: o.ttl ?? 60,
    secondaries: o.secondaries ?? [],
    root: o.root ? path.resolve(o.root) : null,
    stateUrl: o.stateUrl ?? null,
    statePasswordFile: o.statePasswordFile ? path.resolve(o.statePasswordFile) : null,
  });
}

function writeConfigSkeleton(o: InitOptions): void {
  const text = newConfigText(o);
  ensureDir(path.dirname(o.configFile), 0o755);
  // Validate before writing: a skeleton that would not load is never left behind.
  parseConfigText(text, o.configFile);
  atomicWrite(o.configFile, text, { mode: 0o644 });
}

/** A system user of pipe2me's (its own group, no home directory), made if it is missing; its passwd fields. */
async function ensureSystemUser(user: string, o: { home: string; shell: string; what: string }, steps: InitStep[]): Promise<{ uid: number; gid: number; shell: string }> {
  if ((await userUid(user)) === undefined) {
    await run('useradd', ['--system', '--no-create-home', '--home-dir', o.home, '--shell', o.shell, '--user-group', user], { timeout: 30_000 });
    steps.push({ what: `${o.what} ${user}`, status: 'created' });
  } else {
    steps.push({ what: `${o.what} ${user}`, status: 'kept' });
  }
  const r = await run('getent', ['passwd', user], { allowFailure: true, timeout: 10_000 });
  const f = r.stdout.trim().split(':');
  if (r.exitCode !== 0 || !Number.isInteger(Number(f[2])) || f.length < 7) throw new ConflictError('user_missing', `The ${o.what} ${user} could not be created.`);
  return { uid: Number(f[2]), gid: Number(f[3]), shell: f[6]! };
}

async function ensureTunnelUser(c: Config, steps: InitStep[]): Promise<{ uid: number; gid: number }> {
  const user = c.ssh.tunnelUser;
  // A system user with a real shell: sshd runs forced commands through the login shell, and nologin
  // would refuse them. The key's forced command is the only thing it ever runs.
  const u = await ensureSystemUser(user, { home: '/', shell: '/bin/sh', what: 'tunnel user' }, steps);
  // useradd leaves the password field '!' (locked); with UsePAM no, sshd then refuses even key logins.
  await run('usermod', ['-p', '*', user], { timeout: 30_000 });
  if (u.shell !== '/bin/sh') await run('usermod', ['--shell', '/bin/sh', user], { timeout: 30_000 });
  return { uid: u.uid, gid: u.gid };
}

/** The primary group of nginx's worker user: the one group that may enter the trusted-socket directory. */
async function workerGroup(c: Config): Promise<number> {
  const r = await run('getent', ['passwd', c.http.workerUser], { allowFailure: true, timeout: 10_000 });
  const gid = Number(r.stdout.split(':')[3]);
  if (r.exitCode !== 0 || !Number.isInteger(gid)) {
    throw new ConfigError(`nginx's worker user ${c.http.workerUser} (http.worker_user) does not exist on this machine.`, {
      hint: 'Install nginx (Debian creates www-data), or set http.worker_user to the user its workers should run as.',
    });
  }
  return gid;
}

/** The key lookup's user: a system user that can log in to nothing. */
async function ensureKeysUser(c: Config, steps: InitStep[]): Promise<{ uid: number; gid: number }> {
  const u = await ensureSystemUser(c.ssh.keysUser, { home: '/nonexistent', shell: '/usr/sbin/nologin', what: 'key lookup user' }, steps);
  return { uid: u.uid, gid: u.gid };
}

/** "sha256:HEX" (64 hex digits, as `ca init` and `token create` print it) → the lower-case hex. */
export function parseCaPin(pin: string): string {
  const m = /^sha256:([0-9a-fA-F]{64})$/.exec(pin.trim());
  if (!m) throw new InputError('bad_option', `--ca-pin must look like sha256: and 64 hex digits (got ${JSON.stringify(pin.slice(0, 80))}).`, { hint: 'Copy ca_pin from `pipe2me-ctl --json ca init` on the relay that holds the root.' });
  return m[1]!.toLowerCase();
}

export async function initServer(o: InitOptions): Promise<InitReport> {
  if (o.caPin !== undefined) parseCaPin(o.caPin);
  const steps: InitStep[] = [];
  const progress = o.progress ?? (() => {});
  // A trial root is checked before anything is written, inside it or out.
  if (o.root) {
    assertUsableRoot(o.root);
    assertUnderRoot(o.root, o.configFile, fs.existsSync(o.configFile) ? loadConfig(o.configFile) : undefined);
    ensureDir(path.resolve(o.root), 0o755);
  }
  if (!fs.existsSync(o.configFile)) {
    if (o.stateUrl !== undefined) {
      // Refused before anything is written: not PostgreSQL, a password in it, a URL libpq would not take.
      if (!/^postgres(ql)?:\/\//.test(o.stateUrl)) throw new InputError('bad_option', '--state-url must be a postgres:// URL.', { hint: 'e.g. --state-url postgres://pipe2me@db1.example.net:5432/pipe2me (leave it out for SQLite).' });
      (await import('../state/engines/postgres-connect.js')).parsePostgresUrl(o.stateUrl);
    }
    writeConfigSkeleton(o);
    steps.push({ what: 'configuration', status: 'created', path: o.configFile });
  } else {
    steps.push({ what: 'configuration', status: 'kept', path: o.configFile });
  }
  const c = loadConfig(o.configFile);
  const L = layout(c);

  const dirs: [string, number][] = [
    // 0711: nginx's workers must reach public/ (CRL, CA certificate); nobody may list the rest.
    [L.stateDir, 0o711], [L.lockDir, 0o700], [L.certsDir, 0o700], [L.publicDir, 0o755], [c.paths.ca, 0o700],
    [L.sshd.dir, 0o755], [L.nginx.dir, 0o755], [L.bind.dir, 0o755], [c.paths.run, 0o755], [c.paths.log, 0o755],
    [L.bind.workDir, 0o755], [L.nsd.workDir, 0o755],
  ];
  for (const [d, mode] of dirs) {
    const existed = fs.existsSync(d);
    ensureDir(d, mode);
    if (!existed) steps.push({ what: 'directory', status: 'created', path: d });
  }
  ensureNginxDirs(L);
  if (!fs.existsSync('/run/sshd')) {
    // sshd's privilege separation directory is compiled into it: the one path outside any root.
    ensurePrivsepDir();
    steps.push({ what: 'sshd\'s privilege separation directory (fixed in sshd, outside any --root)', status: 'created', path: '/run/sshd' });
  }

  progress('tunnel user');
  const owner = await ensureTunnelUser(c, steps);
  // The session holder runs as the tunnel user and records live sessions here; nothing else is theirs.
  ensureDir(L.sessionsDir, 0o755, owner);
  // sshd runs the key lookup as its own user, which records connections here; the index it reads is root's.
  const keysOwner = await ensureKeysUser(c, steps);
  ensureDir(L.connsDir, 0o755, keysOwner);
  ensureDir(L.sshd.keysDir, 0o755);
  ensureDir(L.nginx.socketDir, 0o750, { uid: 0, gid: await workerGroup(c) });

  if (!fs.existsSync(L.sshd.hostKey)) {
    progress('sshd host key');
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `pipe2me ${c.server.fqdn}`, '-f', L.sshd.hostKey], { timeout: 30_000 });
    fs.chmodSync(L.sshd.hostKey, 0o600);
    steps.push({ what: 'sshd host key', status: 'created', path: L.sshd.hostKey });
  } else {
    steps.push({ what: 'sshd host key', status: 'kept', path: L.sshd.hostKey });
  }

  if (c.dns.daemon === 'bind') {
    if (!fs.existsSync(L.bind.rndcKey)) {
      atomicWrite(L.bind.rndcKey, await generateRndcKey(), { mode: 0o600 });
      steps.push({ what: 'rndc key', status: 'created', path: L.bind.rndcKey });
    } else {
      steps.push({ what: 'rndc key', status: 'kept', path: L.bind.rndcKey });
    }
  }

  let range: string | undefined;
  try {
    range = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8');
  } catch {
    range = undefined; // not Linux
  }
  const overlap = ephemeralOverlap(c.ports.first, c.ports.last, range);
  if (overlap) steps.push({ what: overlap, status: 'warning' });

  const target = storeTargetOf(c);
  const existed = target.url?.startsWith('postgres') ? true : fs.existsSync(L.stateDb);
  const db = await openStore(target, { create: true });
  steps.push({ what: 'state store', status: existed ? 'kept' : 'created', path: db.location });
  try {
    progress('certificate authority');
    const ca = await initCa({ config: c, layout: L, db }, o.caPin === undefined ? {} : { rootPin: parseCaPin(o.caPin) });
    steps.push({ what: `certificate authority (root sha256:${ca.sha256.slice(0, 16)}…)`, status: ca.created ? 'created' : 'kept', path: c.paths.ca });
  } finally {
    await db.close();
  }

  // Last, so that an operator reads it after what init did: what this machine lets the relay hold.
  const capacity = relayCapacity(c, readHostFacts());
  steps.push({ what: capacitySummary(capacity), status: 'checked' });
  for (const w of capacity.warnings) steps.push({ what: w, status: 'warning' });
  return { config: o.configFile, steps, capacity: capacityJson(capacity) };
}
