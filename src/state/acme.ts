/**
 * ACME orders as the state store keeps them: one row per certificate asked of the ACME CA (a pod's CSR,
 * or the server's own names), the dns-01 TXT records it needs published, and the failed validations
 * per name (the CA allows only a few per hour: they are counted so that none is spent blindly).
 */
import { randomBytes } from 'node:crypto';
import { sql, type ExpressionBuilder, type Selectable } from 'kysely';
import type { AcmeAccountsTable, AcmeOrdersTable, Schema } from './schema.js';
import { inList, writeTx, type Store } from './store.js';
import { now } from './types.js';

export type OrderState = 'queued' | 'working' | 'valid' | 'failed' | 'cancelled';

export interface AcmeOrder {
  id: string;
  subdomainId: string | null;
  purpose: 'pod' | 'server';
  names: string[];
  csrPem: string;
  keySha256: string;
  state: OrderState;
  attempts: number;
  nextAttemptAt: number;
  lastError: string | null;
  certSerial: string | null;
  createdAt: number;
  updatedAt: number;
  /** The relay that must work it (it holds the order's key), or null: any relay. */
  relay: string | null;
  /** The relay that last took it. */
  workedBy: string | null;
}

/** A row as Kysely returns it (the table as src/state/schema.ts describes it). */
type Row = Selectable<AcmeOrdersTable>;

const toOrder = (r: Row): AcmeOrder => ({
  id: r.id, subdomainId: r.subdomain_id, purpose: r.purpose, names: JSON.parse(r.names) as string[], csrPem: r.csr_pem, keySha256: r.key_sha256,
  state: r.state, attempts: r.attempts, nextAttemptAt: r.next_attempt_at, lastError: r.last_error, certSerial: r.cert_serial,
  createdAt: r.created_at, updatedAt: r.updated_at, relay: r.relay, workedBy: r.worked_by,
});

/** Orders newest first: by creation time, then by the order they were queued in (seq) within one second. */
const NEWEST = [sql`created_at DESC`, sql`seq DESC`] as const;

/**
 * Queues an order for these names and CSR. An open order for the same subdomain (or, for the server, the
 * same names on the same relay) is replaced: only the newest CSR matters, and two orders would spend the
 * CA's limits twice. `relay` binds the order to the relay that holds its key (the server's own names: each
 * relay's wildcard has a key of its own, which never leaves it); a pod's order is worked by any relay.
 */
export async function queueOrder(store: Store, o: { subdomainId: string | null; purpose: 'pod' | 'server'; names: string[]; csrPem: string; keySha256: string; relay?: string | null }): Promise<AcmeOrder> {
  return writeTx(store, async (s) => {
    const t = now();
    const names = JSON.stringify([...o.names].sort());
    const open = s.q.updateTable('acme_orders').set({ state: 'cancelled', updated_at: t }).where('state', 'in', ['queued', 'working']);
    if (o.subdomainId) await open.where('subdomain_id', '=', o.subdomainId).execute();
    else await open.where('subdomain_id', 'is', null).where('names', '=', names).where(boundTo(o.relay ?? null)).execute();
    const id = randomBytes(8).toString('hex');
    const seq = Number((await s.q.selectFrom('acme_orders').select(sql<number>`coalesce(max(seq), 0)`.as('n')).executeTakeFirstOrThrow()).n) + 1;
    await s.q.insertInto('acme_orders').values({
      id, subdomain_id: o.subdomainId, purpose: o.purpose, names, csr_pem: o.csrPem, key_sha256: o.keySha256, state: 'queued', next_attempt_at: t,
      created_at: t, updated_at: t, seq, relay: o.relay ?? null,
    }).execute();
    return (await getOrder(s, id))!;
  });
}

export async function getOrder(s: Store, id: string): Promise<AcmeOrder | undefined> {
  const r = await s.q.selectFrom('acme_orders').selectAll().where('id', '=', id).executeTakeFirst();
  return r ? toOrder(r) : undefined;
}

/** The newest order of a subdomain (any state), for its status. */
export async function latestOrderOf(s: Store, subdomainId: string): Promise<AcmeOrder | undefined> {
  const r = await s.q.selectFrom('acme_orders').selectAll().where('subdomain_id', '=', subdomainId).orderBy(NEWEST[0]).orderBy(NEWEST[1]).limit(1).executeTakeFirst();
  return r ? toOrder(r) : undefined;
}

/** Orders bound to exactly this relay (null: the orders of no relay in particular). */
const boundTo = (relay: string | null) => (eb: ExpressionBuilder<Schema, 'acme_orders'>) => relay === null ? eb('relay', 'is', null) : eb('relay', '=', relay);
/** Orders this relay may work: its own and those of no relay in particular. */
const workableBy = (relay: string) => (eb: ExpressionBuilder<Schema, 'acme_orders'>) => eb.or([eb('relay', 'is', null), eb('relay', '=', relay)]);

