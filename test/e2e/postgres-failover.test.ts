/**
 * The PostgreSQL state store's connection (src/state/engines/postgres-connect.ts) against real servers
 * (test/stack/postgres.ts): one Kysely instance follows a failover from a dead primary to its promoted
 * standby without a restart, fails fast and typed while no server is up, and recovers by itself; a
 * password-protected server is reached with the password from the options only.
 */
import * as fs from 'node:fs';
import { Kysely, PostgresDialect, sql, type Generated } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openPostgresPool, StoreUnavailableError, type FailoverPool } from '../../src/state/engines/postgres-connect.js';
import { closeAllPostgres, PG_BIN, startPostgres, startPostgresIn, waitCaughtUp, type PgServer } from '../stack/postgres.js';
import { ADDR, World, commandLine, listPids } from '../world/index.js';

interface Db {
  notes: { id: Generated<number>; body: string; at: number };
}

const CONNECT_TIMEOUT_MS = 1500;
const started: PgServer[] = [];

async function server(opts: Parameters<typeof startPostgres>[0] = {}): Promise<PgServer> {
  const s = await startPostgres(opts);
  started.push(s);
  return s;
}

function processesOf(s: PgServer): number[] {
  const dir = s.dataDir.replace(/\/data$/, '');
  return listPids().filter((p) => commandLine(p).includes(dir));
}

function hostOf(s: PgServer): string {
  return `${s.host}:${s.port}`;
}

/** What an awaited promise rejected with (or undefined if it resolved). */
async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

/** Retry `fn` until it succeeds or the deadline passes; resolves with the attempts' count and time. */
async function retryUntil<T>(deadlineMs: number, fn: () => Promise<T>): Promise<{ value: T; attempts: number; ms: number; errors: string[] }> {
  const t0 = performance.now();
  const errors: string[] = [];
  for (let attempts = 1; ; attempts++) {
    try {
      return { value: await fn(), attempts, ms: performance.now() - t0, errors };
    } catch (e) {
      errors.push(`${(e as { code?: string }).code ?? (e as Error).name}: ${(e as Error).message.split('\n')[0]}`);
      if (performance.now() - t0 > deadlineMs) throw new Error(`still failing after ${deadlineMs} ms:\n${errors.slice(-5).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

afterAll(async () => {
  await closeAllPostgres();
  // Nothing left: no server directory, no postgres running from one.
  for (const s of started) {
    expect(fs.existsSync(s.dataDir), s.dataDir).toBe(false);
    expect(processesOf(s), `postgres processes of ${s.dataDir}`).toEqual([]);
  }
});

/** The server's postmaster and every process it started (its backends, the WAL writer …). */
function treeOf(s: PgServer): number[] {
  const roots = processesOf(s);
  const all = new Set(roots);
  for (let grew = true; grew;) {
    grew = false;
    for (const p of listPids()) {
      if (all.has(p)) continue;
      let ppid = -1;
      try {
        ppid = Number(fs.readFileSync(`/proc/${p}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]);
      } catch {
        continue;
      }
      if (all.has(ppid)) {
        all.add(p);
        grew = true;
      }
    }
  }
  return [...all];
}

describe('failover from a primary that goes silent (a partition, a frozen machine: no reset ever comes)', () => {
  let frozen: number[] = [];
  // Also when the test fails or times out: stopped processes would outlive every signal but SIGKILL.
  const thaw = () => {
    for (const p of frozen) {
      try {
        process.kill(p, 'SIGCONT');
      } catch {
        /* gone already */
      }
    }
    frozen = [];
  };
  afterEach(thaw);

  it('a query in flight gives up after the statement timeout and a margin, and the pool goes to the promoted standby', async () => {
    const primary = await server();
    const standby = await server({ standbyOf: primary });
    const pool = openPostgresPool(`postgres://pipe2me@${primary.host}:${primary.port},${standby.host}:${standby.port}/pipe2me?target_session_attrs=read-write`, {
      connectTimeoutMs: CONNECT_TIMEOUT_MS, statementTimeoutMs: 1500, max: 2,
    });
    const db = new Kysely<Db>({ dialect: new PostgresDialect({ pool }) });
    try {
      await sql`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL, at bigint NOT NULL)`.execute(db);
      await db.insertInto('notes').values({ body: 'before', at: 1 }).execute();
      await waitCaughtUp(standby);
      // With synchronous_commit off the primary may not have written the last commit out yet when the
      // standby is compared with it: the row itself is what must be on the standby before the freeze.
      await retryUntil(10_000, async () => {
        const c = new pg.Client({ host: standby.host, port: standby.port, user: standby.user, database: standby.database });
        await c.connect();
        try {
          if ((await c.query('SELECT count(*)::int AS n FROM notes')).rows[0].n !== 1) throw new Error('not replayed yet');
        } finally {
          await c.end();
        }
      });
      frozen = treeOf(primary);
      expect(frozen.length).toBeGreaterThan(1);
      for (const p of frozen) process.kill(p, 'SIGSTOP');
      const inFlight = failure(db.insertInto('notes').values({ body: 'lost', at: 2 }).execute());
      await standby.promote();
      const t0 = performance.now();
      const e = await inFlight;
      // Bounded by the client's own timeout (statement timeout + 5 s), not by TCP's.
      expect(e).toBeInstanceOf(StoreUnavailableError);
      expect(performance.now() - t0).toBeLessThan(9000);
      const r = await retryUntil(10_000, () => db.insertInto('notes').values({ body: 'after', at: 3 }).execute());
      expect(r.ms).toBeLessThan(10_000);
      expect(pool.currentHost()).toBe(hostOf(standby));
      expect((await db.selectFrom('notes').select('body').orderBy('id').execute()).map((n) => n.body)).toEqual(['before', 'after']);
    } finally {
      thaw();
      await db.destroy();
      await primary.close();
      await standby.close();
    }
  }, 60_000);
});

