/**
 * Certificates pipe2me's issuers made, as the state store knows them: for revocation, for the probe
 * (which recognises a pod by the certificates issued to it), and — for certificates from the ACME CA,
 * which the pod collects after the order finished — their chain.
 */
import { sql, type Selectable } from 'kysely';
import type { CertificatesTable } from './schema.js';
import type { Store } from './store.js';
import { now, type CertificateRecord } from './types.js';

/** A row as Kysely returns it (the table as src/state/schema.ts describes it). */
type Row = Selectable<CertificatesTable>;

const toRecord = (r: Row): CertificateRecord => ({
  serial: r.serial, subdomainId: r.subdomain_id, fqdn: r.fqdn, kind: r.kind, notBefore: r.not_before, notAfter: r.not_after,
  sha256: r.sha256, issuedAt: r.issued_at, revokedAt: r.revoked_at, revokeReason: r.revoke_reason, issuer: r.issuer,
  chainPem: r.chain_pem, keySha256: r.key_sha256,
});

export type NewCertificate = Omit<CertificateRecord, 'issuedAt' | 'revokedAt' | 'revokeReason' | 'issuer' | 'chainPem' | 'keySha256'>
  & Partial<Pick<CertificateRecord, 'issuer' | 'chainPem' | 'keySha256'>>;

export async function recordCertificate(s: Store, c: NewCertificate): Promise<void> {
  await s.q.insertInto('certificates').values({
    serial: c.serial, subdomain_id: c.subdomainId, fqdn: c.fqdn, kind: c.kind, not_before: c.notBefore, not_after: c.notAfter, sha256: c.sha256,
    issued_at: now(), issuer: c.issuer ?? 'private', chain_pem: c.chainPem ?? null, key_sha256: c.keySha256 ?? null,
  }).onConflict((oc) => oc.column('serial').doNothing()).execute();
}

export async function markRevoked(s: Store, serial: string, reason: string): Promise<void> {
  await s.q.updateTable('certificates').set((eb) => ({
    revoked_at: eb.fn.coalesce('revoked_at', eb.val(now())), revoke_reason: eb.fn.coalesce('revoke_reason', eb.val(reason)),
  })).where('serial', '=', serial).execute();
}

export async function certificatesOf(s: Store, subdomainId: string): Promise<CertificateRecord[]> {
  return (await s.q.selectFrom('certificates').selectAll().where('subdomain_id', '=', subdomainId).orderBy('issued_at').orderBy('serial').execute()).map(toRecord);
}

/** The still-valid pod certificates of a name (looked up by fqdn: the subdomain's row may be gone). */
export async function liveCertificatesOfName(s: Store, fqdn: string, at = now()): Promise<CertificateRecord[]> {
  return (await s.q.selectFrom('certificates').selectAll().where('fqdn', '=', fqdn).where('kind', '=', 'pod').where('revoked_at', 'is', null)
    .where('not_after', '>', at).orderBy('issued_at').orderBy('serial').execute()).map(toRecord);
}

/** The newest valid certificate of a pod: what it should serve (an ACME one wins over a private one of the same key). */
export async function currentPodCertificate(s: Store, subdomainId: string, at = now()): Promise<CertificateRecord | undefined> {
  const r = await s.q.selectFrom('certificates').selectAll().where('subdomain_id', '=', subdomainId).where('kind', '=', 'pod').where('revoked_at', 'is', null)
    .where('not_after', '>', at).orderBy(sql`CASE WHEN issuer = 'acme' THEN 1 ELSE 0 END`, 'desc').orderBy('not_before', 'desc').orderBy('issued_at', 'desc')
    .limit(1).executeTakeFirst();
  return r ? toRecord(r) : undefined;
}

/** Valid (not revoked, not expired) certificates of each subdomain: the probe accepts any of them. */
export async function validFingerprints(s: Store, at = now()): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  const rows = await s.q.selectFrom('certificates').select(['subdomain_id', 'sha256']).where('subdomain_id', 'is not', null).where('revoked_at', 'is', null)
    .where('not_after', '>', at).execute();
  for (const r of rows) {
    const set = out.get(r.subdomain_id!) ?? new Set<string>();
    set.add(r.sha256.toLowerCase());
    out.set(r.subdomain_id!, set);
  }
  return out;
}

/** The same for one subdomain (a prompt probe of one pod). */
export async function validFingerprintsOf(s: Store, subdomainId: string, at = now()): Promise<Set<string>> {
  const rows = await s.q.selectFrom('certificates').select('sha256').where('subdomain_id', '=', subdomainId).where('revoked_at', 'is', null).where('not_after', '>', at).execute();
  return new Set(rows.map((r) => r.sha256.toLowerCase()));
}

/** The certificate with this DER fingerprint, if pipe2me recorded it. */
export async function certificateBySha256(s: Store, sha256: string): Promise<CertificateRecord | undefined> {
  const r = await s.q.selectFrom('certificates').selectAll().where('sha256', '=', sha256.toLowerCase()).orderBy('issued_at', 'desc').limit(1).executeTakeFirst();
  return r ? toRecord(r) : undefined;
}
