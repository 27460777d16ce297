/**
 * ACME orders as the state store keeps them: one row per certificate asked of the ACME CA (a pod's CSR,
 * or the server's own names), the dns-01 TXT records it needs published, and the failed validations
 * per name (the CA allows only a few per hour: they are counted so that none is spent blindly).
 */
import { randomBytes } from 'node:crypto';
import { writeTx, type Db } from './db.js';
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
}

interface Row {
  id: string;
  subdomain_id: string | null;
  purpose: 'pod' | 'server';
  names: string;
  csr_pem: string;
  key_sha256: string;
  state: OrderState;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
  cert_serial: string | null;
  created_at: number;
  updated_at: number;
}

const toOrder = (r: Row): AcmeOrder => ({
  id: r.id, subdomainId: r.subdomain_id, purpose: r.purpose, names: JSON.parse(r.names) as string[], csrPem: r.csr_pem, keySha256: r.key_sha256,
  state: r.state, attempts: r.attempts, nextAttemptAt: r.next_attempt_at, lastError: r.last_error, certSerial: r.cert_serial,
  createdAt: r.created_at, updatedAt: r.updated_at,
});

/**
 * Queues an order for these names and CSR. An open order for the same subdomain (or, for the server, the
 * same names) is replaced: only the newest CSR matters, and two orders would spend the CA's limits twice.
 */
export function queueOrder(db: Db, o: { subdomainId: string | null; purpose: 'pod' | 'server'; names: string[]; csrPem: string; keySha256: string }): AcmeOrder {
  return writeTx(db, () => {
    const t = now();
    const names = JSON.stringify([...o.names].sort());
    if (o.subdomainId) db.prepare("UPDATE acme_orders SET state = 'cancelled', updated_at = ? WHERE subdomain_id = ? AND state IN ('queued', 'working')").run(t, o.subdomainId);
    else db.prepare("UPDATE acme_orders SET state = 'cancelled', updated_at = ? WHERE subdomain_id IS NULL AND names = ? AND state IN ('queued', 'working')").run(t, names);
    const id = randomBytes(8).toString('hex');
    db.prepare(`INSERT INTO acme_orders (id, subdomain_id, purpose, names, csr_pem, key_sha256, state, next_attempt_at, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)`).run(id, o.subdomainId, o.purpose, names, o.csrPem, o.keySha256, t, t, t);
    return getOrder(db, id)!;
  });
}

export function getOrder(db: Db, id: string): AcmeOrder | undefined {
  const r = db.prepare('SELECT * FROM acme_orders WHERE id = ?').get(id) as Row | undefined;
  return r ? toOrder(r) : undefined;
}

/** The newest order of a subdomain (any state), for its status. */
export function latestOrderOf(db: Db, subdomainId: string): AcmeOrder | undefined {
  const r = db.prepare('SELECT * FROM acme_orders WHERE subdomain_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 1').get(subdomainId) as Row | undefined;
  return r ? toOrder(r) : undefined;
}

/** The newest order for the server's own names. */
export function latestServerOrder(db: Db, names: string[]): AcmeOrder | undefined {
  const r = db.prepare('SELECT * FROM acme_orders WHERE subdomain_id IS NULL AND names = ? ORDER BY created_at DESC, rowid DESC LIMIT 1').get(JSON.stringify([...names].sort())) as Row | undefined;
  return r ? toOrder(r) : undefined;
}

/**
 * Takes the next due order for working on it (queued, its time has come), or one left 'working' by a
 * process that died (untouched for `staleSeconds`). Atomic: two workers never take the same order.
 */
export function takeDueOrder(db: Db, at = now(), staleSeconds = 600): AcmeOrder | undefined {
  return writeTx(db, () => {
    const r = db.prepare(`SELECT * FROM acme_orders WHERE (state = 'queued' AND next_attempt_at <= ?) OR (state = 'working' AND updated_at < ?)
                          ORDER BY next_attempt_at, created_at LIMIT 1`).get(at, at - staleSeconds) as Row | undefined;
    if (!r) return undefined;
    db.prepare("UPDATE acme_orders SET state = 'working', attempts = attempts + 1, updated_at = ? WHERE id = ?").run(at, r.id);
    return getOrder(db, r.id);
  });
}

