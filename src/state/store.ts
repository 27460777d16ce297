/**
 * The state store as every part of pipe2me sees it: one Kysely query layer over either engine — SQLite
 * (better-sqlite3, one file, the embedded default) or PostgreSQL (several relays sharing one fleet).
 * Every query of the project is a function in src/state/ that takes a Store; the dialect differences
 * (how a write transaction takes its lock, list parameters, substring search) are here and nowhere else.
 *
 * Transactions keep one guarantee on both engines: writers are serialised. SQLite does that by BEGIN
 * IMMEDIATE (its single write lock); PostgreSQL by one transaction-scoped advisory lock that every write
 * transaction takes first, so that two allocations never read the same name or port as free and a token's
 * quota cannot be raced — under READ COMMITTED, with no serialisation failures to retry (decided and
 * measured: see docs/operations.md "The state store").
 */
import { sql, type Expression, type Kysely, type RawBuilder, type SqlBool } from 'kysely';
import type { Schema } from './schema.js';
import * as path from 'node:path';
import { withLock } from '../util/lock.js';

export type Engine = 'sqlite' | 'postgres';

export interface Store {
  /** The query layer: the whole store, or one connection inside a transaction. */
  readonly q: Kysely<Schema>;
  readonly engine: Engine;
  /** Where it is, safe to print (a SQLite path, or a PostgreSQL URL without credentials). */
  readonly location: string;
  /** Inside a transaction: a nested writeTx joins it. */
  readonly inTx: boolean;
  /** Ends the store's connections (the root store only). */
  close(): Promise<void>;
}

/** Every write transaction on PostgreSQL takes this lock first (a constant: "p2m" in ASCII, then "w"). */
export const WRITE_LOCK = 0x70326d77;

async function inTransaction<T>(s: Store, begin: readonly string[], fn: (t: Store) => Promise<T>): Promise<T> {
  return s.q.connection().execute(async (conn) => {
    for (const stmt of begin) await sql.raw(stmt).execute(conn);
    const t: Store = { q: conn, engine: s.engine, location: s.location, inTx: true, close: async () => {} };
    try {
      const out = await fn(t);
      await sql.raw('COMMIT').execute(conn);
      return out;
    } catch (e) {
      await sql.raw('ROLLBACK').execute(conn).catch(() => {});
      throw e;
    }
  });
}

/**
 * Runs `fn` in a write transaction, serialised against every other writer of the store (whatever
 * process or relay). Inside one already, it joins it. `fn` must use the Store it is given, not the outer one.
 */
export function writeTx<T>(s: Store, fn: (t: Store) => Promise<T>): Promise<T> {
  if (s.inTx) return fn(s);
  return s.engine === 'sqlite'
    ? inTransaction(s, ['BEGIN IMMEDIATE'], fn)
    : inTransaction(s, ['BEGIN', `SELECT pg_advisory_xact_lock(${WRITE_LOCK})`], fn);
}

/** Runs `fn` against one consistent snapshot of the store (reads only; writers are not held up on PostgreSQL). */
export function readTx<T>(s: Store, fn: (t: Store) => Promise<T>): Promise<T> {
  if (s.inTx) return fn(s);
  return s.engine === 'sqlite'
    ? inTransaction(s, ['BEGIN DEFERRED'], fn)
    : inTransaction(s, ['BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY'], fn);
}

/**
 * `column IN (values)` for a list of any length: one parameter (a JSON array on SQLite, a text array on
 * PostgreSQL) instead of one per value, so that neither engine's limit on parameters is ever met.
 */
export function inList(s: Store, column: Expression<unknown> | string, values: readonly (string | number)[]): RawBuilder<SqlBool> {
  const col = typeof column === 'string' ? sql.ref(column) : column;
  if (s.engine === 'sqlite') return sql<SqlBool>`${col} IN (SELECT value FROM json_each(${JSON.stringify(values)}))`;
  const type = values.length > 0 && typeof values[0] === 'number' ? sql.raw('bigint[]') : sql.raw('text[]');
  return sql<SqlBool>`${col} = ANY(CAST(${values as unknown[]} AS ${type}))`;
}

/** `column` contains `needle` as a substring (byte-wise, case-sensitive on both engines). */
export function containsText(s: Store, column: string, needle: string): RawBuilder<SqlBool> {
  return s.engine === 'sqlite' ? sql<SqlBool>`instr(${sql.ref(column)}, ${needle}) > 0` : sql<SqlBool>`strpos(${sql.ref(column)}, ${needle}) > 0`;
}

/** A boolean expression as the 0/1 integer both engines return alike (PostgreSQL would return true/false). */
export function flag(expr: RawBuilder<unknown>): RawBuilder<number> {
  return sql<number>`CASE WHEN ${expr} THEN 1 ELSE 0 END`;
}

/** A count as a number on both engines. */
export function countAll(): RawBuilder<number> {
  return sql<number>`count(*)`;
}

/**
 * Runs `fn` holding a named lock across every process and relay that shares the store: a session
 * advisory lock on PostgreSQL (released when `fn` ends or the connection dies); on SQLite, whose users
 * share one machine, a lock file beside the store (src/util/lock.ts: released by the kernel if its holder dies),
 * in `state.db.locks/`.
 */
export async function withStoreLock<T>(s: Store, key: number, fn: () => Promise<T>): Promise<T> {
  // In a directory of its own: withLock makes its lock file's directory 0700, and the state directory's
  // own mode (0711, nginx passes through it to public/) must stay as init set it.
  if (s.engine === 'sqlite') return withLock(path.join(`${s.location}.locks`, key.toString(16)), 'the state store', fn);
  return s.q.connection().execute(async (conn) => {
    await sql`SELECT pg_advisory_lock(${key})`.execute(conn);
    try {
      return await fn();
    } finally {
      await sql`SELECT pg_advisory_unlock(${key})`.execute(conn).catch(() => {});
    }
  });
}

/** Lock keys of withStoreLock ("p2m" then one letter). */
export const LOCKS = { ca: 0x70326d63 } as const;
