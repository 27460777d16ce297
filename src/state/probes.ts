/** The probe's results as the state store keeps them: the last HISTORY_PER_POD per subdomain (at most a week), for `show` and the status page. */
import { sql } from 'kysely';
import { inList, writeTx, type Store } from './store.js';
import type { RouteFields } from './subdomains.js';

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

/** Statements per batch: one UPDATE or DELETE for this many pods (7 parameters each, far under both engines' limits). */
const BATCH = 500;

/**
 * One probe run's outcomes and route decisions, in one transaction, in a few statements per 500 pods
 * (not per pod: on PostgreSQL every statement is a round trip). A pod's history is bounded, and nothing
 * older than a week is kept.
 */
export async function recordProbeRun(store: Store, at: number, outcomes: readonly ProbeOutcome[]): Promise<void> {
  await writeTx(store, async (s) => {
    for (const family of [4, 6] as const) {
      const mine = outcomes.filter((o) => o.family === family);
      for (let i = 0; i < mine.length; i += BATCH) await recordDecisions(s, family, mine.slice(i, i + BATCH));
    }
    for (let i = 0; i < outcomes.length; i += BATCH) {
      await s.q.insertInto('probe_results').values(outcomes.slice(i, i + BATCH).map((o) => ({
        subdomain_id: o.subdomainId, family: o.family, at, address: o.address, ok: o.ok ? 1 : 0, route: o.route, detail: JSON.stringify(o.detail),
      }))).execute();
    }
    // A pod's history is its last HISTORY_PER_POD results (both families): the probe runs every minute,
    // and a week of every pod's minutes would be the store's biggest table by far.
    const ids = [...new Set(outcomes.map((o) => o.subdomainId))];
    for (let i = 0; i < ids.length; i += BATCH) {
      await sql`DELETE FROM probe_results WHERE id IN (
        SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY subdomain_id ORDER BY id DESC) AS rn FROM probe_results
          WHERE ${inList(s, 'subdomain_id', ids.slice(i, i + BATCH))}) ranked WHERE rn > ${HISTORY_PER_POD})`.execute(s.q);
    }
    await s.q.deleteFrom('probe_results').where('at', '<', at - 7 * 86400).execute();
  });
}

/**
 * The route decisions of one family for a batch of pods: the reason, streak and times of every pod in one
 * statement; then the route and its address in a second, only where they change (what the render journal
 * follows: a run that confirms every route journals nothing, and the next apply has nothing to patch).
 */
async function recordDecisions(s: Store, family: 4 | 6, batch: readonly ProbeOutcome[]): Promise<void> {
  if (batch.length === 0) return;
  const c = family === 4
    ? { route: 'route', direct: 'direct_ipv4', reason: 'route_reason', streak: 'probe_streak', changed: 'route_changed_at', fallback: 'last_fallback_at' }
    : { route: 'route6', direct: 'direct_ipv6', reason: 'route6_reason', streak: 'probe6_streak', changed: 'route6_changed_at', fallback: 'last_fallback6_at' };
  const values = sql.join(batch.map((o) => {
    const d = o.decision;
    return sql`(CAST(${o.subdomainId} AS text), CAST(${d.route} AS text), CAST(${d.direct} AS text), CAST(${d.reason} AS text), CAST(${d.streak} AS bigint),
      CAST(${d.changedAt ?? null} AS bigint), CAST(${d.fallbackAt ?? null} AS bigint))`;
  }));
  const v = sql`WITH v(id, route, direct, reason, streak, changed_at, fallback_at) AS (VALUES ${values})`;
  const col = (n: string) => sql.ref(n);
  await sql`${v} UPDATE subdomains SET ${col(c.reason)} = v.reason, ${col(c.streak)} = v.streak,
      ${col(c.changed)} = COALESCE(v.changed_at, ${col(c.changed)}), ${col(c.fallback)} = COALESCE(v.fallback_at, ${col(c.fallback)})
    FROM v WHERE subdomains.id = v.id`.execute(s.q);
  await sql`${v} UPDATE subdomains SET ${col(c.route)} = v.route, ${col(c.direct)} = v.direct
    FROM v WHERE subdomains.id = v.id AND (${sql.ref(`subdomains.${c.route}`)} <> v.route OR ${sql.ref(`subdomains.${c.direct}`)} IS DISTINCT FROM v.direct)`.execute(s.q);
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
