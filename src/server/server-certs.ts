/**
 * The server's own certificates, with keys made here: `<server>.<domain>` for the API and `*.<domain>`
 * (with the apex) for the https entry.
 *
 * - The API's name is always signed by the private CA: pods pin exactly that CA at setup and trust
 *   nothing else for the API (a public certificate there would make every pod's pin fail, and pods need
 *   no browser trust). Browsers never need the API.
 * - The entry's wildcard comes from the issuer in use. With the ACME CA, the wildcard from the private CA
 *   serves until the public one is issued (dns-01 is the only way to a wildcard), then the public one;
 *   it is renewed inside the CA's Renewal Information window when the directory offers one, else at two
 *   thirds of its lifetime.
 *
 * The CRL is regenerated when it has less than a week left, so it never goes stale between revocations.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { acmeLib } from '../ca/acme/lib.js';
import { withLock } from '../util/lock.js';
import { normalizeSerial, parseCrl } from '../ca/x509.js';
import { renewalTime, renewalWindow } from '../ca/acme/renewal.js';
import { spkiSha256, type Issued } from '../ca/acme/order.js';
import { certificateBySha256, recordCertificate } from '../state/certificates.js';
import { latestServerOrder, queueOrder, type AcmeOrder } from '../state/acme.js';
import { getMeta, setMeta } from '../state/db.js';
import { atomicWrite, ensureDir, readIfExists } from '../util/fsx.js';
import { authority, hexFingerprint, publishTrust } from './ca.js';
import { acmeSettings, csrKeySha256 } from './acme.js';
import type { ServerContext } from './context.js';

const sec = (d: Date) => Math.floor(d.getTime() / 1000);

export function wildcardNames(ctx: ServerContext): string[] {
  return [`*.${ctx.config.domain}`, ctx.config.domain];
}

/** The key an open ACME order for the wildcard was made with; it replaces the live key with the certificate. */
export const pendingWildcardKey = (ctx: ServerContext) => `${ctx.layout.wildcardKey}.acme-pending`;

/** Returns true when a certificate file was (re)issued: nginx must then reload to serve it. */
export async function ensureServerCertificates(ctx: ServerContext, progress: (m: string) => void = () => {}): Promise<boolean> {
  const L = ctx.layout;
  ensureDir(L.certsDir, 0o700);
  const ca = authority(ctx);
  const wanted: [string[], string, string][] = [
    [[ctx.config.server.fqdn], L.serverCert, L.serverKey],
    [wildcardNames(ctx), L.wildcardCert, L.wildcardKey],
  ];
  let issued = false;
  for (const [names, certFile, keyFile] of wanted) {
    const isWildcard = certFile === L.wildcardCert;
    // A public wildcard in place is renewed by its own issuer, not replaced by a private one.
    if (isWildcard && ctx.config.ca.issuer === 'acme' && await currentIsPublic(ctx, certFile)) continue;
    const d = ca.needsRenewal(certFile, { beforeDays: ctx.config.ca.renewBeforeDays });
    if (!d.renew) {
      // A certificate in place that the store does not know was issued by an apply that failed before it
      // recorded it (the store went away): recorded now, and counted as new so that nginx loads it.
      const pem = readIfExists(certFile);
      if (pem && !(await certificateBySha256(ctx.db, hexFingerprint(new X509Certificate(pem).fingerprint256)))) {
        const x = new X509Certificate(pem);
        await recordCertificate(ctx.db, { serial: normalizeSerial(x.serialNumber), subdomainId: null, fqdn: names[0]!, kind: 'server', notBefore: sec(new Date(x.validFrom)), notAfter: sec(new Date(x.validTo)), sha256: hexFingerprint(x.fingerprint256) });
        issued = true;
      }
      continue;
    }
    issued = true;
    progress(`issuing the server certificate for ${names.join(', ')} (${d.reason})`);
    const c = await ca.issueServerCertificate({ names, keyFile, certFile, days: Math.max(ctx.config.ca.validityDays, ctx.config.ca.renewBeforeDays * 3) });
    await recordCertificate(ctx.db, { serial: c.serial, subdomainId: null, fqdn: names[0]!, kind: 'server', notBefore: sec(c.notBefore), notAfter: sec(c.notAfter), sha256: hexFingerprint(c.sha256Fingerprint) });
  }
  if (ctx.config.ca.issuer === 'acme') await orderPublicWildcard(ctx, progress);
  // This CA's own CRL (with relays, public/crl.pem is the root's, published from the store).
  const crl = readIfExists(path.join(ca.dir, 'crl.pem'));
  const next = crl ? parseCrl(crl).nextUpdate : undefined;
  if (!crl || !next || next.getTime() - Date.now() < 7 * 86400_000 || readIfExists(L.caCertFile) !== ca.rootPem()) {
    progress('publishing the CA certificate and a fresh CRL');
    await publishTrust(ctx, ca);
  }
  return issued;
}

async function currentIsPublic(ctx: ServerContext, certFile: string): Promise<boolean> {
  const pem = readIfExists(certFile);
  if (!pem) return false;
  try {
    return (await certificateBySha256(ctx.db, hexFingerprint(new X509Certificate(pem).fingerprint256)))?.issuer === 'acme';
  } catch {
    return false;
  }
}

