/** Reading the private CA: what it issued (index.txt, and newcerts/ or the book), and what clients trust. */
import * as fs from 'node:fs';
import { NotFoundError } from '../../util/errors.js';
import { CaErrorCode } from '../codes.js';
import type { IndexEntry } from '../index-db.js';
import { parseCertificate } from '../x509.js';
import { checkSerial, type CaDirectory } from './directory.js';

export interface ShownCertificate extends IndexEntry {
  certPem: string;
  /** What a server sends after it: the intermediate of the relay that signed it (empty for the root). */
  chainPem: string;
  issuer: string;
  notBefore: Date;
  notAfter: Date;
  dnsNames: string[];
  sha256Fingerprint: string;
  key: string;
}

export async function list(caDir: CaDirectory): Promise<IndexEntry[]> {
  caDir.loadSettings();
  return caDir.currentIndex();
}

export async function show(caDir: CaDirectory, serial: string): Promise<ShownCertificate> {
  caDir.loadSettings();
  const s = checkSerial(serial);
  const entry = (await caDir.currentIndex()).find((e) => e.serial === s);
  const issued = entry ? await caDir.issued(s) : undefined;
  if (!entry || issued === undefined) throw new NotFoundError(CaErrorCode.serialNotFound, `This CA has not issued a certificate with serial ${s}.`);
  const info = parseCertificate(issued.certPem);
  return {
    ...entry,
    certPem: info.pem,
    chainPem: issued.chainPem,
    issuer: info.issuer,
    notBefore: info.notBefore,
    notAfter: info.notAfter,
    dnsNames: info.dnsNames,
    sha256Fingerprint: info.sha256Fingerprint,
    key: info.key.label,
  };
}

/** The certificate clients trust (root.crt). */
export function rootPem(caDir: CaDirectory): string {
  caDir.loadSettings();
  return fs.readFileSync(caDir.p('root.crt'), 'utf8');
}
