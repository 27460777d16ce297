/**
 * The certificate authority: an OpenSSL CA directory driven through `openssl`. This is the side-effect
 * edge; the decisions (is this CSR acceptable, what goes into openssl.cnf, what does index.txt say) live
 * in the pure modules next to it.
 *
 * Directory layout (the directory is 0700 and owned by the user running pipe2me-ctl, root on a server):
 *   ca.json           settings (crlUrl, validity defaults, optional name constraint)
 *   openssl.cnf       rendered from templates/openssl/openssl.cnf.hbs, re-rendered on every operation
 *   ca.crt            the certificate that signs (the self-signed root, or an installed intermediate)
 *   private/ca.key    its key, 0600
 *   root.crt          what clients trust (the same as ca.crt with a self-signed root)
 *   chain.pem         what a server sends after its own certificate (empty with a self-signed root)
 *   index.txt, index.txt.attr, serial, crlnumber, newcerts/   openssl ca's database
 *   crl.pem, crl.der  the current CRL, rewritten on every change
 *   ca.lock           the cross-process lock every writing operation holds
 *   tmp/              per-operation files (requests, extension files), removed afterwards
 *   retired/          earlier ca.crt/ca.key pairs, kept when an intermediate replaces them
 */
import { createPrivateKey, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DaemonError, InputError, NotFoundError, ConflictError, DeniedError, Pipe2meError } from '../../util/errors.js';
import { run } from '../../util/exec.js';
import { atomicWrite, ensureDir, readIfExists, writeFresh } from '../../util/fsx.js';
import { withLock } from '../../util/lock.js';
import { pemBlocks } from '../asn1.js';
import { CaErrorCode } from '../codes.js';
import {
  DEFAULT_CRL_DAYS,
  DEFAULT_LEAF_DAYS,
  DEFAULT_ROOT_DAYS,
  checkDays,
  renderLeafExtensions,
  renderOpensslCnf,
  validateSettings,
  type CaSettings,
} from '../config.js';
import { checkCsr, DEFAULT_CSR_POLICY, type CsrPolicy } from '../csr.js';
import { isWithinDomain, normalizeFqdn, preview } from '../fqdn.js';
import { IndexFormatError, REVOCATION_REASONS, formatOpensslTime, parseIndex, type IndexEntry, type RevocationReason } from '../index-db.js';
import { describePublicKey, keyPolicyProblem, DEFAULT_KEY_POLICY } from '../keys.js';
import { normalizeSerial, parseCertificate, parseCrl, renewalDecision, splitCertificates, type CertInfo, type RenewalDecision } from '../x509.js';

export type CaKeyAlgorithm = 'P-256' | 'P-384';

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

export interface CrlResult {
  pem: string;
  /** Every file written. */
  files: string[];
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  revokedSerials: string[];
}

export interface ShownCertificate extends IndexEntry {
  certPem: string;
  issuer: string;
  notBefore: Date;
  notAfter: Date;
  dnsNames: string[];
  sha256Fingerprint: string;
  key: string;
}

/**
 * Files openssl ca rewrites on a signing or revocation, snapshotted so a failure can put them back.
 * openssl writes X.new, then renames X to X.old and X.new to X; a failure half-way leaves .new files.
 */
const DB_FILES = ['index.txt', 'index.txt.attr', 'serial'].flatMap((f) => [f, `${f}.new`, `${f}.old`]);
const CRL_FILES = ['crlnumber', 'crlnumber.new', 'crlnumber.old'];
/** Pods' clocks are often a little behind; a certificate valid from an hour ago is not refused by them. */
const BACKDATE_MS = 3_600_000;
const SETTINGS_VERSION = 1;
/** Tail of the queue of operations waiting for each CA lock in this process. */
const inProcessQueue = new Map<string, Promise<void>>();

interface StoredSettings {
  version: number;
  crlUrl: string | null;
  crlDays: number;
  defaultDays: number;
  restrictToDomain: string | null;
}

