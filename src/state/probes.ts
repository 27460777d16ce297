/** The probe's results as the state store keeps them: a week of history per subdomain, for `show` and the status page. */
import { writeTx, type Db } from './db.js';
import { setRoute } from './subdomains.js';

export interface ProbeOutcome {
  subdomainId: string;
  address: string | null;
  ok: boolean;
  route: 'server' | 'direct';
  detail: unknown;
  /** The route decision to store with it. */
  decision: Parameters<typeof setRoute>[2];
}

/** One probe run's outcomes and route decisions, in one transaction; history older than a week is dropped. */
export function recordProbeRun(db: Db, at: number, outcomes: readonly ProbeOutcome[]): void {
  writeTx(db, () => {
    const ins = db.prepare('INSERT INTO probe_results (subdomain_id, at, address, ok, route, detail) VALUES (?, ?, ?, ?, ?, ?)');
    for (const o of outcomes) {
      setRoute(db, o.subdomainId, o.decision);
      ins.run(o.subdomainId, at, o.address, o.ok ? 1 : 0, o.route, JSON.stringify(o.detail));
    }
    db.prepare('DELETE FROM probe_results WHERE at < ?').run(at - 7 * 86400);
  });
}

export interface ProbeRecord {
  at: number;
  address: string | null;
  ok: boolean;
  route: string;
  reason: string;
}

export function recentProbes(db: Db, subdomainId: string, limit = 5): ProbeRecord[] {
  const rows = db.prepare('SELECT at, address, ok, route, detail FROM probe_results WHERE subdomain_id = ? ORDER BY id DESC LIMIT ?').all(subdomainId, limit) as { at: number; address: string | null; ok: number; route: string; detail: string }[];
  return rows.map((r) => ({ at: r.at, address: r.address, ok: r.ok === 1, route: r.route, reason: (JSON.parse(r.detail) as { reason: string }).reason }));
}
