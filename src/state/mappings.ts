/**
 * The openings on the way to a pod, as the pod reports them, per address family: router port mappings
 * for IPv4 (UPnP IGD or NAT-PMP) and, for IPv6, pinholes in the router's firewall (or nothing to open).
 * The probe tests them, `show` and the status views display them. A report for one family replaces only
 * that family's rows.
 */
import { writeTx, type Store } from './store.js';
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

async function insertAll(s: Store, subdomainId: string, family: 4 | 6, mappings: readonly ReportedMapping[]): Promise<void> {
  await s.q.deleteFrom('mappings').where('subdomain_id', '=', subdomainId).where('family', '=', family).execute();
  if (mappings.length === 0) return;
  const at = now();
  await s.q.insertInto('mappings').values(mappings.map((m) => ({
    subdomain_id: subdomainId, family, external_port: m.externalPort, internal_port: m.internalPort, external_ip: m.externalIp, via: m.via,
    lease_seconds: m.leaseSeconds ?? null, reported_at: at,
  }))).execute();
}

/** The pod's IPv4 router mappings (and why there are none or fewer), replacing what it reported before. */
export async function replaceMappings(store: Store, subdomainId: string, mappings: readonly ReportedMapping[], note: string | null = null): Promise<void> {
  await writeTx(store, async (s) => {
    await s.q.updateTable('subdomains').set({ mapping_note: note }).where('id', '=', subdomainId).execute();
    await insertAll(s, subdomainId, 4, mappings);
  });
}

/**
 * The pod's IPv6 report: its own address (null: it has none, or stopped publishing one) and the ports
 * open to it there. The IPv4 rows stay as they are.
 */
export async function replaceIpv6Openings(store: Store, subdomainId: string, address: string | null, openings: readonly ReportedMapping[], note: string | null = null): Promise<void> {
  await writeTx(store, async (s) => {
    await s.q.updateTable('subdomains').set({ reported_ipv6: address, ipv6_note: note }).where('id', '=', subdomainId).execute();
    await insertAll(s, subdomainId, 6, address ? openings : []);
  });
}

export async function getMappings(s: Store, subdomainId: string): Promise<MappingRecord[]> {
  return (await s.q.selectFrom('mappings').selectAll().where('subdomain_id', '=', subdomainId).orderBy('family').orderBy('external_port').execute()).map(toRecord);
}

/** Every subdomain's openings of one family, by subdomain id. */
export async function allMappings(s: Store, family: 4 | 6 = 4): Promise<Map<string, MappingRecord[]>> {
  const out = new Map<string, MappingRecord[]>();
  for (const r of await s.q.selectFrom('mappings').selectAll().where('family', '=', family).orderBy('subdomain_id').orderBy('external_port').execute()) {
    const list = out.get(r.subdomain_id) ?? [];
    list.push(toRecord(r));
    out.set(r.subdomain_id, list);
  }
  return out;
}

export async function mappingNote(s: Store, subdomainId: string): Promise<string | null> {
  return (await s.q.selectFrom('subdomains').select('mapping_note').where('id', '=', subdomainId).executeTakeFirst())?.mapping_note ?? null;
}

export async function ipv6Note(s: Store, subdomainId: string): Promise<string | null> {
  return (await s.q.selectFrom('subdomains').select('ipv6_note').where('id', '=', subdomainId).executeTakeFirst())?.ipv6_note ?? null;
}
