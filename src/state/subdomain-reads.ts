/**
 * Reading subdomains: the row → record mapping, lookups by name or id, pages for the status page and
 * `list`, and the few-column snapshots rendering needs. The writes (allocation, removal, expiry, routes)
 * are in subdomains.ts, which re-exports these.
 */
import { validateLookupName } from '../names/names.js';
import { sql } from 'kysely';
import { NotFoundError } from '../util/errors.js';
import { containsText, countAll, flag, inList, readTx, type Store } from './store.js';
import type { PortRecord, Protocol, SubdomainRecord } from './types.js';
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
export function selectRows(s: Store) {
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

/** Up to this many rows, load reads their ports and keys by id; past it, the whole tables in one read each. */
const FEW = 500;

/** Records with their ports and keys: for one or a few rows by id, for many the whole tables in one read each. */
export async function load(s: Store, rows: SubdomainRow[]): Promise<SubdomainRecord[]> {
  if (rows.length === 0) return [];
  const ids = rows.map((r) => r.id);
  const few = rows.length <= FEW;
  const portQuery = s.q.selectFrom('ports').select(PORT_COLUMNS);
  const portRows = await (few ? portQuery.where(inList(s, 'subdomain_id', ids)) : portQuery).orderBy('subdomain_id').orderBy('position').execute();
  const keyQuery = s.q.selectFrom('ssh_keys').selectAll();
  const keyRows = await (few ? keyQuery.where(inList(s, 'subdomain_id', ids)) : keyQuery).execute();
  const byId = portsBySubdomain(portRows);
  const keys = new Map<string, KeyRow>();
  for (const k of keyRows) keys.set(k.subdomain_id, k);
  return rows.map((r) => toRecord(r, byId.get(r.id) ?? [], keys.get(r.id)));
}

/** Which subdomains renderRows reads: all, or the named ones. */
type RenderFilter = { names?: readonly string[] };

const RENDER_COLUMNS = ['s.id', 's.name', 's.fqdn', 's.status', 's.passthrough', 's.route', 's.direct_ipv4', 's.route6', 's.direct_ipv6', 's.relay', 's.slot', 'k.public_key', 'k.fingerprint'] as const;

type RenderRow = {
  id: string; name: string; fqdn: string; status: 'active' | 'expired'; passthrough: number; route: 'server' | 'direct'; direct_ipv4: string | null;
  route6: 'server' | 'direct'; direct_ipv6: string | null; relay: string | null; slot: number; public_key: string | null; fingerprint: string | null;
};

function toRender(r: RenderRow, ports: PortRecord[]): RenderSubdomain {
  return {
    name: r.name, fqdn: r.fqdn, status: r.status, passthrough: r.passthrough === 1, route: r.route, directIpv4: r.direct_ipv4, route6: r.route6,
    directIpv6: r.direct_ipv6, relay: r.relay, ...(Number(r.slot) ? { slot: Number(r.slot) } : {}), ports,
    key: r.public_key === null || r.fingerprint === null ? null : { publicKey: r.public_key, fingerprint: r.fingerprint },
  };
}

async function renderRows(s: Store, f: RenderFilter): Promise<RenderSubdomain[]> {
  let rowQuery = s.q.selectFrom('subdomains as s').leftJoin('ssh_keys as k', 'k.subdomain_id', 's.id').select(RENDER_COLUMNS);
  if (f.names) rowQuery = rowQuery.where(inList(s, 's.name', f.names));
  const rows = await rowQuery.orderBy('s.name').execute();
  let portQuery = s.q.selectFrom('ports as p').innerJoin('subdomains as s', 's.id', 'p.subdomain_id').select(['p.subdomain_id', 'p.port', 'p.protocol', 'p.position']);
  if (f.names) portQuery = portQuery.where(inList(s, 's.name', f.names));
  const ports = portsBySubdomain(await portQuery.orderBy('p.subdomain_id').orderBy('p.position').execute());
  return rows.map((r) => toRender(r, ports.get(r.id) ?? []));
}

/**
 * One page of `size` subdomains in name order after a name, with their keys and ports, in one query: a
 * page is one round trip to the store (against PostgreSQL on another host, a whole render of 100,000 is
 * 100 of them, not 200), and its ports come by the page's own rows, not by a list of a thousand ids.
 */
async function renderPage(s: Store, after: string | null, size: number): Promise<RenderSubdomain[]> {
  const rows = await s.q
    .selectFrom((eb) => {
      let page = eb.selectFrom('subdomains').select(['id', 'name', 'fqdn', 'status', 'passthrough', 'route', 'direct_ipv4', 'route6', 'direct_ipv6', 'relay', 'slot']);
      if (after !== null) page = page.where('name', '>', after);
      return page.orderBy('name').limit(size).as('s');
    })
    .leftJoin('ssh_keys as k', 'k.subdomain_id', 's.id')
    .leftJoin('ports as p', 'p.subdomain_id', 's.id')
    .select([...RENDER_COLUMNS, 'p.port', 'p.protocol', 'p.position'])
    .orderBy('s.name').orderBy('p.position')
    .execute();
  // One row per port (one with null ports for a subdomain that has none), the rows of a subdomain together.
  const out: RenderSubdomain[] = [];
  let last: RenderSubdomain | undefined;
  let lastId = '';
  for (const r of rows) {
    if (r.id !== lastId) {
      lastId = r.id;
      last = toRender(r, []);
      out.push(last);
    }
    if (r.port !== null && r.protocol !== null && r.position !== null) last!.ports.push({ port: r.port, protocol: r.protocol, position: r.position });
  }
  return out;
}

/** Subdomains per page of `eachRenderPage`. */
export const RENDER_PAGE = 1000;

/**
 * Every subdomain as rendering needs it, in name order, handed to `fn` a page at a time (all pages from
 * one consistent snapshot): a whole render of 50,000 then never holds the fleet's records at once, only
 * the files it is building (the snapshot whole was ~40 MB of live objects at 50,000, and most of a full
 * apply's peak memory).
 */
export function eachRenderPage(s: Store, fn: (page: RenderSubdomain[]) => void | Promise<void>, size = RENDER_PAGE): Promise<void> {
  return eachByName(s, size, (t, after) => renderPage(t, after, size), fn);
}

/**
 * The pages of a read in name order, from one consistent snapshot: `read` gives the first `size` after
 * a name (null: from the start); pages follow each other by name (keyset), so each costs the same
 * wherever it is in the list.
 */
async function eachByName<T extends { name: string }>(s: Store, size: number, read: (t: Store, after: string | null) => Promise<T[]>, fn: (page: T[]) => void | Promise<void>): Promise<void> {
  await readTx(s, async (t) => {
    let next = read(t, null);
    for (;;) {
      const page = await next;
      const more = page.length >= size;
      // The next page is asked for before this one is handed on: the store works on it (PostgreSQL on
      // its own host or core) while this process renders this one.
      if (more) {
        next = read(t, page[page.length - 1]!.name);
        next.catch(() => {}); // awaited on the next turn; a failure of fn below must not leave it unhandled
      }
      if (page.length) await fn(page);
      if (!more) return;
    }
  });
}

/** Every subdomain as rendering needs it, in name order, few columns. */
export function renderSnapshot(s: Store): Promise<RenderSubdomain[]> {
  return renderRows(s, {});
}

/** The named subdomains as rendering needs them (those that exist), in name order: what an incremental apply re-renders. */
export async function renderSnapshotOf(s: Store, names: readonly string[]): Promise<RenderSubdomain[]> {
  if (names.length === 0) return [];
  return renderRows(s, { names });
}

export async function listSubdomains(s: Store): Promise<SubdomainRecord[]> {
  return load(s, await selectRows(s).orderBy('name').execute());
}

/** Subdomains per page of `eachSubdomainPage`: few enough that ports and keys are read for the page alone (see load). */
export const LIST_PAGE = FEW;

/**
 * Every subdomain in name order, handed to `fn` a page at a time, all pages read from one consistent
 * snapshot: a list of 50,000 holds one page of records in memory, not the fleet (`pipe2me-ctl list`).
 */
export function eachSubdomainPage(s: Store, fn: (page: SubdomainRecord[]) => Promise<void> | void, size = LIST_PAGE): Promise<void> {
  return eachByName(s, size, async (t, after) => {
    let q = selectRows(t);
    if (after !== null) q = q.where('name', '>', after);
    return load(t, await q.orderBy('name').limit(size).execute());
  }, fn);
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
