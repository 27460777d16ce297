/**
 * The embedded engine: one SQLite file (WAL) that the CLI, the API and the probe use at once, through
 * better-sqlite3 and Kysely's SQLite dialect. Migrations run on open, synchronously, each in a BEGIN
 * IMMEDIATE transaction (a second process opening the store meanwhile waits and then finds it migrated).
 */
import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import { Kysely, SqliteDialect } from 'kysely';
import { MIGRATIONS, SCHEMA_VERSION } from '../migrations.js';
import type { Schema } from '../schema.js';
import type { Store } from '../store.js';
import { DowngradeError } from '../errors.js';

export function openSqliteStore(file: string): Store {
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
  try {
    migrateSqlite(db, file);
  } catch (e) {
    db.close();
    throw e;
  }
  const q = new Kysely<Schema>({ dialect: new SqliteDialect({ database: db }) });
  return { q, engine: 'sqlite', location: file, inTx: false, close: () => q.destroy() };
}

export function sqliteVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

export function migrateSqlite(db: Database.Database, file = 'state'): { from: number; to: number } {
  const from = sqliteVersion(db);
  if (from > SCHEMA_VERSION) throw new DowngradeError(file, from, SCHEMA_VERSION);
  for (const m of MIGRATIONS) {
    if (m.version <= sqliteVersion(db)) continue;
    db.transaction(() => {
      // Re-check inside the write lock: another process may have migrated meanwhile.
      if (sqliteVersion(db) >= m.version) return;
      db.exec(m.sql);
      m.run?.(db);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
  return { from, to: sqliteVersion(db) };
}
