/**
 * Small, pure helpers for reading PEM and DER. node-forge's ASN.1 parser walks the structures (its
 * higher-level pki functions cannot read EC keys, which is what pods use); Node's crypto does the
 * key and signature work. Nothing here logs or echoes its input: callers turn failures into messages.
 */
import type forge from 'node-forge';
import { forgeAsn1, forgeUtil } from './forge-asn1.js';

export interface PemBlock {
  label: string;
  der: Buffer;
}

/** A structural problem with the input; callers map it to their own error code. */
export class Asn1Error extends Error {}

const PEM_RE = /-----BEGIN ([A-Z0-9 ]{1,40})-----([\s\S]*?)-----END \1-----/g;

/**
 * Every PEM block in `text`. Base64 is checked strictly (a corrupted block must not decode to a
 * shorter, different structure without anyone noticing). Text outside blocks is allowed, as RFC 7468
 * allows explanatory text; `openssl req -text` output is an example.
 */
export function pemBlocks(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.matchAll(PEM_RE)) {
    const label = m[1] ?? '';
    const body = (m[2] ?? '').replace(/\s+/g, '');
    if (body.length === 0 || body.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(body)) {
      throw new Asn1Error(`the ${label} block is not valid base64`);
    }
    out.push({ label, der: Buffer.from(body, 'base64') });
  }
  return out;
}

export function toPem(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** Parse DER strictly: definite lengths that fit, no trailing bytes, BIT STRING contents left as bytes. */
export function parseDer(der: Buffer): forge.asn1.Asn1 {
  try {
    const fromDer = forgeAsn1.fromDer as unknown as (b: forge.util.ByteStringBuffer, o: object) => forge.asn1.Asn1;
    return fromDer(forgeUtil.createBuffer(der.toString('binary')), { strict: true, parseAllBytes: true, decodeBitStrings: false });
  } catch (e) {
    throw new Asn1Error(`not valid DER (${String((e as Error).message ?? e).slice(0, 120)})`);
  }
}

/** Read one TLV header at `offset`: where its contents start and how long they are. */
function tlvAt(der: Buffer, offset: number): { contentStart: number; contentLength: number; end: number } {
  if (offset + 2 > der.length) throw new Asn1Error('truncated DER');
  if ((der[offset]! & 0x1f) === 0x1f) throw new Asn1Error('multi-byte DER tags are not expected here');
  let len = der[offset + 1]!;
  let p = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Asn1Error('unsupported DER length');
    if (p + n > der.length) throw new Asn1Error('truncated DER');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[p + i]!;
    p += n;
  }
  if (p + len > der.length) throw new Asn1Error('truncated DER');
  return { contentStart: p, contentLength: len, end: p + len };
}

/**
 * The exact bytes of the `index`-th element inside the outer SEQUENCE. Signatures are over the bytes
 * as they were sent, so re-encoding a parsed structure would be the wrong thing to verify.
 */
export function rawChild(der: Buffer, index: number): Buffer {
  const outer = tlvAt(der, 0);
  let p = outer.contentStart;
  for (let i = 0; p < outer.end; i++) {
    const t = tlvAt(der, p);
    if (i === index) return der.subarray(p, t.end);
    p = t.end;
  }
  throw new Asn1Error('missing element');
}

export function bytesOf(node: forge.asn1.Asn1): Buffer {
  if (typeof node.value !== 'string') throw new Asn1Error('expected a primitive value');
  return Buffer.from(node.value, 'binary');
}

export function childrenOf(node: forge.asn1.Asn1 | undefined, what: string): forge.asn1.Asn1[] {
  if (!node || !Array.isArray(node.value)) throw new Asn1Error(`${what} is missing or not a structure`);
  return node.value;
}

export function expectUniversal(node: forge.asn1.Asn1 | undefined, type: number, what: string): forge.asn1.Asn1 {
  if (!node || node.tagClass !== forgeAsn1.Class.UNIVERSAL || node.type !== type) throw new Asn1Error(`${what} has the wrong type`);
  return node;
}

export function oidOf(node: forge.asn1.Asn1 | undefined, what: string): string {
  const n = expectUniversal(node, forgeAsn1.Type.OID, what);
  return forgeAsn1.derToOid(n.value as string);
}

/** Decode the string types X.500 names use. Unknown types come back as Latin-1 so they can still be shown. */
export function decodeString(node: forge.asn1.Asn1): string {
  const raw = bytesOf(node);
  switch (node.type as number) {
    case forgeAsn1.Type.UTF8:
      return raw.toString('utf8');
    case forgeAsn1.Type.BMPSTRING: {
      // UTF-16BE; Node only decodes little-endian, so swap the bytes first.
      const swapped = Buffer.from(raw);
      swapped.swap16();
      return swapped.toString('utf16le');
    }
    case 28: // UniversalString (UTF-32BE), allowed in DirectoryString
      return Array.from({ length: Math.floor(raw.length / 4) }, (_, i) => String.fromCodePoint(raw.readUInt32BE(i * 4) & 0x10ffff)).join('');
    default:
      return raw.toString('latin1');
  }
}

/** Dotted OIDs for the names we look at, and the other way round for messages. */
export const OID = {
  commonName: '2.5.4.3',
  extensionRequest: '1.2.840.113549.1.9.14',
  subjectAltName: '2.5.29.17',
  keyUsage: '2.5.29.15',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  crlNumber: '2.5.29.20',
  rsaEncryption: '1.2.840.113549.1.1.1',
  ecPublicKey: '1.2.840.10045.2.1',
} as const;
