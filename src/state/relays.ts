/**
 * The relays as the store knows them: each relay renews its own row (a heartbeat with a lease) and any
 * relay marks the others down whose lease ran out. What the zone points at follows from these rows, not
 * from the clock, so that every relay renders the same zone from the same store.
 */
import { sql } from 'kysely';
import { inList, writeTx, type Store } from './store.js';

export type RelayState = 'up' | 'down' | 'draining';

export interface RelayRow {
  name: string;
  hostKey: string | null;
  state: RelayState;
  leaseUntil: number;
  changedAt: number;
}

/**
 * This relay is alive until `leaseUntil`; a relay marked down comes back up (a draining one stays draining).
 * One statement on the relay's own row, outside the store's write lock: a heartbeat must never wait behind
 * another relay's long write (an apply's bookkeeping, an expiry sweep), or a live relay would look dead.
 */
export async function heartbeat(store: Store, o: { name: string; hostKey: string | null; leaseUntil: number; now: number }): Promise<RelayState> {
  const back: RelayState = (await drainRequested(store, o.name)) ? 'draining' : 'up';
  const row = await store.q.insertInto('relays').values({ name: o.name, host_key: o.hostKey, state: back, lease_until: o.leaseUntil, changed_at: o.now })
    .onConflict((oc) => oc.column('name').doUpdateSet({
      lease_until: o.leaseUntil,
      state: sql<RelayState>`CASE WHEN relays.state = 'down' THEN ${back} ELSE relays.state END`,
      changed_at: sql<number>`CASE WHEN relays.state = 'down' THEN ${o.now} ELSE relays.changed_at END`,
      host_key: sql<string | null>`COALESCE(${o.hostKey}, relays.host_key)`,
    }))
    .returning('state').executeTakeFirstOrThrow();
  return row.state;
}

/**
 * Relays (other than `self`) that have not renewed their lease for `graceSeconds` past its end are marked
 * down; returns their names. One statement, outside the write lock (see heartbeat).
 */
export async function markExpired(store: Store, self: string, now: number, graceSeconds = 0): Promise<string[]> {
  const rows = await store.q.updateTable('relays').set({ state: 'down', changed_at: now })
    .where('state', '!=', 'down').where('lease_until', '<', now - graceSeconds).where('name', '!=', self)
    .returning('name').execute();
  return rows.map((r) => r.name).sort();
}

const drainKey = (name: string) => `relay draining ${name}`;

/**
 * Marks a relay draining (its pods are moved off; new pods do not go there) or back up. The operator's
 * intent is kept apart from the state (a meta row): a draining relay that is marked down while stopped for
 * maintenance comes back draining, not up. Undrain changes only a draining relay (a down one stays down).
 */
export async function setRelayState(store: Store, name: string, state: 'up' | 'draining', now: number): Promise<boolean> {
  return writeTx(store, async (s) => {
    if (state === 'draining') {
      await s.q.insertInto('meta').values({ key: drainKey(name), value: String(now) }).onConflict((oc) => oc.column('key').doUpdateSet({ value: String(now) })).execute();
      const r = await s.q.updateTable('relays').set({ state, changed_at: now }).where('name', '=', name).where('state', '=', 'up').executeTakeFirst();
      return Number(r.numUpdatedRows) > 0;
    }
    const had = await s.q.deleteFrom('meta').where('key', '=', drainKey(name)).executeTakeFirst();
    const r = await s.q.updateTable('relays').set({ state, changed_at: now }).where('name', '=', name).where('state', '=', 'draining').executeTakeFirst();
    return Number(r.numUpdatedRows) > 0 || Number(had.numDeletedRows) > 0;
  });
}

/** Whether the operator asked for this relay to drain (see setRelayState). */
export async function drainRequested(s: Store, name: string): Promise<boolean> {
  return (await s.q.selectFrom('meta').select('key').where('key', '=', drainKey(name)).executeTakeFirst()) !== undefined;
}

export async function listRelays(s: Store): Promise<RelayRow[]> {
  const rows = await s.q.selectFrom('relays').select(['name', 'host_key', 'state', 'lease_until', 'changed_at']).orderBy('name').execute();
  return rows.map((r) => ({ name: r.name, hostKey: r.host_key, state: r.state, leaseUntil: r.lease_until, changedAt: r.changed_at }));
}

