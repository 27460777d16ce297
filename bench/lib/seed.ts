/**
 * Fleets for the benchmarks, written straight into the state store: seeding, not what is measured.
 *
 * Tens of thousands of rows. On SQLite through better-sqlite3 directly on the file, in one write
 * transaction (prepared statements, no per-row promise: the fastest there is). On PostgreSQL through the
 * Store, in batched multi-row INSERTs (a few thousand rows per statement, under PostgreSQL's 65,535
 * parameters), committed every SUBDOMAINS_PER_TX subdomains: the render journal's triggers update the one
 * render_seq row once per row written, and on PostgreSQL each such update of a row already updated in the
 * same transaction costs more than the last (measured: 8,000 subdomains 19 s in one transaction, 4 × 2,000
 * in 10 s) — in steps the cost stays linear.
 */
import Database from 'better-sqlite3';
import { sql, type Insertable } from 'kysely';
import type { Stack } from '../../test/stack/stack.js';
import { openStore, sqliteFileOf, writeTx, type StoreTarget } from '../../src/state/db.js';
import type { Schema } from '../../src/state/schema.js';
import { storeTargetOf } from '../../src/server/context.js';
import { newId } from '../../src/util/secrets.js';
import { randomEd25519Key } from '../../test/stack/seed.js';

/** What a seed adds, per table (each table's rows all with the same columns). */
export interface SeedRows {
  subdomains: Insertable<Schema['subdomains']>[];
  ports: Insertable<Schema['ports']>[];
  ssh_keys: Insertable<Schema['ssh_keys']>[];
  mappings?: Insertable<Schema['mappings']>[];
}

/** Rows per INSERT on PostgreSQL. */
const BATCH = 2000;
/** Subdomains (with their rows in the other tables) per transaction on PostgreSQL. */
const SUBDOMAINS_PER_TX = 1000;

/**
 * Adds the rows `build` makes; `build` is given the highest port in use (null: none). SQLite: one write
 * transaction, the port read inside it. PostgreSQL: the port read first, then the rows in transactions of
 * SUBDOMAINS_PER_TX subdomains each with what refers to them (nothing else allocates during a seed).
 */
export async function seedRows(target: StoreTarget, build: (maxPort: number | null) => SeedRows): Promise<void> {
  const file = sqliteFileOf(target);
  if (file !== undefined) {
    const db = new Database(file, { fileMustExist: true });
    try {
      db.pragma('busy_timeout = 15000');
      db.pragma('foreign_keys = ON');
      db.transaction(() => {
        const rows = build(db.prepare('SELECT MAX(port) FROM ports').pluck().get() as number | null);
        for (const [table, list] of tablesOf(rows)) {
          if (list.length === 0) continue;
          const cols = Object.keys(list[0]!);
          const stmt = db.prepare(`INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`);
          for (const r of list) stmt.run(...cols.map((c) => (r as Record<string, unknown>)[c]));
        }
      }).immediate();
    } finally {
      db.close();
    }
    return;
  }
  const store = await openStore(target);
  try {
    const max = await store.q.selectFrom('ports').select(sql<number | null>`MAX(port)`.as('m')).executeTakeFirst();
    const rows = build(max?.m ?? null);
    // Each subdomain's rows go in its own step: parents and children commit together.
    const step = new Map<string, number>(rows.subdomains.map((r, i) => [r.id, Math.floor(i / SUBDOMAINS_PER_TX)]));
    const steps = Math.ceil(rows.subdomains.length / SUBDOMAINS_PER_TX);
    for (let n = 0; n < steps; n++) {
      await writeTx(store, async (tx) => {
        for (const [table, list] of tablesOf(rows)) {
          const mine = table === 'subdomains' ? list.slice(n * SUBDOMAINS_PER_TX, (n + 1) * SUBDOMAINS_PER_TX) : list.filter((r) => step.get((r as { subdomain_id: string }).subdomain_id) === n);
          for (let i = 0; i < mine.length; i += BATCH) await tx.q.insertInto(table).values(mine.slice(i, i + BATCH) as never).execute();
        }
      });
    }
  } finally {
    await store.close();
  }
}

function tablesOf(rows: SeedRows): [keyof SeedRows & keyof Schema, object[]][] {
  return [['subdomains', rows.subdomains], ['ports', rows.ports], ['ssh_keys', rows.ssh_keys], ['mappings', rows.mappings ?? []]];
}

/** Adds subdomains straight into the state (one https service each, with a key): seeding, not what is measured. */
export async function seedSubdomains(stack: Stack, count: number, startIndex: number): Promise<void> {
  await seedRows(storeTargetOf(stack.config), (maxPort) => {
    const rows: SeedRows = { subdomains: [], ports: [], ssh_keys: [] };
    let p = (maxPort ?? stack.config.ports.first - 1) + 1;
    for (let i = 0; i < count; i++) {
      const id = newId();
      const name = `seed-${startIndex + i}`;
      rows.subdomains.push({ id, name, fqdn: `${name}.${stack.config.domain}`, status: 'active', created_at: 1 });
      rows.ports.push({ port: p++, subdomain_id: id, protocol: 'https', position: 0 });
      const k = randomEd25519Key();
      rows.ssh_keys.push({ subdomain_id: id, algorithm: 'ssh-ed25519', public_key: k.publicKey, fingerprint: k.fingerprint, bits: 256, added_at: 1 });
    }
    return rows;
  });
}
