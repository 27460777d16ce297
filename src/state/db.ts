/**
 * The state store: one SQLite file (WAL) that the CLI, the API and the probe use at once.
 * Every change is a BEGIN IMMEDIATE transaction, so two writers serialize instead of both reading a
 * name or a port as free. Migrations run on open; a store written by a newer pipe2me is refused.
 */
import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError, Pipe2meError, ExitCode } from '../util/errors.js';
import { MIGRATIONS, SCHEMA_VERSION } from './migrations.js';

export type Db = Database.Database;

export class DowngradeError extends Pipe2meError {
  constructor(file: string, found: number) {
    super('state_too_new', `The state store ${file} has schema version ${found}, but this pipe2me knows only up to version ${SCHEMA_VERSION}. It was written by a newer pipe2me.`,
      ExitCode.config, 500, { hint: 'Install that newer pipe2me again (downgrades are refused so that no data is lost), or restore a backup made before the upgrade.' });
  }
}

export const STATE_FILE = 'state.db';

export interface OpenOptions {
  /** Create the file if missing (init). Otherwise a missing store is an error that says to run init. */
  create?: boolean;
}

export function stateFile(stateDir: string): string {
  return path.join(stateDir, STATE_FILE);
}

export function openDb(stateDir: string, opts: OpenOptions = {}): Db {
  const file = stateFile(stateDir);
  if (!opts.create && !fs.existsSync(file)) {
    throw new ConfigError(`No state store at ${file}.`, { hint: 'Run `pipe2me-ctl init` first (with the same --config).' });
  }
  // Only created here if missing (tests, tools); init sets the directory's real mode (0711).
  if (opts.create) fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const db = new Database(file);
  // WAL lets readers (list, the probe, the API) run while one writer commits.
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 15000');
  db.pragma('foreign_keys = ON');
  db.pragma('synchronous = NORMAL');
  try {
    fs.chmodSync(file, 0o600);
  } catch {
    /* read-only filesystems in tests: permissions are then the caller's business */
  }
  migrate(db, file);
  return db;
}

export function schemaVersion(db: Db): number {
  return db.pragma('user_version', { simple: true }) as number;
}

export function migrate(db: Db, file = 'state'): { from: number; to: number } {
  const from = schemaVersion(db);
  if (from > SCHEMA_VERSION) throw new DowngradeError(file, from);
  for (const m of MIGRATIONS) {
    if (m.version <= schemaVersion(db)) continue;
    db.transaction(() => {
      // Re-check inside the write lock: another process may have migrated meanwhile.
      if (schemaVersion(db) >= m.version) return;
      db.exec(m.sql);
      m.run?.(db);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
  return { from, to: schemaVersion(db) };
}

/** Run `fn` in a write transaction (BEGIN IMMEDIATE): serialized against every other writer. */
export function writeTx<T>(db: Db, fn: () => T): T {
  return db.transaction(fn).immediate();
}

export function getMeta(db: Db, key: string): string | undefined {
  const row = db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
  return row?.value;
}

export function setMeta(db: Db, key: string, value: string): void {
  db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
}
