/**
 * The private certificate authority: an OpenSSL CA directory driven through `openssl`. This is the
 * side-effect edge; the decisions (is this CSR acceptable, what goes into openssl.cnf, what does
 * index.txt say) live in the pure modules in src/ca/, the directory's plumbing in ./directory.ts.
 */
import { createPrivateKey, randomBytes, type KeyObject } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InputError, ConflictError } from '../../util/errors.js';
import { atomicWrite, ensureDir } from '../../util/fsx.js';
import { CaErrorCode } from '../codes.js';
import { DEFAULT_CRL_DAYS, DEFAULT_LEAF_DAYS, DEFAULT_ROOT_DAYS, checkDays, renderOpensslCnf, validateSettings } from '../config.js';
import { DEFAULT_CSR_POLICY, type CsrPolicy } from '../csr.js';
import { preview } from '../fqdn.js';
import type { IndexEntry, RevocationReason } from '../index-db.js';
import { keyPolicyProblem, DEFAULT_KEY_POLICY } from '../keys.js';
import { parseCertificate, splitCertificates, type CertInfo, type RenewalDecision } from '../x509.js';
import { CaDirectory, SETTINGS_VERSION, writeIfChanged, writeTemp, type CaKeyAlgorithm, type StoredSettings } from './directory.js';
import { list, rootPem, show, type ShownCertificate } from './list.js';
import { generateCrl, generateCrlLocked, revoke, type CrlResult } from './revoke.js';
import { issueServerCertificate, needsRenewal, signCsr, type ServerCertificateInput, type SignedCertificate } from './sign.js';

export type { CaKeyAlgorithm };
export type { ShownCertificate } from './list.js';
export type { CrlResult } from './revoke.js';
export type { ServerCertificateInput, SignedCertificate } from './sign.js';

export interface CertificateAuthorityOptions {
  /** What a pod's CSR must satisfy (key types and sizes, size limit). */
  csrPolicy?: CsrPolicy;
  /** Timeout of each openssl call, ms. */
  opensslTimeoutMs?: number;
  /** How long to wait for another signer to release the CA lock, ms. */
  lockTimeoutMs?: number;
}

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

export interface InstallIntermediateInput {
  certPem: string;
  keyPem: string;
  /** The real CA's root, what clients will trust. */
  rootPem: string;
  /** Certificates between the intermediate and the root, if the real CA has more than one level. */
  chainPem?: string;
}

export interface InstallIntermediateResult {
  subject: string;
  issuer: string;
  notAfter: Date;
  sha256Fingerprint: string;
  /** Where the replaced ca.crt/ca.key were moved. */
  retiredTo: string;
}

export class CertificateAuthority {
  readonly dir: string;
  private readonly directory: CaDirectory;
  private readonly csrPolicy: CsrPolicy;

  constructor(dir: string, opts: CertificateAuthorityOptions = {}) {
    this.directory = new CaDirectory(dir, { opensslTimeoutMs: opts.opensslTimeoutMs ?? 20_000, lockTimeoutMs: opts.lockTimeoutMs ?? 120_000 });
    this.dir = this.directory.dir;
    this.csrPolicy = opts.csrPolicy ?? DEFAULT_CSR_POLICY;
  }

  // ---------------------------------------------------------------- init

