/**
 * PostgreSQL's schema (src/state/engines/postgres-schema.ts) against what SQLite's migrations 1–9 make, on
 * both real engines: the same tables, columns, keys, indexes and foreign keys (read from each engine's
 * catalog); the same rows refused, for the same reason; text sorted and compared byte-wise; and the render
 * journal's triggers leaving render_seq and render_journal the same after every write of a seeded random
 * sequence (cascaded deletes, renames, ports moved between subdomains, failed writes included).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import pg from 'pg';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MIGRATIONS } from '../../src/state/migrations.js';
import { POSTGRES_SCHEMA_V9, POSTGRES_VERSION_TABLE } from '../../src/state/engines/postgres-schema.js';
import { closeAllPostgres, PG_BIN, startPostgres, type PgServer } from '../stack/postgres.js';

const VERSION = 9;
/** The 0/1 flags: `integer` on PostgreSQL; every other INTEGER is `bigint`. */
const FLAGS = new Set(['tokens.extendable', 'tokens.single_use', 'subdomains.passthrough', 'probe_results.ok']);

type Row = Record<string, unknown>;
/** What a write came to: done, or refused by which kind of constraint (other: the engine's own code). */
type Outcome = 'ok' | 'check' | 'notnull' | 'unique' | 'fk' | `other:${string}`;

interface Side {
  run(sql: string, params?: unknown[]): Promise<Outcome>;
  all(sql: string, params?: unknown[]): Promise<Row[]>;
}

const SQLITE_CODES: Record<string, Outcome> = {
  SQLITE_CONSTRAINT_CHECK: 'check',
  SQLITE_CONSTRAINT_NOTNULL: 'notnull',
  SQLITE_CONSTRAINT_UNIQUE: 'unique',
  SQLITE_CONSTRAINT_PRIMARYKEY: 'unique',
  SQLITE_CONSTRAINT_FOREIGNKEY: 'fk',
};
const PG_CODES: Record<string, Outcome> = { '23514': 'check', '23502': 'notnull', '23505': 'unique', '23503': 'fk' };

function sqliteSide(db: Database.Database): Side {
  return {
    async run(sql, params = []) {
      try {
        db.prepare(sql).run(...params);
        return 'ok';
      } catch (e) {
        const code = (e as { code?: unknown }).code;
        if (!(e instanceof Database.SqliteError) || typeof code !== 'string') throw e;
        return SQLITE_CODES[code] ?? `other:${code}`;
      }
    },
    async all(sql, params = []) {
      return db.prepare(sql).all(...params) as Row[];
    },
  };
}

