/**
 * State stores for tests, on either engine: a test file runs its cases on both with
 *
 *   describe.each(ENGINES)('%s', (engine) => {
 *     let t: TestStore;
 *     beforeEach(async () => (t = await openTestStore(engine)));
 *     afterEach(() => t.cleanup());
 *     it('…', async () => { await createSubdomain(t.store, …); });
 *   });
 *   afterAll(closeTestStores);
 *
 * SQLite: a store in a fresh temporary directory, removed by cleanup(). PostgreSQL: one throwaway server per
 * test file (test/stack/postgres.ts, started when first needed, with a password so that the password path is
 * the one used), and each test on an empty schema: the public schema dropped and made again by the database
 * owner before the store is opened (which then migrates it). Every handle a test opens through open() is
 * closed by cleanup(), also when the test failed; closeTestStores() closes what is left and the server.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openStore, type StoreTarget } from '../../src/state/db.js';
import type { Engine, Store } from '../../src/state/store.js';
import { closeAllPostgres, startPostgres, type PgServer } from '../stack/postgres.js';
import { closeStoreProcesses } from './store-procs.js';

export const ENGINES = ['sqlite', 'postgres'] as const satisfies readonly Engine[];
export type TestEngine = (typeof ENGINES)[number];

export interface TestStore {
  engine: TestEngine;
  /** The store the test works with (opened, migrated). */
  store: Store;
  /** How to open it again (another handle, another "process"). */
  target: StoreTarget;
  /** The state directory (SQLite: holds state.db). */
  stateDir: string;
  /** PostgreSQL: the server this test file uses. */
  server?: PgServer;
  /** Another handle on the same store, closed by cleanup(). */
  open(target?: StoreTarget): Promise<Store>;
  /** Close every handle of this test (errors ignored) and remove what it made. Idempotent. */
  cleanup(): Promise<void>;
}

export interface TestStoreOptions {
  /** Use this state directory (made if missing, left in place) instead of a fresh temporary one. */
  stateDir?: string;
  /** Default true: open the store. False: only prepare the empty target (the test opens it). */
  open?: boolean;
}

let server: Promise<PgServer> | undefined;
const pending = new Set<TestStore>();

/** The test file's PostgreSQL server, started on first use. */
export function testPostgres(): Promise<PgServer> {
  server ??= startPostgres({ password: randomBytes(12).toString('base64url') }).catch((e: unknown) => {
    server = undefined;
    throw e;
  });
  return server;
}

/** A plain client as the database owner (for resetting the schema, or looking at what the store holds). */
export async function ownerClient(s: PgServer): Promise<pg.Client> {
  const c = new pg.Client({ host: s.host, port: s.port, user: s.user, database: s.database, password: s.password, connectionTimeoutMillis: 5000 });
  c.on('error', () => {});
  await c.connect();
  return c;
}

/** An empty public schema: nothing of an earlier test is left (tables, triggers, functions, sequences). */
export async function resetPostgres(s: PgServer): Promise<void> {
  const c = await ownerClient(s);
  try {
    // A handle left open by a broken test must not hang the next one: fail instead.
    await c.query("SET lock_timeout = '10s'");
    await c.query('DROP SCHEMA IF EXISTS public CASCADE');
    await c.query('CREATE SCHEMA public');
  } finally {
    await c.end().catch(() => {});
  }
}

export async function openTestStore(engine: TestEngine, opts: TestStoreOptions = {}): Promise<TestStore> {
  const ownDir = opts.stateDir === undefined ? fs.mkdtempSync(path.join(os.tmpdir(), `p2m-store-${engine}-`)) : undefined;
  const stateDir = opts.stateDir ?? ownDir!;
  const handles = new Set<Store>();
  let done: Promise<void> | undefined;
  const t: TestStore = {
    engine,
    store: undefined as unknown as Store,
    target: { stateDir },
    stateDir,
    async open(target = t.target) {
      const s = await openStore(target, { create: engine === 'sqlite' });
      handles.add(s);
      return s;
    },
    cleanup() {
      done ??= (async () => {
        await Promise.all([...handles].map((h) => h.close().catch(() => {})));
        handles.clear();
        if (ownDir !== undefined) fs.rmSync(ownDir, { recursive: true, force: true });
        pending.delete(t);
      })();
      return done;
    },
  };
  pending.add(t);
  try {
    fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    if (engine === 'postgres') {
      const s = await testPostgres();
      await resetPostgres(s);
      t.server = s;
      t.target = { stateDir, url: s.url, password: s.password };
    }
    if (opts.open !== false) t.store = await t.open();
    return t;
  } catch (e) {
    await t.cleanup();
    throw e;
  }
}

/** For afterAll: every test store not cleaned up yet, the store processes (store-procs.ts), then the file's PostgreSQL server. */
export async function closeTestStores(): Promise<void> {
  await Promise.all([...pending].map((t) => t.cleanup()));
  await closeStoreProcesses();
  const s = server;
  server = undefined;
  if (s) await s.then(() => undefined, () => undefined);
  await closeAllPostgres();
}
