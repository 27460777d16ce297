/**
 * The fleet in numbers, for the metrics and `pipe2me-ctl status`: every figure is one aggregate query,
 * so that a scrape costs the same few queries at 10 or 50,000 pods.
 */
import { sql } from 'kysely';
import type { Store } from './store.js';
import { now } from './types.js';

export interface RouteRow { name: string; route: 'server' | 'direct'; routeReason: string | null; route6: 'server' | 'direct'; route6Reason: string | null; reportedIpv6: string | null }

export async function subdomainCounts(s: Store): Promise<Record<'active' | 'expired', number>> {
  const out = { active: 0, expired: 0 };
  for (const r of await s.q.selectFrom('subdomains').select(['status', sql<number>`count(*)`.as('n')]).groupBy('status').execute()) out[r.status] = Number(r.n);
  return out;
}

/** The route of every active subdomain with ports, both families (what the reason classes are counted from). */
export async function activeRoutes(s: Store): Promise<RouteRow[]> {
  const rows = await s.q.selectFrom('subdomains as s').select(['name', 'route', 'route_reason', 'route6', 'route6_reason', 'reported_ipv6'])
    .where('status', '=', 'active').where(sql<boolean>`EXISTS (SELECT 1 FROM ports p WHERE p.subdomain_id = s.id)`).execute();
  return rows.map((r) => ({ name: r.name, route: r.route, routeReason: r.route_reason, route6: r.route6, route6Reason: r.route6_reason, reportedIpv6: r.reported_ipv6 }));
}

export async function allocatedPorts(s: Store): Promise<number> {
  const r = await sql<{ n: number }>`SELECT COUNT(*) AS n FROM ports p JOIN subdomains s ON s.id = p.subdomain_id WHERE s.status = 'active'`.execute(s.q);
  return Number(r.rows[0]?.n ?? 0);
}

/**
 * The soonest expiry among the certificates in use, by issuer and kind: for each name (a pod's, the
 * server's) its newest certificate that is not revoked — the one served — even when it has expired
 * already (a renewal that failed must keep the alert firing, not drop out of it). Older certificates of a
 * name that a newer one replaced are not counted.
 */
export async function soonestExpiry(s: Store): Promise<{ issuer: string; kind: string; notAfter: number; fqdn: string }[]> {
  // The name of the soonest certificate per group: the smallest fqdn among those expiring first (one
  // answer on both engines, where SQLite alone would pick the row of MIN() as a bare column).
  const r = await sql<{ issuer: string; kind: string; not_after: number; fqdn: string }>`WITH served AS (
      SELECT issuer, kind, not_after, fqdn FROM certificates c
      WHERE revoked_at IS NULL AND (kind = 'server' OR subdomain_id IN (SELECT id FROM subdomains WHERE status = 'active'))
        AND not_after = (SELECT MAX(c2.not_after) FROM certificates c2 WHERE c2.fqdn = c.fqdn AND c2.kind = c.kind AND c2.revoked_at IS NULL))
    SELECT g.issuer, g.kind, g.not_after, (SELECT MIN(fqdn) FROM served x WHERE x.issuer = g.issuer AND x.kind = g.kind AND x.not_after = g.not_after) AS fqdn
    FROM (SELECT issuer, kind, MIN(not_after) AS not_after FROM served GROUP BY issuer, kind) g ORDER BY g.issuer, g.kind`.execute(s.q);
  return r.rows.map((x) => ({ issuer: x.issuer, kind: x.kind, notAfter: Number(x.not_after), fqdn: x.fqdn }));
}

/** Per pod, the expiry of its newest certificate (the opt-in per-pod series). */
export async function podCertificateExpiry(s: Store, at = now()): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const r = await sql<{ name: string; not_after: number }>`SELECT s.name, MAX(c.not_after) AS not_after FROM certificates c JOIN subdomains s ON s.id = c.subdomain_id
    WHERE c.revoked_at IS NULL AND c.not_after > ${at} AND s.status = 'active' GROUP BY s.name`.execute(s.q);
  for (const x of r.rows) out.set(x.name, Number(x.not_after));
  return out;
}

export async function acmeOrderCounts(s: Store): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const r of await s.q.selectFrom('acme_orders').select(['state', sql<number>`count(*)`.as('n')]).groupBy('state').execute()) out[r.state] = Number(r.n);
  return out;
}

/** Each token's use against its quotas (operators name tokens: a handful, a bounded label). */
export async function tokenUse(s: Store): Promise<{ label: string; subdomains: number; maxSubdomains: number | null; ports: number; maxTotalPorts: number | null; revoked: boolean }[]> {
  const r = await sql<{ label: string; max_subdomains: number | null; max_total_ports: number | null; revoked_at: number | null; subs: number; ports: number }>`SELECT t.label, t.max_subdomains, t.max_total_ports, t.revoked_at,
      (SELECT COUNT(*) FROM subdomains s WHERE s.token_id = t.id AND s.status = 'active') AS subs,
      (SELECT COUNT(*) FROM ports p JOIN subdomains s ON s.id = p.subdomain_id WHERE s.token_id = t.id AND s.status = 'active') AS ports
    FROM tokens t ORDER BY t.label, t.id`.execute(s.q);
  return r.rows.map((x) => ({ label: x.label, subdomains: Number(x.subs), maxSubdomains: x.max_subdomains, ports: Number(x.ports), maxTotalPorts: x.max_total_ports, revoked: x.revoked_at !== null }));
}

/** Address slot and public port → subdomain name, for the per-pod byte counters (key: portOwnerKey). */
export async function portOwners(s: Store): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const rows = await s.q.selectFrom('ports as p').innerJoin('subdomains as s', 's.id', 'p.subdomain_id').select(['p.slot', 'p.port', 's.name']).where('s.status', '=', 'active').execute();
  for (const r of rows) out.set(portOwnerKey(Number(r.slot), r.port), r.name);
  return out;
}

export const portOwnerKey = (slot: number, port: number) => `${slot}:${port}`;
