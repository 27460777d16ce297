/**
 * What the operator's status page reads from the store, in a few batched queries: counts over the
 * whole fleet, and — for the one page of pods it shows — each pod's latest probe per family and its
 * current certificate. No query per pod, so a page stays cheap at 50,000 pods.
 */
import { sql } from 'kysely';
import { inList, type Store } from './store.js';
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

export async function fleetCounts(s: Store): Promise<FleetCounts> {
  const on = (cond: string) => sql.raw(`coalesce(sum(CASE WHEN status = 'active'${cond} THEN 1 ELSE 0 END), 0)`);
  const r = (await sql<FleetCounts>`SELECT count(*) AS pods, ${on('')} AS active, ${on(" AND route = 'direct'")} AS direct4,
      ${on(" AND route6 = 'direct'")} AS direct6, ${on(' AND reported_ipv6 IS NOT NULL')} AS "withIpv6" FROM subdomains`.execute(s.q)).rows[0]!;
  return { pods: Number(r.pods), active: Number(r.active), direct4: Number(r.direct4), direct6: Number(r.direct6), withIpv6: Number(r.withIpv6) };
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
function current(s: Store, at: number, ids?: readonly string[]) {
  return sql`SELECT subdomain_id, serial, issuer, not_after, row_number() OVER (PARTITION BY subdomain_id
      ORDER BY CASE WHEN issuer = 'acme' THEN 1 ELSE 0 END DESC, not_before DESC, issued_at DESC) AS rank
    FROM certificates WHERE kind = 'pod' AND subdomain_id IS NOT NULL AND revoked_at IS NULL AND not_after > ${at}
    ${ids ? sql`AND ${inList(s, 'subdomain_id', ids)}` : sql``}`;
}

/** The current certificate of each of these pods (by id), in one query. */
export async function currentCertificates(s: Store, subdomainIds: readonly string[], at = now()): Promise<Map<string, CurrentCertificate>> {
  const out = new Map<string, CurrentCertificate>();
  if (subdomainIds.length === 0) return out;
  const rows = (await sql<{ subdomain_id: string; serial: string; issuer: 'private' | 'acme'; not_after: number }>`SELECT subdomain_id, serial, issuer, not_after
    FROM (${current(s, at, subdomainIds)}) c WHERE rank = 1`.execute(s.q)).rows;
  for (const r of rows) out.set(r.subdomain_id, { serial: r.serial, issuer: r.issuer, notAfter: Number(r.not_after) });
  return out;
}

/** Of every active pod's current certificate, the one that expires first. */
export async function soonestCertificateExpiry(s: Store, at = now()): Promise<(CurrentCertificate & { name: string }) | undefined> {
  const r = (await sql<{ name: string; serial: string; issuer: 'private' | 'acme'; not_after: number }>`SELECT s.name, c.serial, c.issuer, c.not_after
    FROM (${current(s, at)}) c JOIN subdomains s ON s.id = c.subdomain_id
    WHERE c.rank = 1 AND s.status = 'active' ORDER BY c.not_after, s.name LIMIT 1`.execute(s.q)).rows[0];
  return r ? { name: r.name, serial: r.serial, issuer: r.issuer, notAfter: Number(r.not_after) } : undefined;
}

export interface LatestProbe {
  at: number;
  address: string | null;
  ok: boolean;
  route: 'server' | 'direct';
  reason: string;
}

/** The latest probe result per family of each of these pods (by id), in one query. */
export async function latestProbes(s: Store, subdomainIds: readonly string[]): Promise<Map<string, { 4?: LatestProbe; 6?: LatestProbe }>> {
  const out = new Map<string, { 4?: LatestProbe; 6?: LatestProbe }>();
  if (subdomainIds.length === 0) return out;
  const rows = (await sql<{ subdomain_id: string; family: 4 | 6; at: number; address: string | null; ok: number; route: 'server' | 'direct'; detail: string }>`SELECT p.subdomain_id, p.family, p.at, p.address, p.ok, p.route, p.detail
      FROM probe_results p JOIN (SELECT max(id) AS id FROM probe_results WHERE ${inList(s, 'subdomain_id', subdomainIds)} GROUP BY subdomain_id, family) latest ON latest.id = p.id`.execute(s.q)).rows;
  for (const r of rows) {
    const entry = out.get(r.subdomain_id) ?? {};
    let reason = '';
    try {
      reason = String((JSON.parse(r.detail) as { reason?: unknown }).reason ?? '');
    } catch {
      /* a detail that is not JSON has no reason to show */
    }
    const family = Number(r.family) as 4 | 6;
    entry[family] = { at: Number(r.at), address: r.address, ok: Number(r.ok) === 1, route: r.route, reason };
    out.set(r.subdomain_id, entry);
  }
  return out;
}
