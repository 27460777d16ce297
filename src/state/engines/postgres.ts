/**
 * The shared engine: a PostgreSQL database (several relays, one fleet), through `pg` and Kysely's
 * PostgreSQL dialect, over a pool that follows a failover to whichever listed host is read-write.
 * Migrations run on open under a session advisory lock: relays starting at once migrate once.
 */
import { Kysely, PostgresDialect, sql } from 'kysely';
import { MIGRATIONS, POSTGRES_BASELINE_VERSION, SCHEMA_VERSION } from '../migrations.js';
import type { Schema } from '../schema.js';
import type { Store } from '../store.js';
import { DowngradeError } from '../errors.js';
import { openPostgresPool, redactUrl, type PostgresOptions } from './postgres-connect.js';
import { POSTGRES_SCHEMA_V9, POSTGRES_VERSION_TABLE } from './postgres-schema.js';

/** Held (per session) while migrating: "p2m" "m". */
const MIGRATION_LOCK = 0x70326d6d;

export async function openPostgresStore(url: string, opts: PostgresOptions): Promise<Store> {
  const pool = openPostgresPool(url, opts);
  const q = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });
  const store: Store = { q, engine: 'postgres', location: redactUrl(url), inTx: false, close: () => q.destroy() };
  try {
    await migratePostgres(store);
  } catch (e) {
    await q.destroy().catch(() => {});
    throw e;
  }
  return store;
}

export async function migratePostgres(s: Store): Promise<{ from: number; to: number }> {
  return s.q.connection().execute(async (conn) => {
    await sql`SELECT pg_advisory_lock(${MIGRATION_LOCK})`.execute(conn);
    try {
      await sql.raw(POSTGRES_VERSION_TABLE.replace(/^CREATE TABLE /, 'CREATE TABLE IF NOT EXISTS ')).execute(conn);
      const read = async () => (await sql<{ version: number }>`SELECT version FROM schema_version WHERE id = 1`.execute(conn)).rows[0]?.version ?? 0;
      const from = await read();
      if (from > SCHEMA_VERSION) throw new DowngradeError(s.location, from, SCHEMA_VERSION);
      const steps: { version: number; ddl: string }[] = [];
      if (from < POSTGRES_BASELINE_VERSION) steps.push({ version: POSTGRES_BASELINE_VERSION, ddl: POSTGRES_SCHEMA_V9 });
      for (const m of MIGRATIONS) {
        if (m.version <= Math.max(from, POSTGRES_BASELINE_VERSION)) continue;
        if (m.postgres === undefined) throw new Error(`migration ${m.version} has no PostgreSQL form`);
        steps.push({ version: m.version, ddl: m.postgres });
      }
      for (const step of steps) {
        await sql.raw('BEGIN').execute(conn);
        try {
          await sql.raw(step.ddl).execute(conn);
          await sql`INSERT INTO schema_version (id, version) VALUES (1, ${step.version}) ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version`.execute(conn);
          await sql.raw('COMMIT').execute(conn);
        } catch (e) {
          await sql.raw('ROLLBACK').execute(conn).catch(() => {});
          throw e;
        }
      }
      return { from, to: await read() };
    } finally {
      await sql`SELECT pg_advisory_unlock(${MIGRATION_LOCK})`.execute(conn).catch(() => {});
    }
  });
}
