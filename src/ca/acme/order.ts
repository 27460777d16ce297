/**
 * One ACME order, dns-01 in pipe2me's own zone: create the order, publish each authorization's TXT record,
 * wait until every authoritative nameserver of the zone serves it (asked directly: the CA may ask any of
 * them, and a secondary that has not followed yet would fail the validation), answer the challenges,
 * finalize with the CSR it was given — a pod's, whose key never leaves the pod — fetch the chain, and
 * take the records out again whatever happened.
 */
import { createHash, X509Certificate } from 'node:crypto';
import type acme from 'acme-client';
import { txtRecords } from '../../daemons/dns-query.js';
import { AcmeFailure, classify, forgetLastAnswer } from './client.js';

export interface Dns01Zone {
  /** Puts the records into the zone; resolves once the primary serves them. */
  publish(records: { owner: string; value: string }[]): Promise<void>;
  /** Takes this order's records out again. */
  withdraw(): Promise<void>;
  /** Every authoritative nameserver of the zone, by address: each must serve the records. */
  nameservers: string[];
}

export interface Issued {
  /** The chain the CA returned: leaf first, then the intermediates. */
  chainPem: string;
  leafPem: string;
  /** Lower-case hex, as the CA's management and revocation name it. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** sha256 of the leaf's DER (hex): how the probe recognises the pod. */
  sha256: string;
  /** sha256 of the leaf's public key (SPKI DER, hex): which key it belongs to. */
  keySha256: string;
}

export function describeChain(chainPem: string): Issued {
  const leafPem = chainPem.slice(0, chainPem.indexOf('-----END CERTIFICATE-----') + '-----END CERTIFICATE-----'.length) + '\n';
  const leaf = new X509Certificate(leafPem);
  return {
    chainPem,
    leafPem,
    serial: leaf.serialNumber.toLowerCase().replace(/^0+(?=.)/, ''),
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    sha256: leaf.fingerprint256.replace(/:/g, '').toLowerCase(),
    keySha256: spkiSha256(leaf.publicKey.export({ type: 'spki', format: 'der' })),
  };
}

export const spkiSha256 = (der: Buffer) => createHash('sha256').update(der).digest('hex');

/** Waits until every nameserver serves every record; throws a propagation failure naming the laggard. */
export async function waitServed(nameservers: readonly string[], records: readonly { owner: string; value: string }[], timeoutMs: number): Promise<number> {
  const start = performance.now();
  const owners = [...new Set(records.map((r) => r.owner))];
  let missing = '';
  for (;;) {
    missing = '';
    for (const ns of nameservers) {
      for (const owner of owners) {
        const want = records.filter((r) => r.owner === owner).map((r) => r.value);
        const have = await txtRecords(ns, owner, 500);
        if (!have || want.some((v) => !have.includes(v))) {
          missing = `${ns} does not serve ${owner} yet`;
          break;
        }
      }
      if (missing) break;
    }
    if (!missing) return performance.now() - start;
    if (performance.now() - start > timeoutMs) {
      throw new AcmeFailure('other', `the dns-01 record was not served by every nameserver within ${Math.round(timeoutMs / 1000)} s: ${missing} (is the secondary following the primary?)`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface OrderTiming {
  publishedMs?: number;
  servedEverywhereMs?: number;
  validatedMs?: number;
  issuedMs?: number;
}

/** Runs the whole order; returns the issued chain. Every failure comes out as an AcmeFailure. */
export async function fulfil(client: acme.Client, names: string[], csrPem: string, zone: Dns01Zone, opts: { propagationTimeoutMs: number; timing?: OrderTiming }): Promise<Issued> {
  const t0 = performance.now();
  const timing = opts.timing ?? {};
  const call = async <T>(fn: () => Promise<T>, validating = false): Promise<T> => {
    forgetLastAnswer();
    try {
      return await fn();
    } catch (e) {
      throw classify(e, validating);
    }
  };
  let published = false;
  try {
    let order = await call(() => client.createOrder({ identifiers: names.map((value) => ({ type: 'dns', value })) }));
    const authzs = await call(() => client.getAuthorizations(order));
    const pending: { challenge: acme.Authorization['challenges'][number] }[] = [];
    const records: { owner: string; value: string }[] = [];
    for (const authz of authzs) {
      // An authorization the CA still holds as valid (a recent order for the same name) needs nothing.
      if (authz.status === 'valid') continue;
      const challenge = authz.challenges.find((c) => c.type === 'dns-01');
      if (!challenge) throw new AcmeFailure('refused', `the ACME CA offers no dns-01 challenge for ${authz.identifier.value}`);
      const value = await call(() => client.getChallengeKeyAuthorization(challenge));
      // A wildcard's identifier comes without its "*.": its record is the base name's.
      records.push({ owner: `_acme-challenge.${authz.identifier.value}`, value });
      pending.push({ challenge });
    }
    if (records.length) {
      published = true;
      await zone.publish(records);
      timing.publishedMs = performance.now() - t0;
      await waitServed(zone.nameservers, records, opts.propagationTimeoutMs);
      timing.servedEverywhereMs = performance.now() - t0;
      for (const p of pending) await call(() => client.completeChallenge(p.challenge));
      for (const p of pending) await call(() => client.waitForValidStatus(p.challenge), true);
      timing.validatedMs = performance.now() - t0;
    }
    order = await call(() => client.finalizeOrder(order, csrPem));
    const chain = await call(() => client.getCertificate(order));
    timing.issuedMs = performance.now() - t0;
    return describeChain(chain);
  } finally {
    if (published) await zone.withdraw();
  }
}

/** Revokes a certificate the ACME CA issued (the account that ordered it signs the request). */
export async function revokeAcme(client: acme.Client, chainPem: string, reason: number): Promise<void> {
  try {
    await client.revokeCertificate(chainPem, { reason });
  } catch (e) {
    const f = classify(e);
    // Already revoked is what we wanted.
    if (/already revoked/i.test(f.message)) return;
    throw f;
  }
}
