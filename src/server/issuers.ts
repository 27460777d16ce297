/**
 * Certificates whichever issuer signs them (ca.issuer): the private CA, or the ACME CA for certificates
 * every browser trusts. The API and the CLI ask here; only this module knows which issuer is in use.
 *
 * A pod is never without a certificate: with the ACME CA, its request waits `ca.acme.wait_seconds` for the
 * order; if the order has not finished by then, a pod that has no valid certificate gets one from the
 * private CA for the same key at once, and the public one as soon as it is issued (the pod collects it
 * like a renewal). The pod's private key never exists on the server: its CSR is what the ACME CA signs.
 */
import { checkCsr, type CurveName } from '../ca/index.js';
import { currentPodCertificate, liveCertificatesOfName, markRevoked } from '../state/certificates.js';
import { latestOrderOf, queueOrder, type AcmeOrder } from '../state/acme.js';
import { now, type CertificateRecord, type SubdomainRecord } from '../state/types.js';
import { AcmeService, csrKeySha256 } from './acme.js';
import { issuePrivatePodCertificate, privatePodCertificate, revokePrivate, type IssuedPodCertificate } from './ca.js';
import type { ServerContext } from './context.js';
import { isoSeconds } from '../util/time.js';

export type PodCertificateAnswer =
  | { status: 'issued'; certificate: IssuedPodCertificate; order: OrderView | null }
  | { status: 'pending'; certificate: IssuedPodCertificate | null; order: OrderView; retryAfterSeconds: number };

/** What a pod and the operator see of an ACME order. */
export interface OrderView {
  id: string;
  state: AcmeOrder['state'];
  attempts: number;
  next_attempt: string | null;
  last_error: string | null;
}

const iso = isoSeconds;

export function orderView(o: AcmeOrder): OrderView {
  return { id: o.id, state: o.state, attempts: o.attempts, next_attempt: o.state === 'queued' ? iso(o.nextAttemptAt) : null, last_error: o.lastError };
}

async function fromRecord(ctx: ServerContext, r: CertificateRecord): Promise<IssuedPodCertificate> {
  if (r.issuer === 'acme' && r.chainPem) {
    const end = '-----END CERTIFICATE-----';
    const leaf = r.chainPem.slice(0, r.chainPem.indexOf(end) + end.length) + '\n';
    return {
      serial: r.serial, issuer: 'acme', certificate: leaf, chain: r.chainPem.slice(leaf.length).replace(/^\s+/, ''), fullchain: r.chainPem,
      notAfter: new Date(r.notAfter * 1000).toISOString(), sha256: r.sha256, keySha256: r.keySha256,
    };
  }
  return privatePodCertificate(ctx, r.serial, r.keySha256);
}

export interface IssuerDeps {
  /** The ACME worker of this process (the API's); absent: orders wait for the process that runs one. */
  acme?: AcmeService;
}

