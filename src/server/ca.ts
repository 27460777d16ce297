/**
 * The server's use of its CA (src/ca): creating it at init, publishing what clients trust (public/ca.pem)
 * and the CRL (public/crl.pem, which nginx serves at http://<server>/crl.pem, the URL every issued
 * certificate names), the server's own certificates, pods' certificates, revocation.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CertificateAuthority, type CurveName } from '../ca/index.js';
import type { ServerContext } from './context.js';
import { markRevoked, recordCertificate } from '../state/certificates.js';
import { loadCaFiles, saveCaFiles } from '../state/ca-files.js';
import { LOCKS, withStoreLock } from '../state/store.js';
import type { SubdomainRecord } from '../state/types.js';
import { atomicWrite, ensureDir, readIfExists } from '../util/fsx.js';
import { ConfigError } from '../util/errors.js';
import { joinRelayCa, joinsSharedCa, publishCrls, rootPinMismatch, ROOT_RECORD } from './relays/ca.js';

export function crlUrl(ctx: ServerContext): string {
  return `http://${ctx.config.server.fqdn}/crl.pem`;
}

export function authority(ctx: ServerContext): CertificateAuthority {
  const store = ctx.db;
  return new CertificateAuthority(ctx.config.paths.ca, {
    csrPolicy: { allowedCurves: ctx.config.ca.allowedCurves as CurveName[], minRsaBits: ctx.config.ca.minRsaBits, maxBytes: 16 * 1024 },
    // openssl's index and serial live in the store: one record of what was issued and revoked, whichever process signs.
    book: {
      load: (names) => loadCaFiles(store, names),
      save: (files) => saveCaFiles(store, files),
      lock: (fn) => withStoreLock(store, LOCKS.ca, fn),
    },
  });
}

/**
 * Writes the root clients trust and the CRLs where nginx serves them. With relays, the root's holder puts
 * the root in the store (joining relays install it under their intermediate), and every relay publishes
 * every signer's CRL from there.
 */
export async function publishTrust(ctx: ServerContext, ca = authority(ctx)): Promise<void> {
  ensureDir(ctx.layout.publicDir, 0o755);
  const root = ca.rootPem();
  if (readIfExists(ctx.layout.caCertFile) !== root) atomicWrite(ctx.layout.caCertFile, root, { mode: 0o644 });
  if (ctx.config.relays.relayed && ca.holdsRoot() && (await loadCaFiles(ctx.db, [ROOT_RECORD])).get(ROOT_RECORD) !== root) {
    await saveCaFiles(ctx.db, new Map([[ROOT_RECORD, root]]));
  }
  await refreshCrl(ctx, ca);
}

/** A fresh CRL of this CA, published where nginx serves it (with relays: every signer's, from the store). */
export async function refreshCrl(ctx: ServerContext, ca = authority(ctx)): Promise<void> {
  if (!ctx.config.relays.relayed) {
    await ca.generateCrl(ctx.layout.crlFile);
    return;
  }
  await ca.generateCrl();
  await publishCrls(ctx);
}

