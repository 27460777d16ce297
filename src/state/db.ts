/**
 * Opening the state store: SQLite in the state directory (the default), or the PostgreSQL database that
 * `state.url` names. Migrations run on open on both engines; a store written by a newer pipe2me is refused.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sql } from 'kysely';
import { ConfigError } from '../util/errors.js';
import { openSqliteStore } from './engines/sqlite.js';
import { writeTx, type Store } from './store.js';

export { DowngradeError } from './errors.js';
export { writeTx, readTx, type Store } from './store.js';

export const STATE_FILE = 'state.db';

/** Where the store is and how to reach it (the configuration's `paths.state` and `state` section). */
export interface StoreTarget {
  stateDir: string;
  /** `sqlite:PATH` (the default: state.db in stateDir) or a libpq-style `postgres://…` URL without a password. */
  url?: string | undefined;
  /** PostgreSQL: the password, read from state.password_file or PGPASSWORD by the caller — never in the URL. */
  password?: string | undefined;
  pool?: { max?: number; connectTimeoutMs?: number; idleTimeoutMs?: number; statementTimeoutMs?: number } | undefined;
}

export interface OpenOptions {
  /** Create the file if missing (init). Otherwise a missing store is an error that says to run init. */
  create?: boolean;
}

export function stateFile(stateDir: string): string {
  return path.join(stateDir, STATE_FILE);
}

/** The SQLite file a target names, or undefined for PostgreSQL. */
export function sqliteFileOf(target: StoreTarget): string | undefined {
  const url = target.url ?? '';
  if (url === '' ) return stateFile(target.stateDir);
  if (url.startsWith('sqlite:')) return path.resolve(target.stateDir, url.slice('sqlite:'.length));
  return undefined;
}

export function isPostgresUrl(url: string | undefined): boolean {
  return url !== undefined && /^postgres(ql)?:\/\//.test(url);
}

export async function openStore(target: StoreTarget | string, opts: OpenOptions = {}): Promise<Store> {
  const t: StoreTarget = typeof target === 'string' ? { stateDir: target } : target;
  if (isPostgresUrl(t.url)) {
    const { openPostgresStore } = await import('./engines/postgres.js');
    return openPostgresStore(t.url!, { ...t.pool, ...(t.password !== undefined ? { password: t.password } : {}) });
  }
  const file = sqliteFileOf(t);
  if (file === undefined) {
    throw new ConfigError(`state.url ${JSON.stringify(String(t.url).slice(0, 60))} is neither sqlite:PATH nor postgres://…`, {
      hint: 'Leave state.url out for the SQLite file in paths.state, or give postgres://USER@HOST:5432/DATABASE (the password in state.password_file).',
    });
  }
  if (!opts.create && !fs.existsSync(file)) {
    throw new ConfigError(`No state store at ${file}.`, { hint: 'Run `pipe2me-ctl init` first (with the same --config).' });
  }
  // Only created here if missing (tests, tools); init sets the directory's real mode (0711).
  if (opts.create) fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  return openSqliteStore(file);
}

export async function getMeta(s: Store, key: string): Promise<string | undefined> {
  const row = await s.q.selectFrom('meta').select('value').where('key', '=', key).executeTakeFirst();
  return row?.value;
}

export async function setMeta(s: Store, key: string, value: string): Promise<void> {
  await s.q.insertInto('meta').values({ key, value }).onConflict((oc) => oc.column('key').doUpdateSet({ value })).execute();
}

const ZONE_SERIAL_KEY = 'zone_serial_shared';

/** With relays: the last serial any relay gave the zone, and the digest of the zone it was given for. */
export async function sharedZoneSerial(s: Store): Promise<{ serial: number; digest: string } | null> {
  const v = await getMeta(s, ZONE_SERIAL_KEY);
  const m = v ? /^(\d+) ([0-9a-f]{64})$/.exec(v) : null;
  return m ? { serial: Number(m[1]), digest: m[2]! } : null;
}

/** Records a relay's new serial with its zone's digest, in one row and only when it is higher than the one recorded (never backwards). */
export async function recordZoneSerial(store: Store, serial: number, digest: string): Promise<void> {
  await writeTx(store, async (s) => {
    const current = await sharedZoneSerial(s);
    if (current && current.serial >= serial) return;
    await setMeta(s, ZONE_SERIAL_KEY, `${serial} ${digest}`);
  });
}

/** The schema version the store is at (PRAGMA user_version on SQLite, the schema_version row on PostgreSQL). */
export async function schemaVersion(s: Store): Promise<number> {
  if (s.engine === 'sqlite') {
    const r = await sql<{ user_version: number }>`PRAGMA user_version`.execute(s.q);
    return r.rows[0]?.user_version ?? 0;
  }
  const r = await sql<{ version: number }>`SELECT version FROM schema_version WHERE id = 1`.execute(s.q);
  return r.rows[0]?.version ?? 0;
}

/**
 * What the rendered files depend on, in a few bytes: the render journal's sequence (bumped by the store's
 * triggers on every change to a subdomain, its ports, its key or its routes, by whichever process) and the
 * dns-01 records ACME orders need published. The watcher polls it and applies when it moves. Writes that
 * render to nothing (metrics, session leases, the probe's history) leave it alone, so a watcher on a busy
 * store does not apply in a loop.
 */
export async function changeStamp(s: Store): Promise<string> {
  const seq = await s.q.selectFrom('render_seq').select('seq').where('id', '=', 1).executeTakeFirst();
  const challenges = await s.q.selectFrom('acme_challenges').select(['owner', 'value']).orderBy('owner').orderBy('value').execute();
  // A relay going down or up moves names too (see render/relays.ts).
  const relays = await s.q.selectFrom('relays').select(['name', 'state']).orderBy('name').execute();
  const h = createHash('sha256');
  for (const c of challenges) h.update(`${c.owner} ${c.value}\n`);
  for (const r of relays) h.update(`relay ${r.name} ${r.state}\n`);
  // Another relay recording a higher serial for the same zone moves this relay's serial to it (apply/plan.ts).
  const zoneSerial = await getMeta(s, ZONE_SERIAL_KEY);
  if (zoneSerial) h.update(`zone ${zoneSerial}\n`);
  return `${seq?.seq ?? 0}:${h.digest('hex').slice(0, 16)}`;
}
