/**
 * Reading certificates, pure. Node's X509Certificate does most of it; forge.asn1 reads the two
 * extensions Node does not expose (keyUsage bits, basicConstraints pathLen).
 */
import { X509Certificate } from 'node:crypto';
import type forge from 'node-forge';
import { forgeAsn1 } from './forge-asn1.js';
import { Asn1Error, OID, bytesOf, childrenOf, expectUniversal, oidOf, parseDer, pemBlocks, rawChild, toPem } from './asn1.js';
import { describePublicKey, type KeyDescription } from './keys.js';

export interface CertInfo {
  pem: string;
  /** Upper-case hex as openssl writes it in index.txt (even number of digits). */
  serial: string;
  /** One-line form, e.g. "CN=alpha.pipe.example.com". */
  subject: string;
  issuer: string;
  commonName: string | undefined;
  notBefore: Date;
  notAfter: Date;
  /** "AB:CD:..." */
  sha256Fingerprint: string;
  dnsNames: string[];
  /** Every subjectAltName entry as Node prints it ("DNS:a", "IP Address:1.2.3.4"). */
  subjectAltNames: string[];
  /** basicConstraints cA as written in the certificate. */
  isCa: boolean;
  pathLen: number | undefined;
  keyUsage: string[];
  keyUsageCritical: boolean;
  /** OIDs of every extension, in certificate order. */
  extensionOids: string[];
  selfIssued: boolean;
  key: KeyDescription;
  /** The authorityKeyIdentifier's keyIdentifier (what ACME Renewal Information names a certificate by). */
  authorityKeyId: Buffer | undefined;
  x509: X509Certificate;
}

const KEY_USAGE_BITS = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
];

/** openssl writes serials as upper-case hex with an even number of digits; compare in that form. */
export function normalizeSerial(serial: string): string {
  let s = serial.trim().replace(/^0x/i, '').replace(/:/g, '').toUpperCase().replace(/^0+(?=.)/, '');
  if (s.length % 2 === 1) s = '0' + s;
  return s;
}

interface Extension {
  critical: boolean;
  value: Buffer;
}

function extensionsOf(der: Buffer): Map<string, Extension> {
  const tbs = childrenOf(parseDer(rawChild(der, 0)), 'tbsCertificate');
  return extensionsIn(tbs, 3);
}

/** The extensions in a tbs structure's explicitly tagged [tag] field (certificates: [3]; CRLs: [0]). */
function extensionsIn(tbs: forge.asn1.Asn1[], tag: number): Map<string, Extension> {
  const out = new Map<string, Extension>();
  const wrapper = tbs.find((n) => n.tagClass === forgeAsn1.Class.CONTEXT_SPECIFIC && n.type === tag);
  if (!wrapper) return out;
  for (const ext of childrenOf(childrenOf(wrapper, 'extensions')[0], 'extensions')) {
    const parts = childrenOf(ext, 'an extension');
    const oid = oidOf(parts[0], 'an extension id');
    const critical = parts.length === 3 && bytesOf(parts[1]!).toString('hex') !== '00';
    out.set(oid, { critical, value: bytesOf(expectUniversal(parts[parts.length - 1], forgeAsn1.Type.OCTETSTRING, 'an extension value')) });
  }
  return out;
}

function keyUsageOf(ext: Extension | undefined): string[] {
  if (!ext) return [];
  const bits = bytesOf(expectUniversal(parseDer(ext.value), forgeAsn1.Type.BITSTRING, 'keyUsage'));
  const out: string[] = [];
  for (let i = 0; i < KEY_USAGE_BITS.length; i++) {
    const byte = bits[1 + (i >> 3)];
    if (byte !== undefined && byte & (0x80 >> (i & 7))) out.push(KEY_USAGE_BITS[i]!);
  }
  return out;
}

/**
 * basicConstraints as written. Node's X509Certificate.ca is OpenSSL's X509_check_ca, which also
 * looks at keyUsage; we want to tell the two problems apart in messages.
 */
