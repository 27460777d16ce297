/**
 * The API's HTTP plumbing on node:http: a tiny router, JSON bodies read with a size limit and
 * validated by ajv, rate limits, and errors that are always a JSON body with a stable code. A client
 * mistake is a 4xx; only our own failure is a 5xx, and it never carries internals.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { Ajv, type ValidateFunction } from 'ajv';
import { Pipe2meError, ExitCode, isPipe2meError } from '../util/errors.js';
import { storeUnavailable } from '../state/errors.js';

export class HttpError extends Pipe2meError {
  constructor(status: number, code: string, message: string, extra: { hint?: string; data?: Record<string, unknown> } = {}) {
    super(code, message, ExitCode.usage, status, extra);
  }
}

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
const compiled = new WeakMap<object, ValidateFunction>();

export function validateBody<T>(schema: object, body: unknown): T {
  let v = compiled.get(schema);
  if (!v) {
    v = ajv.compile(schema);
    compiled.set(schema, v);
  }
  if (!v(body)) {
    const problems = (v.errors ?? []).map((e) => {
      const where = e.instancePath ? e.instancePath.slice(1).replace(/\//g, '.') : 'body';
      if (e.keyword === 'additionalProperties') return `unknown field "${(e.params as { additionalProperty: string }).additionalProperty}"${e.instancePath ? ` in ${where}` : ''}`;
      if (e.keyword === 'required') return `missing field "${(e.params as { missingProperty: string }).missingProperty}"`;
      if (e.keyword === 'enum') return `${where} must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`;
      if (e.keyword === 'pattern') return `${where} holds a character it may not hold (one line of printable text)`;
      return `${where} ${e.message}`;
    });
    throw new HttpError(400, 'invalid_request', `The request body is not valid: ${problems.join('; ')}.`, { data: { problems } });
  }
  return body as T;
}

export async function readJson(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') {
    throw new HttpError(415, 'unsupported_media_type', 'Send the body as JSON with Content-Type: application/json.');
  }
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) throw new HttpError(413, 'body_too_large', `The body is larger than ${maxBytes} bytes.`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new HttpError(413, 'body_too_large', `The body is larger than ${maxBytes} bytes.`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new HttpError(400, 'bad_json', 'The request body is empty; send a JSON object.');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, 'bad_json', `The request body is not valid JSON: ${(e as Error).message.slice(0, 120)}`);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(text);
}

/**
 * A client's mistake is a 4xx with what was wrong and what to do. The server's own failure is a 5xx that
 * says only that, with a stable code and an id: what failed (paths, a checker's output, a stack) is for
 * the operator and goes to the server's log under the same id, never to a token holder.
 */
export function sendError(res: ServerResponse, e: unknown, log: (m: string, fields?: { event: string; outcome: string; code: string; status: number }) => void): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (isPipe2meError(e) && e.httpStatus < 500) {
    const headers: Record<string, string> = {};
    if (e instanceof HttpError && e.data?.retry_after) headers['retry-after'] = String(e.data.retry_after);
    sendJson(res, e.httpStatus, { error: e.toJSON() }, headers);
    return;
  }
  const id = randomBytes(6).toString('hex');
  const down = storeUnavailable(e);
  if (down) {
    // Temporary and the same for everyone: said plainly, with when to retry; the details go to the log.
    log(`error ${id} store_unavailable: ${down.message}`, { event: 'request_failed', outcome: 'failed', code: 'store_unavailable', status: 503 });
    sendJson(res, 503, { error: { code: 'store_unavailable', message: 'The server cannot reach its state store right now; try again in a few seconds.', request_id: id, retry_after: 5 } }, { 'retry-after': '5' });
    return;
  }
  const status = isPipe2meError(e) ? e.httpStatus : 500;
  const code = isPipe2meError(e) ? e.code : 'internal';
  log(isPipe2meError(e) ? `error ${id} ${e.code}: ${e.message}` : `internal error ${id}: ${(e as Error)?.stack ?? String(e)}`, { event: "request_failed", outcome: "failed", code, status });
  sendJson(res, status, {
    error: { code, message: 'The server could not complete this request; its operator has been told. Try again later.', request_id: id },
  });
}

