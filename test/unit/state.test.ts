/**
 * The state store on both engines: allocation, lookups, claims, keys, tokens and their quotas; concurrent
 * writers through separate handles (processes, as the CLI, the API and the probe are); and each engine's
 * own side of opening a store (SQLite's file and PRAGMA user_version, PostgreSQL's schema_version row and
 * its migration lock).
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { sql } from 'kysely';
import { openStore, DowngradeError, schemaVersion, type Store } from '../../src/state/db.js';
import { MIGRATIONS, POSTGRES_BASELINE_VERSION, SCHEMA_VERSION } from '../../src/state/migrations.js';
import { POSTGRES_SCHEMA_V9, POSTGRES_VERSION_TABLE } from '../../src/state/engines/postgres-schema.js';
import { RANDOM_PAGE_COST } from '../../src/state/engines/postgres-connect.js';
import { TABLES } from '../../src/state/schema.js';
import { createSubdomain, deleteSubdomain, eachRenderPage, eachSubdomainPage, renderSnapshot, expireDue, findSubdomain, listSubdomains, requireSubdomain, claimSubdomain, authenticateSubdomain, setSshKey } from '../../src/state/subdomains.js';
import { createToken, getToken, revokeToken, withToken } from '../../src/state/tokens.js';
import { ConflictError, DeniedError, ExitCode, InputError, NotFoundError, QuotaError } from '../../src/util/errors.js';
import { ENGINES, closeTestStores, openTestStore, ownerClient, resetPostgres, type TestStore } from '../helpers/stores.js';
import { runInProcesses, type WorkerResult } from '../helpers/store-procs.js';

const ctx = { domain: 'pipe.test', range: { first: 20000, last: 20009 }, maxPorts: 4, reserved: ['server'] };
/** Room for every concurrent writer. */
const wide = { ...ctx, range: { first: 20000, last: 20999 } };

afterAll(closeTestStores);