/** `?` placeholders (as SQLite takes them) to `$1`, `$2`… (no `?` appears in the tests' literals). */
function dollars(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

function pgSide(c: pg.Client): Side {
  return {
    async run(sql, params = []) {
      try {
        await c.query(dollars(sql), params);
        return 'ok';
      } catch (e) {
        const code = (e as { code?: unknown }).code;
        if (typeof code !== 'string') throw e;
        return PG_CODES[code] ?? `other:${code}`;
      }
    },
    async all(sql, params = []) {
      return (await c.query(dollars(sql), params)).rows as Row[];
    },
  };
}

/** int8 as a JS number (the store's driver does the same); everything else as pg parses it. */
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20 /* int8 */ ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

const canRun = process.getuid?.() === 0 && fs.existsSync(path.join(PG_BIN, 'postgres'));

describe.skipIf(!canRun)('the PostgreSQL schema against SQLite at version 9', () => {
  let server: PgServer;
  let sqliteDir: string;
  const clients: pg.Client[] = [];
  const sqlites: Database.Database[] = [];
  let opened = 0;

  beforeAll(async () => {
    sqliteDir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-pgschema-'));
    server = await startPostgres();
  });
  afterAll(async () => {
    for (const c of clients) await c.end().catch(() => {});
    for (const db of sqlites) db.close();
    await closeAllPostgres();
    if (sqliteDir) fs.rmSync(sqliteDir, { recursive: true, force: true });
  });

  /** A SQLite store at version 9, migrated as the project migrates one (later migrations left out). */
  function freshSqlite(): Database.Database {
    const db = new Database(path.join(sqliteDir, `state-${++opened}.db`));
    sqlites.push(db);
    db.pragma('journal_mode = WAL');
    db.pragma('foreign_keys = ON');
    for (const m of MIGRATIONS) {
      if (m.version > VERSION) continue;
      db.transaction(() => {
        db.exec(m.sql);
        m.run?.(db);
        db.pragma(`user_version = ${m.version}`);
      }).immediate();
    }
    expect(db.pragma('user_version', { simple: true })).toBe(VERSION);
    return db;
  }

  /** A schema of its own in the server's database, made as the migration runner makes it. */
  async function freshPostgres(): Promise<pg.Client> {
    const schema = `v9_${++opened}`;
    const c = new pg.Client({ host: server.host, port: server.port, user: server.user, password: server.password, database: server.database, types: TYPES });
    c.on('error', () => {});
    await c.connect();
    clients.push(c);
    await c.query(`CREATE SCHEMA ${schema}`);
    await c.query(`SET search_path = ${schema}`);
    await c.query(POSTGRES_VERSION_TABLE.replace(/^CREATE TABLE /, 'CREATE TABLE IF NOT EXISTS '));
    await c.query('BEGIN');
    await c.query(POSTGRES_SCHEMA_V9);
    await c.query(`INSERT INTO schema_version (id, version) VALUES (1, ${VERSION})`);
    await c.query('COMMIT');
    return c;
  }

  // ------------------------------------------------------------------------------------- the catalog

  interface Column { name: string; type: string; notnull: boolean; dflt: string | null; pk: number }

  async function pgColumns(c: pg.Client, table: string): Promise<Column[]> {
    const pk = new Map(
      (
        await c.query<{ name: string; ord: number }>(
          `SELECT a.attname AS name, k.ord::int AS ord FROM pg_constraint con
             CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
           WHERE con.contype = 'p' AND con.conrelid = $1::regclass`,
          [table],
        )
      ).rows.map((r) => [r.name, r.ord]),
    );
    const rows = (
      await c.query<{ name: string; data_type: string; is_nullable: string; column_default: string | null }>(
        `SELECT column_name AS name, data_type, is_nullable, column_default FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`,
        [table],
      )
    ).rows;
    return rows.map((r) => ({
      name: r.name,
      type: r.data_type,
      notnull: r.is_nullable === 'NO',
      // 'active'::text → 'active', as SQLite keeps it.
      dflt: r.column_default === null ? null : r.column_default.replace(/::[a-z ]+$/, ''),
      pk: pk.get(r.name) ?? 0,
    }));
  }

  function sqliteColumns(db: Database.Database, table: string): Column[] {
    const rows = db.pragma(`table_info(${table})`) as { name: string; type: string; notnull: number; dflt_value: string | null; pk: number }[];
    return rows.map((r) => ({
      name: r.name,
      // What PostgreSQL's type must be for this one.
      type: r.type === 'TEXT' ? 'text' : r.type === 'REAL' ? 'double precision' : r.type === 'INTEGER' ? (FLAGS.has(`${table}.${r.name}`) ? 'integer' : 'bigint') : `? ${r.type}`,
      // A STRICT table's key columns are NOT NULL (an INTEGER PRIMARY KEY is the rowid: never NULL either).
      notnull: r.notnull === 1 || r.pk > 0,
      dflt: r.dflt_value,
      pk: r.pk,
    }));
  }

  it('has the same tables, columns (order, types, NOT NULL, defaults), keys, indexes and foreign keys', async () => {
    const db = freshSqlite();
    const c = await freshPostgres();

    const sqliteTables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").pluck().all() as string[]).sort();
    const pgTables = (
      await c.query<{ t: string }>("SELECT table_name AS t FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")
    ).rows.map((r) => r.t).filter((t) => t !== 'schema_version').sort();
    expect(pgTables).toEqual(sqliteTables);
    expect(sqliteTables).toHaveLength(17);

    for (const t of sqliteTables) expect(await pgColumns(c, t), t).toEqual(sqliteColumns(db, t));

    // Every text column compares byte-wise, whatever the database's default collation.
    const textCollations = (
      await c.query<{ col: string; collation_name: string | null }>(
        `SELECT table_name || '.' || column_name AS col, collation_name FROM information_schema.columns
         WHERE table_schema = current_schema() AND data_type = 'text' AND table_name <> 'schema_version'`,
      )
    ).rows;
    expect(textCollations.length).toBeGreaterThan(50);
    expect(textCollations.filter((r) => r.collation_name !== 'C')).toEqual([]);

    // INTEGER PRIMARY KEY AUTOINCREMENT ↔ an identity column.
    const autoincrement = (db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all() as { name: string; sql: string }[])
      .flatMap((r) => [...r.sql.matchAll(/(\w+)\s+INTEGER PRIMARY KEY AUTOINCREMENT/gi)].map((m) => `${r.name}.${m[1]}`));
    const identity = (
      await c.query<{ col: string }>(`SELECT table_name || '.' || column_name AS col FROM information_schema.columns WHERE table_schema = current_schema() AND is_identity = 'YES'`)
    ).rows.map((r) => r.col);
    expect(identity).toEqual(autoincrement);
    expect(identity).toEqual(['probe_results.id']);

    // Indexes: those made by CREATE INDEX by name; UNIQUE constraints by their columns.
    interface Index { table: string; unique: boolean; columns: string }
    const sqliteIndexes = new Map<string, Index>();
    const sqliteUniques: string[] = [];
    for (const t of sqliteTables) {
      for (const ix of db.pragma(`index_list(${t})`) as { name: string; unique: number; origin: string; partial: number }[]) {
        const columns = (db.pragma(`index_info(${ix.name})`) as { seqno: number; name: string }[]).sort((a, b) => a.seqno - b.seqno).map((x) => x.name).join(',');
        if (ix.origin === 'c') sqliteIndexes.set(ix.name, { table: t, unique: ix.unique === 1, columns });
        else if (ix.origin === 'u') sqliteUniques.push(`${t}(${columns})`);
        expect(ix.partial, ix.name).toBe(0);
      }
    }
    const pgIndexRows = (
      await c.query<{ name: string; table: string; unique: boolean; columns: string; contype: string | null; partial: boolean }>(
        `SELECT i.relname AS name, t.relname AS table, ix.indisunique AS unique, ix.indpred IS NOT NULL AS partial,
           (SELECT string_agg(a.attname::text, ',' ORDER BY k.ord) FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum) AS columns,
           (SELECT con.contype::text FROM pg_constraint con WHERE con.conindid = ix.indexrelid AND con.contype IN ('p', 'u')) AS contype
         FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_class t ON t.oid = ix.indrelid
           JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = current_schema() AND t.relname <> 'schema_version'`,
      )
    ).rows;
    const pgIndexes = new Map(pgIndexRows.filter((r) => r.contype === null).map((r) => [r.name, { table: r.table, unique: r.unique, columns: r.columns }]));
    expect(Object.fromEntries(pgIndexes)).toEqual(Object.fromEntries(sqliteIndexes));
    expect(sqliteIndexes.size).toBe(11);
    expect(pgIndexRows.filter((r) => r.contype === 'u').map((r) => `${r.table}(${r.columns})`).sort()).toEqual(sqliteUniques.sort());
    expect(pgIndexRows.filter((r) => r.partial)).toEqual([]);

    // Foreign keys: columns, referenced table and columns, actions.
    const ACTIONS: Record<string, string> = { a: 'NO ACTION', r: 'RESTRICT', c: 'CASCADE', n: 'SET NULL', d: 'SET DEFAULT' };
    const sqliteFks: string[] = [];
    for (const t of sqliteTables) {
      const rows = db.pragma(`foreign_key_list(${t})`) as { id: number; seq: number; table: string; from: string; to: string; on_update: string; on_delete: string }[];
      for (const id of new Set(rows.map((r) => r.id))) {
        const fk = rows.filter((r) => r.id === id).sort((a, b) => a.seq - b.seq);
        sqliteFks.push(`${t}(${fk.map((r) => r.from).join(',')}) → ${fk[0]!.table}(${fk.map((r) => r.to).join(',')}) ON UPDATE ${fk[0]!.on_update} ON DELETE ${fk[0]!.on_delete}`);
      }
    }
    const pgFks = (
      await c.query<{ table: string; parent: string; from_cols: string; to_cols: string; upd: string; del: string; deferrable: boolean }>(
        `SELECT t.relname AS table, f.relname AS parent, con.confupdtype::text AS upd, con.confdeltype::text AS del, con.condeferrable AS deferrable,
           (SELECT string_agg(a.attname::text, ',' ORDER BY k.ord) FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum) AS from_cols,
           (SELECT string_agg(a.attname::text, ',' ORDER BY k.ord) FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum) AS to_cols
         FROM pg_constraint con JOIN pg_class t ON t.oid = con.conrelid JOIN pg_class f ON f.oid = con.confrelid
           JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE con.contype = 'f' AND n.nspname = current_schema()`,
      )
    ).rows;
    expect(pgFks.filter((r) => r.deferrable)).toEqual([]);
    expect(pgFks.map((r) => `${r.table}(${r.from_cols}) → ${r.parent}(${r.to_cols}) ON UPDATE ${ACTIONS[r.upd]} ON DELETE ${ACTIONS[r.del]}`).sort()).toEqual(sqliteFks.sort());
    expect(sqliteFks).toHaveLength(8);

    // As many CHECK constraints (what each refuses: the next test).
    const sqliteChecks = (db.prepare("SELECT sql FROM sqlite_master WHERE type = 'table'").pluck().all() as string[]).reduce((n, s) => n + (s.match(/\bCHECK\s*\(/gi)?.length ?? 0), 0);
    const pgChecks = (
      await c.query<{ n: number }>(
        `SELECT count(*) AS n FROM pg_constraint con JOIN pg_class t ON t.oid = con.conrelid JOIN pg_namespace ns ON ns.oid = t.relnamespace
         WHERE con.contype = 'c' AND ns.nspname = current_schema() AND t.relname <> 'schema_version'`,
      )
    ).rows[0]!.n;
    expect(pgChecks).toBe(sqliteChecks);
    expect(sqliteChecks).toBe(16);

    // The initial render_seq row, and the version table the runner writes.
    expect((await c.query('SELECT id, seq, pruned_through FROM render_seq')).rows).toEqual(db.prepare('SELECT id, seq, pruned_through FROM render_seq').all());
    expect((await c.query('SELECT id, version FROM schema_version')).rows).toEqual([{ id: 1, version: VERSION }]);
  });

  it('has the render journal triggers, on the same events and the same columns', async () => {
    const db = freshSqlite();
    const c = await freshPostgres();
    const sqliteTriggers = (db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").all() as { name: string; sql: string }[]).map((r) => {
      const m = /\bAFTER\s+(INSERT|DELETE|UPDATE)(?:\s+OF\s+([\w\s,]+?))?\s+ON\s+(\w+)/i.exec(r.sql);
      expect(m, r.sql).not.toBeNull();
      return `${r.name}: ${m![1]} ${m![2] ? `OF ${m![2].split(',').map((s) => s.trim()).join(',')} ` : ''}ON ${m![3]}`;
    });
    const pgTriggers = (
      await c.query<{ name: string; event: string; table: string; timing: string; columns: string | null }>(
        `SELECT t.trigger_name AS name, t.event_manipulation AS event, t.event_object_table AS table, t.action_timing AS timing,
           (SELECT string_agg(u.event_object_column::text, ',' ORDER BY a.attnum) FROM information_schema.triggered_update_columns u
              JOIN pg_attribute a ON a.attrelid = t.event_object_table::text::regclass AND a.attname = u.event_object_column
            WHERE u.trigger_schema = t.trigger_schema AND u.trigger_name = t.trigger_name) AS columns
         FROM information_schema.triggers t WHERE t.trigger_schema = current_schema() AND t.action_orientation = 'ROW'`,
      )
    ).rows;
    expect(pgTriggers.map((r) => `${r.name}: ${r.event} ${r.columns ? `OF ${r.columns} ` : ''}ON ${r.table}`).sort()).toEqual(sqliteTriggers.sort());
    expect(sqliteTriggers).toHaveLength(9);
    // The one that runs before its row goes (and does the cascade's bumps: see the schema's comment).
    expect(pgTriggers.filter((r) => r.timing !== 'AFTER').map((r) => `${r.timing} ${r.name}`)).toEqual(['BEFORE render_journal_subdomains_delete']);
  });

  // ------------------------------------------------------------------------------------ constraints

  /** A valid row of every table, whose parents the fixture below has. */
  const BASE: Record<string, Row> = {
    meta: { key: 'k', value: 'v' },
    tokens: { id: 't', secret_hash: 'th', label: '', max_ports: 1, lifespan_seconds: null, extendable: 0, single_use: 1, uses: 0, created_at: 1, revoked_at: null, max_subdomains: 2, max_total_ports: 3 },
    subdomains: { id: 's', name: 'n', fqdn: 'n.example', status: 'active', created_at: 1, passthrough: 0, token_id: 'tok', secret_hash: 'sh', claim_hash: 'ch', route: 'server', route6: 'server' },
    ports: { port: 30000, subdomain_id: 'sub', protocol: 'tcp', position: 0 },
    ssh_keys: { subdomain_id: 'sub', algorithm: 'ssh-ed25519', public_key: 'AAAA', fingerprint: 'SHA256:x', bits: 256, added_at: 1 },
    certificates: { serial: 'c1', subdomain_id: 'sub', fqdn: 'parent.example', kind: 'pod', not_before: 1, not_after: 2, sha256: 'h', issued_at: 1, issuer: 'acme' },
    mappings: { subdomain_id: 'sub', family: 6, external_port: 1, internal_port: 1, external_ip: null, via: 'pinhole', lease_seconds: 60, reported_at: 1 },
    probe_results: { subdomain_id: 'sub', at: 1, address: null, ok: 1, route: 'server', detail: '{}', family: 4 },
    removed_subdomains: { id: 'r', fqdn: 'r.example', secret_hash: null, removed_at: 1, reason: 'x' },
    acme_orders: { id: 'o', subdomain_id: null, purpose: 'server', names: 'a', csr_pem: 'c', key_sha256: 'k', state: 'queued', next_attempt_at: 1, created_at: 1, updated_at: 1 },
    acme_challenges: { order_id: 'ord', owner: 'o', value: 'v' },
    acme_failures: { name: 'n', at: 1 },
    render_seq: { id: 1, seq: 0, pruned_through: 0 },
    render_journal: { name: 'n', seq: 1 },
    metric_counters: { name: 'n', labels: '{}', value: 1.5 },
    metric_marks: { name: 'n', value: 2.5, at: 1 },
    operators: { name: 'n', secret_hash: 'oh', created_at: 1, last_used: null },
  };
  /** Before a table's inserts, in the same transaction. */
  const PREP: Record<string, string> = { render_seq: 'DELETE FROM render_seq' };
  const insertSql = (table: string, row: Row) => `INSERT INTO ${table} (${Object.keys(row).join(', ')}) VALUES (${Object.keys(row).map(() => '?').join(', ')})`;

  interface Case { label: string; inserts: [string, Row][]; sqlite: Outcome; postgres?: Outcome }

  it('refuses the same rows for the same reasons (CHECK, NOT NULL, UNIQUE, foreign keys)', async () => {
    const db = freshSqlite();
    const c = await freshPostgres();
    const sides = [sqliteSide(db), pgSide(c)] as const;
    for (const s of sides) {
      expect(await s.run("INSERT INTO tokens (id, secret_hash, max_ports, created_at) VALUES ('tok', 'tok-h', 5, 1)")).toBe('ok');
      expect(await s.run("INSERT INTO subdomains (id, name, fqdn, created_at) VALUES ('sub', 'parent', 'parent.example', 1)")).toBe('ok');
      expect(await s.run("INSERT INTO acme_orders (id, purpose, names, csr_pem, key_sha256, state, next_attempt_at, created_at, updated_at) VALUES ('ord', 'pod', 'n', 'c', 'k', 'queued', 1, 1, 1)")).toBe('ok');
    }
    const one = (table: string, over: Row): [string, Row][] => [[table, { ...BASE[table], ...over }]];
    const cases: Case[] = [];
    for (const t of Object.keys(BASE)) cases.push({ label: `${t}: a valid row`, inserts: one(t, {}), sqlite: 'ok' });

    const badChecks: [string, string, unknown][] = [
      ['tokens', 'max_ports', 0], ['tokens', 'lifespan_seconds', 0], ['tokens', 'max_subdomains', 0], ['tokens', 'max_total_ports', -1],
      ['subdomains', 'status', 'bogus'], ['subdomains', 'route', 'relay'], ['subdomains', 'route6', 'x'],
      ['ports', 'protocol', 'udp'], ['certificates', 'kind', 'ca'], ['certificates', 'issuer', 'other'],
      ['mappings', 'family', 5], ['mappings', 'via', 'x'], ['probe_results', 'family', 5],
      ['acme_orders', 'purpose', 'x'], ['acme_orders', 'state', 'done'], ['render_seq', 'id', 2],
    ];
    for (const [t, col, v] of badChecks) cases.push({ label: `${t}.${col} = ${JSON.stringify(v)}`, inserts: one(t, { [col]: v }), sqlite: 'check' });
    const goodEdges: [string, Row][] = [
      ['tokens', { lifespan_seconds: 1, max_subdomains: null, max_total_ports: null }], ['subdomains', { status: 'expired', route: 'direct', route6: 'direct' }],
      ['ports', { protocol: 'http' }], ['ports', { protocol: 'https' }], ['certificates', { kind: 'server', issuer: 'private' }],
      ['mappings', { family: 4, via: 'upnp' }], ['mappings', { via: 'natpmp' }], ['mappings', { via: 'open' }], ['probe_results', { family: 6 }],
      ['acme_orders', { purpose: 'pod', state: 'working' }], ['acme_orders', { state: 'valid' }], ['acme_orders', { state: 'failed' }], ['acme_orders', { state: 'cancelled' }],
    ];
    for (const [t, over] of goodEdges) cases.push({ label: `${t} ${JSON.stringify(over)}`, inserts: one(t, over), sqlite: 'ok' });

    // Every NOT NULL column, set to NULL (the rowid columns apart: below).
    const ROWID = new Set(['ports.port', 'render_seq.id', 'probe_results.id']);
    for (const t of Object.keys(BASE)) {
      for (const col of db.pragma(`table_info(${t})`) as { name: string; notnull: number }[]) {
        if (col.notnull === 1 && !ROWID.has(`${t}.${col.name}`)) cases.push({ label: `${t}.${col.name} = NULL`, inserts: one(t, { [col.name]: null }), sqlite: 'notnull' });
      }
    }
    // The one difference: SQLite's INTEGER PRIMARY KEY is the rowid, and NULL there means "the next one".
    // PostgreSQL refuses NULL (an identity column takes its default only when the column is left out).
    cases.push({ label: 'ports.port = NULL', inserts: one('ports', { port: null }), sqlite: 'ok', postgres: 'notnull' });
    cases.push({ label: 'probe_results.id = NULL', inserts: one('probe_results', { id: null }), sqlite: 'ok', postgres: 'notnull' });
    cases.push({ label: 'render_seq.id = NULL', inserts: one('render_seq', { id: null }), sqlite: 'ok', postgres: 'notnull' });
    cases.push({ label: 'probe_results.id given', inserts: one('probe_results', { id: 7 }), sqlite: 'ok' });

    // Each row twice: its key (acme_failures has none; probe_results numbers its rows).
    for (const t of Object.keys(BASE)) {
      cases.push({ label: `${t}: the same row twice`, inserts: [...one(t, {}), ...one(t, {})], sqlite: t === 'acme_failures' || t === 'probe_results' ? 'ok' : 'unique' });
    }
    const sub2 = { ...BASE.subdomains, id: 's2', name: 'n2', fqdn: 'n2.example', secret_hash: 'sh2', claim_hash: 'ch2' };
    for (const col of ['name', 'fqdn', 'secret_hash', 'claim_hash']) {
      cases.push({ label: `subdomains.${col} twice`, inserts: [['subdomains', BASE.subdomains!], ['subdomains', { ...sub2, [col]: BASE.subdomains![col] }]], sqlite: 'unique' });
    }
    cases.push({ label: 'subdomains: two without a secret or a claim', inserts: [['subdomains', { ...BASE.subdomains, secret_hash: null, claim_hash: null }], ['subdomains', { ...sub2, secret_hash: null, claim_hash: null }]], sqlite: 'ok' });
    cases.push({ label: 'tokens.secret_hash twice', inserts: [['tokens', BASE.tokens!], ['tokens', { ...BASE.tokens, id: 't2' }]], sqlite: 'unique' });
    cases.push({ label: 'operators.secret_hash twice', inserts: [['operators', BASE.operators!], ['operators', { ...BASE.operators, name: 'n2' }]], sqlite: 'unique' });
    cases.push({ label: 'ports: a position twice', inserts: [['ports', BASE.ports!], ['ports', { ...BASE.ports, port: 30001 }]], sqlite: 'unique' });
    cases.push({ label: 'ports: the same port for another', inserts: [['subdomains', sub2], ['ports', BASE.ports!], ['ports', { ...BASE.ports, subdomain_id: 's2' }]], sqlite: 'unique' });
    cases.push({ label: 'ssh_keys.fingerprint twice', inserts: [['subdomains', sub2], ['ssh_keys', BASE.ssh_keys!], ['ssh_keys', { ...BASE.ssh_keys, subdomain_id: 's2' }]], sqlite: 'unique' });
    cases.push({ label: 'mappings: one port per family', inserts: [['mappings', BASE.mappings!], ['mappings', { ...BASE.mappings, family: 4 }]], sqlite: 'ok' });
    cases.push({ label: 'metric_counters: a series per labels', inserts: [['metric_counters', BASE.metric_counters!], ['metric_counters', { ...BASE.metric_counters, labels: '{"a":"b"}' }]], sqlite: 'ok' });

    // Foreign keys.
    for (const [t, col] of [['subdomains', 'token_id'], ['ports', 'subdomain_id'], ['ssh_keys', 'subdomain_id'], ['certificates', 'subdomain_id'], ['mappings', 'subdomain_id'], ['probe_results', 'subdomain_id'], ['acme_orders', 'subdomain_id'], ['acme_challenges', 'order_id']] as const) {
      cases.push({ label: `${t}.${col}: no such parent`, inserts: one(t, { [col]: 'missing' }), sqlite: 'fk' });
    }
    cases.push({ label: 'certificates without a subdomain', inserts: one('certificates', { subdomain_id: null }), sqlite: 'ok' });

    // STRICT types: a wrong type is refused by both (each with its own code).
    cases.push({ label: 'ports.position = 1.5', inserts: one('ports', { position: 1.5 }), sqlite: 'other:SQLITE_CONSTRAINT_DATATYPE', postgres: 'other:22P02' });
    cases.push({ label: "tokens.max_ports = 'many'", inserts: one('tokens', { max_ports: 'many' }), sqlite: 'other:SQLITE_CONSTRAINT_DATATYPE', postgres: 'other:22P02' });
    cases.push({ label: 'metric_marks.value = 3 (an integer in a REAL)', inserts: one('metric_marks', { value: 3 }), sqlite: 'ok' });

    let seen = 0;
    for (const k of cases) {
      const outcomes: Outcome[] = [];
      for (const s of sides) {
        await s.run('BEGIN');
        try {
          const [prep, last] = [k.inserts.slice(0, -1), k.inserts[k.inserts.length - 1]!];
          const table = last[0];
          if (PREP[table]) expect(await s.run(PREP[table]), k.label).toBe('ok');
          for (const [t, row] of prep) expect(await s.run(insertSql(t, row), Object.values(row)), `${k.label}: before`).toBe('ok');
          outcomes.push(await s.run(insertSql(table, last[1]), Object.values(last[1])));
        } finally {
          await s.run('ROLLBACK');
        }
      }
      expect({ case: k.label, sqlite: outcomes[0], postgres: outcomes[1] }).toEqual({ case: k.label, sqlite: k.sqlite, postgres: k.postgres ?? k.sqlite });
      seen++;
    }
    expect(seen).toBeGreaterThan(120);
  });

  it('sorts and compares text byte-wise, as SQLite does', async () => {
    const db = freshSqlite();
    const c = await freshPostgres();
    const sides = [sqliteSide(db), pgSide(c)] as const;
    const keys = ['a', 'B', '_', '-', 'A', 'b', 'a-b', 'ab', 'a_b', 'é', 'e', 'E', 'Z', 'z', '0', '9', '~', ' ', 'ä', 'ﬀ', '😀', 'ß', 'ss', 'a b', 'ab1', 'ab10', 'ab2'];
    const bytewise = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    const results: unknown[][] = [];
    for (const s of sides) {
      for (const k of keys) expect(await s.run('INSERT INTO meta (key, value) VALUES (?, ?)', [k, k.toUpperCase()])).toBe('ok');
      const ordered = (await s.all('SELECT key FROM meta ORDER BY key')).map((r) => r.key);
      expect(ordered).toEqual(bytewise);
      results.push([
        ordered,
        (await s.all('SELECT key FROM meta WHERE key > ? AND key <= ? ORDER BY key DESC', ['B', 'a_b'])).map((r) => r.key),
        await s.all('SELECT min(key) AS lo, max(key) AS hi FROM meta'),
        (await s.all('SELECT key FROM meta WHERE key = ?', ['a'])).map((r) => r.key),
        (await s.all('SELECT key FROM meta WHERE value = ? ORDER BY key', ['A'])).map((r) => r.key),
        (await s.all('SELECT DISTINCT value FROM meta ORDER BY value')).map((r) => r.value),
        (await s.all("SELECT key || '!' AS k FROM meta ORDER BY 1")).map((r) => r.k),
      ]);
    }
    expect(results[1]).toEqual(results[0]);
    // The data would sort otherwise under a natural-language collation: this test can tell.
    const icu = (await c.query<{ collname: string }>("SELECT collname FROM pg_collation WHERE collname = 'und-x-icu'")).rows;
    if (icu.length > 0) {
      const natural = (await c.query<{ key: string }>('SELECT key FROM meta ORDER BY key COLLATE "und-x-icu"')).rows.map((r) => r.key);
      expect(natural).not.toEqual(bytewise);
    }
  });

  // ------------------------------------------------------------------------------------ the journal

  it('keeps render_seq and render_journal the same through a seeded random sequence of writes', async () => {
    // Another sequence: P2M_SCHEMA_SEED=<n> (then what it met is not checked: only that both engines agree).
    const DEFAULT_SEED = 0x9e3779b9;
    const SEED = Number(process.env.P2M_SCHEMA_SEED ?? DEFAULT_SEED);
    const random = mulberry32(SEED);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    const chance = (p: number) => random() < p;

    const db = freshSqlite();
    const c = await freshPostgres();
    const sqlite = sqliteSide(db);
    const postgres = pgSide(c);

    interface Sub { id: string; name: string; ports: { port: number; position: number }[]; key: boolean }
    const subs: Sub[] = [];
    const freedNames: string[] = [];
    let n = 0;
    let nextPort = 20000;
    const counts: Record<string, number> = {};
    let label = '';

    /** One statement on both; both must come to the same outcome. */
    async function both(sql: string, params: unknown[] = []): Promise<Outcome> {
      const a = await sqlite.run(sql, params);
      const b = await postgres.run(sql, params);
      expect({ label, sql, postgres: b }).toEqual({ label, sql, postgres: a });
      return a;
    }
    const state = async (s: Side) => ({
      seq: await s.all('SELECT id, seq, pruned_through FROM render_seq'),
      journal: await s.all('SELECT name, seq FROM render_journal ORDER BY name'),
      subdomains: await s.all('SELECT id, name, fqdn, status, token_id, route, direct_ipv4, route6, direct_ipv6, probe_streak, passthrough FROM subdomains ORDER BY id'),
      ports: await s.all('SELECT port, subdomain_id, protocol, position FROM ports ORDER BY port'),
      keys: await s.all('SELECT subdomain_id, fingerprint, bits FROM ssh_keys ORDER BY subdomain_id'),
      certificates: await s.all('SELECT serial, subdomain_id FROM certificates ORDER BY serial'),
      mappings: await s.all('SELECT subdomain_id, family, external_port FROM mappings ORDER BY subdomain_id, family, external_port'),
    });
    const seqOf = async () => (await sqlite.all('SELECT seq FROM render_seq'))[0]!.seq as number;
    /** A statement on both, then the two stores compared; `journals`: how far render_seq must move (SQLite, the reference). */
    async function step(what: string, sql: string, params: unknown[], expected: Outcome = 'ok', journals?: number): Promise<void> {
      label = `${what} (#${++n})`;
      counts[what] = (counts[what] ?? 0) + 1;
      const before = await seqOf();
      expect(await both(sql, params), label).toBe(expected);
      const [a, b] = [await state(sqlite), await state(postgres)];
      expect({ label, ...b }).toEqual({ label, ...a });
      if (journals !== undefined) expect({ label, moved: (await seqOf()) - before }).toEqual({ label, moved: journals });
    }

    const NAME_STEMS = ['a', 'B', 'alpha', 'Alpha', 'x-1', 'x_1', 'zed', 'Ä', 'ß', '0'];
    const freshName = () => (freedNames.length > 0 && chance(0.3) ? freedNames.splice(Math.floor(random() * freedNames.length), 1)[0]! : `${pick(NAME_STEMS)}${n}-${Math.floor(random() * 1000)}`);
    const ipv4 = () => `192.0.2.${Math.floor(random() * 250) + 1}`;
    const ipv6 = () => `2001:db8::${Math.floor(random() * 0xffff).toString(16)}`;
    const anySub = () => (subs.length > 0 ? pick(subs) : undefined);
    const nextPosition = (s: Sub) => s.ports.reduce((m, p) => Math.max(m, p.position + 1), 0);

    for (const tok of ['t1', 't2', 't3']) await step('token', 'INSERT INTO tokens (id, secret_hash, max_ports, created_at) VALUES (?, ?, ?, ?)', [tok, `${tok}-h`, 10, 1], 'ok', 0);

    async function addSub(): Promise<void> {
      const name = freshName();
      const s: Sub = { id: `id-${n}-${Math.floor(random() * 1e6)}`, name, ports: [], key: false };
      await step('insert subdomain', 'INSERT INTO subdomains (id, name, fqdn, created_at, token_id, passthrough) VALUES (?, ?, ?, ?, ?, ?)',
        [s.id, name, `${name}.example`, n, chance(0.7) ? pick(['t1', 't2', 't3']) : null, chance(0.2) ? 1 : 0], 'ok', 1);
      subs.push(s);
      const ports = Math.floor(random() * 4);
      if (ports > 1 && chance(0.5)) {
        const rows = Array.from({ length: ports }, (_, i) => ({ port: nextPort++, position: i }));
        await step('insert ports (one statement)', `INSERT INTO ports (port, subdomain_id, protocol, position) VALUES ${rows.map(() => '(?, ?, ?, ?)').join(', ')}`,
          rows.flatMap((r) => [r.port, s.id, pick(['http', 'https', 'tcp']), r.position]), 'ok', ports);
        s.ports.push(...rows);
      } else {
        for (let i = 0; i < ports; i++) await addPort(s);
      }
      if (chance(0.7)) await setKey(s);
      if (chance(0.3)) await noise(s);
    }
    async function addPort(s: Sub): Promise<void> {
      const p = { port: nextPort++, position: nextPosition(s) };
      await step('insert port', 'INSERT INTO ports (port, subdomain_id, protocol, position) VALUES (?, ?, ?, ?)', [p.port, s.id, pick(['http', 'https', 'tcp']), p.position], 'ok', 1);
      s.ports.push(p);
    }
    async function setKey(s: Sub): Promise<void> {
      const fp = `SHA256:${n}-${Math.floor(random() * 1e6)}`;
      const bits = pick([256, 2048, 4096]);
      if (!s.key && chance(0.5)) {
        await step('insert key', 'INSERT INTO ssh_keys (subdomain_id, algorithm, public_key, fingerprint, bits, added_at) VALUES (?, ?, ?, ?, ?, ?)', [s.id, 'ssh-ed25519', `AAAA${fp}`, fp, bits, n], 'ok', 1);
      } else if (s.key && chance(0.5)) {
        await step('update key', 'UPDATE ssh_keys SET bits = ?, fingerprint = ? WHERE subdomain_id = ?', [bits, fp, s.id], 'ok', 1);
      } else {
        // As setSshKey writes it: an upsert (its INSERT trigger on a new key, its UPDATE trigger on a replaced one).
        await step(s.key ? 'upsert key (replaced)' : 'upsert key (new)',
          `INSERT INTO ssh_keys (subdomain_id, algorithm, public_key, fingerprint, bits, added_at) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (subdomain_id) DO UPDATE SET algorithm = excluded.algorithm, public_key = excluded.public_key, fingerprint = excluded.fingerprint, bits = excluded.bits, added_at = excluded.added_at`,
          [s.id, 'ssh-ed25519', `AAAA${fp}`, fp, bits, n], 'ok', 1);
      }
      s.key = true;
    }
    /** Rows in tables without journal triggers: they move nothing (and some cascade away with the subdomain). */
    async function noise(s: Sub): Promise<void> {
      const what = pick(['certificate', 'mapping', 'probe result', 'acme order'] as const);
      if (what === 'certificate') {
        await step('insert certificate', 'INSERT INTO certificates (serial, subdomain_id, fqdn, kind, not_before, not_after, sha256, issued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
          [`serial-${n}`, s.id, `${s.name}.example`, 'pod', 1, 2, 'h', n], 'ok', 0);
      } else if (what === 'mapping') {
        await step('insert mapping', 'INSERT INTO mappings (subdomain_id, family, external_port, internal_port, via, reported_at) VALUES (?, ?, ?, ?, ?, ?)',
          [s.id, pick([4, 6]), 40000 + n, 8080, pick(['upnp', 'natpmp', 'pinhole', 'open']), n], 'ok', 0);
      } else if (what === 'probe result') {
        await step('insert probe result', 'INSERT INTO probe_results (subdomain_id, at, address, ok, route, detail, family) VALUES (?, ?, ?, ?, ?, ?, ?)',
          [s.id, n, ipv4(), 1, 'direct', '{}', 4], 'ok', 0);
      } else {
        await step('insert acme order', "INSERT INTO acme_orders (id, subdomain_id, purpose, names, csr_pem, key_sha256, state, next_attempt_at, created_at, updated_at) VALUES (?, ?, 'pod', ?, 'c', 'k', 'queued', 1, 1, 1)",
          [`order-${n}`, s.id, s.name], 'ok', 0);
      }
    }

    type Op = [weight: number, run: () => Promise<void>];
    const ops: Op[] = [
      [10, addSub],
      [5, async () => { const s = anySub(); if (s) await addPort(s); }],
      [5, async () => { const s = anySub(); if (s) await setKey(s); }],
      [3, async () => { const s = anySub(); if (s) await noise(s); }],
      [6, async () => {
        const s = anySub();
        if (s) await step('update route', 'UPDATE subdomains SET route = ?, route_changed_at = ?, route_reason = ? WHERE id = ?', [pick(['server', 'direct']), n, 'probe', s.id], 'ok', 1);
      }],
      [5, async () => { const s = anySub(); if (s) await step('update direct_ipv4', 'UPDATE subdomains SET direct_ipv4 = ? WHERE id = ?', [chance(0.3) ? null : ipv4(), s.id], 'ok', 1); }],
      [5, async () => {
        const s = anySub();
        if (s) await step('update route6', 'UPDATE subdomains SET route6 = ?, direct_ipv6 = ?, route6_changed_at = ? WHERE id = ?', [pick(['server', 'direct']), chance(0.3) ? null : ipv6(), n, s.id], 'ok', 1);
      }],
      [3, async () => {
        const s = anySub();
        if (s) {
          const [col, v] = pick([['status', pick(['active', 'expired'])], ['passthrough', pick([0, 1])], ['fqdn', `${s.name}.other.example`]] as const);
          await step(`update ${col}`, `UPDATE subdomains SET ${col} = ? WHERE id = ?`, [v, s.id], 'ok', 1);
        }
      }],
      // Columns that render nothing: no journal.
      [8, async () => {
        const s = anySub();
        if (!s) return;
        const [what, sql, params] = pick([
          ['probe_streak', 'UPDATE subdomains SET probe_streak = probe_streak + 1, last_fallback_at = ? WHERE id = ?', [n, s.id]],
          ['probe6_streak', 'UPDATE subdomains SET probe6_streak = ?, observed_ipv6 = ?, observed6_at = ? WHERE id = ?', [Math.floor(random() * 5), ipv6(), n, s.id]],
          ['observed_ipv4', 'UPDATE subdomains SET observed_ipv4 = ?, observed_at = ? WHERE id = ?', [ipv4(), n, s.id]],
          ['mapping_note', 'UPDATE subdomains SET mapping_note = ?, reported_ipv6 = ?, ipv6_note = ? WHERE id = ?', ['no igd', ipv6(), 'ok', s.id]],
          ['expires_at', 'UPDATE subdomains SET expires_at = ? WHERE id = ?', [n + 86400, s.id]],
          ['token_id', 'UPDATE subdomains SET token_id = ?, secret_hash = ?, claim_hash = NULL WHERE id = ?', [pick(['t1', 't2', 't3', null]), `secret-${n}`, s.id]],
        ] as [string, string, unknown[]][]);
        await step(`update ${what} (no journal)`, sql, params, 'ok', 0);
      }],
      [5, async () => {
        const s = anySub();
        if (!s) return;
        if (chance(0.2)) {
          await step('update name to itself', 'UPDATE subdomains SET name = name WHERE id = ?', [s.id], 'ok', 1);
        } else {
          const name = freshName();
          await step('rename', 'UPDATE subdomains SET name = ?, fqdn = ? WHERE id = ?', [name, `${name}.example`, s.id], 'ok', 1);
          freedNames.push(s.name);
          s.name = name;
        }
      }],
      [5, async () => {
        const several = subs.filter((x) => x.ports.length > 1);
        if (several.length > 0 && chance(0.3)) {
          const s = pick(several);
          await step('delete all ports of one', 'DELETE FROM ports WHERE subdomain_id = ?', [s.id], 'ok', s.ports.length);
          s.ports = [];
        } else {
          const s = subs.find((x) => x.ports.length > 0 && chance(0.5)) ?? subs.find((x) => x.ports.length > 0);
          if (!s) return;
          const p = pick(s.ports);
          await step('delete port', 'DELETE FROM ports WHERE port = ?', [p.port], 'ok', 1);
          s.ports = s.ports.filter((x) => x !== p);
        }
      }],
      [4, async () => {
        const from = subs.find((x) => x.ports.length > 0 && chance(0.5)) ?? subs.find((x) => x.ports.length > 0);
        if (!from) return;
        const p = pick(from.ports);
        if (subs.length > 1 && chance(0.6)) {
          const to = pick(subs.filter((x) => x !== from));
          const position = nextPosition(to);
          await step('move port to another', 'UPDATE ports SET subdomain_id = ?, position = ? WHERE port = ?', [to.id, position, p.port], 'ok', 1);
          from.ports = from.ports.filter((x) => x !== p);
          to.ports.push({ port: p.port, position });
        } else {
          await step('update port protocol', 'UPDATE ports SET protocol = ? WHERE port = ?', [pick(['http', 'https', 'tcp']), p.port], 'ok', 1);
        }
      }],
      [2, async () => {
        const s = subs.find((x) => x.key);
        if (!s) return;
        await step('delete key', 'DELETE FROM ssh_keys WHERE subdomain_id = ?', [s.id], 'ok', 1);
        s.key = false;
      }],
      [6, async () => {
        const s = anySub();
        if (!s) return;
        // Cascades: its ports and key (their triggers move the seq, find no name), mappings, probe results,
        // acme orders; its certificates keep their rows (subdomain_id NULL).
        const children = s.ports.length + (s.key ? 1 : 0);
        await step(children > 0 ? 'delete subdomain with children' : 'delete subdomain alone', 'DELETE FROM subdomains WHERE id = ?', [s.id], 'ok', 1 + children);
        subs.splice(subs.indexOf(s), 1);
        freedNames.push(s.name);
      }],
      [1, async () => {
        // ON DELETE SET NULL into subdomains.token_id: an UPDATE of a column that renders nothing.
        const tok = pick(['t1', 't2', 't3']);
        await step('delete token', 'DELETE FROM tokens WHERE id = ?', [tok], 'ok', 0);
        await step('token', 'INSERT INTO tokens (id, secret_hash, max_ports, created_at) VALUES (?, ?, ?, ?)', [tok, `${tok}-h`, 10, n], 'ok', 0);
      }],
      [2, async () => {
        const seq = await seqOf();
        const through = Math.max(0, seq - Math.floor(random() * 10));
        await step('prune journal', 'DELETE FROM render_journal WHERE seq <= ?', [through], 'ok', 0);
        await step('prune mark', 'UPDATE render_seq SET pruned_through = ? WHERE id = 1', [through], 'ok', 0);
      }],
      // Refused writes leave nothing behind, on either.
      [4, async () => {
        const s = anySub();
        if (!s) return;
        const refusals: [string, string, unknown[], Outcome][] = [
          ['a name taken', 'INSERT INTO subdomains (id, name, fqdn, created_at) VALUES (?, ?, ?, 1)', [`dup-${n}`, s.name, `dup-${n}.example`], 'unique'],
          ['a port taken', 'INSERT INTO ports (port, subdomain_id, protocol, position) VALUES (?, ?, ?, ?)', [s.ports[0]?.port, s.id, 'tcp', 99], 'unique'],
          ['a port of no subdomain', 'INSERT INTO ports (port, subdomain_id, protocol, position) VALUES (?, ?, ?, ?)', [nextPort++, 'missing', 'tcp', 0], 'fk'],
          ['a route that is none', 'UPDATE subdomains SET route = ? WHERE id = ?', ['bogus', s.id], 'check'],
          ['a key of no subdomain', 'INSERT INTO ssh_keys (subdomain_id, algorithm, public_key, fingerprint, added_at) VALUES (?, ?, ?, ?, 1)', ['missing', 'a', 'b', `fp-${n}`], 'fk'],
          ['no row to update', 'UPDATE subdomains SET route = ? WHERE id = ?', ['direct', 'missing'], 'ok'],
        ];
        const [what, sql, params, outcome] = pick(refusals.filter(([w]) => w !== 'a port taken' || s.ports.length > 0));
        await step(`refused: ${what}`, sql, params, outcome, 0);
      }],
    ];
    const total = ops.reduce((t, [w]) => t + w, 0);
    for (let i = 0; i < 200; i++) {
      let r = random() * total;
      const op = ops.find(([w]) => (r -= w) < 0) ?? ops[0]!;
      await op[1]();
    }
    // Everything that could differ was met.
    if (SEED !== DEFAULT_SEED) return;
    expect(n).toBeGreaterThan(220);
    for (const what of ['delete subdomain with children', 'rename', 'move port to another', 'upsert key (replaced)', 'insert ports (one statement)', 'delete all ports of one', 'prune journal']) {
      expect(counts[what] ?? 0, `${what}: ${JSON.stringify(counts)}`).toBeGreaterThanOrEqual(2);
    }
    expect(await seqOf()).toBeGreaterThan(150);
    expect((await sqlite.all('SELECT count(*) AS n FROM render_journal'))[0]!.n).toBeGreaterThan(5);
  });

  it('a statement of many rows: the same seq and the same names after it (the order within it is each engine\'s own)', async () => {
    const db = freshSqlite();
    const c = await freshPostgres();
    const sides = [sqliteSide(db), pgSide(c)] as const;
    for (const s of sides) {
      for (let i = 0; i < 6; i++) {
        expect(await s.run('INSERT INTO subdomains (id, name, fqdn, created_at) VALUES (?, ?, ?, ?)', [`s${i}`, `n${i}`, `n${i}.example`, i])).toBe('ok');
        for (let p = 0; p < i % 3; p++) expect(await s.run("INSERT INTO ports (port, subdomain_id, protocol, position) VALUES (?, ?, 'tcp', ?)", [1000 + i * 10 + p, `s${i}`, p])).toBe('ok');
        if (i % 2 === 0) expect(await s.run("INSERT INTO ssh_keys (subdomain_id, algorithm, public_key, fingerprint, added_at) VALUES (?, 'a', 'k', ?, 1)", [`s${i}`, `fp${i}`])).toBe('ok');
      }
      // Rows rewritten in another order than they were written (PostgreSQL moves updated rows).
      for (const i of [3, 0, 5]) expect(await s.run('UPDATE subdomains SET route = ? WHERE id = ?', ['direct', `s${i}`])).toBe('ok');
    }
    const statements: [string, unknown[]][] = [
      ["UPDATE subdomains SET status = 'expired' WHERE created_at >= ?", [2]],
      ["UPDATE ports SET protocol = 'https'", []],
      ['UPDATE subdomains SET name = name || ?', ['-x']],
      ['DELETE FROM subdomains WHERE id IN (?, ?, ?)', ['s1', 's2', 's4']],
      ['DELETE FROM ssh_keys', []],
    ];
    for (const [sql, params] of statements) {
      const seen: unknown[] = [];
      for (const s of sides) {
        const before = (await s.all('SELECT seq FROM render_seq'))[0]!.seq as number;
        expect(await s.run(sql, params), sql).toBe('ok');
        seen.push({
          seq: await s.all('SELECT seq, pruned_through FROM render_seq'),
          changed: (await s.all('SELECT name FROM render_journal WHERE seq > ? ORDER BY name', [before])).map((r) => r.name),
          journal: (await s.all('SELECT name FROM render_journal ORDER BY name')).map((r) => r.name),
          last: await s.all('SELECT max(seq) AS m FROM render_journal'),
        });
      }
      expect({ sql, ...(seen[1] as object) }).toEqual({ sql, ...(seen[0] as object) });
    }
  });
});

/** A small seeded PRNG: the same sequence of writes on every run. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