export class CertificateAuthority {
  readonly dir: string;
  private readonly csrPolicy: CsrPolicy;
  private readonly timeout: number;
  private readonly lockTimeoutMs: number;

  constructor(dir: string, opts: CertificateAuthorityOptions = {}) {
    this.dir = path.resolve(dir);
    this.csrPolicy = opts.csrPolicy ?? DEFAULT_CSR_POLICY;
    this.timeout = opts.opensslTimeoutMs ?? 20_000;
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 120_000;
  }

  private p(...parts: string[]): string {
    return path.join(this.dir, ...parts);
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
    this.checkDirSafe(true);

    return this.locked(async () => {
      ensureDir(this.dir, 0o700);
      for (const sub of ['private', 'newcerts', 'tmp']) ensureDir(this.p(sub), 0o700);
      writeIfChanged(this.p('ca.json'), JSON.stringify(stored, null, 2) + '\n', 0o600);
      writeIfChanged(this.p('openssl.cnf'), renderOpensslCnf(settings), 0o600);
      createIfMissing(this.p('index.txt'), '');
      createIfMissing(this.p('index.txt.attr'), 'unique_subject = no\n');
      // A random start: if this CA is ever re-created with the same name, its serials will not repeat
      // the old ones (browsers refuse two different certificates with the same issuer and serial).
      createIfMissing(this.p('serial'), (0x10 + (randomBytes(1)[0]! % 0x70)).toString(16).toUpperCase() + randomBytes(7).toString('hex').toUpperCase() + '\n');
      createIfMissing(this.p('crlnumber'), '1000\n');

      const certFile = this.p('ca.crt');
      const keyFile = this.p('private', 'ca.key');
      let created = false;
      if (!fs.existsSync(certFile)) {
        if (!fs.existsSync(keyFile)) await this.generateKey(keyFile, keyAlgorithm);
        await this.inTmp(async (tmp) => {
          const out = path.join(tmp, 'root.crt');
          await this.openssl(
            ['req', '-x509', '-new', '-key', keyFile, '-subj', `/CN=${commonName}`, '-days', String(rootDays), '-config', this.p('openssl.cnf'), '-extensions', 'pipe2me_root', '-out', out],
            'making the self-signed root',
          );
          const pem = fs.readFileSync(out, 'utf8');
          atomicWrite(this.p('root.crt'), pem, { mode: 0o644 });
          atomicWrite(this.p('chain.pem'), '', { mode: 0o644 });
          // ca.crt last: its presence is what marks the root as complete.
          atomicWrite(certFile, pem, { mode: 0o644 });
        });
        created = true;
      } else if (!fs.existsSync(keyFile)) {
        throw new ConflictError(CaErrorCode.keyMissing, `The CA certificate exists but its key ${keyFile} is missing.`, {
          hint: 'Restore private/ca.key from a backup, or install an intermediate (installIntermediate) with its key.',
        });
      }
      this.checkCaPair();
      fs.chmodSync(keyFile, 0o600);
      if (created || !fs.existsSync(this.p('crl.pem'))) await this.generateCrlLocked();
      const root = parseCertificate(fs.readFileSync(this.p('root.crt'), 'utf8'));
      return { created, rootPem: root.pem, sha256Fingerprint: root.sha256Fingerprint };
    });
  }

  // ---------------------------------------------------------------- signing

  /** Check a pod's CSR, then sign it for `fqdn` alone. Nothing is written when the check refuses it. */
  async signCsr(csrPem: string | Buffer, fqdn: string, opts: { days?: number } = {}): Promise<SignedCertificate> {
    const settings = this.loadSettings();
    const checked = checkCsr(csrPem, fqdn, this.csrPolicy);
    this.checkDomain(settings, [checked.fqdn]);
    const days = checkDays('days', opts.days ?? settings.defaultDays);
    return this.locked(() => this.signLocked(settings, checked.pem, [checked.fqdn], checked.key.type === 'rsa', days));
  }