/**
 * Fixed-window counters per key — a window is the minute from the key's first request — kept in two
 * generations of a minute each: a key lives in the generation it was first seen in, and a generation is
 * dropped whole once every window in it has ended. So a request costs O(1) whatever the number of keys,
 * and never more than MAX_KEYS keys are held — past that a new key is not tracked (the per-address limit
 * still applies), so random credentials cannot make every request slower.
 */
export class RateLimiter {
  static readonly MAX_KEYS = 100_000;
  private genStart = -Infinity;
  private current = new Map<string, { start: number; count: number }>();
  private previous = new Map<string, { start: number; count: number }>();
  constructor(private readonly perMinute: () => number) {}

  private find(key: string, now: number): { start: number; count: number } | undefined {
    if (now - this.genStart >= 60_000) {
      // Windows in `previous` all began more than a minute ago: gone. `current` becomes `previous`.
      this.previous = now - this.genStart >= 120_000 ? new Map() : this.current;
      this.current = new Map();
      this.genStart = now;
    }
    const w = this.current.get(key) ?? this.previous.get(key);
    return w && now - w.start < 60_000 ? w : undefined;
  }

  /** Seconds until the key may go on, if it is past the limit in its window. */
  blockedFor(key: string, now = Date.now()): number | undefined {
    const w = this.find(key, now);
    return w && w.count > this.perMinute() ? Math.max(1, Math.ceil((60_000 - (now - w.start)) / 1000)) : undefined;
  }

  check(key: string, now = Date.now()): void {
    let w = this.find(key, now);
    if (!w) {
      if (this.current.size + this.previous.size >= RateLimiter.MAX_KEYS) return;
      w = { start: now, count: 0 };
      this.current.set(key, w);
    }
    if (++w.count > this.perMinute()) {
      const retry = Math.max(1, Math.ceil((60_000 - (now - w.start)) / 1000));
      throw new HttpError(429, 'rate_limited', `Too many requests; try again in ${retry} s.`, { data: { retry_after: retry } });
    }
  }
}

/**
 * The key a source address is limited under: an IPv4 address itself, an IPv6 address by its /64 (one
 * subscriber's prefix, as sshd and the firewall count it), so that a /64 is not 2^64 sources.
 */
export function addressKey(ip: string): string {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1];
  if (v4 || !ip.includes(':')) return v4 ?? ip;
  try {
    const full = new URL(`http://[${ip.split('%')[0]}]/`).hostname.slice(1, -1);
    // Expand "::" to get the first four groups.
    const [head = '', tail = ''] = full.split('::');
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const groups = full.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
    return `${groups.slice(0, 4).join(':')}::/64`;
  } catch {
    return ip;
  }
}

export type Params = Record<string, string>;
export type Handler = (req: IncomingMessage, res: ServerResponse, params: Params) => Promise<void>;

interface Route {
  method: string;
  path: string;
  pattern: RegExp;
  keys: string[];
  handler: Handler;
}

export class Router {
  private routes: Route[] = [];

  add(method: string, path: string, handler: Handler): this {
    const keys: string[] = [];
    const pattern = new RegExp('^' + path.replace(/:([a-z_]+)/g, (_, k: string) => {
      keys.push(k);
      return '([A-Za-z0-9_-]{1,128})';
    }) + '$');
    this.routes.push({ method, path, pattern, keys, handler });
    return this;
  }

  /** The handler, its parameters and the route's pattern (what metrics label a request with). */
  match(method: string, path: string): { handler: Handler; params: Params; route: string } {
    let pathMatched = false;
    for (const r of this.routes) {
      const m = r.pattern.exec(path);
      if (!m) continue;
      pathMatched = true;
      if (r.method !== method) continue;
      const params: Params = {};
      r.keys.forEach((k, i) => (params[k] = m[i + 1]!));
      return { handler: r.handler, params, route: r.path };
    }
    if (pathMatched) throw new HttpError(405, 'method_not_allowed', `${method} is not allowed here.`);
    throw new HttpError(404, 'not_found', 'No such API endpoint.', { hint: 'The endpoints are listed in the README (API).' });
  }
}