/** The newest order for the server's own names placed by this relay (or, from before relays, by none). */
export async function latestServerOrder(s: Store, names: string[], relay: string): Promise<AcmeOrder | undefined> {
  const r = await s.q.selectFrom('acme_orders').selectAll().where('subdomain_id', 'is', null).where('names', '=', JSON.stringify([...names].sort()))
    .where(workableBy(relay)).orderBy(NEWEST[0]).orderBy(NEWEST[1]).limit(1).executeTakeFirst();
  return r ? toOrder(r) : undefined;
}

/**
 * How long an order may stay 'working' untouched before it counts as its worker's death and another
 * worker takes it. A live worker touches it well within that (keepWorking), however long the CA's
 * validation and the wait for the nameservers take (up to an hour): it is not the order's duration.
 */
export const ORDER_STALE_SECONDS = 600;

/**
 * Takes the next due order this relay may work (queued, its time has come), or one left 'working' by a
 * process that died (untouched for `staleSeconds`). Atomic: two workers never take the same order.
 */
export async function takeDueOrder(store: Store, relay: string, at = now(), staleSeconds = ORDER_STALE_SECONDS): Promise<AcmeOrder | undefined> {
  return writeTx(store, async (s) => {
    const r = await s.q.selectFrom('acme_orders').select('id')
      .where((eb) => eb.or([eb.and([eb('state', '=', 'queued'), eb('next_attempt_at', '<=', at)]), eb.and([eb('state', '=', 'working'), eb('updated_at', '<', at - staleSeconds)])]))
      .where(workableBy(relay))
      .orderBy('next_attempt_at').orderBy('created_at').orderBy('seq').limit(1).executeTakeFirst();
    if (!r) return undefined;
    await s.q.updateTable('acme_orders').set((eb) => ({ state: 'working', attempts: eb('attempts', '+', 1), updated_at: at, worked_by: relay })).where('id', '=', r.id).execute();
    return getOrder(s, r.id);
  });
}

/** The soonest time an order this relay may work is due, if any is queued. */
export async function nextDueAt(s: Store, relay: string): Promise<number | undefined> {
  const r = await s.q.selectFrom('acme_orders').select((eb) => eb.fn.min('next_attempt_at').as('t')).where('state', '=', 'queued').where(workableBy(relay)).executeTakeFirst();
  return r?.t === null || r?.t === undefined ? undefined : Number(r.t);
}

/**
 * Which attempt at an order a worker holds: the relay that took it and its attempt number. Every write a
 * worker makes to its order is fenced on it, so that a worker taken for dead (its order taken over after
 * ORDER_STALE_SECONDS untouched) that comes back changes nothing of its successor's.
 */
export interface OrderAttempt { relay: string; attempts: number }

const heldBy = (id: string, a: OrderAttempt) => (eb: ExpressionBuilder<Schema, 'acme_orders'>) =>
  eb.and([eb('id', '=', id), eb('state', '=', 'working'), eb('worked_by', '=', a.relay), eb('attempts', '=', a.attempts)]);

/**
 * The worker's sign of life on an order it works: returns false when the order is no longer this
 * attempt's (finished, cancelled, removed, or taken over after it looked dead).
 */
