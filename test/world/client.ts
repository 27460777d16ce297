/**
 * Real client tools, run inside a world's namespace (the client's by default) with a timeout each:
 * curl, dig, openssl s_client, a raw TCP exchange and a new-connection cost measurement. They return
 * typed results and never throw for what the network did (refused, timed out, bad certificate): a test
 * asserts on the result. They throw only when the tool itself could not run.
 */
import * as fs from 'node:fs';
import type { HostName } from './topology.js';
import { runJsonHelper, type NsRunner } from './runner.js';

// ---------------------------------------------------------------------------------------------- curl

export interface CurlOptions {
  /** Host to run curl in (default "cli"). */
  from?: HostName;
  method?: string;
  headers?: Record<string, string>;
  data?: string;
  /** curl --resolve entries: "host:port:address". */
  resolve?: readonly string[];
  /** CA bundle for https (curl --cacert). */
  cacert?: string;
  insecure?: boolean;
  followRedirects?: boolean;
  /** Whole transfer (default 5000 ms). */
  timeoutMs?: number;
  connectTimeoutMs?: number;
  extraArgs?: readonly string[];
}

export interface CurlResult {
  /** curl finished the transfer (exit 0). An HTTP error status is still ok: look at `status`. */
  ok: boolean;
  exitCode: number;
  /** curl's error message when !ok, e.g. "Failed to connect to ... Connection refused". */
  error: string;
  /** 0 when no response came. */
  status: number;
  /** Header names lower-cased; values in order of appearance. From the last response only. */
  headers: Record<string, string[]>;
  location: string | undefined;
  body: string;
  remoteIp: string;
  remotePort: number;
  httpVersion: string;
  /** 0 when the certificate verified (or was not checked). */
  sslVerifyResult: number;
  timings: { connectMs: number; tlsMs: number; firstByteMs: number; totalMs: number };
}

interface CurlWriteOut {
  http_code?: number;
  response_code?: number;
  exitcode?: number;
  errormsg?: string | null;
  remote_ip?: string;
  remote_port?: number;
  http_version?: string;
  ssl_verify_result?: number;
  time_connect?: number;
  time_appconnect?: number;
  time_starttransfer?: number;
  time_total?: number;
}

export async function curl(runner: NsRunner, url: string, opts: CurlOptions = {}): Promise<CurlResult> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const bodyFile = runner.scratchPath('curl-body');
  const headerFile = runner.scratchPath('curl-headers');
  const args = ['curl', '-sS', '-m', seconds(timeoutMs), '-o', bodyFile, '-D', headerFile, '-w', '%{json}'];
  if (opts.connectTimeoutMs !== undefined) args.push('--connect-timeout', seconds(opts.connectTimeoutMs));
  if (opts.method) args.push('-X', opts.method);
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push('-H', `${k}: ${v}`);
  if (opts.data !== undefined) args.push('--data-binary', opts.data);
  for (const r of opts.resolve ?? []) args.push('--resolve', r);
  if (opts.cacert) args.push('--cacert', opts.cacert);
  if (opts.insecure) args.push('-k');
  if (opts.followRedirects) args.push('-L');
  args.push(...(opts.extraArgs ?? []), '--', url);
  try {
    const r = await runner.inNs(opts.from ?? 'cli', args, { timeout: timeoutMs + 3000, allowFailure: true });
    let w: CurlWriteOut = {};
    try {
      w = JSON.parse(r.stdout) as CurlWriteOut;
    } catch {
      // curl could not even start the transfer (bad option): keep the empty write-out, report stderr.
    }
    const headers = parseHeaders(readOr(headerFile));
    return {
      ok: r.exitCode === 0,
      exitCode: r.exitCode,
      error: r.exitCode === 0 ? '' : (w.errormsg ?? r.stderr.trim()) || `curl exited ${r.exitCode}`,
      status: w.response_code ?? w.http_code ?? 0,
      headers,
      location: headers['location']?.at(-1),
      body: readOr(bodyFile),
      remoteIp: w.remote_ip ?? '',
      remotePort: w.remote_port ?? 0,
      httpVersion: w.http_version ?? '',
      sslVerifyResult: w.ssl_verify_result ?? 0,
      timings: {
        connectMs: (w.time_connect ?? 0) * 1000,
        tlsMs: (w.time_appconnect ?? 0) * 1000,
        firstByteMs: (w.time_starttransfer ?? 0) * 1000,
        totalMs: (w.time_total ?? 0) * 1000,
      },
    };
  } finally {
    fs.rmSync(bodyFile, { force: true });
    fs.rmSync(headerFile, { force: true });
  }
}

