/**
 * Tokens are quota classes a pod presents to create its own subdomain: how many ports a subdomain may
 * have, its lifespan, whether it may be extended, whether the token works once. Checking and using a
 * token happen in the same write transaction as the allocation, so a limit cannot be raced past.
 */
import { DeniedError, NotFoundError } from '../util/errors.js';
import { hashSecret, newId, newSecret } from '../util/secrets.js';
import { writeTx, type Db } from './db.js';
import { now, type TokenRecord } from './types.js';

interface TokenRow {
  id: string;
  label: string;
  max_ports: number;
  lifespan_seconds: number | null;
  extendable: number;
  single_use: number;
  uses: number;
  created_at: number;
  revoked_at: number | null;
}

function toRecord(r: TokenRow): TokenRecord {
  return {
    id: r.id,
    label: r.label,
    maxPorts: r.max_ports,
    lifespanSeconds: r.lifespan_seconds,
    extendable: r.extendable === 1,
    singleUse: r.single_use === 1,
    uses: r.uses,
    createdAt: r.created_at,
    revokedAt: r.revoked_at,
  };
}

export interface NewToken {
  label: string;
  maxPorts: number;
  lifespanSeconds: number | null;
  extendable: boolean;
  singleUse: boolean;
}

export function createToken(db: Db, t: NewToken): { record: TokenRecord; secret: string } {
  const secret = newSecret('p2mt');
  const id = newId(8);
  db.prepare(`INSERT INTO tokens (id, secret_hash, label, max_ports, lifespan_seconds, extendable, single_use, created_at)
              VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
    .run(id, hashSecret(secret), t.label, t.maxPorts, t.lifespanSeconds, t.extendable ? 1 : 0, t.singleUse ? 1 : 0, now());
  return { record: getToken(db, id)!, secret };
}

export function listTokens(db: Db): TokenRecord[] {
  return (db.prepare('SELECT * FROM tokens ORDER BY created_at, id').all() as TokenRow[]).map(toRecord);
}

export function getToken(db: Db, id: string): TokenRecord | undefined {
  const r = db.prepare('SELECT * FROM tokens WHERE id = ?').get(id) as TokenRow | undefined;
  return r ? toRecord(r) : undefined;
}

export function revokeToken(db: Db, id: string): TokenRecord {
  return writeTx(db, () => {
    const t = getToken(db, id);
    if (!t) throw new NotFoundError('no_such_token', `No token with id ${JSON.stringify(id.slice(0, 40))}.`, { hint: 'See the ids with `pipe2me-ctl token list`.' });
    if (t.revokedAt === null) db.prepare('UPDATE tokens SET revoked_at = ? WHERE id = ?').run(now(), id);
    return getToken(db, id)!;
  });
}

/**
 * Finds a usable token by its secret. Must be called inside the write transaction that also uses it.
 * The same message for unknown and revoked tokens: a caller learns nothing about which tokens exist.
 */
export function tokenForUse(db: Db, secret: string): TokenRecord {
  const r = db.prepare('SELECT * FROM tokens WHERE secret_hash = ?').get(hashSecret(secret)) as TokenRow | undefined;
  const denied = () => new DeniedError('token_invalid', 'The token is not valid: it is unknown, revoked or already used.', {
    httpStatus: 401,
    hint: 'Ask the server operator for a new token (pipe2me-ctl token create).',
  });
  if (!r || r.revoked_at !== null) throw denied();
  if (r.single_use === 1 && r.uses > 0) throw denied();
  return toRecord(r);
}

export function recordTokenUse(db: Db, id: string): void {
  db.prepare('UPDATE tokens SET uses = uses + 1 WHERE id = ?').run(id);
}

export function withToken<T>(db: Db, secret: string, fn: (t: TokenRecord) => T): T {
  return writeTx(db, () => {
    const t = tokenForUse(db, secret);
    const out = fn(t);
    recordTokenUse(db, t.id);
    return out;
  });
}
