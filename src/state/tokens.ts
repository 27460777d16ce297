/**
 * Tokens are quota classes a pod presents to create its own subdomain: how many ports a subdomain may
 * have, its lifespan, whether it may be extended, whether the token works once. Checking and using a
 * token happen in the same write transaction as the allocation, so a limit cannot be raced past.
 */
import { DeniedError, NotFoundError, QuotaError } from '../util/errors.js';
import { hashSecret, newId, newSecret } from '../util/secrets.js';
import { sql } from 'kysely';
import { writeTx, type Store } from './store.js';
import { tooManyPorts } from './subdomains.js';
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
  max_subdomains: number | null;
  max_total_ports: number | null;
  live_subdomains?: number;
  live_ports?: number;
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
    maxSubdomains: r.max_subdomains,
    maxTotalPorts: r.max_total_ports,
    liveSubdomains: r.live_subdomains ?? 0,
    livePorts: r.live_ports ?? 0,
  };
}

/** Every token with what its live subdomains use now (subdomains that expired or were removed give their share back). */
function withUse(s: Store) {
  return s.q.selectFrom('tokens as t').selectAll('t').select([
    sql<number>`(SELECT COUNT(*) FROM subdomains s WHERE s.token_id = t.id AND s.status = 'active')`.as('live_subdomains'),
    sql<number>`(SELECT COUNT(*) FROM ports p JOIN subdomains s ON s.id = p.subdomain_id WHERE s.token_id = t.id AND s.status = 'active')`.as('live_ports'),
  ]);
}

export interface NewToken {
  label: string;
  maxPorts: number;
  lifespanSeconds: number | null;
  extendable: boolean;
  singleUse: boolean;
  /** How many live subdomains the token may have made at once (null: unbounded). */
  maxSubdomains: number | null;
  /** How many public ports those subdomains may hold together (null: unbounded). */
  maxTotalPorts: number | null;
}

export async function createToken(s: Store, t: NewToken): Promise<{ record: TokenRecord; secret: string }> {
  const secret = newSecret('p2mt');
  const id = newId(8);
  await s.q.insertInto('tokens').values({
    id, secret_hash: hashSecret(secret), label: t.label, max_ports: t.maxPorts, lifespan_seconds: t.lifespanSeconds, extendable: t.extendable ? 1 : 0,
    single_use: t.singleUse ? 1 : 0, created_at: now(), max_subdomains: t.maxSubdomains, max_total_ports: t.maxTotalPorts,
  }).execute();
  return { record: (await getToken(s, id))!, secret };
}

export async function listTokens(s: Store): Promise<TokenRecord[]> {
  return (await withUse(s).orderBy('t.created_at').orderBy('t.id').execute()).map(toRecord);
}

export async function getToken(s: Store, id: string): Promise<TokenRecord | undefined> {
  const r = await withUse(s).where('t.id', '=', id).executeTakeFirst();
  return r ? toRecord(r) : undefined;
}

export async function revokeToken(store: Store, id: string): Promise<TokenRecord> {
  return writeTx(store, async (s) => {
    const t = await getToken(s, id);
    if (!t) throw new NotFoundError('no_such_token', `No token with id ${JSON.stringify(id.slice(0, 40))}.`, { hint: 'See the ids with `pipe2me-ctl token list`.' });
    if (t.revokedAt === null) await s.q.updateTable('tokens').set({ revoked_at: now() }).where('id', '=', id).execute();
    return (await getToken(s, id))!;
  });
}

/**
 * Finds a usable token by its secret. Must be called inside the write transaction that also uses it.
 * The same message for unknown and revoked tokens: a caller learns nothing about which tokens exist.
 */
export async function tokenForUse(s: Store, secret: string): Promise<TokenRecord> {
  const r = await withUse(s).where('t.secret_hash', '=', hashSecret(secret)).executeTakeFirst();
  const denied = () => new DeniedError('token_invalid', 'The token is not valid: it is unknown, revoked or already used.', {
    httpStatus: 401,
    hint: 'Ask the server operator for a new token (pipe2me-ctl token create).',
  });
  if (!r || r.revoked_at !== null) throw denied();
  if (r.single_use === 1 && r.uses > 0) throw denied();
  return toRecord(r);
}

export async function recordTokenUse(s: Store, id: string): Promise<void> {
  await s.q.updateTable('tokens').set((eb) => ({ uses: eb('uses', '+', 1) })).where('id', '=', id).execute();
}

/**
 * Refuses a new subdomain of `ports` ports past the token's bounds. Called inside the allocating write
 * transaction, after tokenForUse: the counts it reads cannot change before the allocation commits.
 */
export function assertTokenQuota(t: TokenRecord, ports: number): void {
  // The bound of one subdomain first: it says what to change in the request itself.
  if (ports > t.maxPorts) throw tooManyPorts(ports, t.maxPorts);
  if (t.maxSubdomains !== null && t.liveSubdomains >= t.maxSubdomains) {
    throw new QuotaError('token_subdomains_exhausted', `This token has made ${t.liveSubdomains} live subdomain(s), its limit.`, {
      httpStatus: 403, hint: 'Remove a subdomain made with it (pipe2me destroy on that pod), or ask the operator for another token.',
    });
  }
  if (t.maxTotalPorts !== null && t.livePorts + ports > t.maxTotalPorts) {
    throw new QuotaError('token_ports_exhausted', `This token's subdomains hold ${t.livePorts} of its ${t.maxTotalPorts} ports; ${ports} more were asked for.`, {
      httpStatus: 403, hint: 'Ask for fewer services, remove a subdomain made with it, or ask the operator for another token.',
    });
  }
}

export async function withToken<T>(store: Store, secret: string, ports: number, fn: (t: TokenRecord, s: Store) => Promise<T>): Promise<T> {
  return writeTx(store, async (s) => {
    const t = await tokenForUse(s, secret);
    assertTokenQuota(t, ports);
    const out = await fn(t, s);
    await recordTokenUse(s, t.id);
    return out;
  });
}
