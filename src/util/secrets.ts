/**
 * Bearer secrets (tokens, claim tokens, per-subdomain secrets, operator secrets): 256 bits from the OS CSPRNG with a
 * readable prefix that says what the secret is. Only a SHA-256 digest is stored: the secrets are
 * high-entropy, so a fast hash is enough and a leaked state file reveals none of them.
 */
import { createHash, randomBytes } from 'node:crypto';

export type SecretKind = 'p2mt' | 'p2mc' | 'p2ms' | 'p2mo';

export function newSecret(kind: SecretKind): string {
  return `${kind}_${randomBytes(32).toString('base64url')}`;
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

export function newId(bytes = 16): string {
  return randomBytes(bytes).toString('hex');
}

/** Shape check before a lookup, so garbage never reaches the store. */
export function looksLikeSecret(s: unknown, kind: SecretKind): s is string {
  return typeof s === 'string' && s.length === kind.length + 1 + 43 && s.startsWith(kind + '_') && /^[A-Za-z0-9_-]+$/.test(s);
}
