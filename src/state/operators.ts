/** Operator credentials: who may see the status page. Only a hash of each secret is kept. */
import { ConflictError, NotFoundError } from '../util/errors.js';
import { hashSecret, newSecret } from '../util/secrets.js';
import type { Store } from './store.js';
import { now } from './types.js';

export interface OperatorRecord { name: string; createdAt: number; lastUsed: number | null }

export async function addOperator(s: Store, name: string): Promise<{ record: OperatorRecord; secret: string }> {
  if (await s.q.selectFrom('operators').select('name').where('name', '=', name).executeTakeFirst()) {
    throw new ConflictError('operator_exists', `An operator named ${name} exists already.`, { hint: `Remove it first (pipe2me-ctl operator remove ${name}) to give it a new secret.` });
  }
  const secret = newSecret('p2mo');
  const at = now();
  await s.q.insertInto('operators').values({ name, secret_hash: hashSecret(secret), created_at: at }).execute();
  return { record: { name, createdAt: at, lastUsed: null }, secret };
}

export async function removeOperator(s: Store, name: string): Promise<void> {
  const r = await s.q.deleteFrom('operators').where('name', '=', name).executeTakeFirst();
  if (Number(r.numDeletedRows) === 0) {
    throw new NotFoundError('operator_not_found', `No operator named ${name}.`, { hint: 'pipe2me-ctl operator list shows them.' });
  }
}

export async function listOperators(s: Store): Promise<OperatorRecord[]> {
  return (await s.q.selectFrom('operators').select(['name', 'created_at', 'last_used']).orderBy('name').execute())
    .map((r) => ({ name: r.name, createdAt: r.created_at, lastUsed: r.last_used }));
}

/** The operator a name and secret belong to (and the time of use noted), or undefined. */
export async function authenticateOperator(s: Store, name: string, secret: string): Promise<OperatorRecord | undefined> {
  const r = await s.q.selectFrom('operators').select(['name', 'created_at', 'last_used']).where('name', '=', name).where('secret_hash', '=', hashSecret(secret)).executeTakeFirst();
  if (!r) return undefined;
  const at = now();
  await s.q.updateTable('operators').set({ last_used: at }).where('name', '=', name).execute();
  return { name: r.name, createdAt: r.created_at, lastUsed: at };
}
