/**
 * Replacing the private CA's self-signed root with an intermediate issued by a real CA: checked in
 * full before anything changes, the replaced pair kept in retired/.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InputError } from '../../util/errors.js';
import { atomicWrite, ensureDir } from '../../util/fsx.js';
import { CaErrorCode } from '../codes.js';
import { keyPolicyProblem, DEFAULT_KEY_POLICY } from '../keys.js';
import { parseCertificate, splitCertificates, type CertInfo } from '../x509.js';
import { writeTemp, type CaDirectory } from './directory.js';
import { generateCrlLocked } from './revoke.js';

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

/**
 * Sign with an intermediate issued by a real CA instead of the self-signed root. Everything is
 * checked first; a refusal changes nothing.
 */
export async function installIntermediate(caDir: CaDirectory, input: InstallIntermediateInput): Promise<InstallIntermediateResult> {
  caDir.loadSettings();
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

  return caDir.locked(() =>
    caDir.inTmp(async (tmp) => {
      const certFile = path.join(tmp, 'inter.crt');
      const rootFile = path.join(tmp, 'root.crt');
      const untrusted = path.join(tmp, 'untrusted.pem');
      writeTemp(certFile, cert.pem);
      writeTemp(rootFile, root.pem);
      writeTemp(untrusted, between.join(''));
      const args = ['verify', '-CAfile', rootFile, ...(between.length ? ['-untrusted', untrusted] : []), certFile];
      const v = await caDir.openssl(args, 'checking the intermediate', { allowFailure: true });
      if (v.exitCode !== 0) {
        const why = v.output.split('\n').filter((l) => /error|fail/i.test(l)).slice(0, 3).join('; ') || v.output.slice(0, 300);
        fail(CaErrorCode.intermediateChainInvalid, `The intermediate ${cert.subject} does not verify against the root ${root.subject}: ${why}`, 'Give the real CA\'s root, and every certificate between it and the intermediate as chainPem.');
      }

      // All checks passed: retire the current pair, then put the new one in place.
      const retiredTo = caDir.p('retired', new Date().toISOString().replace(/[:.]/g, '-'));
      ensureDir(caDir.p('retired'), 0o700);
      ensureDir(retiredTo, 0o700);
      const keep = ['ca.crt', 'root.crt', 'chain.pem', path.join('private', 'ca.key')];
      for (const f of keep) {
        if (fs.existsSync(caDir.p(f))) fs.copyFileSync(caDir.p(f), path.join(retiredTo, path.basename(f)));
      }
      fs.chmodSync(path.join(retiredTo, 'ca.key'), 0o600);
      try {
        atomicWrite(caDir.p('private', 'ca.key'), key.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
        atomicWrite(caDir.p('chain.pem'), cert.pem + between.join(''), { mode: 0o644 });
        atomicWrite(caDir.p('root.crt'), root.pem, { mode: 0o644 });
        atomicWrite(caDir.p('ca.crt'), cert.pem, { mode: 0o644 });
        caDir.checkCaPair();
        await generateCrlLocked(caDir);
      } catch (e) {
        for (const f of keep) {
          const saved = path.join(retiredTo, path.basename(f));
          if (fs.existsSync(saved)) atomicWrite(caDir.p(f), fs.readFileSync(saved), { mode: f.includes('key') ? 0o600 : 0o644 });
        }
        throw e;
      }
      return { subject: cert.subject, issuer: cert.issuer, notAfter: cert.notAfter, sha256Fingerprint: cert.sha256Fingerprint, retiredTo };
    }),
  );
}