  /** Create the CA, or bring an existing one up to date. Safe to run again and again. */
  async init(opts: InitOptions): Promise<InitResult> {
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
    const settings = validateSettings({ dir: this.dir, ...stored });
    stored.restrictToDomain = settings.restrictToDomain;
    this.directory.checkDirSafe(true);

    return this.directory.locked(async () => {
      ensureDir(this.dir, 0o700);
      for (const sub of ['private', 'newcerts', 'tmp']) ensureDir(this.directory.p(sub), 0o700);
      writeIfChanged(this.directory.p('ca.json'), JSON.stringify(stored, null, 2) + '\n', 0o600);
      writeIfChanged(this.directory.p('openssl.cnf'), renderOpensslCnf(settings), 0o600);
      createIfMissing(this.directory.p('index.txt'), '');
      createIfMissing(this.directory.p('index.txt.attr'), 'unique_subject = no\n');
      // A random start: if this CA is ever re-created with the same name, its serials will not repeat
      // the old ones (browsers refuse two different certificates with the same issuer and serial).
      createIfMissing(this.directory.p('serial'), (0x10 + (randomBytes(1)[0]! % 0x70)).toString(16).toUpperCase() + randomBytes(7).toString('hex').toUpperCase() + '\n');
      createIfMissing(this.directory.p('crlnumber'), '1000\n');

      const certFile = this.directory.p('ca.crt');
      const keyFile = this.directory.p('private', 'ca.key');
      let created = false;
      if (!fs.existsSync(certFile)) {
        if (!fs.existsSync(keyFile)) await this.directory.generateKey(keyFile, keyAlgorithm);
        await this.directory.inTmp(async (tmp) => {
          const out = path.join(tmp, 'root.crt');
          await this.directory.openssl(
            ['req', '-x509', '-new', '-key', keyFile, '-subj', `/CN=${commonName}`, '-days', String(rootDays), '-config', this.directory.p('openssl.cnf'), '-extensions', 'pipe2me_root', '-out', out],
            'making the self-signed root',
          );
          const pem = fs.readFileSync(out, 'utf8');
          atomicWrite(this.directory.p('root.crt'), pem, { mode: 0o644 });
          atomicWrite(this.directory.p('chain.pem'), '', { mode: 0o644 });
          // ca.crt last: its presence is what marks the root as complete.
          atomicWrite(certFile, pem, { mode: 0o644 });
        });
        created = true;
      } else if (!fs.existsSync(keyFile)) {
        throw new ConflictError(CaErrorCode.keyMissing, `The CA certificate exists but its key ${keyFile} is missing.`, {
          hint: 'Restore private/ca.key from a backup, or install an intermediate (installIntermediate) with its key.',
        });
      }
      this.directory.checkCaPair();
      fs.chmodSync(keyFile, 0o600);
      if (created || !fs.existsSync(this.directory.p('crl.pem'))) await generateCrlLocked(this.directory);
      const root = parseCertificate(fs.readFileSync(this.directory.p('root.crt'), 'utf8'));
      return { created, rootPem: root.pem, sha256Fingerprint: root.sha256Fingerprint };
    });
  }

  // ---------------------------------------------------------------- signing

  /** Check a pod's CSR, then sign it for `fqdn` alone. Nothing is written when the check refuses it. */
  signCsr(csrPem: string | Buffer, fqdn: string, opts: { days?: number } = {}): Promise<SignedCertificate> {
    return signCsr(this.directory, this.csrPolicy, csrPem, fqdn, opts);
  }

  /** A certificate for the server itself, with a key made here that never leaves this machine. */
  issueServerCertificate(input: ServerCertificateInput): Promise<SignedCertificate> {
    return issueServerCertificate(this.directory, input);
  }

  /** Whether the certificate in `certFile` should be replaced (missing, unreadable, expiring, or from an earlier CA certificate). */
  needsRenewal(certFile: string, opts: { beforeDays?: number; now?: Date } = {}): RenewalDecision {
    return needsRenewal(this.directory, certFile, opts);
  }

  // ---------------------------------------------------------------- revocation and CRL

  revoke(serial: string, reason: RevocationReason = 'unspecified'): Promise<{ serial: string; crl: CrlResult }> {
    return revoke(this.directory, serial, reason);
  }

  /** Write a fresh CRL to crl.pem and crl.der in the CA directory, and to `outFile` (PEM) if given. */
  generateCrl(outFile?: string): Promise<CrlResult> {
    return generateCrl(this.directory, outFile);
  }

  // ---------------------------------------------------------------- reading

  list(): IndexEntry[] {
    return list(this.directory);
  }

  show(serial: string): ShownCertificate {
    return show(this.directory, serial);
  }

  /** The certificate clients trust (root.crt). */
  rootPem(): string {
    return rootPem(this.directory);
  }

  // ---------------------------------------------------------------- intermediate