export async function keepWorking(s: Store, id: string, a: OrderAttempt, at = now()): Promise<boolean> {
  const r = await s.q.updateTable('acme_orders').set({ updated_at: at }).where(heldBy(id, a)).executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

/** Returns false when the order was not this attempt's any more (nothing changed). */
export async function finishOrder(s: Store, id: string, certSerial: string, a: OrderAttempt): Promise<boolean> {
  const r = await s.q.updateTable('acme_orders').set({ state: 'valid', cert_serial: certSerial, last_error: null, updated_at: now() }).where(heldBy(id, a)).executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

/** Back to the queue with the reason and when to try again, or given up for good (only while this attempt holds it). */
export async function deferOrder(s: Store, id: string, error: string, nextAttemptAt: number | null, a: OrderAttempt): Promise<void> {
  const set = nextAttemptAt === null
    ? { state: 'failed' as const, last_error: error, updated_at: now() }
    : { state: 'queued' as const, last_error: error, next_attempt_at: nextAttemptAt, updated_at: now() };
  await s.q.updateTable('acme_orders').set(set).where(heldBy(id, a)).execute();
}

/** Still this attempt's to work on (not cancelled by a newer CSR, not removed with its subdomain, not taken over)? */
export async function orderStillWanted(s: Store, id: string, a: OrderAttempt): Promise<boolean> {
  return (await s.q.selectFrom('acme_orders').select('id').where(heldBy(id, a)).executeTakeFirst()) !== undefined;
}

export async function listOrders(s: Store, limit = 200): Promise<AcmeOrder[]> {
  return (await s.q.selectFrom('acme_orders').selectAll().orderBy(NEWEST[0]).orderBy(NEWEST[1]).limit(limit).execute()).map(toOrder);
}

// --- accounts: one per relay key and CA ---------------------------------------------------------------

export interface AcmeAccount { directoryUrl: string; keySha256: string; url: string; relay: string; email: string; createdAt: number }

const toAccount = (r: Selectable<AcmeAccountsTable>): AcmeAccount => ({
  directoryUrl: r.directory_url, keySha256: r.key_sha256, url: r.url, relay: r.relay, email: r.email, createdAt: r.created_at,
});

/** The account URL the CA gave this key (by the sha256 of its public key), if it was registered. */
export async function accountOf(s: Store, directoryUrl: string, keySha256: string): Promise<AcmeAccount | undefined> {
  const r = await s.q.selectFrom('acme_accounts').selectAll().where('directory_url', '=', directoryUrl).where('key_sha256', '=', keySha256).executeTakeFirst();
  return r ? toAccount(r) : undefined;
}

export async function recordAccount(s: Store, a: Omit<AcmeAccount, 'createdAt'>): Promise<void> {
  await s.q.insertInto('acme_accounts').values({ directory_url: a.directoryUrl, key_sha256: a.keySha256, url: a.url, relay: a.relay, email: a.email, created_at: now() })
    .onConflict((oc) => oc.columns(['directory_url', 'key_sha256']).doUpdateSet({ url: a.url, relay: a.relay, email: a.email })).execute();
}

export async function listAccounts(s: Store): Promise<AcmeAccount[]> {
  return (await s.q.selectFrom('acme_accounts').selectAll().orderBy('relay').orderBy('directory_url').execute()).map(toAccount);
}

// --- dns-01 challenges: the TXT records the zone renders while an order needs them --------------------

export async function addChallenges(s: Store, orderId: string, records: { owner: string; value: string }[]): Promise<void> {
  if (records.length === 0) return;
  await s.q.insertInto('acme_challenges').values(records.map((r) => ({ order_id: orderId, owner: r.owner, value: r.value })))
    .onConflict((oc) => oc.doNothing()).execute();
}

/**
 * Takes an order's TXT records out: all of them, or only `only` — the records one attempt published, so
 * that an attempt taken over withdraws its own and never its successor's.
 */
export async function removeChallenges(s: Store, orderId: string, only?: readonly { owner: string; value: string }[]): Promise<number> {
  if (only !== undefined && only.length === 0) return 0;
  let q = s.q.deleteFrom('acme_challenges').where('order_id', '=', orderId);
  if (only !== undefined) q = q.where((eb) => eb.or(only.map((r) => eb.and([eb('owner', '=', r.owner), eb('value', '=', r.value)]))));
  return Number((await q.executeTakeFirst()).numDeletedRows);
}

/** Every TXT record the zone must hold now. */
export async function allChallenges(s: Store): Promise<{ owner: string; value: string }[]> {
  return s.q.selectFrom('acme_challenges').select(['owner', 'value']).distinct().orderBy('owner').orderBy('value').execute();
}

/** Challenges of orders that are no longer being worked on (their process died): to be cleaned up. */
/**
 * Takes out the TXT records of orders nobody works any more (their worker died, or they ended), in one
 * statement: an order another relay takes and publishes for meanwhile is 'working' again and keeps its.
 */
export async function removeOrphanChallenges(s: Store): Promise<number> {
  const r = await s.q.deleteFrom('acme_challenges')
    .where('order_id', 'in', (eb) => eb.selectFrom('acme_orders').select('id').where('state', '<>', 'working')).executeTakeFirst();
  return Number(r.numDeletedRows);
}

// --- failed validations per name ----------------------------------------------------------------------

export async function recordFailure(store: Store, names: string[], at = now()): Promise<void> {
  await writeTx(store, async (s) => {
    if (names.length > 0) await s.q.insertInto('acme_failures').values(names.map((name) => ({ name, at }))).execute();
    await s.q.deleteFrom('acme_failures').where('at', '<', at - 86400).execute();
  });
}

/** How many validations failed for each name in the last `windowSeconds` (the most of any one name). */
export async function recentFailures(s: Store, names: string[], windowSeconds = 3600, at = now()): Promise<number> {
  if (names.length === 0) return 0;
  const rows = await s.q.selectFrom('acme_failures').select(['name', sql<number>`count(*)`.as('n')]).where(inList(s, 'name', names))
    .where('at', '>', at - windowSeconds).groupBy('name').execute();
  return Math.max(0, ...rows.map((r) => Number(r.n)));
}
