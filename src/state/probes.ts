/** The probe's results as the state store keeps them: the last HISTORY_PER_POD per subdomain (at most a week), for `show` and the status page. */
import { writeTx, type Db } from './db.js';
import { setRoute, type RouteFields } from './subdomains.js';

export interface ProbeOutcome {
  subdomainId: string;
  family: 4 | 6;
  address: string | null;
  ok: boolean;
  route: 'server' | 'direct';
  detail: unknown;
  /** The route decision to store with it. */
  decision: RouteFields;
}

/** Results kept per subdomain (what `show` and the status page list). */
export const HISTORY_PER_POD = 40;

/** One probe run's outcomes and route decisions, in one transaction; a pod's history is bounded, and nothing older than a week is kept. */
export function recordProbeRun(db: Db, at: number, outcomes: readonly ProbeOutcome[]): void {
  writeTx(db, () => {
    const ins = db.prepare('INSERT INTO probe_results (subdomain_id, family, at, address, ok, route, detail) VALUES (?, ?, ?, ?, ?, ?, ?)');
    // A pod's history is its last HISTORY_PER_POD results (both families): the probe runs every minute,
    // and a week of every pod's minutes would be the store's biggest table by far.
    const trim = db.prepare(`DELETE FROM probe_results WHERE subdomain_id = ? AND id <= (
      SELECT id FROM probe_results WHERE subdomain_id = ? ORDER BY id DESC LIMIT 1 OFFSET ${HISTORY_PER_POD})`);
    const trimmed = new Set<string>();
    for (const o of outcomes) {
      setRoute(db, o.subdomainId, o.family, o.decision);
      ins.run(o.subdomainId, o.family, at, o.address, o.ok ? 1 : 0, o.route, JSON.stringify(o.detail));
    }
    for (const o of outcomes) {
      if (trimmed.has(o.subdomainId)) continue;
      trimmed.add(o.subdomainId);
      trim.run(o.subdomainId, o.subdomainId);
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
  family: 4 | 6;
}

export function recentProbes(db: Db, subdomainId: string, limit = 5): ProbeRecord[] {
  const rows = db.prepare('SELECT at, family, address, ok, route, detail FROM probe_results WHERE subdomain_id = ? ORDER BY id DESC LIMIT ?').all(subdomainId, limit) as { at: number; family: 4 | 6; address: string | null; ok: number; route: string; detail: string }[];
  return rows.map((r) => ({ at: r.at, family: r.family, address: r.address, ok: r.ok === 1, route: r.route, reason: (JSON.parse(r.detail) as { reason: string }).reason }));
}
