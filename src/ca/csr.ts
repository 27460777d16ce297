/**
 * Checking a pod's certificate signing request, in-process and pure: no file, no openssl, no clock.
 *
 * The CA signs only after this says yes, and even then it takes nothing but the public key from the
 * CSR: the subject and every extension (the SAN above all) come from the CA's own configuration. The
 * checks still matter: they turn a wrong request into a clear refusal instead of a certificate the pod
 * did not expect, and they prove the requester holds the private key (the self-signature).
 *
 * node-forge cannot parse EC public keys, so forge.asn1 walks the PKCS#10 structure and Node's crypto
 * reads the key and verifies the signature.
 */
import { createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import type forge from 'node-forge';
import { forgeAsn1 } from './forge-asn1.js';
import { InputError } from '../util/errors.js';
import { Asn1Error, OID, bytesOf, childrenOf, decodeString, expectUniversal, oidOf, parseDer, pemBlocks, rawChild, toPem } from './asn1.js';
import { CsrErrorCode } from './codes.js';
import { normalizeFqdn, preview } from './fqdn.js';
import { DEFAULT_KEY_POLICY, describePublicKey, keyPolicyProblem, type KeyDescription, type KeyPolicy } from './keys.js';

/** A PKCS#10 request for one name is well under 2 KiB even with RSA-4096; 16 KiB leaves room and bounds the work. */
export const MAX_CSR_BYTES = 16 * 1024;

export interface CsrPolicy extends KeyPolicy {
  maxBytes: number;
}

export const DEFAULT_CSR_POLICY: CsrPolicy = Object.freeze({ ...DEFAULT_KEY_POLICY, maxBytes: MAX_CSR_BYTES });

export type SanType = 'dns' | 'ip' | 'email' | 'uri' | 'otherName' | 'x400Address' | 'directoryName' | 'ediPartyName' | 'registeredId';

export interface SanEntry {
  type: SanType;
  /** Printable form, for messages (bounded by the CSR size limit). */
  value: string;
}

export interface ParsedCsr {
  /** The request in DER. */
  der: Buffer;
  /** Every commonName in the subject, in order (normally exactly one). */
  commonNames: string[];
  /** subjectAltName entries from the extensionRequest; undefined when the CSR has no SAN extension. */
  san: SanEntry[] | undefined;
  /** OIDs of every extension the CSR asks for. The CA ignores all of them. */
  requestedExtensions: string[];
  spkiDer: Buffer;
  signatureAlgorithmOid: string;
  /** The signature value (BIT STRING contents without the unused-bits byte). */
  signature: Buffer;
  /** The exact bytes the signature covers (certificationRequestInfo, as sent). */
  signedBytes: Buffer;
}

export interface CheckedCsr {
  fqdn: string;
  key: KeyDescription;
  /** e.g. "ecdsa-with-SHA256" */
  signatureAlgorithm: string;
  /** SAN DNS names the CSR asked for (all equal to fqdn), empty if it had no SAN. */
  requestedDnsNames: string[];
  /** Extensions the CSR asked for that the CA will not copy (it never copies any). */
  ignoredExtensions: string[];
  /** PEM of the request, re-encoded from the checked DER (text around the block dropped). */
  pem: string;
}

/** Signature algorithms we verify. SHA-1 and MD5 are refused: a self-signature over them proves little. */
const SIGNATURE_ALGORITHMS: Record<string, { name: string; hash: string; keyType: 'rsa' | 'ec' }> = {
  '1.2.840.113549.1.1.11': { name: 'sha256WithRSAEncryption', hash: 'sha256', keyType: 'rsa' },
  '1.2.840.113549.1.1.12': { name: 'sha384WithRSAEncryption', hash: 'sha384', keyType: 'rsa' },
  '1.2.840.113549.1.1.13': { name: 'sha512WithRSAEncryption', hash: 'sha512', keyType: 'rsa' },
  '1.2.840.10045.4.3.2': { name: 'ecdsa-with-SHA256', hash: 'sha256', keyType: 'ec' },
  '1.2.840.10045.4.3.3': { name: 'ecdsa-with-SHA384', hash: 'sha384', keyType: 'ec' },
  '1.2.840.10045.4.3.4': { name: 'ecdsa-with-SHA512', hash: 'sha512', keyType: 'ec' },
};

const KNOWN_OID_NAMES: Record<string, string> = {
  '1.2.840.113549.1.1.4': 'md5WithRSAEncryption',
  '1.2.840.113549.1.1.5': 'sha1WithRSAEncryption',
  '1.2.840.113549.1.1.10': 'RSASSA-PSS',
  '1.2.840.10045.4.1': 'ecdsa-with-SHA1',
  '1.3.101.112': 'Ed25519',
  '1.3.101.113': 'Ed448',
  '2.16.840.1.101.3.4.3.2': 'dsa-with-SHA256',
  '1.2.840.10040.4.3': 'dsa-with-SHA1',
  '1.2.840.10040.4.1': 'DSA',
  [OID.rsaEncryption]: 'RSA',
  [OID.ecPublicKey]: 'EC',
};

const SAN_TAGS: SanType[] = ['otherName', 'email', 'dns', 'x400Address', 'directoryName', 'ediPartyName', 'uri', 'ip', 'registeredId'];

const SAN_TYPE_WORDS: Record<SanType, string> = {
  dns: 'DNS name',
  ip: 'IP address',
  email: 'email address',
  uri: 'URI',
  otherName: 'otherName entry',
  x400Address: 'X.400 address',
  directoryName: 'directory name',
  ediPartyName: 'EDI party name',
  registeredId: 'registered ID',
};

function refuse(code: string, message: string, hint: string, data: Record<string, unknown> = {}): never {
  throw new InputError(code, message, { hint, data });
}

const REGENERATE_HINT = 'Create the request again, e.g.: openssl req -new -key pod.key -subj /CN=<your name> -out pod.csr';

function formatIp(b: Buffer): string {
  if (b.length === 4) return Array.from(b).join('.');
  if (b.length === 16) return Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2).toString(16)).join(':');
  return `(${b.length} bytes)`;
}

