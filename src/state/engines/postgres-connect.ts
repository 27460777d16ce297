/**
 * Connecting to the PostgreSQL state store: a libpq-style URL (several hosts allowed), and a pool that
 * follows a failover by itself.
 *
 * The URL (`state.url`) is what libpq takes, within what `pg` can do:
 *
 *   postgres://USER@HOST[:PORT][,HOST[:PORT]…]/DATABASE[?PARAM=VALUE&…]      (postgresql:// too)
 *
 *   - HOST: a name, an IPv4 address, `[IPv6]`, or a Unix socket directory percent-encoded
 *     (`%2Frun%2Fpostgresql`) or given as `?host=/run/postgresql`; PORT defaults to 5432. No host at all
 *     (`postgres:///pipe2me`) is Debian's socket directory /var/run/postgresql, as for libpq.
 *   - USER defaults to the system user's name, DATABASE to USER (libpq's defaults).
 *   - target_session_attrs: `read-write` (connect only to a primary: `SELECT pg_is_in_recovery()` is false)
 *     or `any`. Default: `any` with one host, `read-write` with several — a list of hosts is a primary and
 *     its standbys, and pipe2me writes (libpq's default would be `any` either way).
 *   - connect_timeout (seconds, per host; 0: none), application_name: they win over the options' values.
 *   - sslmode: disable (the default; libpq's `prefer` has no equivalent in pg and is refused, like allow),
 *     require (encrypted, not verified), verify-ca, verify-full (the server's certificate against
 *     `sslrootcert`, or the system's CAs without it; verify-full also checks the host name);
 *     sslcert/sslkey: a client certificate.
 *   - Never a password: a URL with one is refused. It comes from `state.password_file` or PGPASSWORD
 *     through `PostgresOptions.password`, and appears in no message, log line or redactUrl() output.
 *
 * Everything pg would otherwise take from the environment (PGHOST, PGUSER, PGPASSWORD, PGSSLMODE,
 * PGAPPNAME, ~/.pgpass) is set explicitly, so only the URL and the options decide.
 *
 * The pool keeps one `pg.Pool` per host, made when first needed, and remembers which host is current.
 * connect() takes a client from the current host; when none is known it tries the hosts in their order
 * (each bounded by the connect timeout) and the first that qualifies becomes current. A connection-level
 * failure (refused, reset, timed out, the server shutting down or not accepting connections yet, a write
 * refused as read-only, SQLSTATE class 08) forgets the current host, on a client in use as on an idle one:
 * the next connect() searches again, so a promoted standby is found without a restart. Callers retry;
 * a failure that says "no server now" is a StoreUnavailableError (503, exit code 11).
 */
import * as fs from 'node:fs';
import type * as tls from 'node:tls';
import type { PostgresCursor, PostgresPool, PostgresPoolClient, PostgresQueryResult } from 'kysely';
import pg from 'pg';
import { ConfigError } from '../../util/errors.js';
import { StoreUnavailableError } from '../errors.js';
import { hostKey, parsePostgresUrl, PASSWORD_HINT, redactUrl, systemUser, type ParsedPostgresUrl, type PostgresHost } from './postgres-url.js';

export { hostKey, parsePostgresUrl, redactUrl, type ParsedPostgresUrl, type PostgresHost };

export interface PostgresOptions {
  /** The password of the URL's user (from state.password_file or PGPASSWORD); never in the URL. */
  password?: string;
  /** Connections per host (default 10). */
  max?: number;
  /** Per host and attempt (default 5000); the URL's connect_timeout wins. Also bounds waiting for a free connection. */
  connectTimeoutMs?: number;
  /** An idle connection is closed after this (default 30000). */
  idleTimeoutMs?: number;
  /** statement_timeout of every session (default: the server's). */
  statementTimeoutMs?: number;
  /** Default 'pipe2me'; the URL's application_name wins. */
  applicationName?: string;
}

export { StoreUnavailableError };

/** The planner's cost of a random page read in our sessions (see the pool's options). */
export const RANDOM_PAGE_COST = 1.1;

/** How long PostgreSQL lets a session of ours sit idle inside a transaction before it ends it (see the pool). */
export const IDLE_IN_TRANSACTION_MS = 5_000;

export interface FailoverPoolClient extends PostgresPoolClient {
  /** The host this connection goes to (as currentHost() names it). */
  readonly host: string;
}

/** Kysely's PostgresPool (PostgresDialect({ pool })), over every host of the URL. */
export interface FailoverPool extends PostgresPool {
  connect(): Promise<FailoverPoolClient>;
  /** Close every connection; idempotent. */
  end(): Promise<void>;
  /** The host connect() currently uses, as `host:port` (`[v6]:port`; a socket: its path), or undefined while none is known. */
  currentHost(): string | undefined;
}

