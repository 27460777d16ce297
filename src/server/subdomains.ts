/**
 * Subdomain use cases shared by the CLI and the API: create, describe, remove, expire. Removal and
 * expiry take a pod's key out of the key index at once, then cut its live sessions, so the pod can
 * neither keep nor re-open its tunnel.
 */
import type { ServerContext } from './context.js';
import { apply, type ApplyReport } from '../apply/apply.js';
import { httpEntryTarget, httpsEntryTarget, serviceUrl } from '../render/entries.js';
import { createSubdomain, deleteSubdomain, expireDue, requireSubdomain, type CreatedSubdomain } from '../state/subdomains.js';
import { now, type SubdomainRecord } from '../state/types.js';
import { cutSessions, forgetRecords, liveSession, type SessionRecord } from '../daemons/sessions.js';
import { getMappings, ipv6Note, mappingNote } from '../state/mappings.js';
import { isIPv4 } from 'node:net';
import { unmapIPv4 } from '../net/address.js';
import { podCertificateSummary, revokeSubdomainCertificates } from './issuers.js';
import { recentProbes as probeHistory } from '../state/probes.js';
import { sessionDirs, tunnelsOf } from './keys.js';
import { isoSeconds } from '../util/time.js';

/** What `list` shows per subdomain: no per-subdomain queries, so that listing 10,000 stays cheap. */
export interface SubdomainSummary {
  name: string;
  fqdn: string;
  status: SubdomainRecord['status'];
  created: string;
  expires: string | null;
  passthrough: boolean;
  ports: { port: number; protocol: string; url: string }[];
  entry: { http: string | null; https: string | null };
  route: SubdomainRecord['route'];
  route_reason: string | null;
  direct_ipv4: string | null;
  /** The IPv6 route, decided on its own (AAAA at the pod's own address while direct). */
  route6: SubdomainRecord['route6'];
  route6_reason: string | null;
  direct_ipv6: string | null;
  /** The IPv6 address the pod reported as its own (tested by the probe before it is ever published). */
  reported_ipv6: string | null;
  key: { algorithm: string; fingerprint: string } | null;
  /** `family`: over which the session arrived (a pod on an IPv6-only network tunnels over IPv6). */
  online: { since: string; from: string; family: 4 | 6 } | null;
  claim_pending: boolean;
}

/** What `show` and the API show: the summary, the router mappings and the recent probes. */
export interface SubdomainView extends SubdomainSummary {
  /** Openings on the way to the pod: IPv4 router mappings (`via` upnp or natpmp) and IPv6 ones (pinhole, or open). */
  mappings: { family: 4 | 6; external_port: number; internal_port: number; external_ip: string | null; via: string; lease_seconds: number | null; reported: string }[];
  /** What the pod said about mappings it could not make. */
  mapping_note: string | null;
  /** What the pod said about its IPv6 address or pinholes. */
  ipv6_note: string | null;
  probes: { at: string; family: 4 | 6; address: string | null; ok: boolean; route: string; reason: string }[];
  /** The certificate the pod should serve (which issuer signed it) and its ACME order, if one is open. */
  certificate: Awaited<ReturnType<typeof podCertificateSummary>>;
}

const iso = isoSeconds;

export function summarizeSubdomain(s: SubdomainRecord, session: SessionRecord | undefined): SubdomainSummary {
  return {
    name: s.name,
    fqdn: s.fqdn,
    status: s.status,
    created: iso(s.createdAt),
    expires: s.expiresAt ? iso(s.expiresAt) : null,
    passthrough: s.passthrough,
    ports: s.ports.map((p) => ({ port: p.port, protocol: p.protocol, url: serviceUrl(s.fqdn, p.protocol, p.port) })),
    entry: {
      http: httpEntryTarget(s) ? `http://${s.fqdn}/` : null,
      https: httpsEntryTarget(s) ? `https://${s.fqdn}/` : null,
    },
    route: s.route,
    route_reason: s.routeReason,
    direct_ipv4: s.directIpv4,
    route6: s.route6,
    route6_reason: s.route6Reason,
    direct_ipv6: s.directIpv6,
    reported_ipv6: s.reportedIpv6,
    key: s.key ? { algorithm: s.key.algorithm, fingerprint: s.key.fingerprint } : null,
    online: session?.alive ? { since: iso(session.since), from: unmapIPv4(session.clientIp), family: isIPv4(unmapIPv4(session.clientIp)) ? 4 : 6 } : null,
    claim_pending: s.claimPending,
  };
}

export async function viewSubdomain(ctx: ServerContext, s: SubdomainRecord): Promise<SubdomainView> {
  return {
    ...summarizeSubdomain(s, liveSession(ctx.layout.sessionsDir, s.name)),
    mappings: (await getMappings(ctx.db, s.id)).map((m) => ({ family: m.family, external_port: m.externalPort, internal_port: m.internalPort, external_ip: m.externalIp, via: m.via, lease_seconds: m.leaseSeconds, reported: iso(m.reportedAt) })),
    mapping_note: await mappingNote(ctx.db, s.id),
    ipv6_note: await ipv6Note(ctx.db, s.id),
    probes: await recentProbes(ctx, s.id),
    certificate: await podCertificateSummary(ctx, s),
  };
}

