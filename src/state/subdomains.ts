/** Subdomains and their ports: allocation of names and ports, removal, expiry, keys and routes (the reads are in subdomain-reads.ts). */
import { ConflictError, InputError, NotFoundError, QuotaError } from '../util/errors.js';
import { generateName, validateName } from '../names/names.js';
import { hashSecret, newId, newSecret } from '../util/secrets.js';
import { sql } from 'kysely';
import { writeTx, type Store } from './store.js';
import { now, PROTOCOLS, type Protocol, type SshKeyRecord, type SubdomainRecord } from './types.js';
import { getSubdomainById, load, selectRows } from './subdomain-reads.js';

export { eachRenderPage, eachSubdomainPage, findSubdomain, getSubdomainById, LIST_PAGE, listSubdomains, renderSnapshot, renderSnapshotOf, requireSubdomain, subdomainPage } from './subdomain-reads.js';


export interface PortRange { first: number; last: number }

export interface CreateSubdomainInput {
  /** Requested name (validated); otherwise a readable random one. */
  name?: string | undefined;
  protocols: readonly string[];
  expiresAt: number | null;
  passthrough?: boolean;
  tokenId?: string | null;
  /** Issue a single-use claim token (operator-made subdomains). */
  withClaim?: boolean;
  /** Issue the per-subdomain secret now (subdomains a pod creates with a token). */
  withSecret?: boolean;
}

export interface CreateSubdomainContext {
  domain: string;
  range: PortRange;
  maxPorts: number;
  reserved: readonly string[];
  /** How many address slots every relay has (default 1: ports unique fleet-wide). */
  slots?: number;
}

export interface CreatedSubdomain {
  record: SubdomainRecord;
  claimToken?: string;
  secret?: string;
}

export function parseProtocols(list: readonly string[], maxPorts: number): Protocol[] {
  if (list.length === 0) {
    throw new InputError('no_ports', 'No services were asked for.', { hint: 'Name at least one, e.g. --ports http,https (allowed: http, https, tcp).' });
  }
  const out: Protocol[] = [];
  for (const raw of list) {
    const p = String(raw).trim().toLowerCase();
    if (!(PROTOCOLS as readonly string[]).includes(p)) {
      throw new InputError('bad_protocol', `${JSON.stringify(String(raw).slice(0, 20))} is not a service type pipe2me publishes.`, { hint: 'Use http, https or tcp, comma-separated, e.g. --ports http,https,tcp.' });
    }
    out.push(p as Protocol);
  }
  if (out.length > maxPorts) throw tooManyPorts(out.length, maxPorts);
  return out;
}

export function tooManyPorts(asked: number, maxPorts: number): QuotaError {
  return new QuotaError('too_many_ports', `${asked} services were asked for; at most ${maxPorts} are allowed per subdomain.`, { hint: 'Ask for fewer services.' });
}

/**
 * The address slot a new subdomain goes to: the one with the most free ports (the lowest on a tie), so
 * that slots fill evenly. Counted over the (slot, port) key, one range per slot.
 */
async function pickSlot(s: Store, slots: number): Promise<number> {
  if (slots <= 1) return 0;
  const rows = await s.q.selectFrom('ports').select(['slot']).select((eb) => eb.fn.countAll().as('n')).groupBy('slot').execute();
  const used = new Map(rows.map((r) => [Number(r.slot), Number(r.n)]));
  let best = 0;
  for (let i = 1; i < slots; i++) if ((used.get(i) ?? 0) < (used.get(best) ?? 0)) best = i;
  return best;
}

/**
 * The lowest free port of the slot from `from` on (null: none up to `last`). The engine walks the
 * (slot, port) key in order and stops at the first gap — nothing of the slot's ports is read out, which
 * at 50,000 ports in a slot is what made a create cost more than the fleet should.
 */
async function firstFreePort(s: Store, slot: number, from: number, last: number): Promise<number | null> {
  if (from > last) return null;
  const held = await s.q.selectFrom('ports').select('port').where('slot', '=', slot).where('port', '=', from).executeTakeFirst();
  if (!held) return from;
  const run = s.q.selectFrom('ports').select(['port', sql<number | null>`LEAD(port) OVER (ORDER BY port)`.as('next')])
    .where('slot', '=', slot).where('port', '>=', from).where('port', '<=', last);
  const gap = await s.q.selectFrom(run.as('r')).select('r.port')
    .where((eb) => eb.or([eb('r.next', 'is', null), eb('r.next', '>', sql<number>`r.port + 1`)]))
    .orderBy('r.port').limit(1).executeTakeFirst();
  const free = gap ? Number(gap.port) + 1 : null;
  return free !== null && free <= last ? free : null;
}

