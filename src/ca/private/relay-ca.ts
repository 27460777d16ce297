/**
 * A CA key of its own on every relay: the relay makes its key and a request here (the key never leaves
 * the machine), the relay that holds the root signs the request as an intermediate that may sign leaves
 * only, and the requesting relay installs what came back. Requests and answers travel through the
 * store; only public material does.
 */
import { createHash, createPublicKey } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DeniedError, InputError } from '../../util/errors.js';
import { atomicWrite, ensureDir } from '../../util/fsx.js';
import { CaErrorCode } from '../codes.js';
import { DEFAULT_ROOT_DAYS, checkDays, renderOpensslCnf, validateSettings } from '../config.js';
import { parseCsr } from '../csr.js';
import { formatOpensslTime } from '../index-db.js';
import { describePublicKey, keyPolicyProblem, DEFAULT_KEY_POLICY } from '../keys.js';
import { normalizeSerial, parseCertificate, type CertInfo } from '../x509.js';
import { DB_FILES, SETTINGS_VERSION, issuedRecord, loadPrivateKeyFile, writeIfChanged, writeTemp, type CaDirectory, type StoredSettings } from './directory.js';
import { generateCrlLocked } from './revoke.js';

export interface RelayRequestInput {
  /** The relay's name: its signer label in the store. */
  relay: string;
  /** CN of its intermediate, e.g. "pipe2me relay-b CA for pipe.example.com". */
  commonName: string;
  /** The CRL URL its leaves name (its own CRL, which every relay publishes). */
  crlUrl: string;
  defaultDays?: number;
  crlDays?: number;
  restrictToDomain: string | null;
}

export interface RelayRequest {
  csrPem: string;
  /** sha256 of the key's SubjectPublicKeyInfo: the operator compares it before approving. */
  keySha256: string;
}

export interface SignedIntermediate {
  serial: string;
  certPem: string;
  subject: string;
  notAfter: Date;
  sha256Fingerprint: string;
  keySha256: string;
}

const RELAY_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const CN_RE = /^[A-Za-z0-9][A-Za-z0-9 ._()-]{0,63}$/;

const spkiSha256 = (der: Buffer) => createHash('sha256').update(der).digest('hex');

/** The relay's key (made once, 0600) and a request for its intermediate. Safe to run again: same key, new request. */
export async function requestRelayIntermediate(caDir: CaDirectory, input: RelayRequestInput): Promise<RelayRequest> {
  if (!RELAY_NAME.test(input.relay) || input.relay === 'root') throw new InputError(CaErrorCode.relayRequestInvalid, `${input.relay} cannot name a relay's CA.`);
  if (!CN_RE.test(input.commonName)) throw new InputError(CaErrorCode.commonNameInvalid, `The CA's name ${input.commonName} is not allowed.`);
  const stored: StoredSettings = {
    version: SETTINGS_VERSION,
    crlUrl: input.crlUrl,
    crlDays: input.crlDays ?? 30,
    defaultDays: input.defaultDays ?? 90,
    restrictToDomain: input.restrictToDomain,
    signer: input.relay,
  };
  const settings = validateSettings({ dir: caDir.dir, ...stored });
  caDir.checkDirSafe(true);
  return caDir.locked(async () => {
    ensureDir(caDir.dir, 0o700);
    for (const sub of ['private', 'newcerts', 'tmp']) ensureDir(caDir.p(sub), 0o700);
    writeIfChanged(caDir.p('ca.json'), JSON.stringify({ ...stored, restrictToDomain: settings.restrictToDomain }, null, 2) + '\n', 0o600);
    writeIfChanged(caDir.p('openssl.cnf'), renderOpensslCnf(settings), 0o600);
    const keyFile = caDir.p('private', 'ca.key');
    if (!fs.existsSync(keyFile)) await caDir.generateKey(keyFile, 'P-256');
    fs.chmodSync(keyFile, 0o600);
    return caDir.inTmp(async (tmp) => {
      const out = path.join(tmp, 'relay.csr');
      // -config: openssl.cnf's [ req ] section (rendered by locked()); the subject comes from -subj only.
      await caDir.openssl(['req', '-new', '-key', keyFile, '-subj', `/CN=${input.commonName}`, '-config', caDir.p('openssl.cnf'), '-out', out], 'making the relay\'s CA request');
      const csrPem = fs.readFileSync(out, 'utf8');
      return { csrPem, keySha256: spkiSha256(parseCsr(csrPem).spkiDer) };
    });
  });
}

/** Whether this directory signs with the self-signed root (only then may it sign relays). */
export function holdsRoot(caDir: CaDirectory): boolean {
  try {
    return parseCertificate(fs.readFileSync(caDir.p('ca.crt'), 'utf8')).selfIssued;
  } catch {
    return false;
  }
}

/**
 * Sign a relay's request with the root: checked first (a signed request for exactly `commonName`, a key
 * the policy allows); the intermediate may sign leaves only and never outlives the root.
 */