/** A pod's CSR → its certificate now, or an order under way (with a private certificate meanwhile if it has none). */
export async function requestPodCertificate(ctx: ServerContext, s: SubdomainRecord, csrPem: string, deps: IssuerDeps): Promise<PodCertificateAnswer> {
  const c = ctx.config;
  // The same checks for either issuer: the name is the pod's fqdn and nothing else, the key is acceptable.
  const checked = checkCsr(csrPem, s.fqdn, { allowedCurves: c.ca.allowedCurves as CurveName[], minRsaBits: c.ca.minRsaBits, maxBytes: 16 * 1024 });
  const keySha256 = csrKeySha256(checked.pem);
  if (c.ca.issuer === 'private' || !deps.acme) {
    if (c.ca.issuer === 'acme') {
      // No worker in this process: the order waits for the API's, and the pod starts with a private certificate.
      await queueOrder(ctx.db, { subdomainId: s.id, purpose: 'pod', names: [s.fqdn], csrPem: checked.pem, keySha256 });
    }
    return { status: 'issued', certificate: await issuePrivatePodCertificate(ctx, s, checked.pem, keySha256), order: null };
  }
  const order = await deps.acme.order({ subdomainId: s.id, purpose: 'pod', names: [s.fqdn], csrPem: checked.pem, keySha256 });
  const done = await deps.acme.waitFor(order.id, c.ca.acme!.waitSeconds * 1000);
  if (done.state === 'valid') {
    const cert = await currentPodCertificate(ctx.db, s.id);
    if (cert && cert.keySha256 === keySha256) return { status: 'issued', certificate: await fromRecord(ctx, cert), order: orderView(done) };
  }
  const current = await currentPodCertificate(ctx.db, s.id);
  const retryAfterSeconds = Math.max(5, Math.min(300, done.nextAttemptAt - now() || 5));
  // Never without a certificate: a pod that has none, or whose certificate is in the last sixth of its
  // lifetime, gets the private CA's for this key now; the public one follows when the order completes.
  if (!current || current.notAfter - now() < (current.notAfter - current.notBefore) / 6) {
    return { status: 'pending', certificate: await issuePrivatePodCertificate(ctx, s, checked.pem, keySha256), order: orderView(done), retryAfterSeconds };
  }
  return { status: 'pending', certificate: null, order: orderView(done), retryAfterSeconds };
}

/** The certificate a pod should serve now (the public one once it is issued), and its order if one is open. */
export async function podCertificate(ctx: ServerContext, s: SubdomainRecord): Promise<{ certificate: IssuedPodCertificate | null; order: OrderView | null }> {
  const current = await currentPodCertificate(ctx.db, s.id);
  const order = await latestOrderOf(ctx.db, s.id);
  return { certificate: current ? await fromRecord(ctx, current) : null, order: order ? orderView(order) : null };
}

/** What the status view says of a pod's certificate: enough for the pod to notice a new one. */
export async function podCertificateSummary(ctx: ServerContext, s: SubdomainRecord) {
  const current = await currentPodCertificate(ctx.db, s.id);
  const order = await latestOrderOf(ctx.db, s.id);
  return {
    serial: current?.serial ?? null,
    issuer: current?.issuer ?? null,
    not_after: current ? iso(current.notAfter) : null,
    sha256: current?.sha256 ?? null,
    key_sha256: current?.keySha256 ?? null,
    order: order && order.state !== 'valid' && order.state !== 'cancelled' ? orderView(order) : null,
  };
}

const REASON_CODES = { unspecified: 0, keyCompromise: 1, superseded: 4, cessationOfOperation: 5 } as const;

/**
 * Revokes every still-valid pod certificate of a name, at the issuer that signed it (looked up by name:
 * the subdomain's row may be gone). A certificate the ACME CA cannot be asked to revoke right now is
 * reported and left; it expires on its own.
 */
export async function revokeSubdomainCertificates(ctx: ServerContext, s: Pick<SubdomainRecord, 'fqdn'>, reason: keyof typeof REASON_CODES, deps: IssuerDeps & { log?: (m: string) => void } = {}): Promise<string[]> {
  const live = await liveCertificatesOfName(ctx.db, s.fqdn);
  await revokePrivate(ctx, live.filter((r) => r.issuer === 'private').map((r) => r.serial), reason);
  const publicOnes = live.filter((r) => r.issuer === 'acme' && r.chainPem);
  if (publicOnes.length) {
    const acme = deps.acme ?? new AcmeService(ctx, { log: deps.log ?? (() => {}), applyDns: async () => {} });
    for (const r of publicOnes) {
      try {
        await acme.revoke(r.chainPem!, REASON_CODES[reason]);
        await markRevoked(ctx.db, r.serial, reason);
      } catch (e) {
        deps.log?.(`could not revoke ${r.serial} at the ACME CA: ${(e as Error).message}; it expires ${iso(r.notAfter)}`);
      }
    }
  }
  return live.map((r) => r.serial);
}
