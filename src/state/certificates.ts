/**
 * Certificates pipe2me's issuers made, as the state store knows them: for revocation, for the probe
 * (which recognises a pod by the certificates issued to it), and — for certificates from the ACME CA,
 * which the pod collects after the order finished — their chain.
 */
import type { Db } from './db.js';
import { now, type CertificateRecord } from './types.js';

interface Row {
  serial: string;
  subdomain_id: string | null;
  fqdn: string;
  kind: 'pod' | 'server';
  not_before: number;
  not_after: number;
  sha256: string;
  issued_at: number;
  revoked_at: number | null;
  revoke_reason: string | null;
  issuer: 'private' | 'acme';
  chain_pem: string | null;
  key_sha256: string | null;
}

const toRecord = (r: Row): CertificateRecord => ({
  serial: r.serial, subdomainId: r.subdomain_id, fqdn: r.fqdn, kind: r.kind, notBefore: r.not_before, notAfter: r.not_after,
  sha256: r.sha256, issuedAt: r.issued_at, revokedAt: r.revoked_at, revokeReason: r.revoke_reason, issuer: r.issuer,
  chainPem: r.chain_pem, keySha256: r.key_sha256,
});

export type NewCertificate = Omit<CertificateRecord, 'issuedAt' | 'revokedAt' | 'revokeReason' | 'issuer' | 'chainPem' | 'keySha256'>
  & Partial<Pick<CertificateRecord, 'issuer' | 'chainPem' | 'keySha256'>>;

export function recordCertificate(db: Db, c: NewCertificate): void {
  db.prepare(`INSERT INTO certificates (serial, subdomain_id, fqdn, kind, not_before, not_after, sha256, issued_at, issuer, chain_pem, key_sha256)
              VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(serial) DO NOTHING`)
    .run(c.serial, c.subdomainId, c.fqdn, c.kind, c.notBefore, c.notAfter, c.sha256, now(), c.issuer ?? 'private', c.chainPem ?? null, c.keySha256 ?? null);
}

export function markRevoked(db: Db, serial: string, reason: string): void {
  db.prepare('UPDATE certificates SET revoked_at = COALESCE(revoked_at, ?), revoke_reason = COALESCE(revoke_reason, ?) WHERE serial = ?').run(now(), reason, serial);
}

export function certificatesOf(db: Db, subdomainId: string): CertificateRecord[] {
  return (db.prepare('SELECT * FROM certificates WHERE subdomain_id = ? ORDER BY issued_at').all(subdomainId) as Row[]).map(toRecord);
}

/** The still-valid pod certificates of a name (looked up by fqdn: the subdomain's row may be gone). */
export function liveCertificatesOfName(db: Db, fqdn: string, at = now()): CertificateRecord[] {
  return (db.prepare("SELECT * FROM certificates WHERE fqdn = ? AND kind = 'pod' AND revoked_at IS NULL AND not_after > ? ORDER BY issued_at").all(fqdn, at) as Row[]).map(toRecord);
}

/** The newest valid certificate of a pod: what it should serve (an ACME one wins over a private one of the same key). */
export function currentPodCertificate(db: Db, subdomainId: string, at = now()): CertificateRecord | undefined {
  const r = db.prepare(`SELECT * FROM certificates WHERE subdomain_id = ? AND kind = 'pod' AND revoked_at IS NULL AND not_after > ?
                        ORDER BY (issuer = 'acme') DESC, not_before DESC, issued_at DESC LIMIT 1`).get(subdomainId, at) as Row | undefined;
  return r ? toRecord(r) : undefined;
}

/** Valid (not revoked, not expired) certificates of each subdomain: the probe accepts any of them. */
export function validFingerprints(db: Db, at = now()): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const r of db.prepare('SELECT subdomain_id, sha256 FROM certificates WHERE subdomain_id IS NOT NULL AND revoked_at IS NULL AND not_after > ?').all(at) as Row[]) {
    const set = out.get(r.subdomain_id!) ?? new Set<string>();
    set.add(r.sha256.toLowerCase());
    out.set(r.subdomain_id!, set);
  }
  return out;
}

/** The same for one subdomain (a prompt probe of one pod). */
export function validFingerprintsOf(db: Db, subdomainId: string, at = now()): Set<string> {
  return new Set((db.prepare('SELECT sha256 FROM certificates WHERE subdomain_id = ? AND revoked_at IS NULL AND not_after > ?').pluck().all(subdomainId, at) as string[]).map((x) => x.toLowerCase()));
}

/** The certificate with this DER fingerprint, if pipe2me recorded it. */
export function certificateBySha256(db: Db, sha256: string): CertificateRecord | undefined {
  const r = db.prepare('SELECT * FROM certificates WHERE sha256 = ? ORDER BY issued_at DESC LIMIT 1').get(sha256.toLowerCase()) as Row | undefined;
  return r ? toRecord(r) : undefined;
}