describe('failover: a primary and its standby behind one Kysely instance', () => {
  let primary: PgServer;
  let standby: PgServer;
  let pool: FailoverPool;
  let db: Kysely<Db>;

  beforeAll(async () => {
    primary = await server();
    standby = await server({ standbyOf: primary });
    pool = openPostgresPool(`postgres://pipe2me@${primary.host}:${primary.port},${standby.host}:${standby.port}/pipe2me?target_session_attrs=read-write`, {
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      max: 4,
    });
    db = new Kysely<Db>({ dialect: new PostgresDialect({ pool }) });
  });

  afterAll(async () => {
    await db?.destroy();
  });

  it('writes to the primary (not the standby, though both answer), and int8 comes back as a number', async () => {
    await sql`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL, at bigint NOT NULL)`.execute(db);
    await db.insertInto('notes').values({ body: 'before', at: 1_700_000_000 }).execute();
    expect(pool.currentHost()).toBe(hostOf(primary));
    const rows = await db.selectFrom('notes').selectAll().execute();
    expect(rows).toEqual([{ id: 1, body: 'before', at: 1_700_000_000 }]);
    const count = await sql<{ n: unknown }>`SELECT count(*) AS n FROM notes`.execute(db);
    expect(count.rows[0]?.n).toBe(1);
    const big = await failure(sql`SELECT 9007199254740993::bigint AS n`.execute(db));
    expect(String(big)).toMatch(/beyond JavaScript's exact integers/);
  });

  it('a statement in flight when the primary dies fails with StoreUnavailableError', async () => {
    await waitCaughtUp(standby);
    const inFlight = failure(sql`SELECT pg_sleep(30)`.execute(db));
    // Let it reach the server before pulling the plug.
    await new Promise((r) => setTimeout(r, 300));
    const t0 = performance.now();
    await primary.stop('immediate');
    const e = await inFlight;
    expect(e).toBeInstanceOf(StoreUnavailableError);
    expect((e as StoreUnavailableError).code).toBe('store_unavailable');
    expect(performance.now() - t0).toBeLessThan(2000);
    // The dead primary is no longer current: the next connect searches.
    expect(pool.currentHost()).toBeUndefined();
    // Before the promotion there is no primary at all: unavailable, naming both hosts and why.
    const before = await failure(db.selectFrom('notes').selectAll().execute());
    expect(before).toBeInstanceOf(StoreUnavailableError);
    expect((before as Error).message).toContain(`${hostOf(primary)}: `);
    expect((before as Error).message).toMatch(/ECONNREFUSED/);
    expect((before as Error).message).toContain(`${hostOf(standby)}: the server is in recovery`);
  });

  it('follows the promoted standby through the same Kysely instance, without a restart', async () => {
    await standby.promote();
    const r = await retryUntil(5000, () => db.insertInto('notes').values({ body: 'after', at: 1_700_000_100 }).execute());
    expect(r.ms).toBeLessThan(5000);
    expect(pool.currentHost()).toBe(hostOf(standby));
    // The write from before the failover is there (replicated), and the new one after it.
    expect((await db.selectFrom('notes').select(['id', 'body']).orderBy('id').execute()).map((n) => n.body)).toEqual(['before', 'after']);
  });

  it('with both servers down a query fails fast with StoreUnavailableError; after start() it works again', async () => {
    await standby.stop('fast');
    const t0 = performance.now();
    const e = await failure(db.selectFrom('notes').selectAll().execute());
    const ms = performance.now() - t0;
    expect(e).toBeInstanceOf(StoreUnavailableError);
    expect((e as StoreUnavailableError).code).toBe('store_unavailable');
    expect((e as StoreUnavailableError).httpStatus).toBe(503);
    // Refused connections: no waiting at all; in any case bounded by the connect timeout per host.
    expect(ms).toBeLessThan(2 * CONNECT_TIMEOUT_MS + 500);
    expect((e as Error).message).toContain(hostOf(primary));
    expect((e as Error).message).toContain(hostOf(standby));
    expect(pool.currentHost()).toBeUndefined();

    await standby.start();
    const r = await retryUntil(5000, () => db.selectFrom('notes').select('body').execute());
    expect(r.value).toHaveLength(2);
    expect(pool.currentHost()).toBe(hostOf(standby));
  });
});

describe('a password-protected server', () => {
  const PASSWORD = 'Pw-for-the-test-7f3a9';
  let pg: PgServer;

  beforeAll(async () => {
    pg = await server({ password: PASSWORD });
  });

  async function whoAmI(opts: { password?: string; statementTimeoutMs?: number }) {
    const db = new Kysely<Db>({ dialect: new PostgresDialect({ pool: openPostgresPool(pg.url, { connectTimeoutMs: CONNECT_TIMEOUT_MS, ...opts }) }) });
    try {
      return (await sql<{ u: string }>`SELECT current_user AS u`.execute(db)).rows[0]?.u;
    } finally {
      await db.destroy();
    }
  }

  it('is reached with opts.password', async () => {
    expect(pg.password).toBe(PASSWORD);
    expect(pg.url).not.toContain(PASSWORD);
    expect(await whoAmI({ password: PASSWORD })).toBe('pipe2me');
  });

  it('refuses a connection without it or with a wrong one, and never takes PGPASSWORD behind the options\' back', async () => {
    const saved = process.env['PGPASSWORD'];
    process.env['PGPASSWORD'] = PASSWORD;
    try {
      const none = await failure(whoAmI({}));
      expect(none).toBeInstanceOf(StoreUnavailableError);
      expect((none as StoreUnavailableError).hint).toMatch(/password/);
    } finally {
      if (saved === undefined) delete process.env['PGPASSWORD'];
      else process.env['PGPASSWORD'] = saved;
    }
    const wrong = await failure(whoAmI({ password: 'Not-the-password-4411' }));
    expect(wrong).toBeInstanceOf(StoreUnavailableError);
    expect((wrong as Error).message).toMatch(/28P01|password authentication failed/);
    expect(JSON.stringify({ m: (wrong as Error).message, h: (wrong as StoreUnavailableError).hint, d: (wrong as StoreUnavailableError).data })).not.toContain('Not-the-password-4411');
  });

  it('sets statement_timeout on every connection: a statement error, not an unavailable store', async () => {
    const pool = openPostgresPool(pg.url, { password: PASSWORD, statementTimeoutMs: 200 });
    const db = new Kysely<Db>({ dialect: new PostgresDialect({ pool }) });
    try {
      expect((await sql<{ statement_timeout: string }>`SHOW statement_timeout`.execute(db)).rows[0]?.statement_timeout).toBe('200ms');
      const e = await failure(sql`SELECT pg_sleep(2)`.execute(db));
      expect(e).not.toBeInstanceOf(StoreUnavailableError);
      expect((e as { code?: string }).code).toBe('57014');
      expect(pool.currentHost()).toBe(hostOf(pg));
    } finally {
      await db.destroy();
    }
  });
});

describe('a server in a test world (startPostgresIn)', () => {
  it("listens on its host's address in the world, answers another host, and goes with the world", async () => {
    const world = await World.create({ upnp: false });
    let pg: PgServer | undefined;
    try {
      pg = await startPostgresIn(world, { host: 'srv', password: 'World-pw-5521' });
      expect(pg.url).toBe(`postgres://pipe2me@${ADDR.server}:5432/pipe2me`);
      const r = await world.inNs('cli', [`${PG_BIN}/psql`, '-X', '-At', '-h', ADDR.server, '-U', 'pipe2me', '-d', 'pipe2me', '-c', 'SELECT inet_server_addr()'], {
        env: { PGPASSWORD: 'World-pw-5521' },
        timeout: 10_000,
      });
      expect(r.stdout.trim()).toBe(ADDR.server);
      expect(world.procs.get('postgres-srv').running).toBe(true);
    } catch (e) {
      console.log(world.dumpLogs());
      throw e;
    } finally {
      // No close(): the world's teardown stops the server and removes its directory.
      await world.destroy();
    }
    expect(fs.existsSync(pg.dataDir)).toBe(false);
    expect(processesOf(pg)).toEqual([]);
  });
});
