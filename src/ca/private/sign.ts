/**
 * Signing with the private CA: pods' CSRs (checked first, for their one name), the server's own
 * certificates (key made here), and whether a certificate on disk should be renewed.
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DaemonError, InputError } from '../../util/errors.js';
import { atomicWrite, ensureDir, readIfExists } from '../../util/fsx.js';
import { CaErrorCode } from '../codes.js';
import { checkDays, renderLeafExtensions, type CaSettings } from '../config.js';
import { checkCsr, type CsrPolicy } from '../csr.js';
import { normalizeFqdn } from '../fqdn.js';
import { formatOpensslTime } from '../index-db.js';
import { describePublicKey, keyPolicyProblem, DEFAULT_KEY_POLICY } from '../keys.js';
import { normalizeSerial, parseCertificate, renewalDecision, splitCertificates, type RenewalDecision } from '../x509.js';
import { DB_FILES, checkDomain, issuedRecord, loadPrivateKeyFile, writeTemp, type CaDirectory } from './directory.js';
import { generateCrlLocked } from './revoke.js';

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

/** Check a pod's CSR, then sign it for `fqdn` alone. Nothing is written when the check refuses it. */
export async function signCsr(caDir: CaDirectory, csrPolicy: CsrPolicy, csrPem: string | Buffer, fqdn: string, opts: { days?: number } = {}): Promise<SignedCertificate> {
  const settings = caDir.loadSettings();
  const checked = checkCsr(csrPem, fqdn, csrPolicy);
  checkDomain(settings, [checked.fqdn]);
  const days = checkDays('days', opts.days ?? settings.defaultDays);
  return caDir.locked(() => signLocked(caDir, settings, checked.pem, [checked.fqdn], checked.key.type === 'rsa', days));
}

/**
 * A certificate for the server itself: its own name for its API and `*.<domain>` for the https entry.
 * The key is made here and never leaves this machine.
 */
export async function issueServerCertificate(caDir: CaDirectory, input: ServerCertificateInput): Promise<SignedCertificate> {
  const settings = caDir.loadSettings();
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
    await caDir.generateKey(newKey, 'P-256');
    keyForCsr = newKey;
  } else {
    const key = loadPrivateKeyFile(keyFile);
    const problem = keyPolicyProblem(describePublicKey(key), DEFAULT_KEY_POLICY);
    if (problem) throw new InputError(CaErrorCode.keyFileInvalid, `The key in ${keyFile} cannot be used: ${problem.message}.`, { hint: 'Pass rotateKey to make a new one.' });
    fs.chmodSync(keyFile, 0o600); // whatever put it there, it is private from now on
  }
  try {
    const rsa = describePublicKey(loadPrivateKeyFile(keyForCsr)).type === 'rsa';
    const signed = await caDir.locked(() =>
      caDir.inTmp(async (tmp) => {
        const csr = path.join(tmp, 'server.csr');
        await caDir.openssl(['req', '-new', '-key', keyForCsr, '-subj', `/CN=${names[0]}`, '-config', caDir.p('openssl.cnf'), '-out', csr], 'making the server request');
        return signLocked(caDir, settings, fs.readFileSync(csr, 'utf8'), names, rsa, days);
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
export function needsRenewal(caDir: CaDirectory, certFile: string, opts: { beforeDays?: number; now?: Date } = {}): RenewalDecision {
  const pem = readIfExists(certFile);
  const caPem = readIfExists(caDir.p('ca.crt'));
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

/** Sign a request for `names` with openssl ca, and check that what it issued is what was asked for; the caller holds the lock. */
async function signLocked(caDir: CaDirectory, settings: CaSettings, csrPem: string, names: string[], rsa: boolean, days: number): Promise<SignedCertificate> {
  const ca = parseCertificate(fs.readFileSync(caDir.p('ca.crt'), 'utf8'));
  const serialBefore = normalizeSerial(fs.readFileSync(caDir.p('serial'), 'utf8'));
  const now = Date.now();
  // A leaf must not outlive the CA that signed it: clients would reject it once the CA expires.
  const end = Math.min(now + days * 86_400_000, ca.notAfter.getTime());
  const dateArgs = ['-startdate', formatOpensslTime(new Date(now - BACKDATE_MS)), ...(end < now + days * 86_400_000 ? ['-enddate', formatOpensslTime(new Date(end))] : ['-days', String(days)])];
  return caDir.inTmp(async (tmp) => {
    const csrFile = path.join(tmp, 'request.csr');
    const extFile = path.join(tmp, 'leaf.ext');
    const outFile = path.join(tmp, 'leaf.crt');
    writeTemp(csrFile, csrPem);
    writeTemp(extFile, renderLeafExtensions(settings, { names, rsa }));
    const newcert = caDir.p('newcerts', `${serialBefore}.pem`);
    await caDir.withRestore(DB_FILES, () =>
      caDir.openssl(
        ['ca', '-batch', '-notext', '-config', caDir.p('openssl.cnf'), '-extfile', extFile, '-extensions', 'pipe2me_leaf', '-subj', `/CN=${names[0]}`, ...dateArgs, '-in', csrFile, '-out', outFile],
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
      await caDir.openssl(['ca', '-config', caDir.p('openssl.cnf'), '-revoke', newcert, '-crl_reason', 'unspecified'], 'revoking an unexpected certificate', { allowFailure: true });
      await generateCrlLocked(caDir).catch(() => undefined);
      throw new DaemonError(CaErrorCode.issuedCertUnexpected, `openssl issued a certificate that differs from the request (${problems.join('; ')}); it was revoked and not returned.`);
    }
    const chainPem = readIfExists(caDir.p('chain.pem')) ?? '';
    // Every relay can show and revoke it, whichever relay's key signed it (newcerts/ is this machine's).
    caDir.bookRecord(issuedRecord(leaf.serial), leaf.pem + chainPem);
    return {
      serial: leaf.serial,
      certPem: leaf.pem,
      chainPem,
      fullchainPem: leaf.pem + chainPem,
      rootPem: fs.readFileSync(caDir.p('root.crt'), 'utf8'),
      notBefore: leaf.notBefore,
      notAfter: leaf.notAfter,
      sha256Fingerprint: leaf.sha256Fingerprint,
      names,
    };
  });
}