/** The CA's renewal window for the live public wildcard, asked at most every 6 hours (kept in the store). */
async function cachedWindow(ctx: ServerContext, pem: string, sha: string) {
  const key = `acme_ari ${sha}`;
  const cached = await getMeta(ctx.db, key);
  if (cached) {
    const c = JSON.parse(cached) as { at: number; start?: string; end?: string };
    if (Date.now() - c.at < 6 * 3600_000) return c.start && c.end ? { start: new Date(c.start), end: new Date(c.end) } : null;
  }
  const w = await renewalWindow(acmeSettings(ctx).directoryUrl, pem);
  await setMeta(ctx.db, key, JSON.stringify({ at: Date.now(), ...(w ? { start: w.start.toISOString(), end: w.end.toISOString() } : {}) }));
  return w;
}

/**
 * Queues an order for the public wildcard if there is none, or the live one is due for renewal. Under a
 * lock of its own: the CLI's apply, the watcher and the API all come here, and two of them deciding at
 * once would each write a pending key and queue an order, one of which could then never be installed.
 */
export async function orderPublicWildcard(ctx: ServerContext, progress: (m: string) => void): Promise<void> {
  await withLock(path.join(ctx.layout.lockDir, 'acme-wildcard.lock'), 'the public wildcard order', () => decideWildcardOrder(ctx, progress));
}

async function decideWildcardOrder(ctx: ServerContext, progress: (m: string) => void): Promise<void> {
  const names = wildcardNames(ctx);
  const open = await latestServerOrder(ctx.db, names, ctx.config.relays.self);
  if (open && (open.state === 'queued' || open.state === 'working')) return;
  // An order the CA refused for good is not placed again at once: the operator sees why (`ca orders`).
  if (open && open.state === 'failed' && Date.now() / 1000 - open.updatedAt < 3600) return;
  // Issued a moment ago and not yet in place: the worker marks the order valid first and installs its
  // certificate right after (installServerCertificate), and an apply or the watcher looking in between saw
  // the private wildcard still served and placed a second public order for nothing. The pending key is still
  // that order's until it is installed; past the grace (a worker that died in between) it is ordered again.
  if (open && open.state === 'valid' && Date.now() / 1000 - open.updatedAt < INSTALL_GRACE_SECONDS && pendingKeyIs(ctx, open.keySha256)) return;
  const pem = readIfExists(ctx.layout.wildcardCert);
  if (pem && await currentIsPublic(ctx, ctx.layout.wildcardCert)) {
    const x = new X509Certificate(pem);
    const due = renewalTime(new Date(x.validFrom), new Date(x.validTo), await cachedWindow(ctx, pem, hexFingerprint(x.fingerprint256)));
    if (due.getTime() > Date.now()) return;
    progress(`the public wildcard is due for renewal (since ${due.toISOString()}): ordering a new one`);
  } else {
    progress(`ordering the public wildcard for ${names.join(', ')} from the ACME CA (the private one serves meanwhile)`);
  }
  const lib = await acmeLib();
  const key = await lib.crypto.createPrivateEcdsaKey('P-256');
  const [, csr] = await lib.crypto.createCsr({ commonName: names[0]!, altNames: names }, key);
  atomicWrite(pendingWildcardKey(ctx), key, { mode: 0o600 });
  // Bound to this relay: the key is here, and only here can the certificate be installed with it.
  await queueOrder(ctx.db, { subdomainId: null, purpose: 'server', names, csrPem: csr.toString(), keySha256: csrKeySha256(csr.toString()), relay: ctx.config.relays.self });
}

/** How long an issued wildcard order may take to be installed before the wildcard is ordered again. */
export const INSTALL_GRACE_SECONDS = 120;

/** Whether a private key (PEM) is the one with this public key hash (what an order records). */
function keyIs(keyPem: string, keySha256: string): boolean {
  try {
    return spkiSha256(createPublicKey(keyPem).export({ type: 'spki', format: 'der' })) === keySha256;
  } catch {
    return false;
  }
}

/** Whether the pending wildcard key (not yet installed) is the one with this public key hash. */
function pendingKeyIs(ctx: ServerContext, keySha256: string): boolean {
  const key = readIfExists(pendingWildcardKey(ctx));
  return key !== undefined && keyIs(key, keySha256);
}

/** Puts an issued public wildcard in place with its key; returns false if the key is not the order's. */
export function installServerCertificate(ctx: ServerContext, order: AcmeOrder, issued: Issued): boolean {
  const L = ctx.layout;
  const pending = pendingWildcardKey(ctx);
  const key = readIfExists(pending);
  if (!key || issued.keySha256 !== order.keySha256) return false;
  // The pending key may already be a newer order's (checked on the text read above, which is what gets installed).
  if (!keyIs(key, order.keySha256)) return false;
  // The key first, then the certificate: nginx loads both only at the reload that follows.
  atomicWrite(L.wildcardKey, key, { mode: 0o600 });
  atomicWrite(L.wildcardCert, issued.chainPem, { mode: 0o644 });
  fs.rmSync(pending, { force: true });
  return true;
}
