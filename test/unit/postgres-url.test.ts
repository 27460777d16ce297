/**
 * The PostgreSQL state store's URL (src/state/engines/postgres-connect.ts): the libpq forms pipe2me takes,
 * the refusal of a password in it (the message must not repeat the password), and redaction for logs.
 */
import * as net from 'node:net';
import { describe, expect, it } from 'vitest';
import { isConnectionFailure, openPostgresPool, parsePostgresUrl, redactUrl, StoreUnavailableError } from '../../src/state/engines/postgres-connect.js';
import { ConfigError, ExitCode } from '../../src/util/errors.js';

function refusal(url: string): ConfigError {
  try {
    parsePostgresUrl(url);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error(`${url} was accepted`);
}

describe('parsePostgresUrl', () => {
  it('takes one host: user, host, port, database; any by default', () => {
    expect(parsePostgresUrl('postgres://pipe2me@db.example.net:6543/fleet')).toEqual({
      hosts: [{ host: 'db.example.net', port: 6543 }],
      database: 'fleet',
      user: 'pipe2me',
      targetSessionAttrs: 'any',
      params: {},
    });
    // postgresql:// too; the port defaults to 5432 and the database to the user.
    const p = parsePostgresUrl('postgresql://pipe2me@10.0.0.5');
    expect(p.hosts).toEqual([{ host: '10.0.0.5', port: 5432 }]);
    expect(p.database).toBe('pipe2me');
  });

  it('takes several hosts, read-write by default, and an explicit target_session_attrs', () => {
    const p = parsePostgresUrl('postgres://pipe2me@host1:5432,host2:5433,host3/pipe2me');
    expect(p.hosts).toEqual([
      { host: 'host1', port: 5432 },
      { host: 'host2', port: 5433 },
      { host: 'host3', port: 5432 },
    ]);
    expect(p.targetSessionAttrs).toBe('read-write');
    expect(parsePostgresUrl('postgres://pipe2me@host1,host2/pipe2me?target_session_attrs=any').targetSessionAttrs).toBe('any');
    expect(parsePostgresUrl('postgres://pipe2me@host1/pipe2me?target_session_attrs=read-write').targetSessionAttrs).toBe('read-write');
    expect(refusal('postgres://pipe2me@host1,host2/pipe2me?target_session_attrs=prefer-standby').message).toMatch(/read-write or any/);
  });

  it('takes IPv6 addresses in brackets, with and without a port', () => {
    expect(parsePostgresUrl('postgres://pipe2me@[::1]:5432,[2001:db8::7]/pipe2me').hosts).toEqual([
      { host: '::1', port: 5432 },
      { host: '2001:db8::7', port: 5432 },
    ]);
    expect(refusal('postgres://pipe2me@[::1/pipe2me').message).toMatch(/closing/);
    expect(refusal('postgres://pipe2me@[db.example.net]:5432/pipe2me').message).toMatch(/not an IPv6 address/);
  });

  it('takes a Unix socket directory: ?host=, percent-encoded, or no host at all', () => {
    expect(parsePostgresUrl('postgres://pipe2me@/pipe2me?host=/run/postgresql').hosts).toEqual([{ host: '/run/postgresql', port: 5432 }]);
    expect(parsePostgresUrl('postgres:///pipe2me?host=/run/postgresql&port=5433&user=pipe2me').hosts).toEqual([{ host: '/run/postgresql', port: 5433 }]);
    expect(parsePostgresUrl('postgres://pipe2me@%2Fvar%2Frun%2Fpostgresql:5434/pipe2me').hosts).toEqual([{ host: '/var/run/postgresql', port: 5434 }]);
    expect(parsePostgresUrl('postgres://pipe2me@/pipe2me').hosts).toEqual([{ host: '/var/run/postgresql', port: 5432 }]);
  });

  it('keeps the parameters it supports and checks their values', () => {
    const p = parsePostgresUrl('postgres://pipe2me@h/pipe2me?connect_timeout=3&application_name=relay%201&sslmode=verify-full&sslrootcert=/etc/pipe2me/pg-ca.pem');
    expect(p.params).toEqual({ connect_timeout: '3', application_name: 'relay 1', sslmode: 'verify-full', sslrootcert: '/etc/pipe2me/pg-ca.pem' });
    expect(refusal('postgres://pipe2me@h/pipe2me?connect_timeout=soon').message).toMatch(/connect_timeout/);
    expect(refusal('postgres://pipe2me@h/pipe2me?sslmode=prefer').message).toMatch(/disable, require, verify-ca or verify-full/);
    expect(refusal('postgres://pipe2me@h/pipe2me?sslcert=/c.pem').message).toMatch(/sslcert and sslkey/);
    const unknown = refusal('postgres://pipe2me@h/pipe2me?keepalives=1');
    expect(unknown.message).toMatch(/does not support/);
    expect(unknown.hint).toMatch(/Supported: host, port/);
  });

  it('refuses what is not a PostgreSQL URL or has a bad host or port', () => {
    expect(refusal('mysql://pipe2me@h/pipe2me').message).toMatch(/postgres:\/\//);
    expect(refusal('postgres://pipe2me@h:99999/pipe2me').message).toMatch(/1 to 65535/);
    expect(refusal('postgres://pipe2me@h:5432,,h2/pipe2me').message).toMatch(/empty host/);
    expect(refusal('postgres://pipe2me@h/pipe2me?host=a,b&port=1,2,3').message).toMatch(/one per host/);
    expect(refusal('postgres://pipe2me@bad_host!/pipe2me').message).toMatch(/neither a host name/);
    // Every refusal is a configuration error: exit code 3, with a hint that shows the form.
    const e = refusal('postgres://pipe2me@h:port/pipe2me');
    expect(e.code).toBe('config_invalid');
    expect(e.exitCode).toBe(ExitCode.config);
    expect(e.hint).toMatch(/postgres:\/\/USER@HOST:PORT/);
  });

  describe('a password in the URL', () => {
    const cases = [
      'postgres://pipe2me:Sw0rdf1sh-77@db1:5432,db2:5432/pipe2me',
      'postgresql://pipe2me:Sw0rdf1sh-77@db1/pipe2me?sslmode=require',
      'postgres://pipe2me@db1/pipe2me?password=Sw0rdf1sh-77',
      'postgres://pipe2me@db1/pipe2me?sslmode=require&password=Sw0rdf1sh-77&application_name=x',
      // Unencoded '@' and '/' in the password: still refused or failed, never quoted.
      'postgres://pipe2me:Sw0rd@f1sh-77@db1/pipe2me',
      'postgres://pipe2me:Sw0rd/f1sh-77@db1/pipe2me',
      'postgres://pipe2me:Sw0rd%2Ff1sh-77@db1:5432/pipe2me',
    ];
    for (const url of cases) {
      it(`is refused without repeating it: ${redactUrl(url)}`, () => {
        const e = refusal(url);
        const everything = JSON.stringify({ message: e.message, hint: e.hint, data: e.data, json: e.toJSON(), stack: e.stack });
        for (const piece of ['Sw0rdf1sh', 'f1sh-77', 'Sw0rd']) expect(everything).not.toContain(piece);
      });
    }

    it('says where the password goes instead', () => {
      const e = refusal('postgres://pipe2me:Sw0rdf1sh-77@db1/pipe2me');
      expect(e.message).toMatch(/contains a password/);
      expect(e.hint).toMatch(/state\.password_file/);
      expect(e.hint).toMatch(/0600/);
      expect(e.hint).toMatch(/PGPASSWORD/);
      expect(() => openPostgresPool('postgres://pipe2me:Sw0rdf1sh-77@db1/pipe2me', {})).toThrow(ConfigError);
    });

    it('an empty password (user:@host) counts as one too', () => {
      expect(refusal('postgres://pipe2me:@db1/pipe2me').message).toMatch(/contains a password/);
    });
  });
});

describe('redactUrl', () => {
  it('hides the password of the userinfo and of a password parameter, and leaves the rest', () => {
    expect(redactUrl('postgres://pipe2me:Sw0rdf1sh-77@db1:5432,db2:5433/pipe2me?sslmode=require')).toBe('postgres://pipe2me:***@db1:5432,db2:5433/pipe2me?sslmode=require');
    expect(redactUrl('postgres://pipe2me@db1/pipe2me?password=Sw0rdf1sh-77&sslmode=require')).toBe('postgres://pipe2me@db1/pipe2me?password=***&sslmode=require');
    expect(redactUrl('host=db1 user=pipe2me password=Sw0rdf1sh-77 dbname=pipe2me')).toBe('host=db1 user=pipe2me password=*** dbname=pipe2me');
    expect(redactUrl("host=db1 password='Sw0rd f1sh-77' dbname=pipe2me")).toBe('host=db1 password=*** dbname=pipe2me');
  });

  it('changes nothing in a URL without a password', () => {
    for (const url of ['postgres://pipe2me@127.0.0.1:54321/pipe2me', 'postgres://pipe2me@[::1]:5432,h2/pipe2me?target_session_attrs=read-write', 'postgres:///pipe2me?host=/run/postgresql']) {
      expect(redactUrl(url)).toBe(url);
    }
  });

  it('hides more rather than less when the password has unencoded @, / or ?', () => {
    for (const url of ['postgres://u:Sw0rd@f1sh-77@db1/pipe2me', 'postgres://u:Sw0rd/f1sh-77@db1/pipe2me', 'postgres://u:Sw0rd?f1sh=77@db1/pipe2me']) {
      const r = redactUrl(url);
      expect(r).not.toMatch(/Sw0rd|f1sh/);
      expect(r).toMatch(/^postgres:\/\/u:\*\*\*@db1\/pipe2me$/);
    }
  });
});

describe('openPostgresPool', () => {
  it('makes no connection until used and names no current host yet', async () => {
    const pool = openPostgresPool('postgres://pipe2me@127.0.0.1:1,127.0.0.1:2/pipe2me', { connectTimeoutMs: 500 });
    expect(pool.currentHost()).toBeUndefined();
    await pool.end();
    await pool.end();
  });

  it('fails with StoreUnavailableError naming every host tried and why (nothing listens on port 1)', async () => {
    const pool = openPostgresPool('postgres://pipe2me@127.0.0.1:1,[::1]:1/pipe2me', { connectTimeoutMs: 1000, password: 'Sw0rdf1sh-77' });
    const e = await pool.connect().then(
      () => undefined,
      (x: unknown) => x,
    );
    await pool.end();
    expect(e).toBeInstanceOf(StoreUnavailableError);
    const err = e as StoreUnavailableError;
    expect(err.code).toBe('store_unavailable');
    expect(err.httpStatus).toBe(503);
    expect(err.exitCode).toBe(ExitCode.unreachable);
    expect(err.message).toMatch(/127\.0\.0\.1:1: .*ECONNREFUSED/);
    expect(err.message).toMatch(/\[::1\]:1: /);
    expect(JSON.stringify({ m: err.message, h: err.hint, d: err.data })).not.toContain('Sw0rdf1sh');
  });
});

describe('isConnectionFailure', () => {
  const withCode = (code: string, message = 'x') => Object.assign(new Error(message), { code });
  it('is true for what says the host or the connection is gone', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', '57P01', '57P02', '57P03', '25006', '08006', '08P01']) expect(isConnectionFailure(withCode(code)), code).toBe(true);
    expect(isConnectionFailure(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isConnectionFailure(new AggregateError([withCode('ECONNREFUSED')], ''))).toBe(true);
    expect(isConnectionFailure(new Error('wrapped', { cause: withCode('57P01') }))).toBe(true);
  });
  it('is false for a statement that failed on a working connection', () => {
    for (const code of ['23505', '42P01', '57014', '40001', '22P02']) expect(isConnectionFailure(withCode(code)), code).toBe(false);
    expect(isConnectionFailure('ECONNREFUSED')).toBe(false);
  });
});

describe('the connect timeout', () => {
  it('bounds a server that accepts TCP and never answers (loopback)', async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as net.AddressInfo).port;
    const pool = openPostgresPool(`postgres://pipe2me@127.0.0.1:${port}/pipe2me`, { connectTimeoutMs: 400 });
    try {
      const t0 = performance.now();
      const e = await pool.connect().then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(performance.now() - t0).toBeLessThan(1500);
      expect(e).toBeInstanceOf(StoreUnavailableError);
      expect((e as Error).message).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}: .*timeout`, 'i'));
    } finally {
      await pool.end();
      sockets.forEach((s) => s.destroy());
      await new Promise((r) => silent.close(r));
    }
  });
});

describe('a password put where it does not belong is never echoed', () => {
  it('in the URL in any spelling (sslpassword, percent-encoded, an unknown name), by the parser and by redactUrl', () => {
    for (const u of ['postgres://u@h/db?sslpassword=KeyPass123', 'postgres://u@h/db?pass%77ord=Secret123', 'postgres://h/db?passwd=Secret123', 'postgres://u:Secret123@h/db']) {
      let message = '';
      try {
        parsePostgresUrl(u);
      } catch (e) {
        message = `${(e as Error).message} ${(e as ConfigError).hint ?? ''}`;
      }
      expect(message, u).toMatch(/The PostgreSQL URL /);
      expect(message, u).not.toMatch(/KeyPass123|Secret123/);
      expect(redactUrl(u), u).not.toMatch(/KeyPass123|Secret123/);
    }
    // What holds nothing secret is shown as written.
    const plain = 'postgres://u@h1:5432,h2/db?target_session_attrs=read-write&connect_timeout=2';
    expect(redactUrl(plain)).toBe(plain);
  });

  it('in the configuration: a state.url the schema refuses is named, its value not shown', async () => {
    const { parseConfigText } = await import('../../src/config/load.js');
    let message = '';
    try {
      parseConfigText('domain: pipe.test\nserver:\n  ipv4: 192.0.2.1\nstate:\n  url: "Postgres://pipe2me:Hunter2xx@db1/pipe2me"\n', '/etc/pipe2me/pipe2me.yml');
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/"state\.url" must match pattern .*the value is not shown/);
    expect(message).not.toContain('Hunter2xx');
  });
});