  /**
   * Sign with an intermediate issued by a real CA instead of the self-signed root. Everything is
   * checked first; a refusal changes nothing.
   */
  async installIntermediate(input: InstallIntermediateInput): Promise<InstallIntermediateResult> {
    this.directory.loadSettings();
    const fail = (code: string, message: string, hint?: string): never => {
      throw new InputError(code, message, hint ? { hint } : {});
    };
    let cert: CertInfo;
    try {
      cert = parseCertificate(String(input.certPem));
    } catch {
      return fail(CaErrorCode.intermediateCertInvalid, 'The intermediate certificate is not a single readable PEM certificate.');
    }
    let key: KeyObject;
    try {
      key = createPrivateKey(String(input.keyPem));
    } catch (e) {
      // Node's message is about the format, but say nothing from the key's text anyway.
      const encrypted = /passphrase|encrypted/i.test(String((e as Error).message)) || /ENCRYPTED/.test(String(input.keyPem));
      return fail(
        CaErrorCode.intermediateKeyInvalid,
        encrypted ? 'The intermediate key is encrypted; the CA signs unattended and needs it unencrypted.' : 'The intermediate key is not a readable PEM private key.',
        encrypted ? 'Decrypt it first: openssl pkey -in enc.key -out plain.key' : undefined,
      );
    }
    const keyProblem = keyPolicyProblem(cert.key, DEFAULT_KEY_POLICY);
    if (keyProblem) fail(CaErrorCode.intermediateKeyTypeNotAllowed, `The intermediate certificate cannot be used: ${keyProblem.message}.`);
    if (!cert.x509.checkPrivateKey(key)) {
      fail(CaErrorCode.intermediateKeyMismatch, `The key does not belong to the intermediate certificate ${cert.subject}.`, 'Give the key the certificate was issued for.');
    }
    if (!cert.isCa) fail(CaErrorCode.intermediateNotCa, `${cert.subject} is not a CA certificate (basicConstraints CA:true is missing).`, 'Ask the issuing CA for an intermediate (CA) certificate.');
    if (!cert.keyUsage.includes('keyCertSign')) {
      fail(CaErrorCode.intermediateNotCa, `${cert.subject} may not sign certificates (keyUsage ${cert.keyUsage.join(', ') || 'is missing'}; keyCertSign is required).`);
    }
    const now = Date.now();
    if (cert.notAfter.getTime() <= now) fail(CaErrorCode.intermediateNotValidNow, `The intermediate ${cert.subject} expired on ${cert.notAfter.toISOString()}.`);
    if (cert.notBefore.getTime() > now) fail(CaErrorCode.intermediateNotValidNow, `The intermediate ${cert.subject} is not valid before ${cert.notBefore.toISOString()}.`);
    let root: CertInfo;
    let between: string[];
    try {
      root = parseCertificate(String(input.rootPem));
      between = input.chainPem ? splitCertificates(String(input.chainPem)) : [];
    } catch {
      return fail(CaErrorCode.intermediateChainInvalid, 'The root (or the chain) is not readable PEM certificates.');
    }
    if (!root.isCa || !root.selfIssued) fail(CaErrorCode.intermediateChainInvalid, `The given root ${root.subject} is not a self-signed CA certificate.`);

    return this.directory.locked(() =>
      this.directory.inTmp(async (tmp) => {
        const certFile = path.join(tmp, 'inter.crt');
        const rootFile = path.join(tmp, 'root.crt');
        const untrusted = path.join(tmp, 'untrusted.pem');
        writeTemp(certFile, cert.pem);
        writeTemp(rootFile, root.pem);
        writeTemp(untrusted, between.join(''));
        const args = ['verify', '-CAfile', rootFile, ...(between.length ? ['-untrusted', untrusted] : []), certFile];
        const v = await this.directory.openssl(args, 'checking the intermediate', { allowFailure: true });
        if (v.exitCode !== 0) {
          const why = v.output.split('\n').filter((l) => /error|fail/i.test(l)).slice(0, 3).join('; ') || v.output.slice(0, 300);
          fail(CaErrorCode.intermediateChainInvalid, `The intermediate ${cert.subject} does not verify against the root ${root.subject}: ${why}`, 'Give the real CA\'s root, and every certificate between it and the intermediate as chainPem.');
        }

        // All checks passed: retire the current pair, then put the new one in place.
        const retiredTo = this.directory.p('retired', new Date().toISOString().replace(/[:.]/g, '-'));
        ensureDir(this.directory.p('retired'), 0o700);
        ensureDir(retiredTo, 0o700);
        const keep = ['ca.crt', 'root.crt', 'chain.pem', path.join('private', 'ca.key')];
        for (const f of keep) {
          if (fs.existsSync(this.directory.p(f))) fs.copyFileSync(this.directory.p(f), path.join(retiredTo, path.basename(f)));
        }
        fs.chmodSync(path.join(retiredTo, 'ca.key'), 0o600);
        try {
          atomicWrite(this.directory.p('private', 'ca.key'), key.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
          atomicWrite(this.directory.p('chain.pem'), cert.pem + between.join(''), { mode: 0o644 });
          atomicWrite(this.directory.p('root.crt'), root.pem, { mode: 0o644 });
          atomicWrite(this.directory.p('ca.crt'), cert.pem, { mode: 0o644 });
          this.directory.checkCaPair();
          await generateCrlLocked(this.directory);
        } catch (e) {
          for (const f of keep) {
            const saved = path.join(retiredTo, path.basename(f));
            if (fs.existsSync(saved)) atomicWrite(this.directory.p(f), fs.readFileSync(saved), { mode: f.includes('key') ? 0o600 : 0o644 });
          }
          throw e;
        }
        return { subject: cert.subject, issuer: cert.issuer, notAfter: cert.notAfter, sha256Fingerprint: cert.sha256Fingerprint, retiredTo };
      }),
    );
  }
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
