/**
 * What the operator's status page reads from the store, in a few batched queries: counts over the
 * whole fleet, and — for the one page of pods it shows — each pod's latest probe per family and its
 * current certificate. No query per pod, so a page stays cheap at 50,000 pods.
 */
import type { Db } from './db.js';
import { now } from './types.js';

export interface FleetCounts {
  /** Every subdomain, expired ones included. */
  pods: number;
  active: number;
  /** Active pods whose A record points at their router. */
  direct4: number;
  /** Active pods whose AAAA record points at their own address. */
  direct6: number;
  /** Active pods that reported an IPv6 address of their own. */
  withIpv6: number;
}

export function fleetCounts(db: Db): FleetCounts {
  const r = db.prepare(`SELECT count(*) AS pods, coalesce(sum(status = 'active'), 0) AS active,
      coalesce(sum(status = 'active' AND route = 'direct'), 0) AS direct4, coalesce(sum(status = 'active' AND route6 = 'direct'), 0) AS direct6,
      coalesce(sum(status = 'active' AND reported_ipv6 IS NOT NULL), 0) AS withIpv6 FROM subdomains`).get() as FleetCounts;
  return { pods: r.pods, active: r.active, direct4: r.direct4, direct6: r.direct6, withIpv6: r.withIpv6 };
}

export interface CurrentCertificate {
  serial: string;
  issuer: 'private' | 'acme';
  notAfter: number;
}

/**
 * The certificate each pod should serve now, as `currentPodCertificate` picks it (valid, not revoked; a
 * public one before a private one, then the newest), numbered per pod in one pass over the certificates.
 */
const CURRENT = `SELECT subdomain_id, serial, issuer, not_after, row_number() OVER (PARTITION BY subdomain_id
    ORDER BY (issuer = 'acme') DESC, not_before DESC, issued_at DESC) AS rank
  FROM certificates WHERE kind = 'pod' AND subdomain_id IS NOT NULL AND revoked_at IS NULL AND not_after > @at`;

/** The current certificate of each of these pods (by id), in one query. */
export function currentCertificates(db: Db, subdomainIds: readonly string[], at = now()): Map<string, CurrentCertificate> {
  const out = new Map<string, CurrentCertificate>();
  if (subdomainIds.length === 0) return out;
  const rows = db.prepare(`SELECT subdomain_id, serial, issuer, not_after FROM (${CURRENT} AND subdomain_id IN (SELECT value FROM json_each(@ids))) WHERE rank = 1`)
    .all({ at, ids: JSON.stringify(subdomainIds) }) as { subdomain_id: string; serial: string; issuer: 'private' | 'acme'; not_after: number }[];
  for (const r of rows) out.set(r.subdomain_id, { serial: r.serial, issuer: r.issuer, notAfter: r.not_after });
  return out;
}

/** Of every active pod's current certificate, the one that expires first. */
export function soonestCertificateExpiry(db: Db, at = now()): (CurrentCertificate & { name: string }) | undefined {
  const r = db.prepare(`SELECT s.name, c.serial, c.issuer, c.not_after FROM (${CURRENT}) c JOIN subdomains s ON s.id = c.subdomain_id
      WHERE c.rank = 1 AND s.status = 'active' ORDER BY c.not_after, s.name LIMIT 1`).get({ at }) as { name: string; serial: string; issuer: 'private' | 'acme'; not_after: number } | undefined;
  return r ? { name: r.name, serial: r.serial, issuer: r.issuer, notAfter: r.not_after } : undefined;
}

export interface LatestProbe {
  at: number;
  address: string | null;
  ok: boolean;
  route: 'server' | 'direct';
  reason: string;
}

/** The latest probe result per family of each of these pods (by id), in one query. */
export function latestProbes(db: Db, subdomainIds: readonly string[]): Map<string, { 4?: LatestProbe; 6?: LatestProbe }> {
  const out = new Map<string, { 4?: LatestProbe; 6?: LatestProbe }>();
  if (subdomainIds.length === 0) return out;
  const rows = db.prepare(`SELECT p.subdomain_id, p.family, p.at, p.address, p.ok, p.route, json_extract(p.detail, '$.reason') AS reason
      FROM probe_results p JOIN (SELECT max(id) AS id FROM probe_results WHERE subdomain_id IN (SELECT value FROM json_each(?)) GROUP BY subdomain_id, family) latest ON latest.id = p.id`)
    .all(JSON.stringify(subdomainIds)) as { subdomain_id: string; family: 4 | 6; at: number; address: string | null; ok: number; route: 'server' | 'direct'; reason: string | null }[];
  for (const r of rows) {
    const entry = out.get(r.subdomain_id) ?? {};
    entry[r.family] = { at: r.at, address: r.address, ok: r.ok === 1, route: r.route, reason: r.reason ?? '' };
    out.set(r.subdomain_id, entry);
  }
  return out;
}
