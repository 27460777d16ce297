/**
 * The private certificate authority: an OpenSSL CA directory driven through `openssl`. This is the
 * side-effect edge; the decisions (is this CSR acceptable, what goes into openssl.cnf, what does
 * index.txt say) live in the pure modules in src/ca/, the directory's plumbing in ./directory.ts.
 */
import { createPrivateKey, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DaemonError, InputError, ConflictError } from '../../util/errors.js';
import { atomicWrite, ensureDir, readIfExists } from '../../util/fsx.js';
import { CaErrorCode } from '../codes.js';
import { DEFAULT_CRL_DAYS, DEFAULT_LEAF_DAYS, DEFAULT_ROOT_DAYS, checkDays, renderLeafExtensions, renderOpensslCnf, validateSettings, type CaSettings } from '../config.js';
import { checkCsr, DEFAULT_CSR_POLICY, type CsrPolicy } from '../csr.js';
import { normalizeFqdn, preview } from '../fqdn.js';
import { formatOpensslTime, type IndexEntry, type RevocationReason } from '../index-db.js';
import { describePublicKey, keyPolicyProblem, DEFAULT_KEY_POLICY } from '../keys.js';
import { normalizeSerial, parseCertificate, renewalDecision, splitCertificates, type CertInfo, type RenewalDecision } from '../x509.js';
import {
  CaDirectory,
  DB_FILES,
  SETTINGS_VERSION,
  checkDomain,
  loadPrivateKeyFile,
  writeIfChanged,
  writeTemp,
  type CaKeyAlgorithm,
  type StoredSettings,
} from './directory.js';
import { list, rootPem, show, type ShownCertificate } from './list.js';
import { generateCrl, generateCrlLocked, revoke, type CrlResult } from './revoke.js';

export type { CaKeyAlgorithm };
export type { ShownCertificate } from './list.js';
export type { CrlResult } from './revoke.js';

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

export interface SignedCertificate {
  serial: string;
  /** The leaf alone. */
  certPem: string;
  /** What a server sends after its leaf: the intermediate(s); empty with a self-signed root. */
  chainPem: string;
  /** certPem + chainPem, what nginx's ssl_certificate wants. */
  fullchainPem: string;
  /** The certificate clients trust. */
  rootPem: string;
  notBefore: Date;
  notAfter: Date;
  sha256Fingerprint: string;
  names: string[];
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

export interface ServerCertificateInput {
  /** Its own name first (the CN), then e.g. `*.<domain>` for the https entry. */
  names: string[];
  /** Where the key lives (made here if missing, 0600). */
  keyFile: string;
  /** Where the certificate is written: the full chain (leaf, then intermediates), 0644. */
  certFile: string;
  days?: number;
  /** Make a new key even if keyFile exists. */
  rotateKey?: boolean;
}

/** Pods' clocks are often a little behind; a certificate valid from an hour ago is not refused by them. */
const BACKDATE_MS = 3_600_000;

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
  async signCsr(csrPem: string | Buffer, fqdn: string, opts: { days?: number } = {}): Promise<SignedCertificate> {
    const settings = this.directory.loadSettings();
    const checked = checkCsr(csrPem, fqdn, this.csrPolicy);
    checkDomain(settings, [checked.fqdn]);
    const days = checkDays('days', opts.days ?? settings.defaultDays);
    return this.directory.locked(() => this.signLocked(settings, checked.pem, [checked.fqdn], checked.key.type === 'rsa', days));
  }

  /**
   * A certificate for the server itself: its own name for its API and `*.<domain>` for the https entry.
   * The key is made here and never leaves this machine.
   */
  async issueServerCertificate(input: ServerCertificateInput): Promise<SignedCertificate> {
    const settings = this.directory.loadSettings();
    if (!Array.isArray(input.names) || input.names.length === 0) {
      throw new InputError(CaErrorCode.invalidName, 'The server certificate needs at least one name.');
    }
    const names = [...new Set(input.names.map((n) => normalizeFqdn(n, { allowWildcard: true })))];
    checkDomain(settings, names);
    const days = checkDays('days', input.days ?? settings.defaultDays);
    const keyFile = path.resolve(input.keyFile);
    const certFile = path.resolve(input.certFile);
    if (!fs.existsSync(path.dirname(keyFile))) ensureDir(path.dirname(keyFile), 0o700);
    if (!fs.existsSync(path.dirname(certFile))) ensureDir(path.dirname(certFile), 0o755);

    let newKey: string | undefined;
    let keyForCsr = keyFile;
    if (input.rotateKey || !fs.existsSync(keyFile)) {
      newKey = path.join(path.dirname(keyFile), `.${path.basename(keyFile)}.p2m-${process.pid}-${randomBytes(4).toString('hex')}.new`);
      await this.directory.generateKey(newKey, 'P-256');
      keyForCsr = newKey;
    } else {
      const key = loadPrivateKeyFile(keyFile);
      const problem = keyPolicyProblem(describePublicKey(key), DEFAULT_KEY_POLICY);
      if (problem) throw new InputError(CaErrorCode.keyFileInvalid, `The key in ${keyFile} cannot be used: ${problem.message}.`, { hint: 'Pass rotateKey to make a new one.' });
      fs.chmodSync(keyFile, 0o600); // whatever put it there, it is private from now on
    }
    try {
      const rsa = describePublicKey(loadPrivateKeyFile(keyForCsr)).type === 'rsa';
      const signed = await this.directory.locked(() =>
        this.directory.inTmp(async (tmp) => {
          const csr = path.join(tmp, 'server.csr');
          await this.directory.openssl(['req', '-new', '-key', keyForCsr, '-subj', `/CN=${names[0]}`, '-config', this.directory.p('openssl.cnf'), '-out', csr], 'making the server request');
          return this.signLocked(settings, fs.readFileSync(csr, 'utf8'), names, rsa, days);
        }),
      );
      if (newKey) {
        fs.chmodSync(newKey, 0o600);
        fs.renameSync(newKey, keyFile);
        newKey = undefined;
      }
      atomicWrite(certFile, signed.fullchainPem, { mode: 0o644 });
      return signed;
    } finally {
      if (newKey) fs.rmSync(newKey, { force: true });
    }
  }