function basicConstraintsOf(ext: Extension | undefined): { ca: boolean; pathLen: number | undefined } {
  if (!ext) return { ca: false, pathLen: undefined };
  const parts = childrenOf(expectUniversal(parseDer(ext.value), forgeAsn1.Type.SEQUENCE, 'basicConstraints'), 'basicConstraints');
  const universal = (type: number) => parts.find((p) => p.type === type && p.tagClass === forgeAsn1.Class.UNIVERSAL);
  const bool = universal(forgeAsn1.Type.BOOLEAN);
  const int = universal(forgeAsn1.Type.INTEGER);
  return {
    ca: bool !== undefined && bytesOf(bool).toString('hex') !== '00',
    pathLen: int ? parseInt(bytesOf(int).toString('hex') || '0', 16) : undefined,
  };
}

function authorityKeyIdOf(ext: Extension | undefined): Buffer | undefined {
  if (!ext) return undefined;
  const parts = childrenOf(parseDer(ext.value), 'authorityKeyIdentifier');
  const id = parts.find((p) => p.tagClass === forgeAsn1.Class.CONTEXT_SPECIFIC && p.type === 0);
  return id ? bytesOf(id) : undefined;
}

/** Parse one certificate (PEM or DER). Throws Asn1Error (or Node's error) on anything unreadable. */
export function parseCertificate(input: string | Buffer): CertInfo {
  let der: Buffer;
  if (typeof input === 'string') {
    const blocks = pemBlocks(input).filter((b) => b.label === 'CERTIFICATE');
    if (blocks.length !== 1) throw new Asn1Error(blocks.length === 0 ? 'no CERTIFICATE block' : 'more than one CERTIFICATE block');
    der = blocks[0]!.der;
  } else {
    der = input;
  }
  const x509 = new X509Certificate(der);
  const exts = extensionsOf(der);
  const subjectAltNames = x509.subjectAltName ? x509.subjectAltName.split(/,\s*/) : [];
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(x509.subject)?.[1];
  const bc = basicConstraintsOf(exts.get(OID.basicConstraints));
  return {
    pem: toPem('CERTIFICATE', der),
    serial: normalizeSerial(x509.serialNumber),
    subject: x509.subject.split('\n').join(', '),
    issuer: x509.issuer.split('\n').join(', '),
    commonName: cn,
    notBefore: new Date(x509.validFrom),
    notAfter: new Date(x509.validTo),
    sha256Fingerprint: x509.fingerprint256,
    dnsNames: subjectAltNames.filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4)),
    subjectAltNames,
    isCa: bc.ca,
    pathLen: bc.pathLen,
    keyUsage: keyUsageOf(exts.get(OID.keyUsage)),
    keyUsageCritical: exts.get(OID.keyUsage)?.critical ?? false,
    extensionOids: [...exts.keys()],
    selfIssued: x509.checkIssued(x509),
    key: describePublicKey(x509.publicKey),
    authorityKeyId: authorityKeyIdOf(exts.get(OID.authorityKeyIdentifier)),
    x509,
  };
}

/** Every CERTIFICATE block in a PEM bundle, each normalised to its own PEM. */
export function splitCertificates(text: string): string[] {
  return pemBlocks(text)
    .filter((b) => b.label === 'CERTIFICATE')
    .map((b) => toPem('CERTIFICATE', b.der));
}

export interface RenewalDecision {
  renew: boolean;
  reason: 'missing' | 'unreadable' | 'expires_soon' | 'expired' | 'not_yet_valid' | 'other_issuer' | 'valid';
  notAfter?: Date;
  /** Whole days left until notAfter (negative once expired). */
  daysLeft?: number;
}

const DAY_MS = 86_400_000;

/**
 * Whether a certificate should be replaced now. Pure: the caller passes the PEM (or undefined when the
 * file is missing), the clock and, optionally, the CA certificate that should have issued it, so a
 * certificate from a CA that has since been replaced (installIntermediate) is renewed too.
 */
