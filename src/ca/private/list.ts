/** Reading the private CA: what it issued (index.txt and newcerts/), and what clients trust. */
import * as fs from 'node:fs';
import { NotFoundError } from '../../util/errors.js';
import { readIfExists } from '../../util/fsx.js';
import { CaErrorCode } from '../codes.js';
import type { IndexEntry } from '../index-db.js';
import { parseCertificate } from '../x509.js';
import { checkSerial, type CaDirectory } from './directory.js';

export interface ShownCertificate extends IndexEntry {
  certPem: string;
  issuer: string;
  notBefore: Date;
  notAfter: Date;
  dnsNames: string[];
  sha256Fingerprint: string;
  key: string;
}

export function list(caDir: CaDirectory): IndexEntry[] {
  caDir.loadSettings();
  return caDir.readIndex();
}

export function show(caDir: CaDirectory, serial: string): ShownCertificate {
  caDir.loadSettings();
  const s = checkSerial(serial);
  const entry = caDir.readIndex().find((e) => e.serial === s);
  const pem = readIfExists(caDir.p('newcerts', `${s}.pem`));
  if (!entry || pem === undefined) throw new NotFoundError(CaErrorCode.serialNotFound, `This CA has not issued a certificate with serial ${s}.`);
  const info = parseCertificate(pem);
  return {
    ...entry,
    certPem: info.pem,
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
