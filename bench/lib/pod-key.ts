/** Pod keys for simulated pods: made in-process, as ssh-keygen would write them. */
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';

export interface PodKey {
  /** OpenSSH's own private key format (openssh-key-v1, unencrypted). */
  privateKey: string;
  publicKey: string;
  fingerprint: string;
}

function sshString(b: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

/** A fresh ed25519 key pair, written as ssh-keygen writes one (thousands per second; ssh-keygen takes ms each). */
export function newPodKey(comment: string): PodKey {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' }) as { d: string; x: string };
  const seed = Buffer.from(jwk.d, 'base64url');
  const pub = Buffer.from(jwk.x, 'base64url');
  const type = Buffer.from('ssh-ed25519');
  const blob = Buffer.concat([sshString(type), sshString(pub)]);
  const check = randomBytes(4);
  let secret = Buffer.concat([check, check, sshString(type), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(Buffer.from(comment))]);
  const pad = (8 - (secret.length % 8)) % 8;
  secret = Buffer.concat([secret, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const one = Buffer.alloc(4);
  one.writeUInt32BE(1);
  const body = Buffer.concat([Buffer.from('openssh-key-v1\0', 'latin1'), sshString(Buffer.from('none')), sshString(Buffer.from('none')), sshString(Buffer.alloc(0)), one, sshString(blob), sshString(secret)]);
  const b64 = body.toString('base64').replace(/(.{70})/g, '$1\n').trimEnd();
  return {
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}\n-----END OPENSSH PRIVATE KEY-----\n`,
    publicKey: `ssh-ed25519 ${blob.toString('base64')}`,
    fingerprint: 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, ''),
  };
}
