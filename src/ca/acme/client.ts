/**
 * The ACME CA through `acme-client` (no JOSE or JWS of our own), set up for a controller that does its
 * own scheduling: acme-client's built-in retries are off (they honour Retry-After without a bound and
 * take 75 s to report a refused connection), every request has a timeout, and each failure is read back
 * into what it means — rate-limited (and until when), unreachable, a failed validation, or refused —
 * because acme-client itself turns a problem document into a bare message and a transport failure into
 * a TypeError. Its transport settings are process-wide; pipe2me talks to one ACME CA per process.
 */
import * as fs from 'node:fs';
import { createHash, createPublicKey } from 'node:crypto';
import * as path from 'node:path';
import * as https from 'node:https';
import * as tls from 'node:tls';
import type acme from 'acme-client';
import { acmeAgent, acmeLib, type AcmeLib } from './lib.js';
import { atomicWrite, ensureDir } from '../../util/fsx.js';


export interface AcmeSettings {
  directoryUrl: string;
  email: string;
  /** PEM of extra CAs for the directory's own TLS (a test CA); the system's roots are kept. */
  trustRoots?: string | null;
  eab?: { kid: string; hmacKey: string } | null;
  /** ms per request. */
  timeoutMs?: number;
}

export type FailureKind = 'rate_limited' | 'unreachable' | 'validation' | 'refused' | 'other';

export class AcmeFailure extends Error {
  constructor(readonly kind: FailureKind, message: string, readonly retryAfterSeconds: number | null = null, readonly problemType: string | null = null) {
    super(message);
    this.name = 'AcmeFailure';
  }
}

interface LastResponse {
  status: number;
  retryAfter: string | null;
  problem: { type?: string; detail?: string } | null;
}

let last: LastResponse | null = null;
let configured = false;

/** acme-client's shared transport: no retries of its own, a timeout, the directory's trust, and a record of the last answer. */
function configure(lib: AcmeLib, s: AcmeSettings): void {
  const settings = lib.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number }; timeout: number; httpsAgent: https.Agent };
  settings.acmeSettings.retryMaxAttempts = 0;
  settings.timeout = s.timeoutMs ?? 30_000;
  settings.httpsAgent = new https.Agent({ keepAlive: true, ...(s.trustRoots ? { ca: [...tls.rootCertificates, s.trustRoots] } : {}) });
  if (configured) return;
  configured = true;
  // Only refusals are recorded (acme-client hands most of them back as answers, some as errors): a request
  // that succeeds afterwards (a fresh nonce) must not hide why the call failed.
  type Answer = { status: number; headers: Record<string, string | undefined>; data: unknown };
  const record = (r: Answer) => {
    const type = String(r.headers['content-type'] ?? '');
    last = { status: r.status, retryAfter: r.headers['retry-after'] ?? null, problem: type.startsWith('application/problem+json') ? (r.data as LastResponse['problem']) : null };
  };
  lib.axios.interceptors.response.use((r) => {
    if (r.status >= 400) record(r as unknown as Answer);
    return r;
  }, (e: { response?: Answer }) => {
    if (e.response) record(e.response);
    return Promise.reject(e);
  });
}

/** Forgets the last refusal: called before each ACME call, so that a failure is read against its own answer. */
export function forgetLastAnswer(): void {
  last = null;
}

/** Retry-After in seconds (delta or HTTP date), or null. */
export function retryAfterSeconds(value: string | null, now = Date.now()): number | null {
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - now) / 1000));
}

const VALIDATION = new Set(['unauthorized', 'incorrectResponse', 'dns', 'caa', 'connection', 'rejectedIdentifier']);

/** What a failed call meant. `validating`: the call was about a challenge, so a refusal is a failed validation. */
export function classify(e: unknown, validating = false): AcmeFailure {
  if (e instanceof AcmeFailure) return e;
  const message = (e as Error)?.message ?? String(e);
  const seen = last;
  last = null;
  const type = seen?.problem?.type?.replace(/^urn:ietf:params:acme:error:/, '') ?? null;
  if (type === 'rateLimited' || seen?.status === 429) {
    return new AcmeFailure('rate_limited', `the ACME CA is rate-limiting: ${seen?.problem?.detail ?? message}`, retryAfterSeconds(seen?.retryAfter ?? null), type);
  }
  if (!seen && (/reading 'config'/.test(message) || /ECONN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|timeout|socket hang up|certificate/i.test(message))) {
    return new AcmeFailure('unreachable', 'the ACME CA could not be reached', null);
  }
  if (type && VALIDATION.has(type)) return new AcmeFailure('validation', `the ACME CA could not validate: ${seen?.problem?.detail ?? message}`, null, type);
  if (validating && /invalid|Correct value not found|unauthorized/i.test(message)) return new AcmeFailure('validation', `the ACME CA could not validate: ${message.slice(0, 300)}`);
  if (seen && seen.status >= 500) return new AcmeFailure('unreachable', `the ACME CA failed (HTTP ${seen.status}): ${seen.problem?.detail ?? message}`);
  if (seen && seen.status >= 400) return new AcmeFailure('refused', `the ACME CA refused: ${seen.problem?.detail ?? message}`, null, type);
  return new AcmeFailure('other', message.slice(0, 300));
}

/** Why the directory cannot be reached, in the words of the network (acme-client loses this). */
export async function reachability(directoryUrl: string, timeoutMs = 5000): Promise<string> {
  const agent = acmeAgent();
  return new Promise((resolve) => {
    const req = https.get(directoryUrl, { timeout: timeoutMs, ...(agent ? { agent } : {}) }, (res) => {
      res.resume();
      resolve(`it answers HTTP ${res.statusCode}`);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('no answer'), { code: 'ETIMEDOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

export interface AccountFiles {
  /** The account's private key (made here, 0600, never sent anywhere). */
  keyFile: string;
}

/**
 * A client for the configured CA with the account registered once and reused: the key is a file beside
 * the private CA's, the account URL is remembered (`url`, by the sha256 of the key's public half) so that
 * later runs do not register again.
 */
export async function openAccount(s: AcmeSettings, files: AccountFiles, url: { get(keySha256: string): Promise<string | undefined>; set(u: string, keySha256: string): Promise<void> }): Promise<acme.Client> {
  const lib = await acmeLib();
  configure(lib, s);
  if (!fs.existsSync(files.keyFile)) {
    ensureDir(path.dirname(files.keyFile), 0o700);
    const key = await lib.crypto.createPrivateEcdsaKey('P-256');
    atomicWrite(files.keyFile, key, { mode: 0o600 });
  }
  const accountKey = fs.readFileSync(files.keyFile);
  const keySha256 = createHash('sha256').update(createPublicKey(accountKey).export({ type: 'spki', format: 'der' })).digest('hex');
  const known = await url.get(keySha256);
  const client = new lib.Client({
    directoryUrl: s.directoryUrl, accountKey,
    ...(known ? { accountUrl: known } : {}),
    ...(s.eab ? { externalAccountBinding: { kid: s.eab.kid, hmacKey: s.eab.hmacKey } } : {}),
    // Polls while the CA validates: short steps, bounded in all (about 40 s).
    backoffMin: 250, backoffMax: 2000, backoffAttempts: 25,
  });
  if (!known) {
    try {
      await client.createAccount({ termsOfServiceAgreed: true, contact: [`mailto:${s.email}`] });
    } catch (e) {
      throw classify(e);
    }
    await url.set(client.getAccountUrl(), keySha256);
  }
  return client;
}

