/** Router port mappings a pod reports (UPnP): the probe tests them, `show` displays them. */
import { writeTx, type Db } from './db.js';
import { now, type MappingRecord } from './types.js';

interface Row { external_port: number; internal_port: number; external_ip: string | null; reported_at: number }

export function replaceMappings(db: Db, subdomainId: string, mappings: { externalPort: number; internalPort: number; externalIp: string | null }[], note: string | null = null): void {
  writeTx(db, () => {
    db.prepare('UPDATE subdomains SET mapping_note = ? WHERE id = ?').run(note, subdomainId);
    db.prepare('DELETE FROM mappings WHERE subdomain_id = ?').run(subdomainId);
    const ins = db.prepare('INSERT INTO mappings (subdomain_id, external_port, internal_port, external_ip, reported_at) VALUES (?, ?, ?, ?, ?)');
    const at = now();
    for (const m of mappings) ins.run(subdomainId, m.externalPort, m.internalPort, m.externalIp, at);
  });
}

export function getMappings(db: Db, subdomainId: string): MappingRecord[] {
  return (db.prepare('SELECT * FROM mappings WHERE subdomain_id = ? ORDER BY external_port').all(subdomainId) as Row[]).map((r) => ({
    externalPort: r.external_port,
    internalPort: r.internal_port,
    externalIp: r.external_ip,
    reportedAt: r.reported_at,
  }));
}

export function allMappings(db: Db): Map<string, MappingRecord[]> {
  const out = new Map<string, MappingRecord[]>();
  for (const r of db.prepare('SELECT * FROM mappings ORDER BY subdomain_id, external_port').all() as (Row & { subdomain_id: string })[]) {
    const list = out.get(r.subdomain_id) ?? [];
    list.push({ externalPort: r.external_port, internalPort: r.internal_port, externalIp: r.external_ip, reportedAt: r.reported_at });
    out.set(r.subdomain_id, list);
  }
  return out;
}

export function mappingNote(db: Db, subdomainId: string): string | null {
  return (db.prepare('SELECT mapping_note FROM subdomains WHERE id = ?').pluck().get(subdomainId) as string | null | undefined) ?? null;
}
