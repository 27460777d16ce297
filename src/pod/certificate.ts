/**
 * The pod's TLS certificate: asking for one (a new key and CSR made here; the key never leaves the pod),
 * installing what the server hands out, and picking up a newer one — the public certificate an ACME order
 * produced after the pod started with a private one, or a renewal.
 *
 * While an ACME order is under way the server may answer 202: with a private-CA certificate for the new
 * key (a pod that had none), which is installed at once; or with nothing (a pod whose certificate is still
 * good), and then the new key waits beside the live one (tls.key.pending) until its certificate arrives.
 */
import * as fs from 'node:fs';
import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import { atomicWrite, readIfExists } from '../util/fsx.js';
import type { ApiClient } from './api-client.js';
import type { PodFiles, PodState } from './files.js';
import { createTlsKeyAndCsr } from './keys.js';

export interface CertificateBody {
  serial: string;
  issuer: 'private' | 'acme';
  certificate: string;
  chain: string;
  fullchain: string;
  not_after: string;
  sha256: string;
  key_sha256: string | null;
}

export interface OrderBody {
  state: string;
  attempts: number;
  next_attempt: string | null;
  last_error: string | null;
}

/** sha256 of a private key's public half (SPKI DER, hex), as the server names a certificate's key. */
export function keySha256(keyPem: string): string {
  return createHash('sha256').update(createPublicKey(keyPem).export({ type: 'spki', format: 'der' })).digest('hex');
}

export function installedSha256(f: PodFiles): string | null {
  const pem = readIfExists(f.cert);
  if (!pem) return null;
  try {
    return new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();
  } catch {
    return null;
  }
}

export function installedIssuer(f: PodFiles): 'private' | 'acme' | null {
  const text = readIfExists(f.certIssuer)?.trim();
  return text === 'acme' || text === 'private' ? text : readIfExists(f.cert) ? 'private' : null;
}

/** Writes a certificate; with `keyFile`, that key becomes the live one in the same step (key first). */
function install(f: PodFiles, c: CertificateBody, keyFile?: string): void {
  if (keyFile) fs.renameSync(keyFile, f.tlsKey);
  atomicWrite(f.cert, c.certificate, { mode: 0o644 });
  atomicWrite(f.chain, c.chain, { mode: 0o644 });
  atomicWrite(f.fullchain, c.fullchain, { mode: 0o644 });
  atomicWrite(f.certIssuer, `${c.issuer}\n`, { mode: 0o644 });
}

export type RequestOutcome = 'installed' | 'pending' | 'installed-pending';

/**
 * New key + CSR → a certificate. 'installed': done. 'installed-pending': a private certificate now, the
 * public one later. 'pending': nothing changed yet; the new key waits for its certificate.
 */
export async function requestCertificate(client: ApiClient, f: PodFiles, s: PodState): Promise<RequestOutcome> {
  const newKey = f.tlsKey + '.new';
  const csr = await createTlsKeyAndCsr(f, s.fqdn, newKey);
  try {
    const r = await client.request<{ status?: string; certificate?: CertificateBody | null } & Partial<CertificateBody>>('POST', `/v1/subdomains/${s.id}/certificate`, { csr });
    if (r.status === 200) {
      install(f, r.json as CertificateBody, newKey);
      fs.rmSync(f.pendingKey, { force: true });
      return 'installed';
    }
    if (r.json.certificate) {
      install(f, r.json.certificate, newKey);
      fs.rmSync(f.pendingKey, { force: true });
      return 'installed-pending';
    }
    fs.renameSync(newKey, f.pendingKey);
    return 'pending';
  } catch (e) {
    fs.rmSync(newKey, { force: true });
    throw e;
  }
}

/**
 * Installs the server's current certificate for this pod if it is newer than the installed one and
 * belongs to the live key or to the key waiting for one. Returns what was installed (or null) and the
 * server's latest order for this pod.
 */
export async function collectCertificate(client: ApiClient, f: PodFiles, s: PodState): Promise<{ installed: CertificateBody | null; order: OrderBody | null }> {
  const r = await client.call<{ certificate: CertificateBody | null; order?: OrderBody | null }>('GET', `/v1/subdomains/${s.id}/certificate`);
  const c = r.certificate;
  const order = r.order ?? null;
  if (!c || c.sha256 === installedSha256(f)) return { installed: null, order };
  const live = readIfExists(f.tlsKey);
  const pending = readIfExists(f.pendingKey);
  if (pending && c.key_sha256 === keySha256(pending)) {
    install(f, c, f.pendingKey);
    return { installed: c, order };
  }
  if (live && c.key_sha256 === keySha256(live)) {
    install(f, c);
    return { installed: c, order };
  }
  return { installed: null, order };
}

/**
 * Why the key waiting for a public certificate should be given up, or null while it is worth waiting: the
 * order ended without one (failed, cancelled, gone, or valid for another key), or the live certificate is in
 * the last sixth of its lifetime — then a new request gets a private certificate at once, and the pod never
 * serves an expired one while an order is stuck.
 */
export function pendingKeyGivenUp(order: OrderBody | null, f: PodFiles, now = Date.now()): string | null {
  if (!order) return 'the server has no order for it';
  if (order.state === 'failed' || order.state === 'cancelled') return `its order ${order.state}${order.last_error ? `: ${order.last_error}` : ''}`;
  if (order.state === 'valid') return 'its order was completed for another key';
  const pem = readIfExists(f.cert);
  if (pem) {
    const c = new X509Certificate(pem);
    const from = new Date(c.validFrom).getTime();
    const to = new Date(c.validTo).getTime();
    if (now > to - (to - from) / 6) return `the current certificate expires at ${new Date(to).toISOString()}`;
  }
  return null;
}