function parseSan(extnValue: Buffer): SanEntry[] {
  const seq = expectUniversal(parseDer(extnValue), forgeAsn1.Type.SEQUENCE, 'subjectAltName');
  return childrenOf(seq, 'subjectAltName').map((gn) => {
    if (gn.tagClass !== forgeAsn1.Class.CONTEXT_SPECIFIC) throw new Asn1Error('a subjectAltName entry has the wrong type');
    const type = SAN_TAGS[gn.type];
    if (!type) throw new Asn1Error('a subjectAltName entry has an unknown tag');
    if (type === 'dns' || type === 'email' || type === 'uri') return { type, value: bytesOf(gn).toString('latin1') };
    if (type === 'ip') return { type, value: formatIp(bytesOf(gn)) };
    return { type, value: '' };
  });
}

/** Read the extensions out of the CSR's attributes. Several extensionRequest attributes are all read. */
function readExtensions(attributes: forge.asn1.Asn1 | undefined): { oids: string[]; san: SanEntry[] | undefined } {
  const oids: string[] = [];
  let san: SanEntry[] | undefined;
  if (!attributes) return { oids, san };
  if (attributes.tagClass !== forgeAsn1.Class.CONTEXT_SPECIFIC || attributes.type !== 0) throw new Asn1Error('the attributes have the wrong tag');
  for (const attr of childrenOf(attributes, 'attributes')) {
    const [typeNode, valuesNode] = childrenOf(attr, 'an attribute');
    if (oidOf(typeNode, 'an attribute type') !== OID.extensionRequest) continue;
    for (const exts of childrenOf(expectUniversal(valuesNode, forgeAsn1.Type.SET, 'extensionRequest values'), 'extensionRequest')) {
      for (const ext of childrenOf(expectUniversal(exts, forgeAsn1.Type.SEQUENCE, 'extensions'), 'extensions')) {
        const parts = childrenOf(ext, 'an extension');
        const oid = oidOf(parts[0], 'an extension id');
        const valueNode = expectUniversal(parts[parts.length - 1], forgeAsn1.Type.OCTETSTRING, 'an extension value');
        oids.push(oid);
        if (oid === OID.subjectAltName) san = [...(san ?? []), ...parseSan(bytesOf(valueNode))];
      }
    }
  }
  return { oids, san };
}

/**
 * Decode a CSR (PEM text, or DER bytes) without judging it beyond its structure.
 * Throws InputError csr_too_large / csr_not_pem / csr_contains_private_key / csr_malformed.
 */
