/**
 * Pod ssh public keys: parsed and checked in-process before they can reach the key index. Accepted:
 * ed25519, or RSA of 3072 bits or more, kept in their canonical encoding. Everything else — another type, a short RSA key, options,
 * a second line, a blob that does not match its type — is refused with a message that says why.
 */
import { createHash } from 'node:crypto';
import { InputError } from '../util/errors.js';

export interface ParsedPublicKey {
  algorithm: 'ssh-ed25519' | 'ssh-rsa';
  /** "type base64" — the comment is dropped; pipe2me writes its own. */
  publicKey: string;
  fingerprint: string;
  bits: number;
}

export const MIN_RSA_BITS = 3072;

function readString(buf: Buffer, off: number): [Buffer, number] {
  if (off + 4 > buf.length) throw new Error('truncated');
  const len = buf.readUInt32BE(off);
  if (len > buf.length - off - 4) throw new Error('truncated');
  return [buf.subarray(off + 4, off + 4 + len), off + 4 + len];
}

/** An SSH string: uint32 length, then the bytes. */
function sshString(b: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

/**
 * An mpint in its one canonical encoding: no leading zero bytes, except one when the top bit is set (so
 * that the number stays positive). sshd decodes a padded mpint to the same number, so keys are compared
 * and stored in this form: a re-encoded copy of another pod's key is the same key to pipe2me too.
 */
function canonicalMpint(b: Buffer): Buffer {
  if (b.length > 0 && (b[0]! & 0x80) !== 0) throw bad('The RSA key data holds a negative number.');
  let i = 0;
  while (i < b.length && b[i] === 0) i++;
  const digits = b.subarray(i);
  return digits.length > 0 && (digits[0]! & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), digits]) : Buffer.from(digits);
}

function mpintBits(b: Buffer): number {
  let i = 0;
  while (i < b.length && b[i] === 0) i++;
  if (i === b.length) return 0;
  return (b.length - i - 1) * 8 + (32 - Math.clz32(b[i]!));
}

const bad = (message: string) =>
  new InputError('bad_ssh_key', message, { hint: 'Use an ed25519 key (ssh-keygen -t ed25519) or RSA of 3072 bits or more; give the single line of the .pub file.' });

export function parsePublicKey(input: unknown): ParsedPublicKey {
  if (typeof input !== 'string') throw bad('The ssh public key must be a string.');
  if (input.length > 16384) throw bad('The ssh public key is too long to be one.');
  const text = input.trim();
  if (/[\r\n]/.test(text)) throw bad('The ssh public key must be a single line.');
  const parts = text.split(/\s+/);
  const [type, b64] = parts;
  if (!type || !b64) throw bad('That is not an ssh public key ("TYPE BASE64 [comment]").');
  if (type === 'ecdsa-sha2-nistp256' || type === 'ecdsa-sha2-nistp384' || type === 'ecdsa-sha2-nistp521' || type === 'ssh-dss' || type.startsWith('sk-') || type.includes('-cert-v01@')) {
    throw bad(`ssh keys of type ${type} are not accepted.`);
  }
  if (type !== 'ssh-ed25519' && type !== 'ssh-rsa') {
    throw bad(/^[a-z0-9-]+$/.test(type) ? `ssh keys of type ${type} are not accepted.` : 'That is not an ssh public key (a key line has no options in front of it).');
  }
  if (!/^[A-Za-z0-9+/]+={0,3}$/.test(b64)) throw bad('The key data is not base64.');
  const given = Buffer.from(b64, 'base64');
  let blob: Buffer = given;
  let bits: number;
  try {
    const [inner, off] = readString(given, 0);
    if (inner.toString('latin1') !== type) throw bad(`The key data is a ${JSON.stringify(inner.toString('latin1').slice(0, 30))} key, not ${type}.`);
    if (type === 'ssh-ed25519') {
      const [k, end] = readString(given, off);
      if (k.length !== 32 || end !== given.length) throw bad('The ed25519 key data is malformed.');
      bits = 256;
    } else {
      const [e, o2] = readString(given, off);
      const [n, end] = readString(given, o2);
      if (end !== given.length) throw bad('The RSA key data is malformed.');
      const ce = canonicalMpint(e);
      const cn = canonicalMpint(n);
      if (ce.length === 0 || (ce[ce.length - 1]! & 1) === 0) throw bad('The RSA key\'s public exponent is not valid.');
      bits = mpintBits(cn);
      if (bits < MIN_RSA_BITS) throw bad(`The RSA key has ${bits} bits; at least ${MIN_RSA_BITS} are required.`);
      blob = Buffer.concat([sshString(Buffer.from(type, 'latin1')), sshString(ce), sshString(cn)]);
    }
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw bad('The key data is malformed.');
  }
  // The fingerprint of the canonical blob is the one sshd computes (and hands the key lookup).
  const fingerprint = 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
  return { algorithm: type, publicKey: `${type} ${blob.toString('base64')}`, fingerprint, bits };
}
