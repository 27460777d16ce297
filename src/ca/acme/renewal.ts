/**
 * When to renew a certificate from the ACME CA. If the directory offers ACME Renewal Information
 * (RFC 9773, `renewalInfo`), inside the window the CA suggests — renewals there are exempt from Let's
 * Encrypt's rate limits, and the CA can ask for an early renewal (a mass revocation) — at a random point
 * of it, so that a fleet does not renew at once. Otherwise at two thirds of the lifetime, which works the
 * same for 90-day, 45-day and 6-day certificates. acme-client does not fetch renewalInfo: this does,
 * with one unauthenticated GET.
 */
import * as https from 'node:https';
import { acmeAgent } from './lib.js';
import { parseCertificate } from '../x509.js';

const b64url = (b: Buffer) => b.toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

/** RFC 9773's certificate identifier: base64url(authorityKeyIdentifier) "." base64url(serial's DER content). */
export function ariCertId(leafPem: string): string | null {
  const c = parseCertificate(leafPem);
  if (!c.authorityKeyId) return null;
  let serial = Buffer.from(c.serial, 'hex');
  if (serial.length && serial[0]! & 0x80) serial = Buffer.concat([Buffer.from([0]), serial]);
  return `${b64url(c.authorityKeyId)}.${b64url(serial)}`;
}

export interface RenewalWindow {
  start: Date;
  end: Date;
  explanationUrl?: string;
}

/** The lifetime rule: two thirds of the way from notBefore to notAfter. */
export function twoThirds(notBefore: Date, notAfter: Date): Date {
  return new Date(notBefore.getTime() + ((notAfter.getTime() - notBefore.getTime()) * 2) / 3);
}

/** When to renew: a random point of the CA's window if there is one, else two thirds of the lifetime. */
export function renewalTime(notBefore: Date, notAfter: Date, window: RenewalWindow | null, random: () => number = Math.random): Date {
  if (window && window.end > window.start) return new Date(window.start.getTime() + random() * (window.end.getTime() - window.start.getTime()));
  return twoThirds(notBefore, notAfter);
}

function getJson(url: string, timeoutMs: number): Promise<unknown> {
  const agent = acmeAgent();
  return new Promise((resolve, reject) => {
    const req = https.get(url, { timeout: timeoutMs, ...(agent ? { agent } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

/** The CA's suggested window for this certificate, or null when the directory has no renewalInfo (or it does not answer). */
export async function renewalWindow(directoryUrl: string, leafPem: string, timeoutMs = 10_000): Promise<RenewalWindow | null> {
  try {
    const dir = (await getJson(directoryUrl, timeoutMs)) as { renewalInfo?: string };
    const id = ariCertId(leafPem);
    if (!dir.renewalInfo || !id) return null;
    const info = (await getJson(`${dir.renewalInfo.replace(/\/$/, '')}/${id}`, timeoutMs)) as { suggestedWindow?: { start?: string; end?: string }; explanationURL?: string };
    const start = Date.parse(info.suggestedWindow?.start ?? '');
    const end = Date.parse(info.suggestedWindow?.end ?? '');
    if (Number.isNaN(start) || Number.isNaN(end)) return null;
    return { start: new Date(start), end: new Date(end), ...(info.explanationURL ? { explanationUrl: info.explanationURL } : {}) };
  } catch {
    return null;
  }
}
