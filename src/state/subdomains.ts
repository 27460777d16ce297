/** Subdomains and their ports: allocation of names and ports, lookups, removal, expiry. */
import { ConflictError, InputError, NotFoundError, QuotaError } from '../util/errors.js';
import { generateName, validateLookupName, validateName } from '../names/names.js';
import { hashSecret, newId, newSecret } from '../util/secrets.js';
import { sql } from 'kysely';
import { containsText, countAll, flag, inList, writeTx, type Store } from './store.js';
import { now, PROTOCOLS, type PortRecord, type Protocol, type SshKeyRecord, type SubdomainRecord } from './types.js';
import type { RenderSubdomain } from '../render/types.js';

interface SubdomainRow {
  id: string;
  name: string;
  fqdn: string;
  status: 'active' | 'expired';
  created_at: number;
  expires_at: number | null;
  passthrough: number;
  token_id: string | null;
  claimed: number;
  claim_pending: number;
  route: 'server' | 'direct';
  route_changed_at: number | null;
  route_reason: string | null;
  direct_ipv4: string | null;
  probe_streak: number;
  last_fallback_at: number | null;
  observed_ipv4: string | null;
  observed_at: number | null;
  route6: 'server' | 'direct';
  route6_changed_at: number | null;
  route6_reason: string | null;
  direct_ipv6: string | null;
  probe6_streak: number;
  last_fallback6_at: number | null;
  observed_ipv6: string | null;
  observed6_at: number | null;
  reported_ipv6: string | null;
  relay: string | null;
  slot: number;
}

/** The columns a record needs; secrets' hashes are never read back, only whether they are set. */
const PLAIN_COLUMNS = ['id', 'name', 'fqdn', 'status', 'created_at', 'expires_at', 'passthrough', 'token_id', 'route', 'route_changed_at', 'route_reason',
  'direct_ipv4', 'probe_streak', 'last_fallback_at', 'observed_ipv4', 'observed_at',
  'route6', 'route6_changed_at', 'route6_reason', 'direct_ipv6', 'probe6_streak', 'last_fallback6_at', 'observed_ipv6', 'observed6_at', 'reported_ipv6', 'relay', 'slot'] as const;

/** Subdomain rows as records read them (a query to add WHERE/ORDER to). */
function selectRows(s: Store) {
  return s.q.selectFrom('subdomains').select(PLAIN_COLUMNS)
    .select([flag(sql`secret_hash IS NOT NULL`).as('claimed'), flag(sql`claim_hash IS NOT NULL`).as('claim_pending')]);
}

interface KeyRow { subdomain_id: string; algorithm: string; public_key: string; fingerprint: string; bits: number | null; added_at: number }

function toRecord(r: SubdomainRow, ports: PortRecord[], key: KeyRow | undefined): SubdomainRecord {
  return {
    id: r.id,
    name: r.name,
    fqdn: r.fqdn,
    status: r.status,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    passthrough: r.passthrough === 1,
    tokenId: r.token_id,
    route: r.route,
    routeChangedAt: r.route_changed_at,
    routeReason: r.route_reason,
    directIpv4: r.direct_ipv4,
    probeStreak: r.probe_streak,
    lastFallbackAt: r.last_fallback_at,
    observedIpv4: r.observed_ipv4,
    observedAt: r.observed_at,
    route6: r.route6,
    route6ChangedAt: r.route6_changed_at,
    route6Reason: r.route6_reason,
    directIpv6: r.direct_ipv6,
    probe6Streak: r.probe6_streak,
    lastFallback6At: r.last_fallback6_at,
    observedIpv6: r.observed_ipv6,
    observed6At: r.observed6_at,
    reportedIpv6: r.reported_ipv6,
    relay: r.relay,
    slot: Number(r.slot),
    claimPending: r.claim_pending === 1,
    claimed: r.claimed === 1,
    ports,
    key: key ? { algorithm: key.algorithm, publicKey: key.public_key, fingerprint: key.fingerprint, bits: key.bits, addedAt: key.added_at } : null,
  };
}

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

type PortRow = { subdomain_id: string; port: number; protocol: Protocol; position: number };

/** Port rows sorted by subdomain and position → ports per subdomain. */
function portsBySubdomain(rows: readonly PortRow[]): Map<string, PortRecord[]> {
  const byId = new Map<string, PortRecord[]>();
  let currentId = '';
  let current: PortRecord[] = [];
  for (const r of rows) {
    if (r.subdomain_id !== currentId) {
      currentId = r.subdomain_id;
      current = [];
      byId.set(currentId, current);
    }
    current.push({ port: r.port, protocol: r.protocol, position: r.position });
  }
  return byId;
}

const PORT_COLUMNS = ['subdomain_id', 'port', 'protocol', 'position'] as const;

