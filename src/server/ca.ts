/**
 * The server's use of its CA (src/ca): creating it at init, publishing what clients trust (public/ca.pem)
 * and the CRL (public/crl.pem, which nginx serves at http://<server>/crl.pem, the URL every issued
 * certificate names), the server's own certificates, pods' certificates, revocation.
 */
import { CertificateAuthority, type CurveName } from '../ca/index.js';
import { parseCrl } from '../ca/x509.js';
import type { ServerContext } from './context.js';
import { markRevoked, recordCertificate } from '../state/certificates.js';
import type { SubdomainRecord } from '../state/types.js';
import { atomicWrite, ensureDir, readIfExists } from '../util/fsx.js';

export function crlUrl(ctx: ServerContext): string {
  return `http://${ctx.config.server.fqdn}/crl.pem`;
}

export function authority(ctx: ServerContext): CertificateAuthority {
  return new CertificateAuthority(ctx.config.paths.ca, {
    csrPolicy: { allowedCurves: ctx.config.ca.allowedCurves as CurveName[], minRsaBits: ctx.config.ca.minRsaBits, maxBytes: 16 * 1024 },
  });
}

/** Writes the root clients trust and the current CRL where nginx serves them. */
export async function publishTrust(ctx: ServerContext, ca = authority(ctx)): Promise<void> {
  ensureDir(ctx.layout.publicDir, 0o755);
  const root = ca.rootPem();
  if (readIfExists(ctx.layout.caCertFile) !== root) atomicWrite(ctx.layout.caCertFile, root, { mode: 0o644 });
  await ca.generateCrl(ctx.layout.crlFile);
}

export async function initCa(ctx: ServerContext): Promise<{ created: boolean; sha256: string }> {
  const ca = authority(ctx);
  const r = await ca.init({
    commonName: `pipe2me CA for ${ctx.config.domain}`,
    crlUrl: crlUrl(ctx),
    defaultDays: ctx.config.ca.validityDays,
    // A leaked or misused CA key can then vouch for names under our domain only.
    restrictToDomain: ctx.config.domain,
  });
  await publishTrust(ctx, ca);
  return { created: r.created, sha256: hexFingerprint(r.sha256Fingerprint) };
}

/**
 * `*.<domain>` for the https entry and `<server>.<domain>` for the API, issued by the CA with keys made
 * here; renewed `ca.renew_before_days` before they expire. The CRL is regenerated when it has less than a
 * week left, so it never goes stale between revocations.
 */
/** Returns true when a certificate was (re)issued: nginx must then reload to serve it. */
export async function ensureServerCertificates(ctx: ServerContext, progress: (m: string) => void = () => {}): Promise<boolean> {
  const L = ctx.layout;
  ensureDir(L.certsDir, 0o700);
  const ca = authority(ctx);
  const wanted: [string[], string, string][] = [
    [[ctx.config.server.fqdn], L.serverCert, L.serverKey],
    [[`*.${ctx.config.domain}`, ctx.config.domain], L.wildcardCert, L.wildcardKey],
  ];
  let issued = false;
  for (const [names, certFile, keyFile] of wanted) {
    const d = ca.needsRenewal(certFile, { beforeDays: ctx.config.ca.renewBeforeDays });
    if (!d.renew) continue;
    issued = true;
    progress(`issuing the server certificate for ${names.join(', ')} (${d.reason})`);
    const c = await ca.issueServerCertificate({ names, keyFile, certFile, days: Math.max(ctx.config.ca.validityDays, ctx.config.ca.renewBeforeDays * 3) });
    recordCertificate(ctx.db, { serial: c.serial, subdomainId: null, fqdn: names[0]!, kind: 'server', notBefore: sec(c.notBefore), notAfter: sec(c.notAfter), sha256: hexFingerprint(c.sha256Fingerprint) });
  }
  const crl = readIfExists(L.crlFile);
  const next = crl ? parseCrl(crl).nextUpdate : undefined;
  if (!crl || !next || next.getTime() - Date.now() < 7 * 86400_000 || readIfExists(L.caCertFile) !== ca.rootPem()) {
    progress('publishing the CA certificate and a fresh CRL');
    await publishTrust(ctx, ca);
  }
  return issued;
}

const sec = (d: Date) => Math.floor(d.getTime() / 1000);
/** "AB:CD:…" → "abcd…", the form the probe computes. */
export const hexFingerprint = (f: string) => f.replace(/:/g, '').toLowerCase();

export interface IssuedPodCertificate {
  serial: string;
  certificate: string;
  chain: string;
  fullchain: string;
  notAfter: string;
  sha256: string;
}

export async function issuePodCertificate(ctx: ServerContext, s: SubdomainRecord, csrPem: string): Promise<IssuedPodCertificate> {
  const c = await authority(ctx).signCsr(csrPem, s.fqdn, { days: ctx.config.ca.validityDays });
  recordCertificate(ctx.db, { serial: c.serial, subdomainId: s.id, fqdn: s.fqdn, kind: 'pod', notBefore: sec(c.notBefore), notAfter: sec(c.notAfter), sha256: hexFingerprint(c.sha256Fingerprint) });
  return { serial: c.serial, certificate: c.certPem, chain: c.chainPem, fullchain: c.fullchainPem, notAfter: c.notAfter.toISOString(), sha256: hexFingerprint(c.sha256Fingerprint) };
}

/** Revokes every still-valid pod certificate of a subdomain (looked up by name: the row may be gone). */
export async function revokeSubdomainCertificates(ctx: ServerContext, s: SubdomainRecord, reason: 'cessationOfOperation' | 'superseded' | 'keyCompromise' | 'unspecified'): Promise<string[]> {
  const rows = ctx.db.prepare("SELECT serial FROM certificates WHERE fqdn = ? AND kind = 'pod' AND revoked_at IS NULL AND not_after > ?").pluck().all(s.fqdn, sec(new Date())) as string[];
  if (rows.length === 0) return [];
  const ca = authority(ctx);
  for (const serial of rows) {
    try {
      await ca.revoke(serial, reason);
    } catch (e) {
      if ((e as { code?: string }).code !== 'ca_already_revoked') throw e;
    }
    markRevoked(ctx.db, serial, reason);
  }
  await ca.generateCrl(ctx.layout.crlFile);
  return rows;
}