/** Headers of the last response in a `curl -D` dump (redirects and 100-continue add earlier blocks). */
export function parseHeaders(dump: string): Record<string, string[]> {
  const blocks = dump.split(/\r?\n\r?\n/).filter((b) => /^HTTP\//.test(b.trim()));
  const last = blocks.at(-1) ?? '';
  const headers: Record<string, string[]> = {};
  for (const line of last.split(/\r?\n/).slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    (headers[name] ??= []).push(line.slice(colon + 1).trim());
  }
  return headers;
}

// ----------------------------------------------------------------------------------------------- dig

export interface DigOptions {
  from?: HostName;
  /** Nameserver address to ask. */
  server: string;
  name: string;
  type?: string;
  port?: number;
  tcp?: boolean;
  /** Send RD=0 (what a resolver does when asking an authoritative server). */
  norecurse?: boolean;
  /** Keep the UDP answer even when it is truncated (dig +ignore): what an amplifier would send back. */
  udpOnly?: boolean;
  /** Per try; dig tries once. Default 1000 ms. */
  timeoutMs?: number;
}

export interface DnsRecord {
  name: string;
  ttl: number;
  class: string;
  type: string;
  data: string;
}

export interface DigResult {
  /** A reply came back (whatever its status). */
  ok: boolean;
  /** NOERROR, NXDOMAIN, SERVFAIL, REFUSED, NOTIMP, ... ("" without a reply). */
  status: string;
  /** Header flags: qr, aa, rd, ra, tc, ad, cd. */
  flags: string[];
  authoritative: boolean;
  answers: DnsRecord[];
  authority: DnsRecord[];
  additional: DnsRecord[];
  raw: string;
}

export async function dig(runner: NsRunner, opts: DigOptions): Promise<DigResult> {
  const timeoutMs = opts.timeoutMs ?? 1000;
  const args = ['dig', `+time=${Math.max(1, Math.ceil(timeoutMs / 1000))}`, '+tries=1', '+nocmd', '+nostats', '-p', String(opts.port ?? 53)];
  if (opts.tcp) args.push('+tcp');
  if (opts.norecurse) args.push('+norecurse');
  if (opts.udpOnly) args.push('+ignore');
  args.push(`@${opts.server}`, opts.name, opts.type ?? 'A');
  const r = await runner.inNs(opts.from ?? 'cli', args, { timeout: timeoutMs + 3000, allowFailure: true });
  return parseDig(r.stdout);
}

export function parseDig(out: string): DigResult {
  const status = /->>HEADER<<-.*status: ([A-Z]+)/.exec(out)?.[1] ?? '';
  const flags = (/^;; flags: ([^;]*);/m.exec(out)?.[1] ?? '').trim().split(/\s+/).filter(Boolean);
  const section = (title: string): DnsRecord[] => {
    // Not multiline: there `$` ends the first line, and a section would be cut to its first record.
    const m = new RegExp(`(?:^|\\n);; ${title} SECTION:\\n([\\s\\S]*?)(?:\\n\\n|\\n;;|$)`).exec(out);
    if (!m?.[1]) return [];
    return m[1]
      .split('\n')
      .filter((l) => l.trim() && !l.startsWith(';'))
      .map((l) => {
        const [name = '', ttl = '0', cls = '', type = '', ...data] = l.trim().split(/\s+/);
        return { name, ttl: Number(ttl), class: cls, type, data: data.join(' ') };
      });
  };
  return {
    ok: status !== '',
    status,
    flags,
    authoritative: flags.includes('aa'),
    answers: section('ANSWER'),
    authority: section('AUTHORITY'),
    additional: section('ADDITIONAL'),
    raw: out,
  };
}

// -------------------------------------------------------------------------------- openssl s_client

export interface TlsOptions {
  from?: HostName;
  address: string;
  port: number;
  /** SNI (and, with verifyHostname, the name the certificate must carry). */
  servername?: string;
  /** Trust anchors; without one, verification uses the system store (and fails for a test CA). */
  cafile?: string;
  /** Check the certificate's name too (openssl -verify_hostname). */
  verifyHostname?: string;
  timeoutMs?: number;
}

export interface ChainEntry {
  depth: number;
  subject: string;
  issuer: string;
  pem: string;
}

export interface TlsResult {
  /** The TLS handshake completed (independent of whether the chain verified). */
  handshake: boolean;
  /** openssl's verify code: 0 is ok, 20 "unable to get local issuer", 62 "hostname mismatch", ... */
  verifyCode: number | undefined;
  verifyMessage: string;
  verified: boolean;
  /** As the server sent it, leaf first. */
  chain: ChainEntry[];
  protocol: string;
  cipher: string;
  raw: string;
}

export async function sClient(runner: NsRunner, opts: TlsOptions): Promise<TlsResult> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const args = ['openssl', 's_client', '-connect', `${opts.address}:${opts.port}`, '-showcerts'];
  if (opts.servername) args.push('-servername', opts.servername);
  else args.push('-noservername');
  if (opts.cafile) args.push('-CAfile', opts.cafile);
  if (opts.verifyHostname) args.push('-verify_hostname', opts.verifyHostname);
  // Empty stdin: s_client completes the handshake, prints its report, sees EOF and closes.
  const r = await runner.inNs(opts.from ?? 'cli', args, { timeout: timeoutMs, allowFailure: true, input: '' });
  return parseSClient(r.stdout + '\n' + r.stderr);
}