  /**
   * A certificate for the server itself: its own name for its API and `*.<domain>` for the https entry.
   * The key is made here and never leaves this machine.
   */
  async issueServerCertificate(input: ServerCertificateInput): Promise<SignedCertificate> {
    const settings = this.loadSettings();
    if (!Array.isArray(input.names) || input.names.length === 0) {
      throw new InputError(CaErrorCode.invalidName, 'The server certificate needs at least one name.');
    }
    const names = [...new Set(input.names.map((n) => normalizeFqdn(n, { allowWildcard: true })))];
    this.checkDomain(settings, names);
    const days = checkDays('days', input.days ?? settings.defaultDays);
    const keyFile = path.resolve(input.keyFile);
    const certFile = path.resolve(input.certFile);
    if (!fs.existsSync(path.dirname(keyFile))) ensureDir(path.dirname(keyFile), 0o700);
    if (!fs.existsSync(path.dirname(certFile))) ensureDir(path.dirname(certFile), 0o755);

    let newKey: string | undefined;
    let keyForCsr = keyFile;
    if (input.rotateKey || !fs.existsSync(keyFile)) {
      newKey = path.join(path.dirname(keyFile), `.${path.basename(keyFile)}.p2m-${process.pid}-${randomBytes(4).toString('hex')}.new`);
      await this.generateKey(newKey, 'P-256');
      keyForCsr = newKey;
    } else {
      const key = loadPrivateKeyFile(keyFile);
      const problem = keyPolicyProblem(describePublicKey(key), DEFAULT_KEY_POLICY);
      if (problem) throw new InputError(CaErrorCode.keyFileInvalid, `The key in ${keyFile} cannot be used: ${problem.message}.`, { hint: 'Pass rotateKey to make a new one.' });
      fs.chmodSync(keyFile, 0o600); // whatever put it there, it is private from now on
    }
    try {
      const rsa = describePublicKey(loadPrivateKeyFile(keyForCsr)).type === 'rsa';
      const signed = await this.locked(() =>
        this.inTmp(async (tmp) => {
          const csr = path.join(tmp, 'server.csr');
          await this.openssl(['req', '-new', '-key', keyForCsr, '-subj', `/CN=${names[0]}`, '-config', this.p('openssl.cnf'), '-out', csr], 'making the server request');
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
    const caPem = readIfExists(this.p('ca.crt'));
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

  async revoke(serial: string, reason: RevocationReason = 'unspecified'): Promise<{ serial: string; crl: CrlResult }> {
    this.loadSettings();
    const s = checkSerial(serial);
    if (!(REVOCATION_REASONS as readonly string[]).includes(reason)) {
      throw new InputError(CaErrorCode.revokeReasonInvalid, `${preview(String(reason))} is not a revocation reason.`, {
        hint: `Use one of: ${REVOCATION_REASONS.join(', ')}.`,
      });
    }
    return this.locked(async () => {
      const entry = this.readIndex().find((e) => e.serial === s);
      if (!entry) throw new NotFoundError(CaErrorCode.serialNotFound, `This CA has not issued a certificate with serial ${s}.`, { hint: 'List them with: pipe2me-ctl ca list' });
      if (entry.status === 'R') {
        throw new ConflictError(CaErrorCode.alreadyRevoked, `The certificate ${s} (${entry.subject}) was already revoked on ${entry.revokedAt?.toISOString()}.`);
      }
      const certFile = this.p('newcerts', `${s}.pem`);
      if (!fs.existsSync(certFile)) {
        throw new DaemonError(CaErrorCode.stateCorrupt, `The CA's copy of certificate ${s} (${certFile}) is missing, so openssl cannot revoke it.`);
      }
      await this.withRestore(DB_FILES, () =>
        this.openssl(['ca', '-config', this.p('openssl.cnf'), '-revoke', certFile, '-crl_reason', reason], `revoking ${s}`),
      );
      return { serial: s, crl: await this.generateCrlLocked() };
    });
  }

  /** Write a fresh CRL to crl.pem and crl.der in the CA directory, and to `outFile` (PEM) if given. */
  async generateCrl(outFile?: string): Promise<CrlResult> {
    this.loadSettings();
    return this.locked(() => this.generateCrlLocked(outFile));
  }

  // ---------------------------------------------------------------- reading

  list(): IndexEntry[] {
    this.loadSettings();
    return this.readIndex();
  }

  show(serial: string): ShownCertificate {
    this.loadSettings();
    const s = checkSerial(serial);
    const entry = this.readIndex().find((e) => e.serial === s);
    const pem = readIfExists(this.p('newcerts', `${s}.pem`));
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
  rootPem(): string {
    this.loadSettings();
    return fs.readFileSync(this.p('root.crt'), 'utf8');
  }

  // ---------------------------------------------------------------- intermediate

  /**
   * Sign with an intermediate issued by a real CA instead of the self-signed root. Everything is
   * checked first; a refusal changes nothing.
   */
  async installIntermediate(input: InstallIntermediateInput): Promise<InstallIntermediateResult> {
    this.loadSettings();
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

    return this.locked(() =>
      this.inTmp(async (tmp) => {
        const certFile = path.join(tmp, 'inter.crt');
        const rootFile = path.join(tmp, 'root.crt');
        const untrusted = path.join(tmp, 'untrusted.pem');
        writeTemp(certFile, cert.pem);
        writeTemp(rootFile, root.pem);
        writeTemp(untrusted, between.join(''));
        const args = ['verify', '-CAfile', rootFile, ...(between.length ? ['-untrusted', untrusted] : []), certFile];
        const v = await this.openssl(args, 'checking the intermediate', { allowFailure: true });
        if (v.exitCode !== 0) {
          const why = v.output.split('\n').filter((l) => /error|fail/i.test(l)).slice(0, 3).join('; ') || v.output.slice(0, 300);
          fail(CaErrorCode.intermediateChainInvalid, `The intermediate ${cert.subject} does not verify against the root ${root.subject}: ${why}`, 'Give the real CA\'s root, and every certificate between it and the intermediate as chainPem.');
        }

        // All checks passed: retire the current pair, then put the new one in place.
        const retiredTo = this.p('retired', new Date().toISOString().replace(/[:.]/g, '-'));
        ensureDir(this.p('retired'), 0o700);
        ensureDir(retiredTo, 0o700);
        const keep = ['ca.crt', 'root.crt', 'chain.pem', path.join('private', 'ca.key')];
        for (const f of keep) {
          if (fs.existsSync(this.p(f))) fs.copyFileSync(this.p(f), path.join(retiredTo, path.basename(f)));
        }
        fs.chmodSync(path.join(retiredTo, 'ca.key'), 0o600);
        try {
          atomicWrite(this.p('private', 'ca.key'), key.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
          atomicWrite(this.p('chain.pem'), cert.pem + between.join(''), { mode: 0o644 });
          atomicWrite(this.p('root.crt'), root.pem, { mode: 0o644 });
          atomicWrite(this.p('ca.crt'), cert.pem, { mode: 0o644 });
          this.checkCaPair();
          await this.generateCrlLocked();
        } catch (e) {
          for (const f of keep) {
            const saved = path.join(retiredTo, path.basename(f));
            if (fs.existsSync(saved)) atomicWrite(this.p(f), fs.readFileSync(saved), { mode: f.includes('key') ? 0o600 : 0o644 });
          }
          throw e;
        }
        return { subject: cert.subject, issuer: cert.issuer, notAfter: cert.notAfter, sha256Fingerprint: cert.sha256Fingerprint, retiredTo };
      }),
    );
  }

  // ---------------------------------------------------------------- internals

  /** Every writing operation runs here: one at a time across processes, with openssl.cnf up to date. */
  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    // Callers in this process queue here first, so they wait for each other without polling the
    // cross-process lock (which polls every 25 ms); other processes are kept out by withLock.
    const key = this.p('ca.lock');
    const previous = inProcessQueue.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = previous.then(() => mine);
    inProcessQueue.set(key, tail);
    await previous;
    try {
      return await this.lockedAcrossProcesses(fn);
    } finally {
      release();
      if (inProcessQueue.get(key) === tail) inProcessQueue.delete(key);
    }
  }

  private async lockedAcrossProcesses<T>(fn: () => Promise<T>): Promise<T> {
    return withLock(
      this.p('ca.lock'),
      'CA',
      async () => {
        const stored = readIfExists(this.p('ca.json'));
        // Re-rendered every time so a moved directory or a hand edit cannot make openssl sign with
        // something other than what the template says.
        if (stored !== undefined) writeIfChanged(this.p('openssl.cnf'), renderOpensslCnf(this.settingsFrom(stored)), 0o600);
        return fn();
      },
      { timeoutMs: this.lockTimeoutMs },
    );
  }

  private async signLocked(settings: CaSettings, csrPem: string, names: string[], rsa: boolean, days: number): Promise<SignedCertificate> {
    const ca = parseCertificate(fs.readFileSync(this.p('ca.crt'), 'utf8'));
    const serialBefore = normalizeSerial(fs.readFileSync(this.p('serial'), 'utf8'));
    const now = Date.now();
    // A leaf must not outlive the CA that signed it: clients would reject it once the CA expires.
    const end = Math.min(now + days * 86_400_000, ca.notAfter.getTime());
    const dateArgs = ['-startdate', formatOpensslTime(new Date(now - BACKDATE_MS)), ...(end < now + days * 86_400_000 ? ['-enddate', formatOpensslTime(new Date(end))] : ['-days', String(days)])];
    return this.inTmp(async (tmp) => {
      const csrFile = path.join(tmp, 'request.csr');
      const extFile = path.join(tmp, 'leaf.ext');
      const outFile = path.join(tmp, 'leaf.crt');
      writeTemp(csrFile, csrPem);
      writeTemp(extFile, renderLeafExtensions(settings, { names, rsa }));
      const newcert = this.p('newcerts', `${serialBefore}.pem`);
      await this.withRestore(DB_FILES, () =>
        this.openssl(
          ['ca', '-batch', '-notext', '-config', this.p('openssl.cnf'), '-extfile', extFile, '-extensions', 'pipe2me_leaf', '-subj', `/CN=${names[0]}`, ...dateArgs, '-in', csrFile, '-out', outFile],
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
        await this.openssl(['ca', '-config', this.p('openssl.cnf'), '-revoke', newcert, '-crl_reason', 'unspecified'], 'revoking an unexpected certificate', { allowFailure: true });
        await this.generateCrlLocked().catch(() => undefined);
        throw new DaemonError(CaErrorCode.issuedCertUnexpected, `openssl issued a certificate that differs from the request (${problems.join('; ')}); it was revoked and not returned.`);
      }
      const chainPem = readIfExists(this.p('chain.pem')) ?? '';
      return {
        serial: leaf.serial,
        certPem: leaf.pem,
        chainPem,
        fullchainPem: leaf.pem + chainPem,
        rootPem: fs.readFileSync(this.p('root.crt'), 'utf8'),
        notBefore: leaf.notBefore,
        notAfter: leaf.notAfter,
        sha256Fingerprint: leaf.sha256Fingerprint,
        names,
      };
    });
  }

  private async generateCrlLocked(outFile?: string): Promise<CrlResult> {
    return this.inTmp(async (tmp) => {
      const out = path.join(tmp, 'crl.pem');
      await this.withRestore(CRL_FILES, () => this.openssl(['ca', '-gencrl', '-config', this.p('openssl.cnf'), '-out', out], 'generating the CRL'));
      const pem = fs.readFileSync(out, 'utf8');
      const der = pemBlocks(pem).find((b) => b.label === 'X509 CRL')?.der;
      if (!der) throw new DaemonError(CaErrorCode.opensslFailed, 'openssl ca -gencrl wrote no CRL.');
      const info = parseCrl(der);
      const files = [this.p('crl.pem'), this.p('crl.der')];
      atomicWrite(files[0]!, pem, { mode: 0o644 });
      atomicWrite(files[1]!, der, { mode: 0o644 });
      if (outFile) {
        atomicWrite(path.resolve(outFile), pem, { mode: 0o644 });
        files.push(path.resolve(outFile));
      }
      return { pem, files, ...info };
    });
  }

  /**
   * Run `fn` (an openssl call that rewrites the database). If it fails, put `files` back exactly as
   * they were and remove `created` files that did not exist before, then rethrow.
   */
  private async withRestore<T>(files: string[], fn: () => Promise<T>, created: string[] = []): Promise<T> {
    const before = new Map(files.map((f) => [f, fileState(this.p(f))]));
    const existed = new Map(created.map((f) => [f, fs.existsSync(f)]));
    try {
      return await fn();
    } catch (e) {
      for (const [f, state] of before) {
        const now = fileState(this.p(f));
        if (state === undefined) {
          if (now !== undefined) fs.rmSync(this.p(f), { force: true });
        } else if (now === undefined || !now.content.equals(state.content) || now.mode !== state.mode) {
          atomicWrite(this.p(f), state.content, { mode: state.mode });
        }
      }
      for (const [f, was] of existed) if (!was) fs.rmSync(f, { force: true });
      if (e instanceof Pipe2meError && e.code === CaErrorCode.opensslFailed) {
        e.message += ' The CA database was left as it was before.';
      }
      throw e;
    }
  }

  private async openssl(args: string[], what: string, opts: { allowFailure?: boolean } = {}) {
    try {
      return await run('openssl', args, { timeout: this.timeout, allowFailure: opts.allowFailure ?? false });
    } catch (e) {
      if (e instanceof Pipe2meError && e.code === 'command_failed') {
        // openssl's own output names paths and reasons, never key material.
        throw new DaemonError(CaErrorCode.opensslFailed, `openssl failed while ${what}: ${String(e.message).split('\n').slice(1).join(' ').slice(0, 1500)}`, {
          data: e.data ?? {},
          cause: e,
        });
      }
      throw e;
    }
  }

  /** A private directory under tmp/ for one operation, removed afterwards whatever happens. */
  private async inTmp<T>(fn: (tmp: string) => Promise<T>): Promise<T> {
    ensureDir(this.p('tmp'), 0o700);
    const tmp = fs.mkdtempSync(this.p('tmp', 'op-'));
    fs.chmodSync(tmp, 0o700);
    try {
      return await fn(tmp);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }

  /** Make a private key with openssl into a file that is 0600 before the first byte is written. */
  private async generateKey(file: string, alg: CaKeyAlgorithm): Promise<void> {
    fs.rmSync(file, { force: true });
    writeFresh(file, '', { mode: 0o600 });
    try {
      await this.openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', `ec_paramgen_curve:${alg}`, '-out', file], 'making a key');
      fs.chmodSync(file, 0o600);
    } catch (e) {
      fs.rmSync(file, { force: true });
      throw e;
    }
  }

  private checkCaPair(): void {
    const cert = new X509Certificate(fs.readFileSync(this.p('ca.crt')));
    if (!cert.checkPrivateKey(loadPrivateKeyFile(this.p('private', 'ca.key')))) {
      throw new DaemonError(CaErrorCode.stateCorrupt, `${this.p('private', 'ca.key')} does not belong to ${this.p('ca.crt')}.`, {
        hint: 'Restore both from the same backup (retired/ keeps earlier pairs).',
      });
    }
  }

  private checkDomain(settings: CaSettings, names: string[]): void {
    const d = settings.restrictToDomain;
    if (!d) return;
    for (const n of names) {
      if (!isWithinDomain(n, d)) throw new InputError(CaErrorCode.nameOutsideDomain, `${n} is not under ${d}, the only domain this CA issues for.`);
    }
  }

  /**
   * Refuse a directory another user controls (they could swap files under us) and, for init, a
   * non-empty directory that is not a CA (init would chmod it 0700 and fill it).
   */
  private checkDirSafe(forInit: boolean): void {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(this.dir);
    } catch {
      if (forInit) return;
      throw this.notInitialized();
    }
    const uid = process.geteuid?.();
    if (!st.isDirectory()) throw new DeniedError(CaErrorCode.dirUnsafe, `${this.dir} is not a directory (or is a symbolic link).`);
    if (uid !== undefined && st.uid !== uid) throw new DeniedError(CaErrorCode.dirUnsafe, `${this.dir} belongs to uid ${st.uid}, not to the user running pipe2me (uid ${uid}).`);
    if (forInit && !fs.existsSync(this.p('ca.json')) && fs.readdirSync(this.dir).length > 0) {
      throw new DeniedError(CaErrorCode.dirUnsafe, `${this.dir} already holds files that are not a pipe2me CA; refusing to turn it into one.`, {
        hint: 'Give an empty or new directory.',
      });
    }
  }

  private notInitialized(): NotFoundError {
    return new NotFoundError(CaErrorCode.notInitialized, `There is no CA in ${this.dir}.`, { hint: 'Create it first: pipe2me-ctl ca init' });
  }

  private settingsFrom(json: string): CaSettings {
    let s: Partial<StoredSettings>;
    try {
      s = JSON.parse(json) as Partial<StoredSettings>;
    } catch {
      throw new DaemonError(CaErrorCode.stateCorrupt, `${this.p('ca.json')} is not valid JSON.`);
    }
    return validateSettings({
      dir: this.dir,
      crlUrl: s.crlUrl ?? null,
      crlDays: s.crlDays ?? DEFAULT_CRL_DAYS,
      defaultDays: s.defaultDays ?? DEFAULT_LEAF_DAYS,
      restrictToDomain: s.restrictToDomain ?? null,
    });
  }

  private loadSettings(): CaSettings {
    this.checkDirSafe(false);
    const json = readIfExists(this.p('ca.json'));
    if (json === undefined || !fs.existsSync(this.p('ca.crt'))) throw this.notInitialized();
    return this.settingsFrom(json);
  }

  private readIndex(): IndexEntry[] {
    try {
      return parseIndex(fs.readFileSync(this.p('index.txt'), 'utf8'));
    } catch (e) {
      if (e instanceof IndexFormatError) throw new DaemonError(CaErrorCode.stateCorrupt, `${this.p('index.txt')} is damaged: ${e.message}.`);
      throw e;
    }
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

function checkSerial(serial: unknown): string {
  if (typeof serial !== 'string' || !/^(0x)?[0-9A-Fa-f:]{1,64}$/.test(serial.trim())) {
    throw new InputError(CaErrorCode.serialInvalid, `${preview(String(serial))} is not a certificate serial (hexadecimal).`);
  }
  return normalizeSerial(serial);
}

function loadPrivateKeyFile(file: string): KeyObject {
  try {
    return createPrivateKey(fs.readFileSync(file));
  } catch {
    throw new InputError(CaErrorCode.keyFileInvalid, `${file} is not a readable, unencrypted private key.`);
  }
}

function writeIfChanged(file: string, content: string, mode: number): void {
  if (readIfExists(file) !== content) atomicWrite(file, content, { mode });
  else fs.chmodSync(file, mode);
}

/** A file that lives for one operation inside tmp/: private, never there before, no fsync needed. */
function writeTemp(file: string, content: string): void {
  fs.writeFileSync(file, content, { mode: 0o600, flag: 'wx' });
}

function fileState(file: string): { content: Buffer; mode: number } | undefined {
  try {
    return { content: fs.readFileSync(file), mode: fs.statSync(file).mode & 0o7777 };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

function createIfMissing(file: string, content: string): void {
  if (!fs.existsSync(file)) atomicWrite(file, content, { mode: 0o600 });
}
