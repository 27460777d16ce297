import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { openDb, DowngradeError, schemaVersion, type Db } from '../../src/state/db.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../../src/state/migrations.js';
import { createSubdomain, deleteSubdomain, expireDue, findSubdomain, listSubdomains, requireSubdomain, claimSubdomain, authenticateSubdomain, setSshKey } from '../../src/state/subdomains.js';
import { createToken, getToken, revokeToken, withToken } from '../../src/state/tokens.js';
import { ConflictError, DeniedError, ExitCode, InputError, NotFoundError, QuotaError } from '../../src/util/errors.js';

let dir: string;
let db: Db;
const ctx = { domain: 'pipe.test', range: { first: 20000, last: 20009 }, maxPorts: 4, reserved: ['server'] };

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-state-'));
  db = openDb(dir, { create: true });
});
afterEach(() => {
  db.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('state store', () => {
  it('migrates a new store to the current schema, and is private', () => {
    expect(schemaVersion(db)).toBe(SCHEMA_VERSION);
    expect(fs.statSync(path.join(dir, 'state.db')).mode & 0o777).toBe(0o600);
  });

  it('refuses a store written by a newer pipe2me, and does not touch it', () => {
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    const before = fs.readFileSync(path.join(dir, 'state.db'));
    expect(() => openDb(dir)).toThrow(DowngradeError);
    expect(() => openDb(dir)).toThrow(/newer pipe2me/);
    expect(fs.readFileSync(path.join(dir, 'state.db')).equals(before)).toBe(true);
    // Put the version back with a raw handle so afterEach can close a normal store.
    const raw = new Database(path.join(dir, 'state.db'));
    raw.pragma(`user_version = ${SCHEMA_VERSION}`);
    raw.close();
    db = openDb(dir);
  });

  it('a store written by an older pipe2me is migrated on open, keeping its data', () => {
    db.close();
    fs.rmSync(path.join(dir, 'state.db'));
    // What pipe2me with schema version 1 left behind.
    const old = new Database(path.join(dir, 'state.db'));
    old.exec(MIGRATIONS[0]!.sql);
    old.pragma('user_version = 1');
    old.prepare("INSERT INTO subdomains (id, name, fqdn, created_at) VALUES ('x', 'kept', 'kept.pipe.test', 1)").run();
    old.close();
    db = openDb(dir);
    expect(schemaVersion(db)).toBe(SCHEMA_VERSION);
    expect(SCHEMA_VERSION).toBeGreaterThan(1);
    expect(requireSubdomain(db, 'kept').fqdn).toBe('kept.pipe.test');
    expect(db.prepare('SELECT mapping_note FROM subdomains').pluck().get()).toBeNull();
  });

  it('a missing store says to run init', () => {
    try {
      openDb(path.join(dir, 'nope'));
      expect.unreachable();
    } catch (e) {
      expect((e as Error).message).toMatch(/No state store/);
      expect((e as { hint?: string }).hint).toMatch(/pipe2me-ctl init/);
    }
  });

  it('allocates the lowest free ports in order and frees them on delete', () => {
    const a = createSubdomain(db, { protocols: ['http', 'https'], expiresAt: null }, ctx).record;
    const b = createSubdomain(db, { protocols: ['tcp'], expiresAt: null }, ctx).record;
    expect(a.ports.map((p) => [p.port, p.protocol])).toEqual([[20000, 'http'], [20001, 'https']]);
    expect(b.ports.map((p) => p.port)).toEqual([20002]);
    deleteSubdomain(db, a.id);
    const c = createSubdomain(db, { protocols: ['http', 'http', 'tcp'], expiresAt: null }, ctx).record;
    expect(c.ports.map((p) => p.port)).toEqual([20000, 20001, 20003]);
  });

  it('refuses a taken name, a bad name, too many ports, an unknown protocol, and an exhausted range — changing nothing', () => {
    createSubdomain(db, { name: 'home', protocols: ['http'], expiresAt: null }, ctx);
    const count = () => listSubdomains(db).length;
    expect(() => createSubdomain(db, { name: 'home', protocols: ['http'], expiresAt: null }, ctx)).toThrow(ConflictError);
    expect(() => createSubdomain(db, { name: 'bad\nname', protocols: ['http'], expiresAt: null }, ctx)).toThrow(InputError);
    expect(() => createSubdomain(db, { name: 'server', protocols: ['http'], expiresAt: null }, ctx)).toThrow(/reserved/);
    expect(() => createSubdomain(db, { protocols: ['http', 'http', 'http', 'http', 'http'], expiresAt: null }, ctx)).toThrow(QuotaError);
    expect(() => createSubdomain(db, { protocols: ['ftp'], expiresAt: null }, ctx)).toThrow(/not a service type/);
    expect(() => createSubdomain(db, { protocols: [], expiresAt: null }, ctx)).toThrow(/No services/);
    expect(count()).toBe(1);
    for (let i = 0; i < 9; i++) createSubdomain(db, { protocols: ['tcp'], expiresAt: null }, ctx);
    expect(() => createSubdomain(db, { protocols: ['tcp'], expiresAt: null }, ctx)).toThrow(/only 0 free port/);
    expect(count()).toBe(10);
  });

  it('expiry frees ports and keeps the record for show', () => {
    const a = createSubdomain(db, { protocols: ['http'], expiresAt: 100 }, ctx).record;
    createSubdomain(db, { protocols: ['http'], expiresAt: null }, ctx);
    const expired = expireDue(db, 101);
    expect(expired.map((s) => s.id)).toEqual([a.id]);
    expect(expired[0]!.ports).toHaveLength(1); // the ports it had, for cutting its sessions
    const after = requireSubdomain(db, a.name);
    expect(after.status).toBe('expired');
    expect(after.ports).toEqual([]);
    expect(expireDue(db, 101)).toEqual([]);
  });

  it('looks a subdomain up by name or fqdn; a malformed name is bad input (exit 2), an unknown one not found (exit 4)', () => {
    createSubdomain(db, { name: 'home-lab', protocols: ['http'], expiresAt: null }, ctx);
    for (const given of ['home-lab', 'Home-Lab', 'home-lab.pipe.test', 'HOME-LAB.pipe.test.']) expect(requireSubdomain(db, given).name).toBe('home-lab');
    // A name that became reserved after it was given out must still be found (and removable).
    db.prepare("UPDATE subdomains SET name = 'server', fqdn = 'server.pipe.test' WHERE name = 'home-lab'").run();
    expect(requireSubdomain(db, 'server').fqdn).toBe('server.pipe.test');

    const codeOf = (given: string) => {
      try {
        requireSubdomain(db, given);
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
      const e = codeOf(given);
      expect(e, given).toBeInstanceOf(InputError);
      expect(e.exitCode, given).toBe(ExitCode.usage);
      expect(e.message, given).toMatch(message);
    }
    for (const given of ['no-such-name', 'no-such-name.pipe.test', 'home-lab.other.test', 'www']) {
      const e = codeOf(given);
      expect(e, given).toBeInstanceOf(NotFoundError);
      expect(e.exitCode, given).toBe(ExitCode.notFound);
    }
    expect(findSubdomain(db, 'no-such-name')).toBeUndefined();
  });

  it('claim tokens work once and turn into the per-subdomain secret', () => {
    const { record, claimToken } = createSubdomain(db, { protocols: ['http'], expiresAt: null, withClaim: true }, ctx);
    expect(record.claimPending).toBe(true);
    const claimed = claimSubdomain(db, claimToken!);
    expect(claimed?.record.id).toBe(record.id);
    expect(claimSubdomain(db, claimToken!)).toBeUndefined();
    expect(authenticateSubdomain(db, record.id, claimed!.secret)?.name).toBe(record.name);
    expect(authenticateSubdomain(db, record.id, 'p2ms_wrong')).toBeUndefined();
  });

  it('one ssh key cannot serve two subdomains', () => {
    const a = createSubdomain(db, { protocols: ['http'], expiresAt: null }, ctx).record;
    const b = createSubdomain(db, { protocols: ['http'], expiresAt: null }, ctx).record;
    const key = { algorithm: 'ssh-ed25519', publicKey: 'ssh-ed25519 AAAA', fingerprint: 'SHA256:x', bits: 256 };
    setSshKey(db, a.id, key);
    expect(() => setSshKey(db, b.id, key)).toThrow(/already registered/);
    setSshKey(db, a.id, key); // re-registering its own key is fine
  });

  it('tokens: quota checked in the same transaction as the allocation; single-use and revoked tokens refused', () => {
    const { record: t, secret } = createToken(db, { label: 'lab', maxPorts: 2, lifespanSeconds: 3600, extendable: false, singleUse: true, maxSubdomains: 1, maxTotalPorts: 2 });
    const create = (protocols: string[]) =>
      withToken(db, secret, protocols.length, (tok) => createSubdomain(db, { protocols, expiresAt: null, tokenId: tok.id }, { ...ctx, maxPorts: tok.maxPorts }));
    expect(() => create(['http', 'https', 'tcp'])).toThrow(QuotaError);
    expect(listSubdomains(db)).toHaveLength(0); // the refused attempt used nothing
    create(['http', 'https']);
    expect(() => create(['http'])).toThrow(DeniedError); // single use
    const other = createToken(db, { label: 'x', maxPorts: 2, lifespanSeconds: null, extendable: true, singleUse: false, maxSubdomains: null, maxTotalPorts: null });
    revokeToken(db, other.record.id);
    expect(() => withToken(db, other.secret, 1, () => 1)).toThrow(/not valid/);
    expect(t.singleUse).toBe(true);
  });

  it('tokens: live subdomains and their ports are bounded, and a removed subdomain gives its share back', () => {
    const { record: t, secret } = createToken(db, { label: 'fleet', maxPorts: 3, lifespanSeconds: null, extendable: false, singleUse: false, maxSubdomains: 3, maxTotalPorts: 5 });
    const create = (protocols: string[]) =>
      withToken(db, secret, protocols.length, (tok) => createSubdomain(db, { protocols, expiresAt: null, tokenId: tok.id }, { ...ctx, maxPorts: tok.maxPorts }));
    const a = create(['http', 'https']);
    create(['tcp', 'tcp']);
    expect(() => create(['http', 'https'])).toThrow(/hold 4 of its 5 ports/);
    const c = create(['tcp']);
    expect(() => create(['tcp'])).toThrow(/3 live subdomain\(s\), its limit/);
    expect(getToken(db, t.id)).toMatchObject({ liveSubdomains: 3, livePorts: 5 });
    deleteSubdomain(db, a.record.id);
    create(['tcp']);
    expireDue(db, Number.MAX_SAFE_INTEGER); // nothing expires: no expiry set
    expect(getToken(db, t.id)).toMatchObject({ liveSubdomains: 3, livePorts: 4 });
    expect(c.record.ports).toHaveLength(1);
  });
});