/** What rendering needs: each relay's state, in name order (part of the render digest and the change stamp). */
export async function relayStates(s: Store): Promise<{ name: string; state: RelayState }[]> {
  return (await s.q.selectFrom('relays').select(['name', 'state']).orderBy('name').execute()).map((r) => ({ name: r.name, state: r.state }));
}

/**
 * Points each named pod at the relay holding its newest live session (newest wins when a reconnect left
 * an older session on another relay), writing only where that changes: a pod that moved is journalled
 * once, a renewal not at all.
 */
export async function followSessions(store: Store, names: readonly string[], now: number): Promise<number> {
  if (names.length === 0) return 0;
  return writeTx(store, async (s) => {
    let moved = 0;
    for (let i = 0; i < names.length; i += 1000) {
      const part = names.slice(i, i + 1000);
      const newest = sql<string | null>`(SELECT x.relay FROM sessions x WHERE x.subdomain_id = subdomains.id AND x.lease_until > ${now} ORDER BY x.started_at DESC, x.relay LIMIT 1)`;
      const r = await s.q.updateTable('subdomains').set({ relay: newest })
        .where(inList(s, 'name', part))
        .where(sql<boolean>`EXISTS (SELECT 1 FROM sessions x WHERE x.subdomain_id = subdomains.id AND x.lease_until > ${now})`)
        .where(sql<boolean>`relay IS DISTINCT FROM ${newest}`)
        .executeTakeFirst();
      moved += Number(r.numUpdatedRows);
    }
    return moved;
  });
}

/** Relays' sessions whose lease ran out: removed (a dead relay's pods then count only where they are now). */
export async function dropExpiredSessions(s: Store, now: number): Promise<number> {
  const r = await sql`DELETE FROM sessions WHERE lease_until < ${now}`.execute(s.q);
  return Number(r.numAffectedRows ?? 0);
}

/** How many live sessions each relay holds (`relay list`, `relay drain`). */
export async function sessionsPerRelay(s: Store, now: number): Promise<Map<string, number>> {
  const rows = await s.q.selectFrom('sessions').select(['relay', sql<number>`count(*)`.as('n')]).where('lease_until', '>', now).groupBy('relay').execute();
  return new Map(rows.map((r) => [r.relay, Number(r.n)]));
}

/**
 * Pods with a session on `relay` that also have a newer session on another relay that is not down (a pod
 * that reconnected elsewhere while this relay still held its old connection): the old session is this
 * relay's to cut — newest wins.
 */
export async function supersededSessions(s: Store, relay: string, now: number): Promise<{ name: string; newerSince: number }[]> {
  const rows = await s.q.selectFrom('sessions as mine').innerJoin('subdomains as d', 'd.id', 'mine.subdomain_id')
    .select(['d.name', 'mine.started_at', sql<number>`(SELECT max(x.started_at) FROM sessions x JOIN relays r ON r.name = x.relay
      WHERE x.subdomain_id = mine.subdomain_id AND x.relay <> mine.relay AND x.lease_until > ${now} AND r.state <> 'down')`.as('newer')])
    .where('mine.relay', '=', relay)
    .orderBy('d.name').execute();
  // Compared here, not in SQL: the same on both engines whatever their NULL ordering.
  return rows.flatMap((r) => (r.newer !== null && Number(r.newer) > r.started_at ? [{ name: r.name, newerSince: Number(r.newer) }] : []));
}

// --- which pipe2me each relay runs: the schema version its code knows ------------------------------------

const SCHEMA_KEY = 'relay_schema ';

/**
 * Records the schema version `relay`'s code knows (its heartbeat does, when it starts beating). During a
 * rolling upgrade the store is at the newest relay's version while older relays still run: this is how
 * the fleet sees which ones are behind.
 */
export async function recordRelaySchema(s: Store, relay: string, version: number): Promise<void> {
  await s.q.insertInto('meta').values({ key: SCHEMA_KEY + relay, value: String(version) })
    .onConflict((oc) => oc.column('key').doUpdateSet({ value: String(version) })).execute();
}

/** The schema version each relay's code knows, as each last recorded it. */
export async function relaySchemas(s: Store): Promise<Map<string, number>> {
  const rows = await s.q.selectFrom('meta').select(['key', 'value']).where('key', 'like', `${SCHEMA_KEY}%`).execute();
  return new Map(rows.map((r) => [r.key.slice(SCHEMA_KEY.length), Number(r.value)]).filter(([, v]) => Number.isInteger(v)) as [string, number][]);
}