export async function signRelayIntermediate(caDir: CaDirectory, csrPem: string, opts: { commonName: string; days?: number; keySha256?: string }): Promise<SignedIntermediate> {
  caDir.loadSettings();
  if (!holdsRoot(caDir)) {
    throw new DeniedError(CaErrorCode.notRoot, `${caDir.p('ca.crt')} is an intermediate, not the root: only the relay that holds the root signs relays.`, {
      hint: 'Run pipe2me-ctl relay approve on the relay that made the CA (where pipe2me-ctl init first ran).',
    });
  }
  const refuse = (why: string): never => {
    throw new InputError(CaErrorCode.relayRequestInvalid, `The relay's CA request cannot be signed: ${why}.`, { hint: 'Run pipe2me-ctl init on that relay again: it makes a fresh request.' });
  };
  let parsed: ReturnType<typeof parseCsr>;
  try {
    parsed = parseCsr(csrPem);
  } catch (e) {
    return refuse((e as Error).message);
  }
  if (parsed.commonNames.length !== 1 || parsed.commonNames[0] !== opts.commonName) refuse(`its name is ${parsed.commonNames.join(', ') || 'missing'}, not ${opts.commonName}`);
  // The operator's check: the key the relay printed at its init, not whatever key the store holds now.
  if (opts.keySha256 !== undefined && spkiSha256(parsed.spkiDer) !== opts.keySha256.toLowerCase()) {
    throw new DeniedError(CaErrorCode.relayRequestInvalid, `The request in the store is for the key sha256 ${spkiSha256(parsed.spkiDer)}, not ${opts.keySha256.toLowerCase()}: nothing was signed.`, {
      hint: 'Compare with the sha256 that pipe2me-ctl init printed on that relay; if the relay made a new request since, use its new sha256.',
    });
  }
  const key = createPublicKey({ key: parsed.spkiDer, format: 'der', type: 'spki' });
  const problem = keyPolicyProblem(describePublicKey(key), DEFAULT_KEY_POLICY);
  if (problem) refuse(problem.message);
  const days = checkDays('days', opts.days ?? DEFAULT_ROOT_DAYS);
  return caDir.locked(() =>
    caDir.inTmp(async (tmp) => {
      const csrFile = path.join(tmp, 'relay.csr');
      const out = path.join(tmp, 'relay.crt');
      writeTemp(csrFile, csrPem);
      const v = await caDir.openssl(['req', '-verify', '-noout', '-in', csrFile], 'checking the relay\'s request', { allowFailure: true });
      if (v.exitCode !== 0) refuse('its signature does not verify');
      const root = parseCertificate(fs.readFileSync(caDir.p('ca.crt'), 'utf8'));
      const end = Math.min(Date.now() + days * 86_400_000, root.notAfter.getTime());
      const serialBefore = normalizeSerial(fs.readFileSync(caDir.p('serial'), 'utf8'));
      await caDir.withRestore(DB_FILES, () =>
        caDir.openssl(['ca', '-batch', '-notext', '-config', caDir.p('openssl.cnf'), '-extensions', 'pipe2me_relay_intermediate', '-subj', `/CN=${opts.commonName}`,
          '-startdate', formatOpensslTime(new Date(Date.now() - 3_600_000)), '-enddate', formatOpensslTime(new Date(end)), '-in', csrFile, '-out', out], 'signing the relay\'s intermediate'),
      [caDir.p('newcerts', `${serialBefore}.pem`)]);
      const cert = parseCertificate(fs.readFileSync(out, 'utf8'));
      if (!cert.isCa || cert.pathLen !== 0 || !cert.x509.verify(root.x509.publicKey) || spkiSha256(Buffer.from(cert.x509.publicKey.export({ type: 'spki', format: 'der' }))) !== spkiSha256(parsed.spkiDer)) {
        throw new InputError(CaErrorCode.issuedCertUnexpected, 'openssl issued an intermediate that differs from the request; it is not handed out.');
      }
      caDir.bookRecord(issuedRecord(cert.serial), cert.pem);
      return { serial: cert.serial, certPem: cert.pem, subject: cert.subject, notAfter: cert.notAfter, sha256Fingerprint: cert.sha256Fingerprint, keySha256: spkiSha256(parsed.spkiDer) };
    }),
  );
}

/**
 * Install the intermediate the root signed for this relay: its key must be the one made here, it must
 * chain to `rootPem`; only then is it what this directory signs with. A refusal changes nothing.
 */
export async function installRelayIntermediate(caDir: CaDirectory, input: { certPem: string; rootPem: string }): Promise<CertInfo> {
  const refuse = (why: string): never => {
    throw new InputError(CaErrorCode.relayRequestInvalid, `The intermediate signed for this relay cannot be installed: ${why}.`, {
      hint: 'Run pipe2me-ctl init here again (a fresh request), then pipe2me-ctl relay approve on the relay that holds the root.',
    });
  };
  let cert: CertInfo;
  let root: CertInfo;
  try {
    cert = parseCertificate(input.certPem);
    root = parseCertificate(input.rootPem);
  } catch {
    return refuse('it is not a readable certificate');
  }
  const keyFile = caDir.p('private', 'ca.key');
  if (!fs.existsSync(keyFile)) refuse(`its key ${keyFile} is not on this machine`);
  if (!cert.x509.checkPrivateKey(loadPrivateKeyFile(keyFile))) refuse('it was issued for another key than this relay\'s (an older request?)');
  if (!cert.isCa || !cert.keyUsage.includes('keyCertSign')) refuse('it is not a CA certificate');
  if (!root.selfIssued || !cert.x509.checkIssued(root.x509) || !cert.x509.verify(root.x509.publicKey)) refuse('it was not signed by the root the store names');
  if (cert.notAfter.getTime() <= Date.now()) refuse(`it expired on ${cert.notAfter.toISOString()}`);
  return caDir.locked(async () => {
    atomicWrite(caDir.p('root.crt'), root.pem, { mode: 0o644 });
    atomicWrite(caDir.p('chain.pem'), cert.pem, { mode: 0o644 });
    // ca.crt last: its presence is what makes the directory sign.
    atomicWrite(caDir.p('ca.crt'), cert.pem, { mode: 0o644 });
    caDir.checkCaPair();
    await generateCrlLocked(caDir);
    return cert;
  });
}