export function parseSClient(out: string): TlsResult {
  const chain: ChainEntry[] = [];
  const chainText = /^Certificate chain\n([\s\S]*?)^---$/m.exec(out)?.[1] ?? '';
  const entry = /^\s*(\d+) s:(.*)\n\s+i:(.*)\n[\s\S]*?(-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----)/gm;
  for (const m of chainText.matchAll(entry)) {
    chain.push({ depth: Number(m[1]), subject: (m[2] ?? '').trim(), issuer: (m[3] ?? '').trim(), pem: (m[4] ?? '') + '\n' });
  }
  const verify = /Verify return code: (\d+) \(([^)]*)\)/.exec(out);
  const suite = /^New, (\S+), Cipher is (\S+)/m.exec(out);
  const verifyCode = verify ? Number(verify[1]) : undefined;
  return {
    handshake: suite !== null && suite[2] !== '(NONE)',
    verifyCode,
    verifyMessage: verify?.[2] ?? '',
    verified: verifyCode === 0,
    chain,
    protocol: suite?.[1] ?? '',
    cipher: suite?.[2] ?? '',
    raw: out,
  };
}

// ----------------------------------------------------------------------------------------- raw TCP

export interface TcpOptions {
  from?: HostName;
  address: string;
  port: number;
  /** Sent right after connecting. */
  send?: string | Buffer;
  /** Give up connecting/reading after this long (default 3000 ms). */
  timeoutMs?: number;
  /** Stop reading when nothing arrived for this long (default 300 ms). */
  idleMs?: number;
  /** Stop reading as soon as what arrived contains this (e.g. "\n" for a one-line answer). */
  until?: string;
}

