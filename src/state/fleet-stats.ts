/**
 * The fleet in numbers, for the metrics and `pipe2me-ctl status`: every figure is one aggregate query,
 * so that a scrape costs the same few queries at 10 or 50,000 pods.
 */
import type { Db } from './db.js';
import { now } from './types.js';

export interface RouteRow { name: string; route: 'server' | 'direct'; routeReason: string | null; route6: 'server' | 'direct'; route6Reason: string | null; reportedIpv6: string | null }

export function subdomainCounts(db: Db): Record<'active' | 'expired', number> {
  const out = { active: 0, expired: 0 };
  for (const r of db.prepare('SELECT status, COUNT(*) AS n FROM subdomains GROUP BY status').all() as { status: 'active' | 'expired'; n: number }[]) out[r.status] = r.n;
  return out;
}

/** The route of every active subdomain with ports, both families (what the reason classes are counted from). */
export function activeRoutes(db: Db): RouteRow[] {
  return (db.prepare(`SELECT name, route, route_reason, route6, route6_reason, reported_ipv6 FROM subdomains s
    WHERE status = 'active' AND EXISTS (SELECT 1 FROM ports p WHERE p.subdomain_id = s.id)`).raw().all() as [string, 'server' | 'direct', string | null, 'server' | 'direct', string | null, string | null][])
    .map(([name, route, routeReason, route6, route6Reason, reportedIpv6]) => ({ name, route, routeReason, route6, route6Reason, reportedIpv6 }));
}

export function allocatedPorts(db: Db): number {
  return db.prepare("SELECT COUNT(*) FROM ports p JOIN subdomains s ON s.id = p.subdomain_id WHERE s.status = 'active'").pluck().get() as number;
}

/**
 * The soonest expiry among the certificates in use, by issuer and kind: for each name (a pod's, the
 * server's) its newest certificate that is not revoked — the one served — even when it has expired
 * already (a renewal that failed must keep the alert firing, not drop out of it). Older certificates of a
 * name that a newer one replaced are not counted.
 */
export function soonestExpiry(db: Db): { issuer: string; kind: string; notAfter: number; fqdn: string }[] {
  return (db.prepare(`SELECT issuer, kind, MIN(not_after) AS not_after, fqdn FROM certificates c
    WHERE revoked_at IS NULL AND (kind = 'server' OR subdomain_id IN (SELECT id FROM subdomains WHERE status = 'active'))
      AND not_after = (SELECT MAX(c2.not_after) FROM certificates c2 WHERE c2.fqdn = c.fqdn AND c2.kind = c.kind AND c2.revoked_at IS NULL)
    GROUP BY issuer, kind`).all() as { issuer: string; kind: string; not_after: number; fqdn: string }[])
    .map((r) => ({ issuer: r.issuer, kind: r.kind, notAfter: r.not_after, fqdn: r.fqdn }));
}

/** Per pod, the expiry of its newest certificate (the opt-in per-pod series). */
export function podCertificateExpiry(db: Db, at = now()): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, notAfter] of db.prepare(`SELECT s.name, MAX(c.not_after) FROM certificates c JOIN subdomains s ON s.id = c.subdomain_id
    WHERE c.revoked_at IS NULL AND c.not_after > ? AND s.status = 'active' GROUP BY s.name`).raw().all(at) as [string, number][]) out.set(name, notAfter);
  return out;
}

export function acmeOrderCounts(db: Db): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of db.prepare('SELECT state, COUNT(*) AS n FROM acme_orders GROUP BY state').all() as { state: string; n: number }[]) out[r.state] = r.n;
  return out;
}

/** Each token's use against its quotas (operators name tokens: a handful, a bounded label). */
export function tokenUse(db: Db): { label: string; subdomains: number; maxSubdomains: number | null; ports: number; maxTotalPorts: number | null; revoked: boolean }[] {
  return (db.prepare(`SELECT t.label, t.max_subdomains, t.max_total_ports, t.revoked_at,
      (SELECT COUNT(*) FROM subdomains s WHERE s.token_id = t.id AND s.status = 'active') AS subs,
      (SELECT COUNT(*) FROM ports p JOIN subdomains s ON s.id = p.subdomain_id WHERE s.token_id = t.id AND s.status = 'active') AS ports
    FROM tokens t ORDER BY t.label`).all() as { label: string; max_subdomains: number | null; max_total_ports: number | null; revoked_at: number | null; subs: number; ports: number }[])
    .map((r) => ({ label: r.label, subdomains: r.subs, maxSubdomains: r.max_subdomains, ports: r.ports, maxTotalPorts: r.max_total_ports, revoked: r.revoked_at !== null }));
}

/** Public port → subdomain name, for the per-pod byte counters. */
export function portOwners(db: Db): Map<number, string> {
  const out = new Map<number, string>();
  for (const [port, name] of db.prepare("SELECT p.port, s.name FROM ports p JOIN subdomains s ON s.id = p.subdomain_id WHERE s.status = 'active'").raw().all() as [number, string][]) out.set(port, name);
  return out;
}