/** The soonest time an order is due, if any is queued. */
export function nextDueAt(db: Db): number | undefined {
  const t = db.prepare("SELECT MIN(next_attempt_at) FROM acme_orders WHERE state = 'queued'").pluck().get() as number | null;
  return t ?? undefined;
}

export function finishOrder(db: Db, id: string, certSerial: string): void {
  db.prepare("UPDATE acme_orders SET state = 'valid', cert_serial = ?, last_error = NULL, updated_at = ? WHERE id = ? AND state = 'working'").run(certSerial, now(), id);
}

/** Back to the queue with the reason and when to try again, or given up for good. */
export function deferOrder(db: Db, id: string, error: string, nextAttemptAt: number | null): void {
  if (nextAttemptAt === null) db.prepare("UPDATE acme_orders SET state = 'failed', last_error = ?, updated_at = ? WHERE id = ? AND state = 'working'").run(error, now(), id);
  else db.prepare("UPDATE acme_orders SET state = 'queued', last_error = ?, next_attempt_at = ?, updated_at = ? WHERE id = ? AND state = 'working'").run(error, nextAttemptAt, now(), id);
}

/** Still ours to work on (not cancelled by a newer CSR, not removed with its subdomain)? */
export function orderStillWanted(db: Db, id: string): boolean {
  return db.prepare("SELECT 1 FROM acme_orders WHERE id = ? AND state = 'working'").pluck().get(id) !== undefined;
}

export function listOrders(db: Db, limit = 200): AcmeOrder[] {
  return (db.prepare('SELECT * FROM acme_orders ORDER BY created_at DESC, rowid DESC LIMIT ?').all(limit) as Row[]).map(toOrder);
}

// --- dns-01 challenges: the TXT records the zone renders while an order needs them --------------------

export function addChallenges(db: Db, orderId: string, records: { owner: string; value: string }[]): void {
  writeTx(db, () => {
    const ins = db.prepare('INSERT OR IGNORE INTO acme_challenges (order_id, owner, value) VALUES (?, ?, ?)');
    for (const r of records) ins.run(orderId, r.owner, r.value);
  });
}

export function removeChallenges(db: Db, orderId: string): number {
  return db.prepare('DELETE FROM acme_challenges WHERE order_id = ?').run(orderId).changes;
}

/** Every TXT record the zone must hold now. */
export function allChallenges(db: Db): { owner: string; value: string }[] {
  return db.prepare('SELECT DISTINCT owner, value FROM acme_challenges ORDER BY owner, value').all() as { owner: string; value: string }[];
}

/** Challenges of orders that are no longer being worked on (their process died): to be cleaned up. */
export function orphanChallenges(db: Db): string[] {
  return db.prepare("SELECT DISTINCT c.order_id FROM acme_challenges c JOIN acme_orders o ON o.id = c.order_id WHERE o.state <> 'working'").pluck().all() as string[];
}

// --- failed validations per name ----------------------------------------------------------------------

export function recordFailure(db: Db, names: string[], at = now()): void {
  writeTx(db, () => {
    const ins = db.prepare('INSERT INTO acme_failures (name, at) VALUES (?, ?)');
    for (const n of names) ins.run(n, at);
    db.prepare('DELETE FROM acme_failures WHERE at < ?').run(at - 86400);
  });
}

/** How many validations failed for each name in the last `windowSeconds`. */
export function recentFailures(db: Db, names: string[], windowSeconds = 3600, at = now()): number {
  if (names.length === 0) return 0;
  const q = db.prepare('SELECT COUNT(*) FROM acme_failures WHERE name = ? AND at > ?').pluck();
  return Math.max(...names.map((n) => q.get(n, at - windowSeconds) as number));
}
