/**
 * The openings on the way to a pod, as the pod reports them, per address family: router port mappings
 * for IPv4 (UPnP IGD or NAT-PMP) and, for IPv6, pinholes in the router's firewall (or nothing to open).
 * The probe tests them, `show` and the status views display them. A report for one family replaces only
 * that family's rows.
 */
import { writeTx, type Db } from './db.js';
import { now, type MappingMethod, type MappingRecord } from './types.js';

interface Row { family: 4 | 6; external_port: number; internal_port: number; external_ip: string | null; via: MappingMethod; lease_seconds: number | null; reported_at: number }

export interface ReportedMapping {
  externalPort: number;
  internalPort: number;
  externalIp: string | null;
  via: MappingMethod;
  leaseSeconds?: number | null;
}

function toRecord(r: Row): MappingRecord {
  return { family: r.family, externalPort: r.external_port, internalPort: r.internal_port, externalIp: r.external_ip, via: r.via, leaseSeconds: r.lease_seconds, reportedAt: r.reported_at };
}

function insertAll(db: Db, subdomainId: string, family: 4 | 6, mappings: readonly ReportedMapping[]): void {
  db.prepare('DELETE FROM mappings WHERE subdomain_id = ? AND family = ?').run(subdomainId, family);
  const ins = db.prepare('INSERT INTO mappings (subdomain_id, family, external_port, internal_port, external_ip, via, lease_seconds, reported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  const at = now();
  for (const m of mappings) ins.run(subdomainId, family, m.externalPort, m.internalPort, m.externalIp, m.via, m.leaseSeconds ?? null, at);
}

/** The pod's IPv4 router mappings (and why there are none or fewer), replacing what it reported before. */
export function replaceMappings(db: Db, subdomainId: string, mappings: readonly ReportedMapping[], note: string | null = null): void {
  writeTx(db, () => {
    db.prepare('UPDATE subdomains SET mapping_note = ? WHERE id = ?').run(note, subdomainId);
    insertAll(db, subdomainId, 4, mappings);
  });
}

/**
 * The pod's IPv6 report: its own address (null: it has none, or stopped publishing one) and the ports
 * open to it there. The IPv4 rows stay as they are.
 */
export function replaceIpv6Openings(db: Db, subdomainId: string, address: string | null, openings: readonly ReportedMapping[], note: string | null = null): void {
  writeTx(db, () => {
    db.prepare('UPDATE subdomains SET reported_ipv6 = ?, ipv6_note = ? WHERE id = ?').run(address, note, subdomainId);
    insertAll(db, subdomainId, 6, address ? openings : []);
  });
}

export function getMappings(db: Db, subdomainId: string): MappingRecord[] {
  return (db.prepare('SELECT * FROM mappings WHERE subdomain_id = ? ORDER BY family, external_port').all(subdomainId) as Row[]).map(toRecord);
}

/** Every subdomain's openings of one family, by subdomain id. */
export function allMappings(db: Db, family: 4 | 6 = 4): Map<string, MappingRecord[]> {
  const out = new Map<string, MappingRecord[]>();
  for (const r of db.prepare('SELECT * FROM mappings WHERE family = ? ORDER BY subdomain_id, external_port').all(family) as (Row & { subdomain_id: string })[]) {
    const list = out.get(r.subdomain_id) ?? [];
    list.push(toRecord(r));
    out.set(r.subdomain_id, list);
  }
  return out;
}

export function mappingNote(db: Db, subdomainId: string): string | null {
  return (db.prepare('SELECT mapping_note FROM subdomains WHERE id = ?').pluck().get(subdomainId) as string | null | undefined) ?? null;
}

export function ipv6Note(db: Db, subdomainId: string): string | null {
  return (db.prepare('SELECT ipv6_note FROM subdomains WHERE id = ?').pluck().get(subdomainId) as string | null | undefined) ?? null;
}
