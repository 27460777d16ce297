/** The probe's results as the state store keeps them: the last HISTORY_PER_POD per subdomain (at most a week), for `show` and the status page. */
import { sql } from 'kysely';
import { writeTx, type Store } from './store.js';
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
export async function recordProbeRun(store: Store, at: number, outcomes: readonly ProbeOutcome[]): Promise<void> {
  await writeTx(store, async (s) => {
    for (const o of outcomes) await setRoute(s, o.subdomainId, o.family, o.decision);
    for (let i = 0; i < outcomes.length; i += 500) {
      await s.q.insertInto('probe_results').values(outcomes.slice(i, i + 500).map((o) => ({
        subdomain_id: o.subdomainId, family: o.family, at, address: o.address, ok: o.ok ? 1 : 0, route: o.route, detail: JSON.stringify(o.detail),
      }))).execute();
    }
    // A pod's history is its last HISTORY_PER_POD results (both families): the probe runs every minute,
    // and a week of every pod's minutes would be the store's biggest table by far.
    for (const id of new Set(outcomes.map((o) => o.subdomainId))) {
      await sql`DELETE FROM probe_results WHERE subdomain_id = ${id} AND id <= (
        SELECT id FROM probe_results WHERE subdomain_id = ${id} ORDER BY id DESC LIMIT 1 OFFSET ${HISTORY_PER_POD})`.execute(s.q);
    }
    await s.q.deleteFrom('probe_results').where('at', '<', at - 7 * 86400).execute();
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

export async function recentProbes(s: Store, subdomainId: string, limit = 5): Promise<ProbeRecord[]> {
  const rows = await s.q.selectFrom('probe_results').select(['at', 'family', 'address', 'ok', 'route', 'detail']).where('subdomain_id', '=', subdomainId)
    .orderBy('id', 'desc').limit(limit).execute();
  return rows.map((r) => ({ at: r.at, family: r.family, address: r.address, ok: r.ok === 1, route: r.route, reason: (JSON.parse(r.detail) as { reason: string }).reason }));
}
