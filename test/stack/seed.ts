/** Seeding a state store directly, for tests and benchmarks at scale (thousands of subdomains in a second). */
import { createHash, randomBytes } from 'node:crypto';

/** A well-formed ed25519 public key line with random key material (sshd and ssh-keygen accept it). */
export function randomEd25519(): string {
  const type = Buffer.from('ssh-ed25519');
  const blob = Buffer.alloc(4 + type.length + 4 + 32);
  blob.writeUInt32BE(type.length, 0);
  type.copy(blob, 4);
  blob.writeUInt32BE(32, 4 + type.length);
  randomBytes(32).copy(blob, 8 + type.length);
  return `ssh-ed25519 ${blob.toString('base64')}`;
}

/** randomEd25519 with the fingerprint sshd computes for it, as pipe2me stores a registered key. */
export function randomEd25519Key(): { publicKey: string; fingerprint: string } {
  const publicKey = randomEd25519();
  const blob = Buffer.from(publicKey.split(' ')[1]!, 'base64');
  return { publicKey, fingerprint: 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '') };
}