export async function initCa(ctx: ServerContext, opts: { rootPin?: string } = {}): Promise<{ created: boolean; sha256: string }> {
  const ca = authority(ctx);
  // A relay of a fleet whose CA another relay made signs with a key of its own (src/server/relays/ca.ts).
  if (await joinsSharedCa(ctx, ca)) {
    const joined = await joinRelayCa(ctx, ca, opts.rootPin);
    await publishTrust(ctx, ca);
    return { created: joined.created, sha256: joined.rootSha256Hex };
  }
  if (!fs.existsSync(path.join(ctx.config.paths.ca, 'ca.json')) && (await loadCaFiles(ctx.db, ['serial'])).size > 0) {
    // A new root here would take over the store's index and serial and sign with a key no pod pinned.
    throw new ConfigError(`The state store already has a certificate authority, and ${ctx.config.paths.ca} has none.`, {
      hint: `Restore the CA directory (paths.ca, mode 0700) from this server's backup to ${ctx.config.paths.ca}, then run init again.`,
    });
  }
  // A pin with no CA here and none to join: a new root could never be the pinned one — refused before a key is made.
  if (opts.rootPin !== undefined && !fs.existsSync(path.join(ctx.config.paths.ca, 'ca.json'))) {
    throw new ConfigError(`--ca-pin names the root of a CA to join, and this machine has no CA and joins none (sha256:${opts.rootPin}).`, {
      hint: 'To join a fleet\'s CA, the configuration needs relays: and relay: and the fleet\'s state store (state.url). To make a new CA here, leave --ca-pin out.',
    });
  }
  const r = await ca.init({
    commonName: `pipe2me CA for ${ctx.config.domain}`,
    crlUrl: crlUrl(ctx),
    defaultDays: ctx.config.ca.validityDays,
    // A leaked or misused CA key can then vouch for names under our domain only.
    restrictToDomain: ctx.config.domain,
  });
  if (opts.rootPin !== undefined && hexFingerprint(r.sha256Fingerprint) !== opts.rootPin) throw rootPinMismatch(hexFingerprint(r.sha256Fingerprint), opts.rootPin, 'this machine\'s CA');
  await publishTrust(ctx, ca);
  return { created: r.created, sha256: hexFingerprint(r.sha256Fingerprint) };
}

const sec = (d: Date) => Math.floor(d.getTime() / 1000);
/** "AB:CD:…" → "abcd…", the form the probe computes. */
export const hexFingerprint = (f: string) => f.replace(/:/g, '').toLowerCase();

/** A pod's certificate as the API hands it out, whichever issuer signed it. */
export interface IssuedPodCertificate {
  serial: string;
  issuer: 'private' | 'acme';
  certificate: string;
  chain: string;
  fullchain: string;
  notAfter: string;
  sha256: string;
  /** sha256 of the certificate's public key: the pod installs it only for the key it belongs to. */
  keySha256: string | null;
}

/** Signs a pod's CSR with the private CA (the CSR is checked first: its name, its key). */
export async function issuePrivatePodCertificate(ctx: ServerContext, s: SubdomainRecord, csrPem: string, keySha256: string | null = null): Promise<IssuedPodCertificate> {
  const c = await authority(ctx).signCsr(csrPem, s.fqdn, { days: ctx.config.ca.validityDays });
  await recordCertificate(ctx.db, {
    serial: c.serial, subdomainId: s.id, fqdn: s.fqdn, kind: 'pod', notBefore: sec(c.notBefore), notAfter: sec(c.notAfter),
    sha256: hexFingerprint(c.sha256Fingerprint), issuer: 'private', keySha256,
  });
  return { serial: c.serial, issuer: 'private', certificate: c.certPem, chain: c.chainPem, fullchain: c.fullchainPem, notAfter: c.notAfter.toISOString(), sha256: hexFingerprint(c.sha256Fingerprint), keySha256 };
}

/** A private certificate this CA issued (on any relay), as the API hands it out again. */
export async function privatePodCertificate(ctx: ServerContext, serial: string, keySha256: string | null): Promise<IssuedPodCertificate> {
  const shown = await authority(ctx).show(serial);
  // The intermediate of the relay that signed it (empty for the self-signed root), as signCsr returned it.
  const chain = shown.chainPem;
  return {
    serial, issuer: 'private', certificate: shown.certPem, chain, fullchain: shown.certPem + chain, notAfter: shown.notAfter.toISOString(),
    sha256: hexFingerprint(shown.sha256Fingerprint), keySha256,
  };
}

/** Revokes the private CA's still-valid certificates among these serials, then publishes the CRL. */
export async function revokePrivate(ctx: ServerContext, serials: string[], reason: 'cessationOfOperation' | 'superseded' | 'keyCompromise' | 'unspecified'): Promise<void> {
  if (serials.length === 0) return;
  const ca = authority(ctx);
  for (const serial of serials) {
    try {
      await ca.revoke(serial, reason);
    } catch (e) {
      if ((e as { code?: string }).code !== 'ca_already_revoked') throw e;
    }
    await markRevoked(ctx.db, serial, reason);
  }
  await refreshCrl(ctx, ca);
}
