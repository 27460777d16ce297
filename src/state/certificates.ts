/** Certificates the CA issued, as the state store knows them: for revocation and for the probe. */
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
}

const toRecord = (r: Row): CertificateRecord => ({
  serial: r.serial, subdomainId: r.subdomain_id, fqdn: r.fqdn, kind: r.kind, notBefore: r.not_before, notAfter: r.not_after,
  sha256: r.sha256, issuedAt: r.issued_at, revokedAt: r.revoked_at, revokeReason: r.revoke_reason,
});

export function recordCertificate(db: Db, c: Omit<CertificateRecord, 'issuedAt' | 'revokedAt' | 'revokeReason'>): void {
  db.prepare(`INSERT INTO certificates (serial, subdomain_id, fqdn, kind, not_before, not_after, sha256, issued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
              ON CONFLICT(serial) DO NOTHING`)
    .run(c.serial, c.subdomainId, c.fqdn, c.kind, c.notBefore, c.notAfter, c.sha256, now());
}

export function markRevoked(db: Db, serial: string, reason: string): void {
  db.prepare('UPDATE certificates SET revoked_at = COALESCE(revoked_at, ?), revoke_reason = COALESCE(revoke_reason, ?) WHERE serial = ?').run(now(), reason, serial);
}

export function certificatesOf(db: Db, subdomainId: string): CertificateRecord[] {
  return (db.prepare('SELECT * FROM certificates WHERE subdomain_id = ? ORDER BY issued_at').all(subdomainId) as Row[]).map(toRecord);
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
