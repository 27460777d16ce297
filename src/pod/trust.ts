/**
 * What a pod trusts for the server's API: exactly one certificate, a self-signed CA, re-encoded from its
 * own DER. Whatever else came with it — a second certificate appended to the PEM, text around it — is
 * dropped, because Node trusts every certificate in a `ca` bundle: an attacker who appends their own CA
 * to the genuine one would otherwise be trusted too. The same rule holds for a pin, for --ca-file and for
 * the CA in the server's setup answer.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { DeniedError, InputError } from '../util/errors.js';

const PEM_RE = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----/g;

/** The DER of every PEM certificate block in `text` (malformed blocks are skipped). */
export function pemCertificates(text: string): Buffer[] {
  const out: Buffer[] = [];
  for (const m of text.matchAll(PEM_RE)) {
    const der = Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
    if (der.length > 0) out.push(der);
  }
  return out;
}

export function derToPem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

export function derPin(der: Buffer): string {
  return 'sha256:' + createHash('sha256').update(der).digest('hex');
}

/** Why a certificate cannot be a trust anchor, or null. */
function anchorRefusal(der: Buffer): string | null {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch {
    return 'it is not a certificate';
  }
  if (!cert.ca) return 'it is not a CA certificate';
  if (!cert.checkIssued(cert) || !cert.verify(cert.publicKey)) return 'it is not self-signed';
  return null;
}

export interface TrustSource {
  /** What the text came from, for messages: "the server's /ca.pem", "--ca-file /tmp/ca.pem". */
  what: string;
  /** sha256:<hex> of the one certificate to trust; without it the text must hold exactly one. */
  pin?: string;
}

/**
 * The one CA certificate `text` may give this pod, as clean PEM. With a pin: the certificate whose DER
 * hashes to it (others are ignored). Without: the only certificate in the text.
 */
export function trustAnchor(text: string, src: TrustSource): string {
  const certs = pemCertificates(text);
  let der: Buffer | undefined;
  if (src.pin !== undefined) {
    const pin = src.pin.toLowerCase();
    der = certs.find((d) => derPin(d) === pin);
    if (!der) {
      throw new DeniedError('pin_mismatch', `No certificate in ${src.what} matches --ca-pin${certs.length ? ` (it holds ${certs.map(derPin).join(', ')})` : ''}.`, {
        hint: 'Someone may be intercepting; or the pin is from another server. Check the pin with the operator.',
      });
    }
  } else {
    if (certs.length !== 1) {
      throw new InputError('bad_ca', `${src.what} must hold exactly one certificate, the server's CA (it holds ${certs.length}).`, {
        hint: 'Give the CA certificate alone (http://<server>/ca.pem), or pin it with --ca-pin sha256:...',
      });
    }
    der = certs[0]!;
  }
  const why = anchorRefusal(der);
  if (why) throw new DeniedError('bad_ca', `The certificate in ${src.what} cannot be trusted as the server's CA: ${why}.`, { hint: 'Ask the operator for the server\'s CA certificate (pipe2me-ctl ca show, or http://<server>/ca.pem).' });
  return derToPem(der);
}

/** Whether two PEM texts hold the same (first) certificate. */
export function sameCertificate(a: string, b: string): boolean {
  const [x] = pemCertificates(a);
  const [y] = pemCertificates(b);
  return x !== undefined && y !== undefined && x.equals(y);
}