/** Records with their ports and keys: for one or a few rows by id, for many the whole tables in one read each. */
async function load(s: Store, rows: SubdomainRow[]): Promise<SubdomainRecord[]> {
  if (rows.length === 0) return [];
  const ids = rows.map((r) => r.id);
  const few = rows.length <= 500;
  const portQuery = s.q.selectFrom('ports').select(PORT_COLUMNS);
  const portRows = await (few ? portQuery.where(inList(s, 'subdomain_id', ids)) : portQuery).orderBy('subdomain_id').orderBy('position').execute();
  const keyQuery = s.q.selectFrom('ssh_keys').selectAll();
  const keyRows = await (few ? keyQuery.where(inList(s, 'subdomain_id', ids)) : keyQuery).execute();
  const byId = portsBySubdomain(portRows);
  const keys = new Map<string, KeyRow>();
  for (const k of keyRows) keys.set(k.subdomain_id, k);
  return rows.map((r) => toRecord(r, byId.get(r.id) ?? [], keys.get(r.id)));
}

async function renderRows(s: Store, names: readonly string[] | undefined): Promise<RenderSubdomain[]> {
  let portQuery = s.q.selectFrom('ports as p').innerJoin('subdomains as s', 's.id', 'p.subdomain_id').select(['p.subdomain_id', 'p.port', 'p.protocol', 'p.position']);
  if (names) portQuery = portQuery.where(inList(s, 's.name', names));
  const ports = portsBySubdomain(await portQuery.orderBy('p.subdomain_id').orderBy('p.position').execute());
  let rowQuery = s.q.selectFrom('subdomains as s').leftJoin('ssh_keys as k', 'k.subdomain_id', 's.id')
    .select(['s.id', 's.name', 's.fqdn', 's.status', 's.passthrough', 's.route', 's.direct_ipv4', 's.route6', 's.direct_ipv6', 's.relay', 's.slot', 'k.public_key', 'k.fingerprint']);
  if (names) rowQuery = rowQuery.where(inList(s, 's.name', names));
  const rows = await rowQuery.orderBy('s.name').execute();
  return rows.map((r) => ({
    name: r.name, fqdn: r.fqdn, status: r.status, passthrough: r.passthrough === 1, route: r.route, directIpv4: r.direct_ipv4, route6: r.route6,
    directIpv6: r.direct_ipv6, relay: r.relay, ...(Number(r.slot) ? { slot: Number(r.slot) } : {}), ports: ports.get(r.id) ?? [],
    key: r.public_key === null || r.fingerprint === null ? null : { publicKey: r.public_key, fingerprint: r.fingerprint },
  }));
}

/** Every subdomain as rendering needs it, in name order, few columns. */
export function renderSnapshot(s: Store): Promise<RenderSubdomain[]> {
  return renderRows(s, undefined);
}

/** The named subdomains as rendering needs them (those that exist), in name order: what an incremental apply re-renders. */
export async function renderSnapshotOf(s: Store, names: readonly string[]): Promise<RenderSubdomain[]> {
  if (names.length === 0) return [];
  return renderRows(s, names);
}

export async function listSubdomains(s: Store): Promise<SubdomainRecord[]> {
  return load(s, await selectRows(s).orderBy('name').execute());
}

/**
 * One page of subdomains in name order — those whose name contains `contains` (lower case; all when
 * empty) — and how many match: the status page's list. Ports and keys are read for that page only, so
 * a page costs about the same at 50,000 subdomains as at 50.
 */
export async function subdomainPage(s: Store, o: { contains?: string; limit: number; offset: number }): Promise<{ total: number; records: SubdomainRecord[] }> {
  const needle = o.contains ?? '';
  let count = s.q.selectFrom('subdomains').select(countAll().as('n'));
  let page = selectRows(s);
  if (needle) {
    count = count.where(containsText(s, 'name', needle));
    page = page.where(containsText(s, 'name', needle));
  }
  const total = Number((await count.executeTakeFirstOrThrow()).n);
  const rows = await page.orderBy('name').limit(o.limit).offset(o.offset).execute();
  return { total, records: await load(s, rows) };
}

export async function getSubdomainById(s: Store, id: string): Promise<SubdomainRecord | undefined> {
  const row = await selectRows(s).where('id', '=', id).executeTakeFirst();
  return row ? (await load(s, [row]))[0] : undefined;
}

/**
 * Looks a subdomain up by its name or fqdn, as a person typed it. A malformed name throws InputError
 * (it cannot name any subdomain, and saying so beats "not found"); a well-formed unknown one is undefined.
 */
export async function findSubdomain(s: Store, nameOrFqdn: string): Promise<SubdomainRecord | undefined> {
  const key = validateLookupName(nameOrFqdn);
  const row = await selectRows(s).where((eb) => eb.or([eb('name', '=', key), eb('fqdn', '=', key)])).executeTakeFirst();
  return row ? (await load(s, [row]))[0] : undefined;
}

export async function requireSubdomain(s: Store, nameOrFqdn: string): Promise<SubdomainRecord> {
  const found = await findSubdomain(s, nameOrFqdn);
  if (!found) throw new NotFoundError('no_such_subdomain', `No subdomain named ${JSON.stringify(nameOrFqdn.slice(0, 80))}.`, { hint: 'See the names with `pipe2me-ctl list`.' });
  return found;
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
