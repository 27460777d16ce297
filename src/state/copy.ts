/**
 * Copying a whole store into another (a server moving from its SQLite file to PostgreSQL): every table in
 * foreign-key order, in batches, in one write transaction on the target, then checked — per table the row
 * count and a digest of every row in key order, computed the same way on both sides. The target must be
 * empty: a copy never merges two fleets.
 */
import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { ConflictError } from '../util/errors.js';
import { TABLES } from './schema.js';
import { readTx, writeTx, type Store } from './store.js';

type Table = (typeof TABLES)[number];

/** The columns each table is ordered by for its digest: its primary key (every column where it has none). */
const ORDER: Record<Table, readonly string[]> = {
  meta: ['key'], tokens: ['id'], subdomains: ['id'], ports: ['slot', 'port'], ssh_keys: ['subdomain_id'], certificates: ['serial'],
  mappings: ['subdomain_id', 'family', 'external_port'], probe_results: ['id'], removed_subdomains: ['id'], acme_orders: ['id'],
  acme_challenges: ['order_id', 'owner', 'value'], acme_failures: ['name', 'at'], render_seq: ['id'], render_journal: ['name'],
  metric_counters: ['name', 'labels'], metric_marks: ['name'], operators: ['name'], sessions: ['subdomain_id', 'relay'], ca_files: ['name'], relays: ['name'],
  acme_accounts: ['directory_url', 'key_sha256'],
};

/** Kept by triggers on the target while rows arrive: replaced by the source's own rows after everything else. */
const JOURNAL: readonly Table[] = ['render_seq', 'render_journal'];
/** The tables whose triggers keep that journal. */
const TRIGGERED = ['subdomains', 'ports', 'ssh_keys'] as const;

export interface TableCheck { table: Table; rows: number; digest: string }

export interface CopyResult { tables: TableCheck[]; rows: number; seconds: number }

const BATCH = 500;

async function readAll(s: Store, table: Table): Promise<Record<string, unknown>[]> {
  let q = s.q.selectFrom(table).selectAll();
  for (const c of ORDER[table]) q = q.orderBy(sql.ref(c));
  return (await q.execute()) as Record<string, unknown>[];
}

/** One digest for a table's rows, the same on both engines: columns by name, values in one spelling. */
export async function tableDigest(s: Store, table: Table): Promise<TableCheck> {
  const rows = await readAll(s, table);
  const h = createHash('sha256');
  for (const r of rows) {
    const canonical = Object.keys(r).sort().map((k) => {
      const v = r[k];
      return [k, typeof v === 'bigint' ? Number(v) : v === undefined ? null : v];
    });
    h.update(JSON.stringify(canonical)).update('\n');
  }
  return { table, rows: rows.length, digest: h.digest('hex') };
}

export async function checkTables(s: Store): Promise<TableCheck[]> {
  return readTx(s, async (t) => {
    const out: TableCheck[] = [];
    for (const table of TABLES) out.push(await tableDigest(t, table));
    return out;
  });
}

async function assertEmpty(s: Store): Promise<void> {
  for (const table of ['subdomains', 'tokens', 'certificates', 'operators', 'acme_orders'] as const) {
    const r = await s.q.selectFrom(table).select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow();
    if (Number(r.n) > 0) {
      throw new ConflictError('target_not_empty', `The target store ${s.location} already holds ${Number(r.n)} row(s) in ${table}.`, {
        hint: 'Copy into an empty database (createdb a new one), or drop what is there first: a copy never merges two stores.',
      });
    }
  }
}

/** Copies every row of `from` into the empty store `to`, and checks that both hold the same. */
export async function copyStore(from: Store, to: Store, progress: (m: string) => void = () => {}): Promise<CopyResult> {
  const started = performance.now();
  await assertEmpty(to);
  const source = await readTx(from, async (f) => {
    const out = new Map<Table, Record<string, unknown>[]>();
    for (const table of TABLES) out.set(table, await readAll(f, table));
    return out;
  });
  await writeTx(to, async (t) => {
    // The journal's triggers bump one counter row per inserted row: on PostgreSQL each update of a row
    // already updated in the transaction costs more than the last (quadratic: minutes at 50,000 pods). The
    // journal is replaced by the source's below anyway, so they are off for the copy (the tables are ours).
    if (t.engine === 'postgres') for (const table of TRIGGERED) await sql`ALTER TABLE ${sql.table(table)} DISABLE TRIGGER USER`.execute(t.q);
    for (const table of [...TABLES.filter((x) => !JOURNAL.includes(x)), ...JOURNAL]) {
      const rows = source.get(table)!;
      // The target's own triggers journaled the rows as they arrived; the journal is the source's.
      if (JOURNAL.includes(table)) await t.q.deleteFrom(table).execute();
      // meta holds what migrations and init wrote on the target too: the source's values win.
      if (table === 'meta') await t.q.deleteFrom('meta').execute();
      for (let i = 0; i < rows.length; i += BATCH) {
        await t.q.insertInto(table).values(rows.slice(i, i + BATCH) as never[]).execute();
      }
      if (rows.length) progress(`${table}: ${rows.length} row(s)`);
    }
    // An identity column does not move when ids are given: start it past the copied ones.
    if (t.engine === 'postgres') {
      for (const table of TRIGGERED) await sql`ALTER TABLE ${sql.table(table)} ENABLE TRIGGER USER`.execute(t.q);
      await sql`SELECT setval(pg_get_serial_sequence('probe_results', 'id'), GREATEST((SELECT max(id) FROM probe_results), 1))`.execute(t.q);
    }
  });
  const [a, b] = [await checkTables(from), await checkTables(to)];
  const differ = a.filter((x, i) => x.rows !== b[i]!.rows || x.digest !== b[i]!.digest);
  if (differ.length) {
    throw new ConflictError('copy_mismatch', `After the copy, ${differ.map((d) => d.table).join(', ')} differ between ${from.location} and ${to.location}.`, {
      hint: 'Nothing was switched: the source is untouched. Report this with both stores; do not point pipe2me at the target.',
      data: { source: a, target: b },
    });
  }
  return { tables: a, rows: a.reduce((n, x) => n + x.rows, 0), seconds: (performance.now() - started) / 1000 };
}

