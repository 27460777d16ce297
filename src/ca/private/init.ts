/** Creating the private CA (its directory, database and self-signed root), or bringing one up to date. */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConflictError, InputError } from '../../util/errors.js';
import { atomicWrite, ensureDir } from '../../util/fsx.js';
import { CaErrorCode } from '../codes.js';
import { DEFAULT_CRL_DAYS, DEFAULT_LEAF_DAYS, DEFAULT_ROOT_DAYS, checkDays, renderOpensslCnf, validateSettings } from '../config.js';
import { preview } from '../fqdn.js';
import { parseCertificate } from '../x509.js';
import { SETTINGS_VERSION, writeIfChanged, type CaDirectory, type CaKeyAlgorithm, type StoredSettings } from './directory.js';
import { generateCrlLocked } from './revoke.js';

export interface InitOptions {
  /** CN of the self-signed root, e.g. "pipe2me CA for pipe.example.com". */
  commonName: string;
  /** Validity of the root in days (default 3650). */
  days?: number;
  keyAlgorithm?: CaKeyAlgorithm;
  /** URL of the CRL, written into every leaf (crlDistributionPoints). */
  crlUrl?: string | null;
  /** Validity of a pod certificate when signCsr is given none (default 90). */
  defaultDays?: number;
  /** nextUpdate of each CRL, days (default 30): regenerate it before then (generateCrl). */
  crlDays?: number;
  /** Put a critical nameConstraints for this domain into the root, and refuse names outside it. */
  restrictToDomain?: string | null;
}

export interface InitResult {
  /** False when the CA already existed (only settings and missing files were brought up to date). */
  created: boolean;
  rootPem: string;
  sha256Fingerprint: string;
}

/** Create the CA, or bring an existing one up to date. Safe to run again and again. */
export async function init(caDir: CaDirectory, opts: InitOptions): Promise<InitResult> {
  const commonName = checkCommonName(opts.commonName);
  const rootDays = checkDays('days', opts.days ?? DEFAULT_ROOT_DAYS);
  const keyAlgorithm = opts.keyAlgorithm ?? 'P-256';
  if (keyAlgorithm !== 'P-256' && keyAlgorithm !== 'P-384') {
    throw new InputError(CaErrorCode.configValueInvalid, `keyAlgorithm must be P-256 or P-384, not ${preview(String(keyAlgorithm))}.`);
  }
  const stored: StoredSettings = {
    version: SETTINGS_VERSION,
    crlUrl: opts.crlUrl ?? null,
    crlDays: opts.crlDays ?? DEFAULT_CRL_DAYS,
    defaultDays: opts.defaultDays ?? DEFAULT_LEAF_DAYS,
    restrictToDomain: opts.restrictToDomain ?? null,
  };
  // Validate everything before the directory is touched.
  const settings = validateSettings({ dir: caDir.dir, ...stored });
  stored.restrictToDomain = settings.restrictToDomain;
  caDir.checkDirSafe(true);

  return caDir.locked(async () => {
    ensureDir(caDir.dir, 0o700);
    for (const sub of ['private', 'newcerts', 'tmp']) ensureDir(caDir.p(sub), 0o700);
    writeIfChanged(caDir.p('ca.json'), JSON.stringify(stored, null, 2) + '\n', 0o600);
    writeIfChanged(caDir.p('openssl.cnf'), renderOpensslCnf(settings), 0o600);
    createIfMissing(caDir.p('index.txt'), '');
    createIfMissing(caDir.p('index.txt.attr'), 'unique_subject = no\n');
    // A random start: if this CA is ever re-created with the same name, its serials will not repeat
    // the old ones (browsers refuse two different certificates with the same issuer and serial).
    createIfMissing(caDir.p('serial'), (0x10 + (randomBytes(1)[0]! % 0x70)).toString(16).toUpperCase() + randomBytes(7).toString('hex').toUpperCase() + '\n');
    createIfMissing(caDir.p('crlnumber'), '1000\n');

    const certFile = caDir.p('ca.crt');
    const keyFile = caDir.p('private', 'ca.key');
    let created = false;
    if (!fs.existsSync(certFile)) {
      if (!fs.existsSync(keyFile)) await caDir.generateKey(keyFile, keyAlgorithm);
      await caDir.inTmp(async (tmp) => {
        const out = path.join(tmp, 'root.crt');
        await caDir.openssl(
          ['req', '-x509', '-new', '-key', keyFile, '-subj', `/CN=${commonName}`, '-days', String(rootDays), '-config', caDir.p('openssl.cnf'), '-extensions', 'pipe2me_root', '-out', out],
          'making the self-signed root',
        );
        const pem = fs.readFileSync(out, 'utf8');
        atomicWrite(caDir.p('root.crt'), pem, { mode: 0o644 });
        atomicWrite(caDir.p('chain.pem'), '', { mode: 0o644 });
        // ca.crt last: its presence is what marks the root as complete.
        atomicWrite(certFile, pem, { mode: 0o644 });
      });
      created = true;
    } else if (!fs.existsSync(keyFile)) {
      throw new ConflictError(CaErrorCode.keyMissing, `The CA certificate exists but its key ${keyFile} is missing.`, {
        hint: 'Restore private/ca.key from a backup, or install an intermediate (installIntermediate) with its key.',
      });
    }
    caDir.checkCaPair();
    fs.chmodSync(keyFile, 0o600);
    if (created || !fs.existsSync(caDir.p('crl.pem'))) await generateCrlLocked(caDir);
    const root = parseCertificate(fs.readFileSync(caDir.p('root.crt'), 'utf8'));
    return { created, rootPem: root.pem, sha256Fingerprint: root.sha256Fingerprint };
  });
}

function checkCommonName(cn: unknown): string {
  // It goes into `-subj /CN=...`, where / + = and backslash have meaning; and into every client's trust store.
  if (typeof cn !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9 ._()-]{0,63}$/.test(cn)) {
    throw new InputError(CaErrorCode.commonNameInvalid, `The CA's name ${preview(String(cn))} is not allowed.`, {
      hint: 'Use up to 64 letters, digits, spaces and . _ ( ) -, e.g. "pipe2me CA for pipe.example.com".',
    });
  }
  return cn;
}

function createIfMissing(file: string, content: string): void {
  if (!fs.existsSync(file)) atomicWrite(file, content, { mode: 0o600 });
}