// ------------------------------------------------------------------------------------------ types

/**
 * int8 (bigint, OID 20) as a JS number, not pg's default string: counts (`count(*)` is int8), epoch
 * seconds, ports and ids are int8 columns on PostgreSQL, and the store's code (shared with SQLite, whose
 * integers come back as numbers) does arithmetic and comparisons on them. Every such value is far below
 * 2^53; one that is not is an error rather than a silently rounded number. Scoped to these pools (a
 * TypeOverrides), not pg's global parsers. numeric (e.g. SUM of a bigint) stays a string: cast in SQL.
 */
const TYPES = new pg.TypeOverrides();
function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new RangeError(`bigint ${text} is beyond JavaScript's exact integers`);
  return n;
}
TYPES.setTypeParser(20, parseInt8);
const parseTextArray = (pg.types.getTypeParser as (oid: number, format: 'text') => (text: string) => (string | null)[])(1016, 'text');
TYPES.setTypeParser(1016, (text: string) => parseTextArray(text).map((v) => (v === null ? null : parseInt8(v))));

// ---------------------------------------------------------------------------------------- failures

const HOST_FAILURE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'ECONNABORTED', 'ENOTFOUND', 'EAI_AGAIN', 'ENOENT']);
/** admin_shutdown, crash_shutdown, cannot_connect_now, read_only_sql_transaction (a standby took the write). */
const HOST_FAILURE_SQLSTATE = new Set(['57P01', '57P02', '57P03', '25006']);
/** pg's own messages for a dead or timed-out connection (they carry no code). */
const HOST_FAILURE_MESSAGE = /Connection terminated|not queryable|timeout expired|connection timeout|Connection ended|Query read timeout/i;
/** pg-pool's, when all `max` connections are in use for the whole connect timeout: not the host's fault. */
const POOL_BUSY_MESSAGE = 'timeout exceeded when trying to connect';

class NotPrimaryError extends Error {
  constructor() {
    super('the server is in recovery (a standby), and target_session_attrs is read-write');
    this.name = 'NotPrimaryError';
  }
}

/** Does this error say the host (or our connection to it) is gone, rather than that a statement failed? */
export function isConnectionFailure(e: unknown, depth = 0): boolean {
  if (!(e instanceof Error) || depth > 4) return false;
  if (e instanceof NotPrimaryError) return true;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' && (HOST_FAILURE_ERRNO.has(code) || HOST_FAILURE_SQLSTATE.has(code) || /^08[0-9A-Z]{3}$/.test(code))) return true;
  if (HOST_FAILURE_MESSAGE.test(e.message)) return true;
  if (e instanceof AggregateError && e.errors.some((x) => isConnectionFailure(x, depth + 1))) return true;
  return e.cause !== undefined && isConnectionFailure(e.cause, depth + 1);
}

// -------------------------------------------------------------------------------------------- pool

interface Failure {
  host: string;
  error: string;
}

class Client implements FailoverPoolClient {
  /** A connection-level failure was seen: destroy it on release instead of pooling it. */
  broken = false;

  constructor(
    readonly raw: pg.PoolClient,
    readonly host: string,
    private readonly owner: Failover,
  ) {}

