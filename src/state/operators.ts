/** Operator credentials: who may see the status page. Only a hash of each secret is kept. */
import { ConflictError, NotFoundError } from '../util/errors.js';
import { hashSecret, newSecret } from '../util/secrets.js';
import type { Db } from './db.js';
import { now } from './types.js';

export interface OperatorRecord { name: string; createdAt: number; lastUsed: number | null }

export function addOperator(db: Db, name: string): { record: OperatorRecord; secret: string } {
  if (db.prepare('SELECT 1 FROM operators WHERE name = ?').get(name)) {
    throw new ConflictError('operator_exists', `An operator named ${name} exists already.`, { hint: `Remove it first (pipe2me-ctl operator remove ${name}) to give it a new secret.` });
  }
  const secret = newSecret('p2mo');
  const at = now();
  db.prepare('INSERT INTO operators (name, secret_hash, created_at) VALUES (?, ?, ?)').run(name, hashSecret(secret), at);
  return { record: { name, createdAt: at, lastUsed: null }, secret };
}

export function removeOperator(db: Db, name: string): void {
  if (db.prepare('DELETE FROM operators WHERE name = ?').run(name).changes === 0) {
    throw new NotFoundError('operator_not_found', `No operator named ${name}.`, { hint: 'pipe2me-ctl operator list shows them.' });
  }
}

export function listOperators(db: Db): OperatorRecord[] {
  return (db.prepare('SELECT name, created_at, last_used FROM operators ORDER BY name').all() as { name: string; created_at: number; last_used: number | null }[])
    .map((r) => ({ name: r.name, createdAt: r.created_at, lastUsed: r.last_used }));
}

/** The operator a name and secret belong to (and the time of use noted), or undefined. */
export function authenticateOperator(db: Db, name: string, secret: string): OperatorRecord | undefined {
  const r = db.prepare('SELECT name, created_at, last_used FROM operators WHERE name = ? AND secret_hash = ?').get(name, hashSecret(secret)) as { name: string; created_at: number; last_used: number | null } | undefined;
  if (!r) return undefined;
  db.prepare('UPDATE operators SET last_used = ? WHERE name = ?').run(now(), name);
  return { name: r.name, createdAt: r.created_at, lastUsed: now() };
}
