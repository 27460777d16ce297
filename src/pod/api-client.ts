/**
 * The pod's client for the server's API: JSON over HTTPS, trusting only the server's CA once it is
 * known (pinned at setup), every call with a timeout, server errors turned back into typed errors
 * with the server's own message.
 */
import { createHash, X509Certificate } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
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
    if (code === 'too_many_ports' || code.includes('quota')) return new QuotaError(code, message, details);
    return new DeniedError(code, message, details);
  }
  if (status === 404) return new NotFoundError(code, message, details);
  if (status === 409) return new ConflictError(code, message, details);
  if (status === 410) return new DeniedError(code, message, details);
  if (status === 429) return new Pipe2meError(code, message, ExitCode.quota, 429, details);
  if (status >= 400 && status < 500) return new InputError(code, message, details);
  return new UnreachableError(code, `The server failed: ${message}`, details);
}

export function normalizeServer(url: string): URL {
  let u: URL;
  try {
    u = new URL(url.includes('://') ? url : `https://${url}`);
  } catch {
    throw new InputError('bad_server', `--server ${JSON.stringify(url.slice(0, 80))} is not a URL.`, { hint: 'Give the server as https://server.pipe.example.com' });
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new InputError('bad_server', `--server must be an https:// URL (got ${u.protocol}).`);
  return u;
}

export class ApiClient {
  private readonly base: URL;
  constructor(private readonly opts: ApiClientOptions) {
    this.base = normalizeServer(opts.server);
  }

  async call<T>(method: string, path: string, body?: unknown, what = `${method} ${path}`): Promise<T> {
    const url = new URL(path, this.base);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    if (this.opts.secret) headers.authorization = `Bearer ${this.opts.secret}`;
    const lib = url.protocol === 'https:' ? https : http;
    const timeout = this.opts.timeoutMs ?? 30_000;
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      // A fresh connection per call (agent: false): a pod calls rarely, and a kept-alive socket from before
      // a change of its public address would only fail with ECONNRESET.
      const req = lib.request(url, { method, headers, timeout, agent: false, ...(url.protocol === 'https:' && this.opts.ca ? { ca: this.opts.ca } : {}) }, (res) => {
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
    if (status >= 200 && status < 300) return json as T;
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

/** sha256 of a PEM certificate's DER, as "sha256:<hex>". */
export function certPin(pem: string): string {
  return 'sha256:' + createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
}

/**
 * First contact: fetch the CA certificate over plain http from the server's own name and accept it only
 * if its hash equals the pin the operator gave out. From then on, TLS to the API trusts that CA only.
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
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { code: 'EBADANSWER' }))));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
  }).catch((e: NodeJS.ErrnoException) => {
    throw unreachable(base, e);
  });
  let got: string;
  try {
    got = certPin(text);
  } catch {
    throw new UnreachableError('bad_answer', `${url.href} is not a certificate.`);
  }
  if (got !== pin.toLowerCase()) {
    throw new DeniedError('pin_mismatch', `The CA certificate at ${url.href} does not match --ca-pin (got ${got}).`, {
      hint: 'Someone may be intercepting; or the pin is from another server. Check the pin with the operator.',
    });
  }
  return text;
}
