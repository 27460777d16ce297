/**
 * The `openssl ca` database (index.txt), read-only and pure. openssl owns the writing; we only read it
 * to list, show and check certificates, and compare it byte for byte around a signing.
 *
 * One line per certificate, tab-separated:
 *   status  expiry  revocation[,reason]  serial  filename  subject
 * status V (valid), R (revoked), E (expired, only after `openssl ca -updatedb`).
 */
import { normalizeSerial } from './x509.js';

export type CertStatus = 'V' | 'R' | 'E';

export interface IndexEntry {
  serial: string;
  /** Effective status: a V entry whose expiry has passed is reported as E (openssl only rewrites it on -updatedb). */
  status: CertStatus;
  expires: Date;
  revokedAt?: Date;
  revocationReason?: string;
  /** As openssl writes it: "/CN=alpha.pipe.example.com". */
  subject: string;
  commonName?: string;
}

/** Reasons `openssl ca -crl_reason` accepts (removeFromCRL only makes sense for delta CRLs, so it is left out). */
export const REVOCATION_REASONS = [
  'unspecified',
  'keyCompromise',
  'CACompromise',
  'affiliationChanged',
  'superseded',
  'cessationOfOperation',
  'certificateHold',
] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

export class IndexFormatError extends Error {}

/** openssl's ASN.1 time text: YYMMDDHHMMSSZ (UTCTime, 1950–2049) or YYYYMMDDHHMMSSZ. */
export function parseOpensslTime(t: string): Date {
  const m = /^(\d{2}|\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(t);
  if (!m) throw new IndexFormatError(`bad time ${JSON.stringify(t.slice(0, 20))}`);
  let year = Number(m[1]);
  if (m[1]!.length === 2) year += year < 50 ? 2000 : 1900;
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
}

/** The inverse, in the 4-digit form `openssl ca -startdate/-enddate` accepts. */
export function formatOpensslTime(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, '').replace(/\.\d{3}Z$/, 'Z');
}

export function parseIndex(text: string, now: Date = new Date()): IndexEntry[] {
  const entries: IndexEntry[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const f = line.split('\t');
    if (f.length !== 6) throw new IndexFormatError(`line ${i + 1} has ${f.length} fields, expected 6`);
    const [status, expiry, revocation, serial, , subject] = f as [string, string, string, string, string, string];
    if (status !== 'V' && status !== 'R' && status !== 'E') throw new IndexFormatError(`line ${i + 1} has unknown status ${JSON.stringify(status.slice(0, 5))}`);
    if (!/^[0-9A-Fa-f]+$/.test(serial)) throw new IndexFormatError(`line ${i + 1} has a bad serial`);
    const expires = parseOpensslTime(expiry);
    const entry: IndexEntry = {
      serial: normalizeSerial(serial),
      status: status === 'V' && expires.getTime() <= now.getTime() ? 'E' : status,
      expires,
      subject,
    };
    if (status === 'R') {
      const [date, reason] = revocation.split(',');
      entry.revokedAt = parseOpensslTime(date ?? '');
      if (reason) entry.revocationReason = reason;
    }
    const cn = /(?:^|\/)CN=([^/]*)/.exec(subject)?.[1];
    if (cn !== undefined) entry.commonName = cn;
    entries.push(entry);
  });
  return entries;
}