/** The lowest free ports of the slot's range, in order. */
async function allocatePorts(s: Store, range: PortRange, count: number, slot: number): Promise<number[]> {
  const out: number[] = [];
  for (let from = range.first; out.length < count;) {
    const p = await firstFreePort(s, slot, from, range.last);
    if (p === null) break;
    out.push(p);
    from = p + 1;
  }
  if (out.length < count) {
    throw new ConflictError('ports_exhausted', `The public port range ${range.first}-${range.last} has only ${out.length} free port(s)${slot ? ` in address slot ${slot}` : ''}; ${count} needed.`, {
      hint: 'Widen ports.first/ports.last in pipe2me.yml, give every relay another address (a slot), or remove unused subdomains.',
    });
  }
  return out;
}

export async function createSubdomain(store: Store, input: CreateSubdomainInput, ctx: CreateSubdomainContext): Promise<CreatedSubdomain> {
  const protocols = parseProtocols(input.protocols, ctx.maxPorts);
  const requested = input.name === undefined ? undefined : validateName(input.name, ctx.reserved);
  const reserved = new Set(ctx.reserved);
  return writeTx(store, async (s) => {
    const taken = async (n: string) => (await s.q.selectFrom('subdomains').select('id').where('name', '=', n).executeTakeFirst()) !== undefined;
    let name: string;
    if (requested !== undefined) {
      if (await taken(requested)) throw new ConflictError('name_taken', `The name ${requested} is already in use.`, { hint: 'Choose another name, or leave --name out to get a generated one.' });
      name = requested;
    } else {
      let attempt = 0;
      do {
        if (++attempt > 100) throw new ConflictError('names_exhausted', 'Could not find a free generated name after 100 tries.', { hint: 'Give a name with --name.' });
        name = generateName();
      } while (reserved.has(name) || (await taken(name)));
    }
    const id = newId();
    const slot = await pickSlot(s, ctx.slots ?? 1);
    const claimToken = input.withClaim ? newSecret('p2mc') : undefined;
    const secret = input.withSecret ? newSecret('p2ms') : undefined;
    await s.q.insertInto('subdomains').values({
      id, name, fqdn: `${name}.${ctx.domain}`, status: 'active', created_at: now(), expires_at: input.expiresAt, passthrough: input.passthrough ? 1 : 0,
      token_id: input.tokenId ?? null, secret_hash: secret ? hashSecret(secret) : null, claim_hash: claimToken ? hashSecret(claimToken) : null, slot,
    }).execute();
    const ports = await allocatePorts(s, ctx.range, protocols.length, slot);
    await s.q.insertInto('ports').values(protocols.map((protocol, i) => ({ slot, port: ports[i]!, subdomain_id: id, protocol, position: i }))).execute();
    const record = (await getSubdomainById(s, id))!;
    return { record, ...(claimToken ? { claimToken } : {}), ...(secret ? { secret } : {}) };
  });
}

/**
 * Deletes a subdomain; its ports, key, mappings and probe history go with it (ON DELETE CASCADE). What
 * became of it is kept for 90 days, so that its pod, asking with its secret, is told so and when.
 */
export async function deleteSubdomain(store: Store, id: string, reason = 'removed by the operator'): Promise<void> {
  await writeTx(store, async (s) => {
    const t = now();
    const row = await s.q.selectFrom('subdomains').select(['id', 'fqdn', 'secret_hash']).where('id', '=', id).executeTakeFirst();
    if (row) {
      await s.q.insertInto('removed_subdomains').values({ id: row.id, fqdn: row.fqdn, secret_hash: row.secret_hash, removed_at: t, reason })
        .onConflict((oc) => oc.column('id').doUpdateSet({ fqdn: row.fqdn, secret_hash: row.secret_hash, removed_at: t, reason })).execute();
    }
    await s.q.deleteFrom('subdomains').where('id', '=', id).execute();
    await s.q.deleteFrom('removed_subdomains').where('removed_at', '<', t - 90 * 86400).execute();
  });
}

/** A removed subdomain, if this id and its secret were one (the id alone tells nothing). */
export async function removedSubdomain(s: Store, id: string, secret: string): Promise<{ fqdn: string; removedAt: number; reason: string } | undefined> {
  const r = await s.q.selectFrom('removed_subdomains').select(['fqdn', 'removed_at', 'reason']).where('id', '=', id).where('secret_hash', '=', hashSecret(secret)).executeTakeFirst();
  return r ? { fqdn: r.fqdn, removedAt: r.removed_at, reason: r.reason } : undefined;
}

/** Marks every active subdomain whose time is up as expired and frees its ports. Returns them. */
export async function expireDue(store: Store, at = now()): Promise<SubdomainRecord[]> {
  return writeTx(store, async (s) => {
    const rows = await selectRows(s).where('status', '=', 'active').where('expires_at', 'is not', null).where('expires_at', '<=', at).execute();
    const records = await load(s, rows);
    for (const r of rows) {
      await s.q.updateTable('subdomains').set({ status: 'expired', route: 'server', direct_ipv4: null, route6: 'server', direct_ipv6: null }).where('id', '=', r.id).execute();
      await s.q.deleteFrom('ports').where('subdomain_id', '=', r.id).execute();
      await s.q.deleteFrom('mappings').where('subdomain_id', '=', r.id).execute();
    }
    return records;
  });
}

