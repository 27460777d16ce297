/**
 * The PostgreSQL state store's URL (`state.url`): what libpq takes, within what `pg` can do, parsed and
 * checked (never a password in it), and shown without credentials. The forms are described in
 * postgres-connect.ts, which connects with what this parses.
 */
import * as net from 'node:net';
import * as os from 'node:os';
import { ConfigError } from '../../util/errors.js';

export interface PostgresHost {
  /** A host name, an IP address (IPv6 without brackets) or a Unix socket directory (starts with /). */
  host: string;
  port: number;
}

export interface ParsedPostgresUrl {
  hosts: PostgresHost[];
  database: string;
  user: string;
  targetSessionAttrs: 'read-write' | 'any';
  /** The query parameters as given (decoded). */
  params: Record<string, string>;
}

const DEFAULT_PORT = 5432;
/** Debian's libpq default when a URL names no host. */
const DEFAULT_SOCKET_DIR = '/var/run/postgresql';
const SUPPORTED_PARAMS = ['host', 'port', 'dbname', 'user', 'target_session_attrs', 'connect_timeout', 'application_name', 'sslmode', 'sslrootcert', 'sslcert', 'sslkey'];
const URL_HINT = 'Write it as postgres://USER@HOST:PORT[,HOST2:PORT2]/DATABASE[?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=/path/ca.pem].';
export const PASSWORD_HINT = 'Put the password in the file named by state.password_file (mode 0600, the password alone) or in the PGPASSWORD environment variable, and take it out of the URL.';

// ------------------------------------------------------------------------------------------- URLs

/** Query parameters whose values redactUrl shows (nothing secret can be in them). */
const SHOWN_PARAMS = new Set(['host', 'port', 'dbname', 'user', 'target_session_attrs', 'connect_timeout', 'application_name', 'sslmode']);

/**
 * The URL with any password replaced by *** (userinfo and every query value but harmless ones; also `password=` in a
 * key=value connection string). Safe for logs and errors, also for URLs that do not parse: when in doubt
 * it hides more, never less.
 */
export function redactUrl(url: string): string {
  let out = url;
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(out);
  if (scheme) {
    const rest = out.slice(scheme[0].length);
    const firstAt = rest.indexOf('@');
    const colon = rest.indexOf(':');
    // A ':' before the first '@' may start a password. It ends at an '@', perhaps not the first (an
    // unencoded '@' in it): hide up to the last one.
    if (firstAt >= 0 && colon >= 0 && colon < firstAt) out = `${scheme[0]}${rest.slice(0, colon)}:***${rest.slice(rest.lastIndexOf('@'))}`;
  }
  // Query values are shown only for parameters that can hold nothing secret; any other (password,
  // sslpassword, a misspelt or percent-encoded name) has its value hidden.
  out = out.replace(/([?&])([^=&]*)=([^&]*)/g, (m, sep: string, name: string) => {
    let key = name;
    try {
      key = decodeURIComponent(name);
    } catch {
      /* an undecodable name is shown as written, its value hidden */
    }
    return SHOWN_PARAMS.has(key) ? m : `${sep}${name}=***`;
  });
  out = out.replace(/(^|\s)(password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)/gi, '$1$2***');
  return out;
}

function decode(s: string, what: string, shown: string, echo: boolean): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new ConfigError(`The PostgreSQL URL ${shown} has a malformed percent-encoding in its ${what}${echo ? ` (${JSON.stringify(s)})` : ''}.`, { hint: URL_HINT });
  }
}