export function parseCsr(input: string | Buffer, maxBytes: number = MAX_CSR_BYTES): ParsedCsr {
  const size = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.length;
  if (size > maxBytes) {
    refuse(CsrErrorCode.tooLarge, `The certificate request is ${size} bytes; at most ${maxBytes} are accepted.`, 'Send only the PEM request for one name.', {
      size,
      max: maxBytes,
    });
  }
  let der: Buffer;
  const text = typeof input === 'string' ? input : input.toString('latin1');
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    // Say so without ever repeating the input: the key must stay on the pod.
    refuse(
      CsrErrorCode.containsPrivateKey,
      'The input contains a PRIVATE KEY. It was not stored or used. Send only the certificate request.',
      'The private key must never leave the pod; if it was sent anywhere, make a new key and a new request.',
    );
  }
  if (typeof input !== 'string' && input[0] === 0x30) {
    der = input;
  } else {
    let blocks;
    try {
      blocks = pemBlocks(text);
    } catch (e) {
      return refuse(CsrErrorCode.malformed, `The certificate request is damaged: ${(e as Error).message}.`, REGENERATE_HINT);
    }
    const csrs = blocks.filter((b) => b.label === 'CERTIFICATE REQUEST' || b.label === 'NEW CERTIFICATE REQUEST');
    if (csrs.length !== 1) {
      const others = [...new Set(blocks.map((b) => b.label))].filter((l) => !l.includes('CERTIFICATE REQUEST'));
      const what =
        csrs.length > 1
          ? `${csrs.length} certificate requests; send exactly one`
          : others.length > 0
            ? `no certificate request (found ${others.join(', ')})`
            : 'no PEM block "-----BEGIN CERTIFICATE REQUEST-----"';
      refuse(CsrErrorCode.notPem, `The input is not a certificate request: it contains ${what}.`, REGENERATE_HINT);
    }
    der = csrs[0]!.der;
  }
  try {
    const root = expectUniversal(parseDer(der), forgeAsn1.Type.SEQUENCE, 'the request');
    const [cri, sigAlg, sigValue] = childrenOf(root, 'the request');
    if (childrenOf(root, 'the request').length !== 3) throw new Asn1Error('the request does not have three parts');
    const criParts = childrenOf(expectUniversal(cri, forgeAsn1.Type.SEQUENCE, 'certificationRequestInfo'), 'certificationRequestInfo');
    const [version, subject, spki, attributes] = criParts;
    if (criParts.length > 4) throw new Asn1Error('certificationRequestInfo has extra parts');
    if (bytesOf(expectUniversal(version, forgeAsn1.Type.INTEGER, 'the version')).toString('hex') !== '00') throw new Asn1Error('the version is not 1');

    const commonNames: string[] = [];
    for (const rdn of childrenOf(expectUniversal(subject, forgeAsn1.Type.SEQUENCE, 'the subject'), 'the subject')) {
      for (const atv of childrenOf(expectUniversal(rdn, forgeAsn1.Type.SET, 'a subject RDN'), 'a subject RDN')) {
        const [t, v] = childrenOf(atv, 'a subject attribute');
        if (oidOf(t, 'a subject attribute type') === OID.commonName) {
          if (!v) throw new Asn1Error('a commonName has no value');
          commonNames.push(decodeString(v));
        }
      }
    }
    expectUniversal(spki, forgeAsn1.Type.SEQUENCE, 'the public key');
    const { oids, san } = readExtensions(attributes);

    const sigAlgParts = childrenOf(expectUniversal(sigAlg, forgeAsn1.Type.SEQUENCE, 'the signature algorithm'), 'the signature algorithm');
    const signatureAlgorithmOid = oidOf(sigAlgParts[0], 'the signature algorithm');
    const sigBits = bytesOf(expectUniversal(sigValue, forgeAsn1.Type.BITSTRING, 'the signature'));
    if (sigBits.length < 2 || sigBits[0] !== 0) throw new Asn1Error('the signature is empty or not whole bytes');

    return {
      der,
      commonNames,
      san,
      requestedExtensions: oids,
      spkiDer: rawChild(rawChild(der, 0), 2),
      signatureAlgorithmOid,
      signature: sigBits.subarray(1),
      signedBytes: rawChild(der, 0),
    };
  } catch (e) {
    if (!(e instanceof Asn1Error)) throw e;
    return refuse(CsrErrorCode.malformed, `The input is not a valid PKCS#10 certificate request: ${e.message}.`, REGENERATE_HINT);
  }
}

function loadKey(parsed: ParsedCsr): KeyObject {
  try {
    return createPublicKey({ key: parsed.spkiDer, format: 'der', type: 'spki' });
  } catch {
    // OpenSSL could not read the key at all: name its algorithm if the SPKI says which.
    let alg = 'an unknown kind of';
    try {
      const algId = childrenOf(parseDer(parsed.spkiDer), 'the public key')[0];
      const oid = oidOf(childrenOf(algId, 'the key algorithm')[0], 'the key algorithm');
      alg = KNOWN_OID_NAMES[oid] ?? `an unsupported (${oid})`;
    } catch {
      // keep the generic wording
    }
    return refuse(CsrErrorCode.keyTypeNotAllowed, `The certificate request has ${alg} public key, which cannot be used.`, 'Use an EC P-256 key.');
  }
}