export interface TcpResult {
  connected: boolean;
  /** e.g. "connect ECONNREFUSED ...", "timed out". */
  error: string | undefined;
  /** ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, ETIMEDOUT, ECONNRESET, ... */
  code: string | undefined;
  received: string;
  localAddress: string | undefined;
  connectMs: number | undefined;
  elapsedMs: number;
  /** Who ended the exchange: the peer (FIN/RST), our idle timer, or the client. */
  closedBy: 'peer' | 'idle' | 'client' | undefined;
}

interface TcpHelperResult {
  connected: boolean;
  error?: string;
  code?: string | null;
  received: string;
  localAddress: string | null;
  connectMs: number | null;
  elapsedMs: number;
  closedBy?: 'peer' | 'idle' | 'client';
}

export async function tcpExchange(runner: NsRunner, opts: TcpOptions): Promise<TcpResult> {
  const timeoutMs = opts.timeoutMs ?? 3000;
  const payload = opts.send === undefined ? '' : Buffer.from(opts.send).toString('base64');
  const r = await runJsonHelper<TcpHelperResult>(
    runner,
    opts.from ?? 'cli',
    'tcp-client.mjs',
    ['connect', opts.address, opts.port, timeoutMs, payload, opts.idleMs ?? 300, opts.until === undefined ? '' : Buffer.from(opts.until).toString('base64')],
    timeoutMs + 5000,
  );
  return {
    connected: r.connected,
    error: r.error,
    code: r.code ?? undefined,
    received: Buffer.from(r.received, 'base64').toString('utf8'),
    localAddress: r.localAddress ?? undefined,
    connectMs: r.connectMs ?? undefined,
    elapsedMs: r.elapsedMs,
    closedBy: r.closedBy,
  };
}

export interface ConnectionCostOptions {
  from?: HostName;
  address: string;
  port: number;
  /** Connections to make, back to back (default 10). */
  count?: number;
  /** What to send on each; the server must answer something (default "ping\n", fine for an echo). */
  payload?: string;
  /** Per connection (default 3000 ms). */
  timeoutMs?: number;
}

export interface Stats {
  min: number;
  median: number;
  p90: number;
  max: number;
  mean: number;
}

export interface ConnectionCost {
  samples: { connected: boolean; connectMs: number | null; firstByteMs: number | null; error: string | null }[];
  /** Over the connections that got an answer. */
  connectMs: Stats;
  /** Connect to first byte back: the first round trip through whatever sits in the path. */
  firstByteMs: Stats;
  /** Connect plus first round trip: what a new connection costs a client. */
  totalMs: Stats;
  failures: number;
}

export async function connectionCost(runner: NsRunner, opts: ConnectionCostOptions): Promise<ConnectionCost> {
  const count = opts.count ?? 10;
  const timeoutMs = opts.timeoutMs ?? 3000;
  const payload = Buffer.from(opts.payload ?? 'ping\n').toString('base64');
  const r = await runJsonHelper<{ samples: ConnectionCost['samples'] }>(
    runner,
    opts.from ?? 'cli',
    'tcp-client.mjs',
    ['cost', opts.address, opts.port, count, payload, timeoutMs],
    count * timeoutMs + 5000,
  );
  const good = r.samples.filter((s) => s.connectMs !== null && s.firstByteMs !== null);
  return {
    samples: r.samples,
    connectMs: stats(good.map((s) => s.connectMs ?? 0)),
    firstByteMs: stats(good.map((s) => s.firstByteMs ?? 0)),
    totalMs: stats(good.map((s) => (s.connectMs ?? 0) + (s.firstByteMs ?? 0))),
    failures: r.samples.length - good.length,
  };
}

export function stats(values: readonly number[]): Stats {
  if (values.length === 0) return { min: NaN, median: NaN, p90: NaN, max: NaN, mean: NaN };
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return { min: s[0] ?? NaN, median: at(0.5), p90: at(0.9), max: s.at(-1) ?? NaN, mean: s.reduce((a, b) => a + b, 0) / s.length };
}

// --------------------------------------------------------------------------------------------- utils

function seconds(ms: number): string {
  return (ms / 1000).toFixed(3);
}

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