export function renewalDecision(pem: string | undefined, opts: { beforeDays?: number; now?: Date; issuer?: X509Certificate } = {}): RenewalDecision {
  if (pem === undefined) return { renew: true, reason: 'missing' };
  let info: CertInfo;
  try {
    info = parseCertificate(pem);
  } catch {
    return { renew: true, reason: 'unreadable' };
  }
  const now = (opts.now ?? new Date()).getTime();
  const daysLeft = Math.floor((info.notAfter.getTime() - now) / DAY_MS);
  const base = { notAfter: info.notAfter, daysLeft };
  if (info.notAfter.getTime() <= now) return { renew: true, reason: 'expired', ...base };
  if (info.notBefore.getTime() > now) return { renew: true, reason: 'not_yet_valid', ...base };
  if (opts.issuer && !(info.x509.checkIssued(opts.issuer) && info.x509.verify(opts.issuer.publicKey))) return { renew: true, reason: 'other_issuer', ...base };
  if (info.notAfter.getTime() - now < (opts.beforeDays ?? 30) * DAY_MS) return { renew: true, reason: 'expires_soon', ...base };
  return { renew: false, reason: 'valid', ...base };
}

export interface CrlInfo {
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  /** Serials listed as revoked, normalised like index.txt. */
  revokedSerials: string[];
  /**
   * The cRLNumber extension (RFC 5280 5.2.3): increases with every CRL its signer issues. pipe2me's relays
   * draw it from the one counter in the shared book, so it orders a signer's CRLs exactly, whatever the
   * clocks say. Undefined when the CRL has none.
   */
  crlNumber: bigint | undefined;
}

/** Read the dates and revoked serials of a CRL (PEM or DER). Throws Asn1Error on anything unreadable. */
export function parseCrl(input: string | Buffer): CrlInfo {
  let der: Buffer;
  if (typeof input === 'string') {
    const block = pemBlocks(input).find((b) => b.label === 'X509 CRL');
    if (!block) throw new Asn1Error('no X509 CRL block');
    der = block.der;
  } else {
    der = input;
  }
  const tbs = childrenOf(childrenOf(parseDer(der), 'the CRL')[0], 'tbsCertList');
  const isTime = (n: forge.asn1.Asn1) =>
    n.tagClass === forgeAsn1.Class.UNIVERSAL && (n.type === forgeAsn1.Type.UTCTIME || n.type === forgeAsn1.Type.GENERALIZEDTIME);
  const toDate = (n: forge.asn1.Asn1) =>
    n.type === forgeAsn1.Type.UTCTIME ? forgeAsn1.utcTimeToDate(n.value as string) : forgeAsn1.generalizedTimeToDate(n.value as string);
  const timeIdx = tbs.findIndex(isTime);
  if (timeIdx < 0) throw new Asn1Error('the CRL has no thisUpdate');
  const next = tbs[timeIdx + 1];
  const hasNext = next !== undefined && isTime(next);
  const list = tbs[timeIdx + (hasNext ? 2 : 1)];
  const revokedSerials: string[] = [];
  if (list && list.tagClass === forgeAsn1.Class.UNIVERSAL && list.type === forgeAsn1.Type.SEQUENCE) {
    for (const entry of childrenOf(list, 'revokedCertificates')) {
      revokedSerials.push(normalizeSerial(bytesOf(childrenOf(entry, 'a revoked entry')[0]!).toString('hex')));
    }
  }
  const numberExt = extensionsIn(tbs, 0).get(OID.crlNumber);
  let crlNumber: bigint | undefined;
  if (numberExt) {
    const hex = bytesOf(expectUniversal(parseDer(numberExt.value), forgeAsn1.Type.INTEGER, 'cRLNumber')).toString('hex');
    // A negative number (high bit set) is not a CRL number: refused rather than read as a huge one.
    if (hex === '' || parseInt(hex.slice(0, 2), 16) >= 0x80) throw new Asn1Error('the CRL number is not a non-negative integer');
    // RFC 5280 5.2.3: at most 20 octets (a leading zero octet keeps a high bit positive).
    if (hex.replace(/^(00)+/, '').length > 40) throw new Asn1Error('the CRL number is longer than 20 octets');
    crlNumber = BigInt(`0x${hex}`);
  }
  return { thisUpdate: toDate(tbs[timeIdx]!), nextUpdate: hasNext ? toDate(next) : undefined, revokedSerials, crlNumber };
}