/**
 * Everything the CA requires of a pod's CSR before it signs: a single well-formed request, a key it
 * accepts, a valid self-signature, CN equal to `fqdn` and no subjectAltName but `DNS:<fqdn>`.
 * Returns what it found; throws InputError with a code from CsrErrorCode otherwise.
 */
export function checkCsr(input: string | Buffer, fqdn: string, policy: CsrPolicy = DEFAULT_CSR_POLICY): CheckedCsr {
  const name = normalizeFqdn(fqdn);
  const parsed = parseCsr(input, policy.maxBytes);

  const key = describePublicKey(loadKey(parsed));
  const keyProblem = keyPolicyProblem(key, policy);
  if (keyProblem) {
    const code = { type: CsrErrorCode.keyTypeNotAllowed, rsa_size: CsrErrorCode.rsaKeyTooSmall, curve: CsrErrorCode.curveNotAllowed }[keyProblem.kind];
    refuse(code, `The certificate request was refused: ${keyProblem.message}.`, 'Make a new key, e.g.: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256', {
      key: key.label,
    });
  }

  const alg = SIGNATURE_ALGORITHMS[parsed.signatureAlgorithmOid];
  if (!alg) {
    const algName = KNOWN_OID_NAMES[parsed.signatureAlgorithmOid] ?? parsed.signatureAlgorithmOid;
    refuse(
      CsrErrorCode.signatureAlgorithmNotAllowed,
      `The certificate request is signed with ${algName}; accepted are ${Object.values(SIGNATURE_ALGORITHMS)
        .map((a) => a.name)
        .join(', ')}.`,
      'Sign the request with SHA-256 (openssl req does by default).',
      { signature_algorithm: algName },
    );
  }
  let ok = false;
  if (alg.keyType === key.type) {
    try {
      ok = cryptoVerify(alg.hash, parsed.signedBytes, createPublicKey({ key: parsed.spkiDer, format: 'der', type: 'spki' }), parsed.signature);
    } catch {
      ok = false; // a signature that cannot even be decoded is just as invalid
    }
  }
  if (!ok) {
    refuse(
      CsrErrorCode.signatureInvalid,
      alg.keyType === key.type
        ? 'The certificate request was changed after it was signed, or signed with another key: its signature does not verify.'
        : `The certificate request's signature (${alg.name}) does not fit its ${key.label} key.`,
      REGENERATE_HINT,
    );
  }

  if (parsed.commonNames.length !== 1 || parsed.commonNames[0]!.toLowerCase() !== name) {
    const found =
      parsed.commonNames.length === 0
        ? 'has no CN'
        : parsed.commonNames.length > 1
          ? `has ${parsed.commonNames.length} CNs (${parsed.commonNames.slice(0, 3).map((c) => preview(c, 60)).join(', ')})`
          : `has CN ${preview(parsed.commonNames[0]!)}`;
    refuse(CsrErrorCode.cnMismatch, `The certificate request ${found}, but it must be exactly ${name}.`, `Create the request with -subj /CN=${name}`, {
      fqdn: name,
      common_names: parsed.commonNames.slice(0, 3).map((c) => c.slice(0, 80)),
    });
  }

  const requestedDnsNames: string[] = [];
  for (const entry of parsed.san ?? []) {
    if (entry.type !== 'dns') {
      refuse(
        CsrErrorCode.sanTypeNotAllowed,
        `The certificate request asks for ${SAN_TYPE_WORDS[entry.type]}${entry.value ? ' ' + preview(entry.value) : ''} in its subjectAltName; only DNS:${name} is allowed.`,
        `Leave subjectAltName out (the certificate gets DNS:${name} anyway) or set it to exactly DNS:${name}.`,
        { fqdn: name, san_type: entry.type },
      );
    }
    if (entry.value.toLowerCase() !== name) {
      refuse(
        CsrErrorCode.sanNameMismatch,
        `The certificate request asks for the name ${preview(entry.value)}; this certificate can only be for ${name}.`,
        `Leave subjectAltName out (the certificate gets DNS:${name} anyway) or set it to exactly DNS:${name}.`,
        { fqdn: name, requested: entry.value.slice(0, 80) },
      );
    }
    requestedDnsNames.push(entry.value.toLowerCase());
  }

  return {
    fqdn: name,
    key,
    signatureAlgorithm: alg.name,
    requestedDnsNames,
    ignoredExtensions: parsed.requestedExtensions.filter((o) => o !== OID.subjectAltName),
    pem: toPem('CERTIFICATE REQUEST', parsed.der),
  };
}