describe.each(ENGINES)('state store (%s)', (engine) => {
  let t: TestStore;
  let db: Store;

  beforeEach(async () => {
    t = await openTestStore(engine);
    db = t.store;
  });
  afterEach(() => t.cleanup());

  it('migrates a new store to the current schema', async () => {
    expect(await schemaVersion(db)).toBe(SCHEMA_VERSION);
  });

  it('allocates the lowest free ports in order and frees them on delete', async () => {
    const a = (await createSubdomain(db, { protocols: ['http', 'https'], expiresAt: null }, ctx)).record;
    const b = (await createSubdomain(db, { protocols: ['tcp'], expiresAt: null }, ctx)).record;
    expect(a.ports.map((p) => [p.port, p.protocol])).toEqual([[20000, 'http'], [20001, 'https']]);
    expect(b.ports.map((p) => p.port)).toEqual([20002]);
    await deleteSubdomain(db, a.id);
    const c = (await createSubdomain(db, { protocols: ['http', 'http', 'tcp'], expiresAt: null }, ctx)).record;
    expect(c.ports.map((p) => p.port)).toEqual([20000, 20001, 20003]);
  });

  it('finds the lowest gaps of a dense run of ports, and goes on above its end', async () => {
    const made = [];
    for (let i = 0; i < 6; i++) made.push((await createSubdomain(db, { protocols: ['tcp'], expiresAt: null }, ctx)).record);
    expect(made.map((m) => m.ports[0]!.port)).toEqual([20000, 20001, 20002, 20003, 20004, 20005]);
    await deleteSubdomain(db, made[3]!.id);
    await deleteSubdomain(db, made[1]!.id);
    const gaps = (await createSubdomain(db, { protocols: ['http', 'https', 'tcp'], expiresAt: null }, ctx)).record;
    expect(gaps.ports.map((p) => p.port)).toEqual([20001, 20003, 20006]);
    const after = (await createSubdomain(db, { protocols: ['tcp'], expiresAt: null }, ctx)).record;
    expect(after.ports.map((p) => p.port)).toEqual([20007]);
  });

  it('hands every subdomain over a page at a time, in name order, as the whole list has them (pipe2me-ctl list)', async () => {
    for (const name of ['e-five', 'a-one', 'c-three', 'b-two', 'd-four']) await createSubdomain(db, { name, protocols: ['http', 'tcp'], expiresAt: null }, ctx);
    const whole = await listSubdomains(db);
    for (const size of [1, 2, 5, 7]) {
      const pages: string[][] = [];
      const records: unknown[] = [];
      await eachSubdomainPage(db, (page) => {
        pages.push(page.map((r) => r.name));
        records.push(...page);
      }, size);
      expect(records, `pages of ${size}`).toEqual(whole);
      expect(pages.every((p) => p.length > 0 && p.length <= size)).toBe(true);
      expect(pages.length).toBe(Math.ceil(5 / size));
    }
    // What a whole render reads: the same pods, ports and keys in the same order as the snapshot whole.
    await setSshKey(db, whole[2]!.id, { algorithm: 'ssh-ed25519', publicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl', fingerprint: 'SHA256:' + 'A'.repeat(43), bits: null });
    const snapshot = await renderSnapshot(db);
    for (const size of [1, 2, 5, 6]) {
      const got: unknown[] = [];
      await eachRenderPage(db, (page) => void got.push(...page), size);
      expect(got, `render pages of ${size}`).toEqual(snapshot);
    }
    expect(snapshot.find((r) => r.name === 'c-three')!.key).not.toBeNull();
    const none: unknown[] = [];
    await deleteSubdomain(db, whole[0]!.id);
    await eachSubdomainPage(db, (page) => void none.push(...page.map((r) => r.name)), 2);
    expect(none).toEqual(['b-two', 'c-three', 'd-four', 'e-five']);
  });

  it.runIf(engine === 'postgres')('plans its sessions\' reads with the page cost of tables in memory (a render\'s page through the indexes, not a scan of every port)', async () => {
    const r = await sql<{ random_page_cost: string }>`SHOW random_page_cost`.execute(db.q);
    expect(Number(r.rows[0]!.random_page_cost)).toBe(RANDOM_PAGE_COST);
    expect(RANDOM_PAGE_COST).toBeLessThan(4);
  });

  it('refuses a taken name, a bad name, too many ports, an unknown protocol, and an exhausted range — changing nothing', async () => {
    await createSubdomain(db, { name: 'home', protocols: ['http'], expiresAt: null }, ctx);
    const count = async () => (await listSubdomains(db)).length;
    await expect(createSubdomain(db, { name: 'home', protocols: ['http'], expiresAt: null }, ctx)).rejects.toThrow(ConflictError);
    await expect(createSubdomain(db, { name: 'bad\nname', protocols: ['http'], expiresAt: null }, ctx)).rejects.toThrow(InputError);
    await expect(createSubdomain(db, { name: 'server', protocols: ['http'], expiresAt: null }, ctx)).rejects.toThrow(/reserved/);
    await expect(createSubdomain(db, { protocols: ['http', 'http', 'http', 'http', 'http'], expiresAt: null }, ctx)).rejects.toThrow(QuotaError);
    await expect(createSubdomain(db, { protocols: ['ftp'], expiresAt: null }, ctx)).rejects.toThrow(/not a service type/);
    await expect(createSubdomain(db, { protocols: [], expiresAt: null }, ctx)).rejects.toThrow(/No services/);
    expect(await count()).toBe(1);
    for (let i = 0; i < 9; i++) await createSubdomain(db, { protocols: ['tcp'], expiresAt: null }, ctx);
    await expect(createSubdomain(db, { protocols: ['tcp'], expiresAt: null }, ctx)).rejects.toThrow(/only 0 free port/);
    expect(await count()).toBe(10);
  });

  it('expiry frees ports and keeps the record for show', async () => {
    const a = (await createSubdomain(db, { protocols: ['http'], expiresAt: 100 }, ctx)).record;
    await createSubdomain(db, { protocols: ['http'], expiresAt: null }, ctx);
    const expired = await expireDue(db, 101);
    expect(expired.map((s) => s.id)).toEqual([a.id]);
    expect(expired[0]!.ports).toHaveLength(1); // the ports it had, for cutting its sessions
    const after = await requireSubdomain(db, a.name);
    expect(after.status).toBe('expired');
    expect(after.ports).toEqual([]);
    expect(await expireDue(db, 101)).toEqual([]);
  });

  it('looks a subdomain up by name or fqdn; a malformed name is bad input (exit 2), an unknown one not found (exit 4)', async () => {
    await createSubdomain(db, { name: 'home-lab', protocols: ['http'], expiresAt: null }, ctx);
    for (const given of ['home-lab', 'Home-Lab', 'home-lab.pipe.test', 'HOME-LAB.pipe.test.']) expect((await requireSubdomain(db, given)).name).toBe('home-lab');
    // A name that became reserved after it was given out must still be found (and removable).
    await db.q.updateTable('subdomains').set({ name: 'server', fqdn: 'server.pipe.test' }).where('name', '=', 'home-lab').execute();
    expect((await requireSubdomain(db, 'server')).fqdn).toBe('server.pipe.test');

    const codeOf = async (given: string) => {
      try {
        await requireSubdomain(db, given);
      } catch (e) {
        return e as InputError | NotFoundError;
      }
      throw new Error(`${given} was found`);
    };
    for (const [given, message] of [
      ['Bad_Name!', /"Bad_Name!" contains the character "_", which a DNS label cannot hold/],
      ['bad name', /contains a space/],
      ['-lead', /starts or ends with "-"/],
      ['x'.repeat(64), /64 characters long/],
      ['', /empty/],
      ['bad_x.pipe.test', /not a valid DNS name: its label "bad_x" contains the character "_"/],
      ['a..pipe.test', /empty label/],
      ['.pipe.test', /empty label/],
    ] as const) {
      const e = await codeOf(given);
      expect(e, given).toBeInstanceOf(InputError);
      expect(e.exitCode, given).toBe(ExitCode.usage);
      expect(e.message, given).toMatch(message);
    }
    for (const given of ['no-such-name', 'no-such-name.pipe.test', 'home-lab.other.test', 'www']) {
      const e = await codeOf(given);
      expect(e, given).toBeInstanceOf(NotFoundError);
      expect(e.exitCode, given).toBe(ExitCode.notFound);
    }
    expect(await findSubdomain(db, 'no-such-name')).toBeUndefined();
  });

  it('claim tokens work once and turn into the per-subdomain secret', async () => {
    const { record, claimToken } = await createSubdomain(db, { protocols: ['http'], expiresAt: null, withClaim: true }, ctx);
    expect(record.claimPending).toBe(true);
    const claimed = await claimSubdomain(db, claimToken!);
    expect(claimed?.record.id).toBe(record.id);
    expect(await claimSubdomain(db, claimToken!)).toBeUndefined();
    expect((await authenticateSubdomain(db, record.id, claimed!.secret))?.name).toBe(record.name);
    expect(await authenticateSubdomain(db, record.id, 'p2ms_wrong')).toBeUndefined();
  });

  it('one ssh key cannot serve two subdomains', async () => {
    const a = (await createSubdomain(db, { protocols: ['http'], expiresAt: null }, ctx)).record;
    const b = (await createSubdomain(db, { protocols: ['http'], expiresAt: null }, ctx)).record;
    const key = { algorithm: 'ssh-ed25519', publicKey: 'ssh-ed25519 AAAA', fingerprint: 'SHA256:x', bits: 256 };
    await setSshKey(db, a.id, key);
    await expect(setSshKey(db, b.id, key)).rejects.toThrow(/already registered/);
    await setSshKey(db, a.id, key); // re-registering its own key is fine
  });

  it('tokens: quota checked in the same transaction as the allocation; single-use and revoked tokens refused', async () => {
    const { record: tok0, secret } = await createToken(db, { label: 'lab', maxPorts: 2, lifespanSeconds: 3600, extendable: false, singleUse: true, maxSubdomains: 1, maxTotalPorts: 2 });
    const create = (protocols: string[]) =>
      withToken(db, secret, protocols.length, (tok, tx) => createSubdomain(tx, { protocols, expiresAt: null, tokenId: tok.id }, { ...ctx, maxPorts: tok.maxPorts }));
    await expect(create(['http', 'https', 'tcp'])).rejects.toThrow(QuotaError);
    expect(await listSubdomains(db)).toHaveLength(0); // the refused attempt used nothing
    await create(['http', 'https']);
    await expect(create(['http'])).rejects.toThrow(DeniedError); // single use
    const other = await createToken(db, { label: 'x', maxPorts: 2, lifespanSeconds: null, extendable: true, singleUse: false, maxSubdomains: null, maxTotalPorts: null });
    await revokeToken(db, other.record.id);
    await expect(withToken(db, other.secret, 1, async () => 1)).rejects.toThrow(/not valid/);
    expect(tok0.singleUse).toBe(true);
  });

  it('tokens: live subdomains and their ports are bounded, and a removed subdomain gives its share back', async () => {
    const { record: tok0, secret } = await createToken(db, { label: 'fleet', maxPorts: 3, lifespanSeconds: null, extendable: false, singleUse: false, maxSubdomains: 3, maxTotalPorts: 5 });
    const create = (protocols: string[]) =>
      withToken(db, secret, protocols.length, (tok, tx) => createSubdomain(tx, { protocols, expiresAt: null, tokenId: tok.id }, { ...ctx, maxPorts: tok.maxPorts }));
    const a = await create(['http', 'https']);
    await create(['tcp', 'tcp']);
    await expect(create(['http', 'https'])).rejects.toThrow(/hold 4 of its 5 ports/);
    const c = await create(['tcp']);
    await expect(create(['tcp'])).rejects.toThrow(/3 live subdomain\(s\), its limit/);
    expect(await getToken(db, tok0.id)).toMatchObject({ liveSubdomains: 3, livePorts: 5 });
    await deleteSubdomain(db, a.record.id);
    await create(['tcp']);
    await expireDue(db, Number.MAX_SAFE_INTEGER); // nothing expires: no expiry set
    expect(await getToken(db, tok0.id)).toMatchObject({ liveSubdomains: 3, livePorts: 4 });
    expect(c.record.ports).toHaveLength(1);
  });

  describe('concurrent writers, each through its own handle', () => {
    const oks = (rs: readonly WorkerResult[]) => rs.filter((r): r is Extract<WorkerResult, { ok: true }> => r.ok);
    const fails = (rs: readonly WorkerResult[]) => rs.filter((r): r is Extract<WorkerResult, { ok: false }> => !r.ok);

    /** 20 distinct names, 20 disjoint port sets, and the store holds exactly those. */
    async function expectDisjoint(made: readonly { name: string; ports: number[] }[]): Promise<void> {
      expect(made).toHaveLength(20);
      expect(new Set(made.map((m) => m.name)).size).toBe(20);
      const ports = made.flatMap((m) => m.ports);
      expect(ports).toHaveLength(40);
      expect(new Set(ports).size).toBe(40);
      // The lowest free ports, each given once: 20000-20039.
      expect([...ports].sort((x, y) => x - y)).toEqual(Array.from({ length: 40 }, (_, i) => 20000 + i));
      const stored = await listSubdomains(db);
      expect(stored.map((s) => s.name).sort()).toEqual(made.map((m) => m.name).sort());
      expect(new Map(stored.map((s) => [s.name, s.ports.map((p) => p.port)]))).toEqual(new Map(made.map((m) => [m.name, m.ports])));
    }

    it('20 processes creating subdomains at once get 20 distinct names and 20 disjoint port sets', async () => {
      const run = await runInProcesses(t.target, Array.from({ length: 20 }, () => ({ op: 'create' as const, protocols: ['http', 'tcp'], ctx: wide })));
      expect(fails(run.results)).toEqual([]);
      await expectDisjoint(oks(run.results));
    });

    it.runIf(engine === 'postgres')('20 handles in one process creating subdomains at once: the same', async () => {
      const handles = await Promise.all(Array.from({ length: 20 }, () => t.open({ ...t.target, pool: { max: 1 } })));
      const made = await Promise.all(handles.map((h) => createSubdomain(h, { protocols: ['http', 'tcp'], expiresAt: null }, wide)));
      await expectDisjoint(made.map((m) => ({ name: m.record.name, ports: m.record.ports.map((p) => p.port) })));
    });

    it('a token\'s quotas hold against 20 processes using it at once: exactly as many succeed as it allows', async () => {
      const bySubdomains = await createToken(db, { label: 'five', maxPorts: 2, lifespanSeconds: null, extendable: false, singleUse: false, maxSubdomains: 5, maxTotalPorts: null });
      const byPorts = await createToken(db, { label: 'seven-ports', maxPorts: 2, lifespanSeconds: null, extendable: false, singleUse: false, maxSubdomains: null, maxTotalPorts: 7 });
      const jobs = (secret: string) => Array.from({ length: 20 }, () => ({ op: 'token-create' as const, secret, protocols: ['http', 'tcp'], ctx: wide }));

      const a = await runInProcesses(t.target, jobs(bySubdomains.secret));
      expect(oks(a.results)).toHaveLength(5);
      expect(fails(a.results)).toHaveLength(15);
      for (const f of fails(a.results)) expect(f.error).toMatchObject({ name: 'QuotaError', code: 'token_subdomains_exhausted' });
      expect(await getToken(db, bySubdomains.record.id)).toMatchObject({ liveSubdomains: 5, livePorts: 10, uses: 5 });

      // 2 ports each: 3 subdomains hold 6 of the 7 ports, a fourth would need 8.
      const b = await runInProcesses(t.target, jobs(byPorts.secret));
      expect(oks(b.results)).toHaveLength(3);
      expect(fails(b.results)).toHaveLength(17);
      for (const f of fails(b.results)) expect(f.error).toMatchObject({ name: 'QuotaError', code: 'token_ports_exhausted' });
      expect(await getToken(db, byPorts.record.id)).toMatchObject({ liveSubdomains: 3, livePorts: 6, uses: 3 });

      const made = [...oks(a.results), ...oks(b.results)];
      const stored = await listSubdomains(db);
      expect(stored).toHaveLength(8);
      expect(new Set(stored.flatMap((s) => s.ports.map((p) => p.port))).size).toBe(16);
      expect(stored.map((s) => s.name).sort()).toEqual(made.map((m) => m.name).sort());
      expect(stored.filter((s) => s.tokenId === bySubdomains.record.id)).toHaveLength(5);
      expect(stored.filter((s) => s.tokenId === byPorts.record.id)).toHaveLength(3);
    });
  });

  // ------------------------------------------------------------------------------- SQLite's own

  describe.runIf(engine === 'sqlite')('the SQLite file', () => {
    const file = () => path.join(t.stateDir, 'state.db');

    it('is private', () => {
      expect(fs.statSync(file()).mode & 0o777).toBe(0o600);
    });

    it('refuses a store written by a newer pipe2me, and does not touch it', async () => {
      await sql.raw(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`).execute(db.q);
      await db.close();
      const before = fs.readFileSync(file());
      await expect(t.open()).rejects.toThrow(DowngradeError);
      await expect(t.open()).rejects.toThrow(/newer pipe2me/);
      expect(fs.readFileSync(file()).equals(before)).toBe(true);
      // Put the version back with a raw handle: the store opens normally again.
      const raw = new Database(file());
      raw.pragma(`user_version = ${SCHEMA_VERSION}`);
      raw.close();
      db = await t.open();
      expect(await schemaVersion(db)).toBe(SCHEMA_VERSION);
    });

    it('a store written by an older pipe2me is migrated on open, keeping its data', async () => {
      await db.close();
      fs.rmSync(file());
      // What pipe2me with schema version 1 left behind.
      const old = new Database(file());
      old.exec(MIGRATIONS[0]!.sql);
      old.pragma('user_version = 1');
      old.prepare("INSERT INTO subdomains (id, name, fqdn, created_at) VALUES ('x', 'kept', 'kept.pipe.test', 1)").run();
      old.close();
      db = await t.open();
      expect(await schemaVersion(db)).toBe(SCHEMA_VERSION);
      expect(SCHEMA_VERSION).toBeGreaterThan(1);
      expect((await requireSubdomain(db, 'kept')).fqdn).toBe('kept.pipe.test');
      expect((await db.q.selectFrom('subdomains').select('mapping_note').executeTakeFirstOrThrow()).mapping_note).toBeNull();
    });

    it('a missing store says to run init', async () => {
      try {
        await openStore(path.join(t.stateDir, 'nope'));
        expect.unreachable();
      } catch (e) {
        expect((e as Error).message).toMatch(/No state store/);
        expect((e as { hint?: string }).hint).toMatch(/pipe2me-ctl init/);
      }
    });
  });

  // --------------------------------------------------------------------------- PostgreSQL's own

  describe.runIf(engine === 'postgres')('the PostgreSQL database', () => {
    /** Everything the database holds: tables and their columns, indexes, triggers, functions, every row. */
    async function dump(): Promise<string> {
      const c = await ownerClient(t.server!);
      try {
        const q = async (text: string) => (await c.query(text)).rows;
        const tables = (await q("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")).map((r) => r.tablename as string);
        const rows: Record<string, unknown[]> = {};
        for (const tb of tables) rows[tb] = (await q(`SELECT * FROM ${c.escapeIdentifier(tb)}`)).map((r) => JSON.stringify(r)).sort();
        return JSON.stringify({
          columns: await q("SELECT table_name, column_name, ordinal_position, data_type, column_default, is_nullable FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 3"),
          indexes: await q("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"),
          triggers: await q("SELECT tgname, tgrelid::regclass::text AS rel FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1"),
          functions: await q("SELECT proname, md5(prosrc) AS src FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1"),
          rows,
        });
      } finally {
        await c.end().catch(() => {});
      }
    }

    async function publicTables(): Promise<string[]> {
      const c = await ownerClient(t.server!);
      try {
        return (await c.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")).rows.map((r) => r.tablename as string);
      } finally {
        await c.end().catch(() => {});
      }
    }

    it('a fresh database is migrated to the current schema on open', async () => {
      await db.close();
      await resetPostgres(t.server!);
      expect(await publicTables()).toEqual([]);
      db = await t.open();
      expect(await schemaVersion(db)).toBe(SCHEMA_VERSION);
      expect(await publicTables()).toEqual([...TABLES, 'schema_version'].sort());
      expect((await createSubdomain(db, { protocols: ['http'], expiresAt: null }, ctx)).record.ports.map((p) => p.port)).toEqual([20000]);
    });

    it('refuses a store written by a newer pipe2me (state_too_new), and does not touch it', async () => {
      await createSubdomain(db, { name: 'kept', protocols: ['http', 'tcp'], expiresAt: null }, ctx);
      await sql`UPDATE schema_version SET version = ${SCHEMA_VERSION + 1} WHERE id = 1`.execute(db.q);
      await db.close();
      const before = await dump();
      const refused = await t.open().then(() => undefined, (e: unknown) => e);
      expect(refused).toBeInstanceOf(DowngradeError);
      expect(refused).toMatchObject({ code: 'state_too_new', exitCode: ExitCode.config, message: expect.stringMatching(/newer pipe2me/) });
      expect((refused as Error).message).toContain(`schema version ${SCHEMA_VERSION + 1}`);
      await expect(t.open()).rejects.toThrow(DowngradeError);
      expect(await dump()).toBe(before);
      // Put the version back: the store opens normally again, its data there.
      const c = await ownerClient(t.server!);
      await c.query('UPDATE schema_version SET version = $1 WHERE id = 1', [SCHEMA_VERSION]).finally(() => c.end());
      db = await t.open();
      expect((await requireSubdomain(db, 'kept')).ports).toHaveLength(2);
    });

    it('a store at PostgreSQL\'s baseline version is migrated on open, keeping its data', async () => {
      expect(SCHEMA_VERSION).toBeGreaterThan(POSTGRES_BASELINE_VERSION);
      await db.close();
      await resetPostgres(t.server!);
      // What the first pipe2me with PostgreSQL left behind.
      const c = await ownerClient(t.server!);
      try {
        await c.query('BEGIN');
        await c.query(POSTGRES_VERSION_TABLE);
        await c.query(POSTGRES_SCHEMA_V9);
        await c.query('INSERT INTO schema_version (id, version) VALUES (1, $1)', [POSTGRES_BASELINE_VERSION]);
        await c.query("INSERT INTO subdomains (id, name, fqdn, created_at) VALUES ('x', 'kept', 'kept.pipe.test', 1)");
        await c.query("INSERT INTO acme_orders (id, subdomain_id, purpose, names, csr_pem, key_sha256, state, next_attempt_at, created_at, updated_at) VALUES ('o1', 'x', 'pod', '[\"kept.pipe.test\"]', 'x', 'y', 'queued', 1, 1, 1)");
        await c.query('COMMIT');
      } finally {
        await c.end().catch(() => {});
      }
      db = await t.open();
      expect(await schemaVersion(db)).toBe(SCHEMA_VERSION);
      expect((await requireSubdomain(db, 'kept')).fqdn).toBe('kept.pipe.test');
      expect(await publicTables()).toEqual([...TABLES, 'schema_version'].sort());
      expect(await db.q.selectFrom('acme_orders').select(['id', 'seq']).execute()).toEqual([{ id: 'o1', seq: null }]);
    });

    it('two stores opened at once on an empty database both succeed, and the schema is made once', async () => {
      await db.close();
      await resetPostgres(t.server!);
      const [x, y] = await Promise.all([t.open(), t.open()]);
      expect(await schemaVersion(x)).toBe(SCHEMA_VERSION);
      expect(await schemaVersion(y)).toBe(SCHEMA_VERSION);
      expect(await publicTables()).toEqual([...TABLES, 'schema_version'].sort());
      // The baseline cannot run twice (CREATE TABLE, not IF NOT EXISTS): that both opened says that the
      // second found the schema made — it waited for the first's migration instead of racing it.
      const c = await ownerClient(t.server!);
      try {
        await expect(c.query(`BEGIN; ${POSTGRES_SCHEMA_V9}`)).rejects.toMatchObject({ code: '42P07' }); // duplicate_table
        await c.query('ROLLBACK');
      } finally {
        await c.end().catch(() => {});
      }
      // Both work on the one schema.
      const a = await createSubdomain(x, { protocols: ['http'], expiresAt: null }, ctx);
      expect((await requireSubdomain(y, a.record.name)).ports.map((p) => p.port)).toEqual([20000]);
      db = x;
    });
  });
});
