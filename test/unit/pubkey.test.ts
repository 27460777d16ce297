import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { parsePublicKey } from '../../src/ssh/pubkey.js';

let dir: string;
const keys: Record<string, string> = {};

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-keys-'));
  const make = (name: string, args: string[]) => {
    execFileSync('ssh-keygen', ['-q', '-N', '', '-f', path.join(dir, name), ...args], { timeout: 60_000 });
    keys[name] = fs.readFileSync(path.join(dir, name + '.pub'), 'utf8');
  };
  make('ed', ['-t', 'ed25519']);
  make('rsa3072', ['-t', 'rsa', '-b', '3072']);
  make('rsa2048', ['-t', 'rsa', '-b', '2048']);
  make('ecdsa', ['-t', 'ecdsa']);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('pod ssh public keys', () => {
  it('accepts ed25519 and RSA-3072 with the fingerprint ssh-keygen computes', () => {
    for (const k of ['ed', 'rsa3072']) {
      const p = parsePublicKey(keys[k]);
      const fp = execFileSync('ssh-keygen', ['-l', '-f', path.join(dir, k + '.pub')], { encoding: 'utf8' }).split(' ')[1];
      expect(p.fingerprint).toBe(fp);
      expect(p.publicKey.split(' ')).toHaveLength(2);
    }
    expect(parsePublicKey(keys.rsa3072).bits).toBe(3072);
  });

  it('refuses RSA under 3072 bits, ECDSA, garbage, options and extra lines', () => {
    expect(() => parsePublicKey(keys.rsa2048)).toThrow(/2048 bits; at least 3072/);
    expect(() => parsePublicKey(keys.ecdsa)).toThrow(/ecdsa-sha2-nistp256 are not accepted/);
    expect(() => parsePublicKey('hello')).toThrow(/not an ssh public key/);
    expect(() => parsePublicKey('command="sh" ' + keys.ed)).toThrow(/no options/);
    expect(() => parsePublicKey(keys.ed!.trim() + '\n' + keys.rsa3072)).toThrow(/single line/);
    expect(() => parsePublicKey('ssh-ed25519 AAAA$$$')).toThrow(/base64/);
    expect(() => parsePublicKey(42)).toThrow(/must be a string/);
  });

  it('refuses a blob that claims another type', () => {
    const blob = keys.ed!.split(' ')[1]!;
    expect(() => parsePublicKey(`ssh-rsa ${blob}`)).toThrow(/"ssh-ed25519" key, not ssh-rsa/);
  });

  it('compares RSA keys by their numbers: a copy with padded mpints is the same key, stored canonically', () => {
    const blob = Buffer.from(keys.rsa3072!.split(' ')[1]!, 'base64');
    // type, e, n as SSH strings; pad e and n with leading zero bytes (sshd reads the same numbers).
    const parts: Buffer[] = [];
    for (let off = 0; off < blob.length;) {
      const len = blob.readUInt32BE(off);
      parts.push(blob.subarray(off + 4, off + 4 + len));
      off += 4 + len;
    }
    const str = (b: Buffer) => Buffer.concat([Buffer.from([(b.length >>> 24) & 255, (b.length >>> 16) & 255, (b.length >>> 8) & 255, b.length & 255]), b]);
    const padded = Buffer.concat([str(parts[0]!), str(Buffer.concat([Buffer.from([0, 0]), parts[1]!])), str(Buffer.concat([Buffer.from([0]), parts[2]!]))]);
    const original = parsePublicKey(keys.rsa3072);
    const copy = parsePublicKey(`ssh-rsa ${padded.toString('base64')}`);
    expect(copy.fingerprint).toBe(original.fingerprint);
    expect(copy.publicKey).toBe(original.publicKey);
    // A negative number (top bit set, no leading zero) is not an RSA key.
    const negative = Buffer.concat([str(parts[0]!), str(Buffer.from([0x81])), str(parts[2]!)]);
    expect(() => parsePublicKey(`ssh-rsa ${negative.toString('base64')}`)).toThrow(/negative/);
  });
});
