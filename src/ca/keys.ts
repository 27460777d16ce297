/**
 * Which public keys the CA certifies. Pure (Node's crypto only reads the key).
 *
 * Browsers accept RSA and ECDSA on P-256/P-384 for TLS server certificates; they do not accept
 * Ed25519, DSA or RSA-PSS-only keys there, so a certificate for such a key would be useless to the pod.
 */
import type { KeyObject } from 'node:crypto';

export type CurveName = 'P-256' | 'P-384' | 'P-521';

export interface KeyPolicy {
  /** EC curves accepted. Default P-256 and P-384, what every browser supports. */
  allowedCurves: readonly CurveName[];
  /** Smallest RSA modulus accepted, in bits. */
  minRsaBits: number;
}

export const DEFAULT_KEY_POLICY: KeyPolicy = Object.freeze({ allowedCurves: Object.freeze(['P-256', 'P-384'] as CurveName[]), minRsaBits: 2048 });

const NODE_CURVE_NAMES: Record<string, CurveName> = {
  prime256v1: 'P-256',
  'P-256': 'P-256',
  secp384r1: 'P-384',
  'P-384': 'P-384',
  secp521r1: 'P-521',
  'P-521': 'P-521',
};

export interface KeyDescription {
  /** Node's name for the algorithm: rsa, ec, rsa-pss, dsa, ed25519, ed448, ... */
  type: string;
  bits?: number;
  /** NIST name when we know it (P-256), otherwise the name OpenSSL uses (secp256k1). */
  curve?: string;
  /** For messages: "EC P-256", "RSA 2048 bits". */
  label: string;
}

export function describePublicKey(key: KeyObject): KeyDescription {
  const type = key.asymmetricKeyType ?? 'unknown';
  const d = key.asymmetricKeyDetails ?? {};
  if (type === 'rsa' || type === 'rsa-pss' || type === 'dsa') {
    const bits = d.modulusLength;
    return { type, ...(bits ? { bits } : {}), label: `${type.toUpperCase()}${bits ? ` ${bits} bits` : ''}` };
  }
  if (type === 'ec') {
    const raw = d.namedCurve ?? 'unknown curve';
    const curve = NODE_CURVE_NAMES[raw] ?? raw;
    return { type, curve, label: `EC ${curve}` };
  }
  return { type, label: type };
}

export type KeyProblemKind = 'type' | 'rsa_size' | 'curve';

export interface KeyProblem {
  kind: KeyProblemKind;
  message: string;
}

/** Undefined when the policy accepts the key; otherwise what is wrong, in words a person understands. */
export function keyPolicyProblem(key: KeyDescription, policy: KeyPolicy = DEFAULT_KEY_POLICY): KeyProblem | undefined {
  const curves = policy.allowedCurves.join(', ');
  if (key.type === 'rsa') {
    if ((key.bits ?? 0) < policy.minRsaBits) {
      return { kind: 'rsa_size', message: `the RSA key has ${key.bits ?? 'an unknown number of'} bits; at least ${policy.minRsaBits} are required` };
    }
    return undefined;
  }
  if (key.type === 'ec') {
    if (!policy.allowedCurves.includes(key.curve as CurveName)) {
      return { kind: 'curve', message: `the EC key is on curve ${key.curve}; allowed curves are ${curves}` };
    }
    return undefined;
  }
  const why =
    key.type === 'ed25519' || key.type === 'ed448'
      ? `${key.type} keys are not accepted by browsers for TLS server certificates`
      : `${key.label} keys are not accepted`;
  return { kind: 'type', message: `${why}; use an EC key (${curves}) or RSA of at least ${policy.minRsaBits} bits` };
}