  /**
   * Whether the certificate in `certFile` should be replaced: missing, unreadable, expiring within
   * `beforeDays` (default 30), or issued by a CA certificate this CA no longer signs with.
   */
  needsRenewal(certFile: string, opts: { beforeDays?: number; now?: Date } = {}): RenewalDecision {
    const pem = readIfExists(certFile);
    const caPem = readIfExists(this.directory.p('ca.crt'));
    let issuer: X509Certificate | undefined;
    try {
      issuer = caPem ? new X509Certificate(caPem) : undefined;
    } catch {
      issuer = undefined;
    }
    let leafPem = pem;
    try {
      // certFile may hold a full chain; the leaf comes first.
      if (pem !== undefined) leafPem = splitCertificates(pem)[0] ?? pem;
    } catch {
      leafPem = pem; // unreadable: renewalDecision says so
    }
    return renewalDecision(leafPem, { ...opts, ...(issuer ? { issuer } : {}) });
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

  // ---------------------------------------------------------------- internals

  private async signLocked(settings: CaSettings, csrPem: string, names: string[], rsa: boolean, days: number): Promise<SignedCertificate> {
    const ca = parseCertificate(fs.readFileSync(this.directory.p('ca.crt'), 'utf8'));
    const serialBefore = normalizeSerial(fs.readFileSync(this.directory.p('serial'), 'utf8'));
    const now = Date.now();
    // A leaf must not outlive the CA that signed it: clients would reject it once the CA expires.
    const end = Math.min(now + days * 86_400_000, ca.notAfter.getTime());
    const dateArgs = ['-startdate', formatOpensslTime(new Date(now - BACKDATE_MS)), ...(end < now + days * 86_400_000 ? ['-enddate', formatOpensslTime(new Date(end))] : ['-days', String(days)])];
    return this.directory.inTmp(async (tmp) => {
      const csrFile = path.join(tmp, 'request.csr');
      const extFile = path.join(tmp, 'leaf.ext');
      const outFile = path.join(tmp, 'leaf.crt');
      writeTemp(csrFile, csrPem);
      writeTemp(extFile, renderLeafExtensions(settings, { names, rsa }));
      const newcert = this.directory.p('newcerts', `${serialBefore}.pem`);
      await this.directory.withRestore(DB_FILES, () =>
        this.directory.openssl(
          ['ca', '-batch', '-notext', '-config', this.directory.p('openssl.cnf'), '-extfile', extFile, '-extensions', 'pipe2me_leaf', '-subj', `/CN=${names[0]}`, ...dateArgs, '-in', csrFile, '-out', outFile],
          `signing a certificate for ${names.join(', ')}`,
        ),
        [newcert],
      );
      const leaf = parseCertificate(fs.readFileSync(outFile, 'utf8'));
      // Belt and braces: what openssl produced must be exactly what we asked for.
      const problems: string[] = [];
      if (leaf.serial !== serialBefore) problems.push(`serial ${leaf.serial}, expected ${serialBefore}`);
      if (leaf.isCa) problems.push('it is a CA certificate');
      if (leaf.subjectAltNames.join(',').toLowerCase() !== names.map((n) => `dns:${n}`).join(',')) problems.push(`subjectAltName ${leaf.subjectAltNames.join(', ')}`);
      if (leaf.commonName !== names[0]) problems.push(`CN ${leaf.commonName}`);
      if (!leaf.x509.checkIssued(ca.x509) || !leaf.x509.verify(ca.x509.publicKey)) problems.push('it is not signed by this CA');
      if (problems.length > 0) {
        // Never hand it out; revoke it so it is on the CRL even if it leaked from newcerts/.
        await this.directory.openssl(['ca', '-config', this.directory.p('openssl.cnf'), '-revoke', newcert, '-crl_reason', 'unspecified'], 'revoking an unexpected certificate', { allowFailure: true });
        await generateCrlLocked(this.directory).catch(() => undefined);
        throw new DaemonError(CaErrorCode.issuedCertUnexpected, `openssl issued a certificate that differs from the request (${problems.join('; ')}); it was revoked and not returned.`);
      }
      const chainPem = readIfExists(this.directory.p('chain.pem')) ?? '';
      return {
        serial: leaf.serial,
        certPem: leaf.pem,
        chainPem,
        fullchainPem: leaf.pem + chainPem,
        rootPem: fs.readFileSync(this.directory.p('root.crt'), 'utf8'),
        notBefore: leaf.notBefore,
        notAfter: leaf.notAfter,
        sha256Fingerprint: leaf.sha256Fingerprint,
        names,
      };
    });
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
