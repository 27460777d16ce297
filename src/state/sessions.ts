/**
 * The online sessions as the store shares them: each relay mirrors the session records its tunnel sshd's
 * session holder writes (local files: the data path never waits on the store) into `sessions`, with a
 * lease it renews at every mirror. A row whose lease ran out is not online, whatever it says: a relay that
 * died leaves nothing that counts for longer than its lease.
 */
import { sql } from 'kysely';
import { inList, writeTx, type Store } from './store.js';

export interface SharedSession {
  name: string;
  family: 4 | 6;
  address: string;
  clientPort: number;
  startedAt: number;
}

export interface OnlineSession extends SharedSession {
  relay: string;
  leaseUntil: number;
}

/**
 * This relay's sessions are now exactly `live`, held until `leaseUntil`. Writes only what changed, and
 * renews the rest with one statement, so a mirror costs about the same at 10 or 50,000 online pods.
 */
export async function mirrorSessions(store: Store, relay: string, live: readonly SharedSession[], leaseUntil: number): Promise<{ added: number; removed: number; fresh: string[] }> {
  return writeTx(store, async (s) => {
    const rows = await s.q.selectFrom('sessions as x').innerJoin('subdomains as d', 'd.id', 'x.subdomain_id')
      .select(['d.name', 'x.family', 'x.address', 'x.client_port', 'x.started_at']).where('x.relay', '=', relay).execute();
    const key = (x: { family: number; address: string; clientPort: number; startedAt: number }) => `${x.family} ${x.address} ${x.clientPort} ${x.startedAt}`;
    const had = new Map(rows.map((r) => [r.name, key({ family: r.family, address: r.address, clientPort: r.client_port, startedAt: r.started_at })]));
    const want = new Map(live.map((x) => [x.name, x]));
    const gone = [...had.keys()].filter((n) => !want.has(n) || key(want.get(n)!) !== had.get(n));
    const fresh = live.filter((x) => had.get(x.name) !== key(x));
    if (gone.length) {
      await s.q.deleteFrom('sessions').where('relay', '=', relay)
        .where('subdomain_id', 'in', s.q.selectFrom('subdomains').select('id').where(inList(s, 'name', gone))).execute();
    }
    for (let i = 0; i < fresh.length; i += 1000) {
      const part = fresh.slice(i, i + 1000);
      const ids = new Map((await s.q.selectFrom('subdomains').select(['id', 'name']).where(inList(s, 'name', part.map((x) => x.name))).execute()).map((r) => [r.name, r.id]));
      const values = part.filter((x) => ids.has(x.name)).map((x) => ({
        subdomain_id: ids.get(x.name)!, relay, family: x.family, address: x.address, client_port: x.clientPort, started_at: x.startedAt, lease_until: leaseUntil,
      }));
      if (values.length) await s.q.insertInto('sessions').values(values).execute();
    }
    await s.q.updateTable('sessions').set({ lease_until: leaseUntil }).where('relay', '=', relay).execute();
    return { added: fresh.length, removed: gone.filter((n) => !want.has(n)).length, fresh: fresh.map((x) => x.name) };
  });
}

/** Sessions whose lease has not run out, on any relay, by subdomain name (newest first when a pod is on two). */
export async function onlineSessions(s: Store, at: number): Promise<OnlineSession[]> {
  const rows = await s.q.selectFrom('sessions as x').innerJoin('subdomains as d', 'd.id', 'x.subdomain_id')
    .select(['d.name', 'x.relay', 'x.family', 'x.address', 'x.client_port', 'x.started_at', 'x.lease_until'])
    .where('x.lease_until', '>', at).orderBy('d.name').orderBy('x.started_at', 'desc').execute();
  return rows.map((r) => ({ name: r.name, relay: r.relay, family: r.family, address: r.address, clientPort: r.client_port, startedAt: r.started_at, leaseUntil: r.lease_until }));
}

/** Rows whose lease ran out long ago (a relay that is gone): removed, so the table holds only what may still count. */
export async function pruneSessions(s: Store, before: number): Promise<number> {
  const r = await sql`DELETE FROM sessions WHERE lease_until < ${before}`.execute(s.q);
  return Number(r.numAffectedRows ?? 0);
}
