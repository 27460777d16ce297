/**
 * The pod's client for the server's API: JSON over HTTPS, trusting only the server's CA once it is
 * known (pinned at setup), every call with a timeout, server errors turned back into typed errors
 * with the server's own message.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { trustAnchor } from './trust.js';
import { ConflictError, DeniedError, InputError, NotFoundError, Pipe2meError, QuotaError, UnreachableError, ExitCode } from '../util/errors.js';

export interface ApiClientOptions {
  server: string;
  /** PEM of the CA the server's certificate chains to; undefined: the system's trust store. */
  ca?: string;
  secret?: string;
  timeoutMs?: number;
}

export interface ServerErrorBody {
  error?: { code?: string; message?: string; hint?: string };
}

function typedError(status: number, body: ServerErrorBody, what: string): Pipe2meError {
  const code = body.error?.code ?? `http_${status}`;
  const message = body.error?.message ?? `The server answered ${status} to ${what}.`;
  const details = body.error?.hint ? { hint: body.error.hint } : {};
  if (status === 401 || status === 403) {
    if (code === 'too_many_ports' || code.includes('quota') || /^token_\w+_exhausted$/.test(code)) return new QuotaError(code, message, details);
    return new DeniedError(code, message, details);
  }
  if (status === 404) return new NotFoundError(code, message, details);
  if (status === 409) return new ConflictError(code, message, details);
  if (status === 410) return new DeniedError(code, message, details);
  if (status === 429) return new Pipe2meError(code, message, ExitCode.quota, 429, details);
  if (status >= 400 && status < 500) return new InputError(code, message, details);
  return new UnreachableError(code, `The server failed: ${message}`, details);
}

/**
 * The server's API URL. Only https: the token and then the pod's secret travel over it, and over plain
 * http anyone on the path reads them (a pin protects the CA certificate, not the requests).
 */
export function normalizeServer(url: string): URL {
  let u: URL;
  try {
    u = new URL(url.includes('://') ? url : `https://${url}`);
  } catch {
    throw new InputError('bad_server', `--server ${JSON.stringify(url.slice(0, 80))} is not a URL.`, { hint: 'Give the server as https://server.pipe.example.com' });
  }
  if (u.protocol !== 'https:') {
    throw new InputError('bad_server', `--server must be an https:// URL (got ${u.protocol}//): the token and the pod's secret would travel in the clear.`, {
      hint: `Use https://${u.host}${u.pathname === '/' ? '' : u.pathname} (with --ca-pin, the pod trusts the server's own CA).`,
    });
  }
  return u;
}

export interface CallOptions {
  /** Send from this local address (the pod proves it holds an IPv6 address by reporting it from there). */
  from?: string;
}

export class ApiClient {
  private readonly base: URL;
  constructor(private readonly opts: ApiClientOptions) {
    this.base = normalizeServer(opts.server);
  }

  async call<T>(method: string, path: string, body?: unknown, what = `${method} ${path}`, o: CallOptions = {}): Promise<T> {
    return (await this.request<T>(method, path, body, what, o)).json;
  }

  /** Like call, with the status of a 2xx answer (202: accepted, not done yet). */
  async request<T>(method: string, path: string, body?: unknown, what = `${method} ${path}`, o: CallOptions = {}): Promise<{ status: number; json: T }> {
    const url = new URL(path, this.base);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    if (this.opts.secret) headers.authorization = `Bearer ${this.opts.secret}`;
    const timeout = this.opts.timeoutMs ?? 30_000;
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      // A fresh connection per call (agent: false): a pod calls rarely, and a kept-alive socket from before
      // a change of its public address would only fail with ECONNRESET.
      // A source address pins the family too: an IPv6 source can only reach the server's IPv6 address.
      const source = o.from ? { localAddress: o.from, family: o.from.includes(':') ? 6 : 4 } : {};
      const req = https.request(url, { method, headers, timeout, agent: false, ...source, ...(this.opts.ca ? { ca: this.opts.ca } : {}) }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
      req.on('error', reject);
      req.end(payload);
    }).catch((e: NodeJS.ErrnoException) => {
      throw unreachable(this.base, e);
    });
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      throw new UnreachableError('bad_answer', `${this.base.origin} did not answer ${what} with JSON (status ${status}); is it a pipe2me server?`);
    }
    if (status >= 200 && status < 300) return { status, json: json as T };
    throw typedError(status, json as ServerErrorBody, what);
  }
}

function unreachable(base: URL, e: NodeJS.ErrnoException): Pipe2meError {
  const host = base.host;
  const code = e.code ?? '';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return new UnreachableError('server_unreachable', `The server name ${base.hostname} does not resolve.`, { hint: 'Check the --server URL and this machine\'s DNS.' });
  }
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ETIMEDOUT' || code === 'ECONNRESET') {
    return new UnreachableError('server_unreachable', `Cannot reach the server at ${host} (${code}).`, { hint: 'Check the URL, that the server runs `pipe2me-ctl serve` behind nginx, and this machine\'s network.' });
  }
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) {
    return new DeniedError('server_untrusted', `The server at ${host} presented a certificate this pod does not trust (${code}).`, {
      hint: 'Pass --ca-pin sha256:... (printed by `pipe2me-ctl token create` and `add-subdomain`) or --ca-file with the server\'s CA certificate.',
    });
  }
  return new UnreachableError('server_unreachable', `Talking to ${host} failed: ${e.message}`);
}

/**
 * First contact: fetch the CA certificate over plain http from the server's own name and keep the one
 * certificate whose hash equals the pin the operator gave out (anything else the answer holds is
 * dropped). From then on, TLS to the API trusts that CA only.
 */
export async function fetchPinnedCa(server: string, pin: string, timeoutMs = 15_000): Promise<string> {
  const base = normalizeServer(server);
  if (!/^sha256:[0-9a-f]{64}$/.test(pin.toLowerCase())) {
    throw new InputError('bad_pin', '--ca-pin must look like sha256:<64 hex digits>.', { hint: 'Copy it from `pipe2me-ctl token create` or `add-subdomain`.' });
  }
  const url = new URL('/ca.pem', `http://${base.host}`);
  const text = await new Promise<string>((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        // A CA certificate is a few KiB; anything much larger is not one.
        if (size > 256 * 1024) req.destroy(Object.assign(new Error('answer too large'), { code: 'EBADANSWER' }));
        else chunks.push(c);
      });
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { code: 'EBADANSWER', status: res.statusCode }))));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
  }).catch((e: NodeJS.ErrnoException & { status?: number }) => {
    if (e.code === 'EBADANSWER') {
      throw new UnreachableError('bad_answer', `${url.href} answered ${e.message}, not the CA certificate.`, {
        hint: e.status === 403 ? 'nginx on the server cannot read the file: check the modes of the server\'s state directory and its parents (pipe2me-ctl init checks them).' : 'Is this a pipe2me server, and is its nginx running?',
      });
    }
    throw unreachable(base, e);
  });
  return trustAnchor(text, { what: url.href, pin });
}