/** Parse a libpq-style URL (see the top of this file). Throws ConfigError, never with a password in it. */
export function parsePostgresUrl(url: string): ParsedPostgresUrl {
  const shown = redactUrl(url);
  // Parts of the URL are quoted in messages only when it cannot hold a password at all (no '@').
  const echo = !url.includes('@');
  const fail: (what: string, hint?: string) => never = (what, hint = URL_HINT) => {
    throw new ConfigError(`The PostgreSQL URL ${shown} ${what}`, { hint });
  };
  const refusePassword = (): never => {
    throw new ConfigError(`The PostgreSQL URL ${shown} contains a password; pipe2me does not take one in the URL (it would end up in configuration dumps, process lists and logs).`, {
      hint: PASSWORD_HINT,
    });
  };

  const scheme = /^postgres(?:ql)?:\/\//i.exec(url);
  if (!scheme) fail('does not start with postgres:// or postgresql://.');
  let rest = url.slice(scheme![0].length);

  // libpq: user information is what comes before an '@' that comes before any '/'.
  let urlUser: string | undefined;
  const stop = rest.search(/[@/]/);
  if (stop >= 0 && rest[stop] === '@') {
    const info = rest.slice(0, stop);
    if (info.includes(':')) refusePassword();
    urlUser = info === '' ? undefined : decode(info, 'user name', shown, false);
    rest = rest.slice(stop + 1);
  }

  const q = rest.indexOf('?');
  const beforeQuery = q >= 0 ? rest.slice(0, q) : rest;
  const query = q >= 0 ? rest.slice(q + 1) : '';
  const slash = beforeQuery.indexOf('/');
  const authority = slash >= 0 ? beforeQuery.slice(0, slash) : beforeQuery;
  const dbPath = slash >= 0 ? beforeQuery.slice(slash + 1) : '';

  const params: Record<string, string> = {};
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) fail(`has a query parameter without a value${echo ? ` (${JSON.stringify(pair)})` : ''}: write name=value.`);
    const key = decode(pair.slice(0, eq), 'query', shown, echo);
    if (key === 'password' || key === 'sslpassword') refusePassword();
    if (!SUPPORTED_PARAMS.includes(key)) {
      fail(`has ${echo ? `the parameter ${JSON.stringify(key)}` : 'a parameter'} that pipe2me does not support.`, `Supported: ${SUPPORTED_PARAMS.join(', ')}. ${URL_HINT}`);
    }
    params[key] = decode(pair.slice(eq + 1), 'query', shown, echo);
  }

  // Hosts: the URL's list, or the host parameter's (it wins, as in libpq); ports likewise.
  const entries: { host: string; port: number | undefined }[] = [];
  const hostList = params['host'] !== undefined ? params['host'] : authority;
  const fromParam = params['host'] !== undefined;
  if (hostList === '') {
    entries.push({ host: DEFAULT_SOCKET_DIR, port: undefined });
  } else {
    for (const raw of hostList.split(',')) {
      if (raw === '') fail('has an empty host in its host list.');
      let host: string;
      let portText: string | undefined;
      if (raw.startsWith('[')) {
        const close = raw.indexOf(']');
        if (close < 0) fail(`has an IPv6 address without its closing "]"${echo ? ` (${JSON.stringify(raw)})` : ''}.`);
        host = raw.slice(1, close);
        const after = raw.slice(close + 1);
        if (after !== '' && !after.startsWith(':')) fail(`has something after an IPv6 address${echo ? ` (${JSON.stringify(raw)})` : ''}: write [ADDRESS]:PORT.`);
        portText = after === '' ? undefined : after.slice(1);
        if (!net.isIPv6(host)) fail(`has ${echo ? JSON.stringify(host) : 'a host'} in brackets, which is not an IPv6 address.`);
      } else if (fromParam) {
        // The host parameter: names and socket directories, no ports (those are the port parameter's).
        host = decode(raw, 'host', shown, echo);
      } else {
        const c = raw.indexOf(':');
        host = decode(c >= 0 ? raw.slice(0, c) : raw, 'host', shown, echo);
        portText = c >= 0 ? raw.slice(c + 1) : undefined;
      }
      if (host.startsWith('/')) {
        // A socket directory.
      } else if (net.isIP(host) === 0 && !/^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$/.test(host)) {
        fail(`has ${echo ? JSON.stringify(host) : 'a host'} that is neither a host name, an IP address ([…] for IPv6) nor a socket directory.`);
      }
      entries.push({ host, port: portText === undefined ? undefined : parsePort(portText, fail, echo) });
    }
  }
  if (params['port'] !== undefined) {
    const ports = params['port'].split(',').map((p) => parsePort(p, fail, echo));
    if (ports.length !== 1 && ports.length !== entries.length) fail(`has ${ports.length} ports in its port parameter for ${entries.length} hosts: give one, or one per host.`);
    entries.forEach((e, i) => (e.port = ports.length === 1 ? ports[0] : ports[i]));
  }
  const hosts = entries.map((e) => ({ host: e.host, port: e.port ?? DEFAULT_PORT }));

  const user = params['user'] ?? urlUser ?? systemUser();
  if (!user) fail('names no user, and the system user\'s name is unknown: write postgres://USER@HOST/DATABASE.');
  const database = params['dbname'] ?? (dbPath === '' ? user : decode(dbPath, 'database name', shown, echo));

  const tsa = params['target_session_attrs'] ?? (hosts.length > 1 ? 'read-write' : 'any');
  if (tsa !== 'read-write' && tsa !== 'any') {
    fail(`has target_session_attrs=${JSON.stringify(tsa)}; pipe2me takes read-write or any.`, 'pipe2me writes to the store: read-write picks the primary of a list of hosts; any takes the first host that answers.');
  }
  if (params['connect_timeout'] !== undefined && !/^\d{1,6}$/.test(params['connect_timeout'])) fail('has a connect_timeout that is not a whole number of seconds.');
  const sslmode = params['sslmode'];
  if (sslmode !== undefined && !['disable', 'require', 'verify-ca', 'verify-full'].includes(sslmode)) {
    fail(`has sslmode=${JSON.stringify(sslmode)}; pipe2me takes disable, require, verify-ca or verify-full.`,
      'libpq\'s prefer and allow fall back to an unencrypted connection, which the pg driver cannot do: say disable, or require/verify-full for TLS.');
  }
  if ((params['sslcert'] === undefined) !== (params['sslkey'] === undefined)) fail('has only one of sslcert and sslkey: a client certificate needs both.');
  return { hosts, database, user: user!, targetSessionAttrs: tsa as 'read-write' | 'any', params };
}

function parsePort(text: string, fail: (what: string) => never, echo: boolean): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 65535)) fail(`has a port that is not a number from 1 to 65535${echo ? ` (${JSON.stringify(text)})` : ''}.`);
  return n;
}

export function systemUser(): string | undefined {
  try {
    return os.userInfo().username;
  } catch {
    return undefined;
  }
}

/** How currentHost() and messages name a host. */
export function hostKey(h: PostgresHost): string {
  if (h.host.startsWith('/')) return `${h.host.replace(/\/+$/, '')}/.s.PGSQL.${h.port}`;
  return `${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`;
}