export async function setExpiry(s: Store, id: string, expiresAt: number | null): Promise<void> {
  await s.q.updateTable('subdomains').set({ expires_at: expiresAt }).where('id', '=', id).execute();
}

export async function setSshKey(store: Store, id: string, key: Omit<SshKeyRecord, 'addedAt'>): Promise<void> {
  await writeTx(store, async (s) => {
    const other = await s.q.selectFrom('ssh_keys').select('subdomain_id').where('fingerprint', '=', key.fingerprint).where('subdomain_id', '<>', id).executeTakeFirst();
    if (other) {
      // One key, one pod: the key index files a line under the key's fingerprint, so a second pod's line would replace the first's.
      throw new ConflictError('key_in_use', 'This ssh key is already registered for another subdomain.', { hint: 'Every pod needs its own key pair: create a new one (pipe2me setup does).' });
    }
    const row = { algorithm: key.algorithm, public_key: key.publicKey, fingerprint: key.fingerprint, bits: key.bits, added_at: now() };
    await s.q.insertInto('ssh_keys').values({ subdomain_id: id, ...row }).onConflict((oc) => oc.column('subdomain_id').doUpdateSet(row)).execute();
  });
}

/** Turns a pending claim into the per-subdomain secret. Returns the new secret, or undefined if the claim token is unknown/used. */
export async function claimSubdomain(store: Store, claimToken: string): Promise<{ record: SubdomainRecord; secret: string } | undefined> {
  return writeTx(store, async (s) => {
    const row = await s.q.selectFrom('subdomains').select('id').where('claim_hash', '=', hashSecret(claimToken)).where('status', '=', 'active').executeTakeFirst();
    if (!row) return undefined;
    const secret = newSecret('p2ms');
    await s.q.updateTable('subdomains').set({ claim_hash: null, secret_hash: hashSecret(secret) }).where('id', '=', row.id).execute();
    return { record: (await getSubdomainById(s, row.id))!, secret };
  });
}

/** The subdomain a per-subdomain secret belongs to, if it matches this id. */
export async function authenticateSubdomain(s: Store, id: string, secret: string): Promise<SubdomainRecord | undefined> {
  const row = await selectRows(s).where('id', '=', id).where('secret_hash', '=', hashSecret(secret)).executeTakeFirst();
  return row ? (await load(s, [row]))[0] : undefined;
}

/** Where the pod's session came from, kept per family (the IPv4 one is what the probe tests for A). */
export async function setObserved(s: Store, id: string, family: 4 | 6, address: string, at: number): Promise<void> {
  const set = family === 4 ? { observed_ipv4: address, observed_at: at } : { observed_ipv6: address, observed6_at: at };
  await s.q.updateTable('subdomains').set(set).where('id', '=', id).execute();
}

export interface RouteFields {
  route: 'server' | 'direct';
  /** The verified address DNS points at while direct (the router's IPv4, the pod's own IPv6). */
  direct: string | null;
  reason: string;
  streak: number;
  changedAt?: number;
  fallbackAt?: number;
}

/**
 * One family's route decision; the other family's columns are never touched. The route and its address
 * are written only when they change: they are what the render journal follows (its trigger fires on a
 * column named in SET), so a probe run that confirms every pod's route journals none of them.
 */
export async function setRoute(store: Store, id: string, family: 4 | 6, f: RouteFields): Promise<void> {
  await writeTx(store, async (s) => {
    const notes = family === 4
      ? { route_reason: f.reason, probe_streak: f.streak,
          ...(f.changedAt !== undefined ? { route_changed_at: f.changedAt } : {}), ...(f.fallbackAt !== undefined ? { last_fallback_at: f.fallbackAt } : {}) }
      : { route6_reason: f.reason, probe6_streak: f.streak,
          ...(f.changedAt !== undefined ? { route6_changed_at: f.changedAt } : {}), ...(f.fallbackAt !== undefined ? { last_fallback6_at: f.fallbackAt } : {}) };
    await s.q.updateTable('subdomains').set(notes).where('id', '=', id).execute();
    const [route, direct] = family === 4 ? (['route', 'direct_ipv4'] as const) : (['route6', 'direct_ipv6'] as const);
    await s.q.updateTable('subdomains').set({ [route]: f.route, [direct]: f.direct }).where('id', '=', id)
      .where((eb) => eb.or([eb(route, '<>', f.route), f.direct === null ? eb(direct, 'is not', null) : eb.or([eb(direct, 'is', null), eb(direct, '<>', f.direct)])]))
      .execute();
  });
}