  query<R>(sql: string, parameters: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>>;
  query<R>(cursor: PostgresCursor<R>): PostgresCursor<R>;
  query<R>(a: string | PostgresCursor<R>, parameters?: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>> | PostgresCursor<R> {
    if (typeof a !== 'string') {
      // A cursor (pg-cursor, a Submittable): its errors come through read(); the client's 'error' listener sees a dead connection.
      return (this.raw as unknown as { query(c: PostgresCursor<R>): PostgresCursor<R> }).query(a);
    }
    return this.raw.query(a, parameters as unknown[]).then(
      (r) => r as unknown as PostgresQueryResult<R>,
      (e: unknown) => {
        throw this.owner.queryFailed(this, e);
      },
    );
  }

  release(destroy?: boolean): void {
    const d = Boolean(destroy) || this.broken;
    this.raw.release(d ? true : undefined);
  }
}

class Failover implements FailoverPool {
  private readonly pools = new Map<string, pg.Pool>();
  private readonly targets = new Map<string, PostgresHost>();
  private readonly wrappers = new WeakMap<pg.PoolClient, Client>();
  private current: string | undefined;
  private searching: Promise<string> | undefined;
  private ending: Promise<void> | undefined;
  private readonly base: pg.PoolConfig;
  private readonly readWrite: boolean;
  private readonly connectTimeoutMs: number;
  private readonly max: number;

  constructor(
    parsed: ParsedPostgresUrl,
    private readonly shownUrl: string,
    private readonly password: string | undefined,
    opts: PostgresOptions,
  ) {
    for (const h of parsed.hosts) this.targets.set(hostKey(h), h);
    this.readWrite = parsed.targetSessionAttrs === 'read-write';
    const urlTimeout = parsed.params['connect_timeout'];
    this.connectTimeoutMs = urlTimeout !== undefined ? Number(urlTimeout) * 1000 : (opts.connectTimeoutMs ?? 5000);
    this.max = opts.max ?? 10;
    const secret = password;
    this.base = {
      user: parsed.user,
      database: parsed.database,
      // A function: pg then never falls back to PGPASSWORD or ~/.pgpass (it would for a missing password).
      password: () => secret as string,
      ssl: sslOptions(parsed),
      max: this.max,
      idleTimeoutMillis: opts.idleTimeoutMs ?? 30_000,
      connectionTimeoutMillis: this.connectTimeoutMs,
      application_name: parsed.params['application_name'] ?? opts.applicationName ?? 'pipe2me',
      ...(opts.statementTimeoutMs !== undefined ? { statement_timeout: opts.statementTimeoutMs } : {}),
      // A primary that goes silent (a partition, a frozen machine) sends no reset: without a bound on the
      // client's side a query would wait for TCP to give up (minutes to hours) holding its connection, and
      // the pool would never look for the promoted standby. A query gets the statement timeout plus a
      // margin, then fails as a lost connection (and the host is forgotten); idle sockets are probed after 10 s.
      query_timeout: (opts.statementTimeoutMs ?? 30_000) + 5_000,
      // A relay cut off in the middle of a write transaction leaves its session idle in that transaction,
      // holding the writers' advisory lock: every other relay's writes (heartbeats, session mirrors) would
      // wait behind it until TCP gives up. PostgreSQL ends such a session after this (our transactions
      // never wait on anything but their own statements and a signing's openssl, milliseconds).
      idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      // pipe2me's tables are small and always in the server's cache: a random read costs what a sequential
      // one does. With PostgreSQL's default (4, for spinning disks) the planner hashes the whole ports and
      // ssh_keys tables for every page of 1,000 subdomains a render reads — 43 ms a page at 100,000,
      // against 13 ms through the indexes (EXPLAIN ANALYZE, bench/relays-scale.ts's world): a render's
      // reads grew with the square of the fleet.
      options: `-c random_page_cost=${RANDOM_PAGE_COST}`,
      types: TYPES,
    };
  }

  currentHost(): string | undefined {
    return this.current;
  }

  async connect(): Promise<FailoverPoolClient> {
    if (this.ending) throw new Error('the PostgreSQL pool has been closed');
    const failures: Failure[] = [];
    for (let round = 0; round < 2; round++) {
      const key = this.current ?? (await this.findServer());
      let raw: pg.PoolClient;
      try {
        raw = await this.poolFor(key).connect();
      } catch (e) {
        if (e instanceof Error && e.message === POOL_BUSY_MESSAGE) {
          throw new StoreUnavailableError(`All ${this.max} connections to the PostgreSQL server ${key} stayed in use for ${this.connectTimeoutMs / 1000} s.`, {
            hint: 'Too much at once for the pool: retry; if it persists, raise the connection limit or look for long transactions.',
            data: { host: key },
          });
        }
        this.forget(key);
        failures.push({ host: key, error: this.describe(e) });
        continue;
      }
      let c = this.wrappers.get(raw);
      if (!c) {
        c = new Client(raw, key, this);
        this.wrappers.set(raw, c);
      }
      return c;
    }
    throw this.unavailable(failures);
  }

  /** The first host (in URL order) that accepts a connection and qualifies; shared by concurrent callers. */
  private findServer(): Promise<string> {
    this.searching ??= this.search().finally(() => (this.searching = undefined));
    return this.searching;
  }

  private async search(): Promise<string> {
    const failures: Failure[] = [];
    for (const key of this.targets.keys()) {
      try {
        // A new connection is checked by the pool's onConnect (read-write: not in recovery); a pooled one
        // was checked when it was made, and a server cannot leave primary mode without dropping it.
        (await this.poolFor(key).connect()).release();
        if (!this.ending) this.current = key;
        return key;
      } catch (e) {
        failures.push({ host: key, error: this.describe(e) });
      }
    }
    throw this.unavailable(failures);
  }

  private poolFor(key: string): pg.Pool {
    let pool = this.pools.get(key);
    if (pool) return pool;
    const target = this.targets.get(key)!;
    const checkTimeout = this.connectTimeoutMs;
    pool = new pg.Pool({
      ...this.base,
      host: target.host,
      port: target.port,
      ...(this.readWrite
        ? {
            onConnect: async (client: pg.ClientBase) => {
              const r = await client.query({ text: 'SELECT pg_is_in_recovery() AS r', ...(checkTimeout > 0 ? { query_timeout: checkTimeout } : {}) } as pg.QueryConfig);
              if (r.rows[0]?.r !== false) throw new NotPrimaryError();
            },
          }
        : {}),
    });
    // An idle client's failure (the server went away) comes here; without a listener it would crash the process.
    pool.on('error', (e) => this.clientFailed(key, e));
    // A client in use gets 'error' too when its connection dies, even between queries, and pg-pool listens
    // only while it is idle: keep one listener on every client for good.
    pool.on('connect', (client) => client.on('error', (e: Error) => this.clientFailed(key, e)));
    this.pools.set(key, pool);
    return pool;
  }

  private clientFailed(key: string, e: unknown): void {
    if (isConnectionFailure(e)) this.forget(key);
  }

  /** From a Client: classify a query's failure; a connection-level one forgets the host and becomes StoreUnavailableError. */
  queryFailed(c: Client, e: unknown): unknown {
    if (!isConnectionFailure(e)) return e;
    c.broken = true;
    this.forget(c.host);
    return new StoreUnavailableError(`The PostgreSQL server ${c.host} failed during a statement: ${this.describe(e)}`, {
      cause: e,
      data: { host: c.host, ...(typeof (e as { code?: unknown }).code === 'string' ? { pg_code: (e as { code: string }).code } : {}) },
    });
  }

  private forget(key: string): void {
    if (this.current === key) this.current = undefined;
  }

  private unavailable(failures: Failure[]): StoreUnavailableError {
    const what = this.readWrite ? 'accepted a read-write connection' : 'accepted a connection';
    const auth = failures.some((f) => /\b28P01\b|\b28000\b|password/i.test(f.error));
    return new StoreUnavailableError(
      `No PostgreSQL server of ${this.shownUrl} ${what}:\n${failures.map((f) => `  ${f.host}: ${f.error}`).join('\n')}`,
      {
        data: { hosts: failures },
        ...(auth ? { hint: `A server refused the credentials: check the user in state.url and the password (state.password_file or PGPASSWORD). ${PASSWORD_HINT.split('.')[0]}.` } : {}),
      },
    );
  }

  /** One line about a failure, never with the password in it. */
  private describe(e: unknown): string {
    const err = e instanceof Error ? e : new Error(String(e));
    const code = (err as { code?: unknown }).code;
    let text = err instanceof AggregateError && err.errors.length > 0 ? err.errors.map((x: unknown) => (x instanceof Error ? x.message : String(x))).join('; ') : err.message;
    if (err.cause instanceof Error && err.cause.message && !text.includes(err.cause.message)) text += ` (${err.cause.message})`;
    if (typeof code === 'string' && !text.includes(code)) text = `${code}: ${text}`;
    if (this.password && this.password.length >= 3) text = text.split(this.password).join('***');
    return text.replace(/\s+/g, ' ').trim().slice(0, 300);
  }

  end(): Promise<void> {
    this.ending ??= Promise.all([...this.pools.values()].map((p) => p.end().catch(() => {}))).then(() => {
      this.current = undefined;
    });
    return this.ending;
  }
}

function sslOptions(p: ParsedPostgresUrl): false | tls.ConnectionOptions {
  const mode = p.params['sslmode'] ?? 'disable';
  if (mode === 'disable') return false;
  const read = (param: string): Buffer | undefined => {
    const file = p.params[param];
    if (file === undefined) return undefined;
    try {
      return fs.readFileSync(file);
    } catch (e) {
      throw new ConfigError(`Cannot read the ${param} file ${file} named in the PostgreSQL URL: ${(e as Error).message}`, { hint: `Fix the path or the file's permissions (pipe2me runs as ${systemUser() ?? 'its user'}).` });
    }
  };
  const client = { ...(p.params['sslcert'] !== undefined ? { cert: read('sslcert'), key: read('sslkey') } : {}) };
  if (mode === 'require') return { rejectUnauthorized: false, ...client };
  const ca = read('sslrootcert');
  return {
    rejectUnauthorized: true,
    ...(ca ? { ca } : {}),
    // verify-ca: the chain, not the name (libpq's meaning).
    ...(mode === 'verify-ca' ? { checkServerIdentity: () => undefined } : {}),
    ...client,
  };
}

/**
 * A pool over the URL's hosts for Kysely's PostgresDialect: `new Kysely({ dialect: new PostgresDialect({ pool }) })`.
 * Throws ConfigError for a bad URL (or an unreadable TLS file); connects only when first used.
 */
export function openPostgresPool(url: string, opts: PostgresOptions): FailoverPool {
  const parsed = parsePostgresUrl(url);
  return new Failover(parsed, redactUrl(url), opts.password, opts);
}