async function recentProbes(ctx: ServerContext, id: string) {
  return (await probeHistory(ctx.db, id)).map((r) => ({ ...r, at: iso(r.at) }));
}

export interface AddInput {
  name?: string | undefined;
  protocols: readonly string[];
  /** Seconds from now; null: never expires. */
  lifespanSeconds: number | null;
  passthrough?: boolean;
  tokenId?: string | null;
  withClaim?: boolean;
  withSecret?: boolean;
}

export function addSubdomainRecord(ctx: ServerContext, input: AddInput, maxPorts = ctx.config.ports.maxPerSubdomain): Promise<CreatedSubdomain> {
  const c = ctx.config;
  return createSubdomain(ctx.db, {
    name: input.name,
    protocols: input.protocols,
    expiresAt: input.lifespanSeconds === null ? null : now() + input.lifespanSeconds,
    passthrough: input.passthrough ?? false,
    tokenId: input.tokenId ?? null,
    withClaim: input.withClaim ?? false,
    withSecret: input.withSecret ?? false,
  }, {
    domain: c.domain,
    range: { first: c.ports.first, last: c.ports.last },
    maxPorts,
    // Every relay's label is its nameserver's name in the zone (with glue): never a pod's.
    reserved: [...c.subdomains.reservedNames, c.server.name, ...nameserverLabels(ctx), ...c.relays.list.map((r) => r.name)],
    slots: c.relays.slots,
  });
}

/** Labels of nameservers inside our domain (ns1, ns2 ...): never a pod's name. */
function nameserverLabels(ctx: ServerContext): string[] {
  const suffix = '.' + ctx.config.domain;
  return [ctx.config.dns.primary, ...ctx.config.dns.secondaries]
    .filter((n) => n.name.endsWith(suffix))
    .map((n) => n.name.slice(0, -suffix.length))
    .filter((l) => !l.includes('.'));
}

export interface RemoveResult {
  removed: SubdomainView;
  cutSessions: number[];
  applied: ApplyReport | null;
}

/** Takes pods off the tunnel sshd: keys out of the key index first (no new login), then live sessions cut, then certificates revoked. */
async function retire(ctx: ServerContext, subs: readonly SubdomainRecord[], reason: 'cessationOfOperation' | 'superseded', progress: (m: string) => void): Promise<{ cut: number[]; revoked: string[] }> {
  await apply(ctx, { units: ['keys'], progress });
  const cut: number[] = [];
  const revoked: string[] = [];
  for (const s of subs) {
    const r = await cutSessions({ ...sessionDirs(ctx), ...tunnelsOf(ctx, s) });
    cut.push(...r.killed);
    forgetRecords(sessionDirs(ctx), s.name);
    revoked.push(...(await revokeSubdomainCertificates(ctx, s, reason, { log: progress })));
  }
  return { cut, revoked };
}

/**
 * Pods removed or expired in the store whose retirement failed half-way (the store went away under its
 * apply, say): every later expiry sweep of this process tries again, so that a freed port's old session
 * is cut and its certificate revoked even though the store no longer lists the pod as due. Retiring is
 * idempotent (a key already gone, no session left, a certificate already revoked).
 */
const owed = new Map<string, SubdomainRecord>();

async function retireOrOwe(ctx: ServerContext, subs: readonly SubdomainRecord[], reason: 'cessationOfOperation' | 'superseded', progress: (m: string) => void) {
  try {
    return await retire(ctx, subs, reason, progress);
  } catch (e) {
    for (const s of subs) owed.set(s.id, s);
    throw e;
  }
}

async function retireOwed(ctx: ServerContext, progress: (m: string) => void): Promise<void> {
  if (owed.size === 0) return;
  const list = [...owed.values()];
  progress(`retiring again what a failure left: ${list.map((s) => s.fqdn).join(', ')}`);
  await retire(ctx, list, 'cessationOfOperation', progress);
  for (const s of list) owed.delete(s.id);
}

export async function removeSubdomain(ctx: ServerContext, nameOrFqdn: string, opts: { apply: boolean; progress?: (m: string) => void; reason?: string }): Promise<RemoveResult & { revoked: string[] }> {
  const progress = opts.progress ?? (() => {});
  const s = await requireSubdomain(ctx.db, nameOrFqdn);
  const view = await viewSubdomain(ctx, s);
  await deleteSubdomain(ctx.db, s.id, opts.reason);
  const { cut, revoked } = await retireOrOwe(ctx, [s], 'cessationOfOperation', progress);
  const applied = opts.apply ? await apply(ctx, { progress }) : null;
  return { removed: view, cutSessions: cut, applied, revoked };
}

/** Expires every subdomain whose time is up: frees its ports, cuts its sessions, revokes its certificate. */
export async function expireSweep(ctx: ServerContext, opts: { apply: boolean; progress?: (m: string) => void } = { apply: true }): Promise<SubdomainRecord[]> {
  const progress = opts.progress ?? (() => {});
  await retireOwed(ctx, progress);
  const expired = await expireDue(ctx.db);
  if (expired.length === 0) return expired;
  for (const s of expired) progress(`expired: ${s.fqdn}`);
  await retireOrOwe(ctx, expired, 'cessationOfOperation', progress);
  if (opts.apply) await apply(ctx, { progress });
  return expired;
}
