/**
 * Revoking what the private CA issued, and its CRL: rewritten after every revocation (and whenever
 * asked, before its nextUpdate), to crl.pem and crl.der in the CA directory.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConflictError, DaemonError, InputError, NotFoundError } from '../../util/errors.js';
import { atomicWrite, readIfExists } from '../../util/fsx.js';
import { pemBlocks } from '../asn1.js';
import { CaErrorCode } from '../codes.js';
import { preview } from '../fqdn.js';
import { REVOCATION_REASONS, type RevocationReason } from '../index-db.js';
import { parseCrl } from '../x509.js';
import { DB_FILES, checkSerial, crlRecord, type CaDirectory } from './directory.js';

export interface CrlResult {
  pem: string;
  /** Every file written. */
  files: string[];
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  revokedSerials: string[];
  crlNumber: bigint | undefined;
}

/** What openssl ca -gencrl rewrites, snapshotted like DB_FILES so a failure can put it back. */
const CRL_FILES = ['crlnumber', 'crlnumber.new', 'crlnumber.old'];

export async function revoke(caDir: CaDirectory, serial: string, reason: RevocationReason = 'unspecified'): Promise<{ serial: string; crl: CrlResult }> {
  caDir.loadSettings();
  const s = checkSerial(serial);
  if (!(REVOCATION_REASONS as readonly string[]).includes(reason)) {
    throw new InputError(CaErrorCode.revokeReasonInvalid, `${preview(String(reason))} is not a revocation reason.`, {
      hint: `Use one of: ${REVOCATION_REASONS.join(', ')}.`,
    });
  }
  return caDir.locked(async () => {
    const entry = caDir.readIndex().find((e) => e.serial === s);
    if (!entry) throw new NotFoundError(CaErrorCode.serialNotFound, `This CA has not issued a certificate with serial ${s}.`, { hint: 'List them with: pipe2me-ctl ca list' });
    if (entry.status === 'R') {
      throw new ConflictError(CaErrorCode.alreadyRevoked, `The certificate ${s} (${entry.subject}) was already revoked on ${entry.revokedAt?.toISOString()}.`);
    }
    const certFile = caDir.p('newcerts', `${s}.pem`);
    if (!fs.existsSync(certFile)) {
      // Signed by another relay's key: openssl needs only the certificate to mark its serial in the shared index.
      const issued = await caDir.issued(s);
      if (issued) atomicWrite(certFile, issued.certPem, { mode: 0o600 });
    }
    if (!fs.existsSync(certFile)) {
      throw new DaemonError(CaErrorCode.stateCorrupt, `The CA's copy of certificate ${s} (${certFile}) is missing, so openssl cannot revoke it.`);
    }
    await caDir.withRestore(DB_FILES, () =>
      caDir.openssl(['ca', '-config', caDir.p('openssl.cnf'), '-revoke', certFile, '-crl_reason', reason], `revoking ${s}`),
    );
    return { serial: s, crl: await generateCrlLocked(caDir) };
  });
}

/** Write a fresh CRL to crl.pem and crl.der in the CA directory, and to `outFile` (PEM) if given. */
export async function generateCrl(caDir: CaDirectory, outFile?: string, above?: bigint): Promise<CrlResult> {
  caDir.loadSettings();
  return caDir.locked(() => generateCrlLocked(caDir, outFile, above));
}

/**
 * Put this signer's CRL back into the store after something else replaced the store's copy: the very
 * CRL it last wrote, if that is the one served (`servedPem`) or newer by number, and good for another
 * day (every relay then keeps serving what it serves, and no CRL number is spent); a fresh one, numbered
 * above the served one, otherwise — never one that the relays would refuse again, which would have the
 * follower put it back on every look.
 */
export async function restoreCrl(caDir: CaDirectory, opts: { servedPem?: string; now?: Date } = {}): Promise<CrlResult> {
  caDir.loadSettings();
  const now = opts.now ?? new Date();
  const served = numberOf(opts.servedPem);
  return caDir.locked(async () => {
    const file = caDir.p('crl.pem');
    const pem = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : undefined;
    if (pem !== undefined) {
      try {
        const info = parseCrl(pem);
        const acceptable = served === undefined || pem === opts.servedPem || (info.crlNumber !== undefined && info.crlNumber > served);
        if (acceptable && info.nextUpdate && info.nextUpdate.getTime() - now.getTime() > RESTORE_MIN_LIFE_MS) {
          caDir.bookRecord(crlRecord(caDir.signer()), pem);
          return { pem, files: [], ...info };
        }
      } catch {
        // Unreadable: a fresh one replaces it.
      }
    }
    return generateCrlLocked(caDir, undefined, served);
  });
}

/** A file's text, or undefined when it is missing or cannot be read (a floor is only a floor). */
function readable(file: string): string | undefined {
  try {
    return readIfExists(file);
  } catch {
    return undefined;
  }
}

function numberOf(pem: string | undefined): bigint | undefined {
  if (pem === undefined) return undefined;
  try {
    return parseCrl(pem).crlNumber;
  } catch {
    return undefined;
  }
}

/** How long a CRL put back as it is must still be good for. */
const RESTORE_MIN_LIFE_MS = 24 * 3600_000;

/**
 * The CRL as the database says now; the caller holds the lock. Its number is above every CRL this
 * signer wrote before (its crl.pem here) and above `above` (the one served): the shared counter is
 * raised first where it is not, as after a store restored from an older backup, or lowered by someone
 * with the store's password. A CRL numbered below the one served would be refused by every relay, and
 * the revocations it lists would never be published.
 */
export async function generateCrlLocked(caDir: CaDirectory, outFile?: string, above?: bigint): Promise<CrlResult> {
  const floor = [numberOf(readable(caDir.p('crl.pem'))), above].reduce<bigint | undefined>((m, n) => (n !== undefined && (m === undefined || n > m) ? n : m), undefined);
  if (floor !== undefined) {
    const text = readIfExists(caDir.p('crlnumber'))?.trim() ?? '';
    const next = /^[0-9A-Fa-f]+$/.test(text) ? BigInt(`0x${text}`) : -1n;
    if (next <= floor) atomicWrite(caDir.p('crlnumber'), `${openSslHex(floor + 1n)}\n`, { mode: 0o600 });
  }
  return caDir.inTmp(async (tmp) => {
    const out = path.join(tmp, 'crl.pem');
    await caDir.withRestore(CRL_FILES, () => caDir.openssl(['ca', '-gencrl', '-config', caDir.p('openssl.cnf'), '-out', out], 'generating the CRL'));
    const pem = fs.readFileSync(out, 'utf8');
    const der = pemBlocks(pem).find((b) => b.label === 'X509 CRL')?.der;
    if (!der) throw new DaemonError(CaErrorCode.opensslFailed, 'openssl ca -gencrl wrote no CRL.');
    const info = parseCrl(der);
    // Every relay publishes every signer's CRL (a certificate names its signer's); the book carries them.
    caDir.bookRecord(crlRecord(caDir.signer()), pem);
    const files = [caDir.p('crl.pem'), caDir.p('crl.der')];
    atomicWrite(files[0]!, pem, { mode: 0o644 });
    atomicWrite(files[1]!, der, { mode: 0o644 });
    if (outFile) {
      atomicWrite(path.resolve(outFile), pem, { mode: 0o644 });
      files.push(path.resolve(outFile));
    }
    return { pem, files, ...info };
  });
}

/** How openssl writes its counters: upper-case hex with an even number of digits. */
const openSslHex = (n: bigint): string => {
  const h = n.toString(16).toUpperCase();
  return h.length % 2 ? `0${h}` : h;
};
