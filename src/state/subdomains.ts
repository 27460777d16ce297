/** Subdomains and their ports: allocation of names and ports, lookups, removal, expiry. */
import { ConflictError, InputError, NotFoundError, QuotaError } from '../util/errors.js';
import { generateName, validateLookupName, validateName } from '../names/names.js';
import { hashSecret, newId, newSecret } from '../util/secrets.js';
import { writeTx, type Db } from './db.js';
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
}

/** The columns a record needs; secrets' hashes are never read back, only whether they are set. */
const COLUMNS = `id, name, fqdn, status, created_at, expires_at, passthrough, token_id,
  secret_hash IS NOT NULL AS claimed, claim_hash IS NOT NULL AS claim_pending, route, route_changed_at, route_reason,
  direct_ipv4, probe_streak, last_fallback_at, observed_ipv4, observed_at,
  route6, route6_changed_at, route6_reason, direct_ipv6, probe6_streak, last_fallback6_at, observed_ipv6, observed6_at, reported_ipv6`;

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

/** The lowest free ports of the range. O(ports in use), fine for tens of thousands. */
function allocatePorts(db: Db, range: PortRange, count: number): number[] {
  const used = db.prepare('SELECT port FROM ports WHERE port BETWEEN ? AND ? ORDER BY port').pluck().all(range.first, range.last) as number[];
  const out: number[] = [];
  let i = 0;
  for (let p = range.first; p <= range.last && out.length < count; p++) {
    while (i < used.length && used[i]! < p) i++;
    if (used[i] === p) continue;
    out.push(p);
  }
  if (out.length < count) {
    throw new ConflictError('ports_exhausted', `The public port range ${range.first}-${range.last} has only ${out.length} free port(s); ${count} needed.`, {
      hint: 'Widen ports.first/ports.last in pipe2me.yml, or remove unused subdomains.',
    });
  }
  return out;
}

export function createSubdomain(db: Db, input: CreateSubdomainInput, ctx: CreateSubdomainContext): CreatedSubdomain {
  const protocols = parseProtocols(input.protocols, ctx.maxPorts);
  const requested = input.name === undefined ? undefined : validateName(input.name, ctx.reserved);
  const reserved = new Set(ctx.reserved);
  return writeTx(db, () => {
    const taken = db.prepare('SELECT 1 FROM subdomains WHERE name = ?').pluck();
    let name: string;
    if (requested !== undefined) {
      if (taken.get(requested)) throw new ConflictError('name_taken', `The name ${requested} is already in use.`, { hint: 'Choose another name, or leave --name out to get a generated one.' });
      name = requested;
    } else {
      let attempt = 0;
      do {
        if (++attempt > 100) throw new ConflictError('names_exhausted', 'Could not find a free generated name after 100 tries.', { hint: 'Give a name with --name.' });
        name = generateName();
      } while (taken.get(name) || reserved.has(name));
    }
    const id = newId();
    const createdAt = now();
    const claimToken = input.withClaim ? newSecret('p2mc') : undefined;
    const secret = input.withSecret ? newSecret('p2ms') : undefined;
    db.prepare(`INSERT INTO subdomains (id, name, fqdn, status, created_at, expires_at, passthrough, token_id, secret_hash, claim_hash)
                VALUES (?, ?, ?, 'active', ?, ?, ?, ?, ?, ?)`)
      .run(id, name, `${name}.${ctx.domain}`, createdAt, input.expiresAt, input.passthrough ? 1 : 0, input.tokenId ?? null,
        secret ? hashSecret(secret) : null, claimToken ? hashSecret(claimToken) : null);
    const ports = allocatePorts(db, ctx.range, protocols.length);
    const insertPort = db.prepare('INSERT INTO ports (port, subdomain_id, protocol, position) VALUES (?, ?, ?, ?)');
    protocols.forEach((protocol, i) => insertPort.run(ports[i], id, protocol, i));
    const record = getSubdomainById(db, id)!;
    return { record, ...(claimToken ? { claimToken } : {}), ...(secret ? { secret } : {}) };
  });
}

/** Raw port rows (subdomain_id, port, protocol, position), sorted by subdomain and position → ports per subdomain. */
function portsBySubdomain(rows: unknown[]): Map<string, PortRecord[]> {
  const byId = new Map<string, PortRecord[]>();
  let currentId = '';
  let current: PortRecord[] = [];
  for (const [sid, port, protocol, position] of rows as [string, number, Protocol, number][]) {
    if (sid !== currentId) {
      currentId = sid;
      current = [];
      byId.set(sid, current);
    }
    current.push({ port, protocol, position });
  }
  return byId;
}

/**
 * Records with their ports and keys. For the whole store (10,000 subdomains and more, on every apply) the
 * ports come as raw rows already ordered by subdomain and position, which is several times cheaper than
 * an object per row and a sort per subdomain.
 */
function load(db: Db, rows: SubdomainRow[]): SubdomainRecord[] {
  if (rows.length === 0) return [];
  const single = rows.length === 1 ? rows[0]!.id : undefined;
  const byId = portsBySubdomain(single
    ? db.prepare('SELECT subdomain_id, port, protocol, position FROM ports WHERE subdomain_id = ? ORDER BY position').raw().all(single)
    : db.prepare('SELECT subdomain_id, port, protocol, position FROM ports ORDER BY subdomain_id, position').raw().all());
  const keys = new Map<string, KeyRow>();
  const keyRows = (single ? db.prepare('SELECT * FROM ssh_keys WHERE subdomain_id = ?').all(single) : db.prepare('SELECT * FROM ssh_keys').all()) as KeyRow[];
  for (const k of keyRows) keys.set(k.subdomain_id, k);
  return rows.map((r) => toRecord(r, byId.get(r.id) ?? [], keys.get(r.id)));
}

type RenderRow = [string, string, string, 'active' | 'expired', number, 'server' | 'direct', string | null, 'server' | 'direct', string | null, string | null, string | null];
const RENDER_COLUMNS = 's.id, s.name, s.fqdn, s.status, s.passthrough, s.route, s.direct_ipv4, s.route6, s.direct_ipv6, k.public_key, k.fingerprint';

function toRender(rows: RenderRow[], ports: Map<string, PortRecord[]>): RenderSubdomain[] {
  return rows.map(([id, name, fqdn, status, passthrough, route, directIpv4, route6, directIpv6, publicKey, fingerprint]) => ({
    name, fqdn, status, passthrough: passthrough === 1, route, directIpv4, route6, directIpv6, ports: ports.get(id) ?? [],
    key: publicKey === null || fingerprint === null ? null : { publicKey, fingerprint },
  }));
}

/** Every subdomain as rendering needs it, in name order: raw rows, few columns, no per-row objects from SQLite. */
export function renderSnapshot(db: Db): RenderSubdomain[] {
  const ports = portsBySubdomain(db.prepare('SELECT subdomain_id, port, protocol, position FROM ports ORDER BY subdomain_id, position').raw().all());
  const rows = db.prepare(`SELECT ${RENDER_COLUMNS} FROM subdomains s LEFT JOIN ssh_keys k ON k.subdomain_id = s.id ORDER BY s.name`).raw().all() as RenderRow[];
  return toRender(rows, ports);
}

/** The named subdomains as rendering needs them (those that exist), in name order: what an incremental apply re-renders. */
export function renderSnapshotOf(db: Db, names: readonly string[]): RenderSubdomain[] {
  if (names.length === 0) return [];
  const list = JSON.stringify(names);
  const ports = portsBySubdomain(db.prepare(`SELECT p.subdomain_id, p.port, p.protocol, p.position FROM ports p JOIN subdomains s ON s.id = p.subdomain_id
    WHERE s.name IN (SELECT value FROM json_each(?)) ORDER BY p.subdomain_id, p.position`).raw().all(list));
  const rows = db.prepare(`SELECT ${RENDER_COLUMNS} FROM subdomains s LEFT JOIN ssh_keys k ON k.subdomain_id = s.id
    WHERE s.name IN (SELECT value FROM json_each(?)) ORDER BY s.name`).raw().all(list) as RenderRow[];
  return toRender(rows, ports);
}

export function listSubdomains(db: Db): SubdomainRecord[] {
  return load(db, db.prepare(`SELECT ${COLUMNS} FROM subdomains ORDER BY name`).all() as SubdomainRow[]);
}

/**
 * One page of subdomains in name order — those whose name contains `contains` (lower case; all when
 * empty) — and how many match: the status page's list. Ports and keys are read for that page only, so
 * a page costs about the same at 50,000 subdomains as at 50.
 */
export function subdomainPage(db: Db, o: { contains?: string; limit: number; offset: number }): { total: number; records: SubdomainRecord[] } {
  const needle = o.contains ?? '';
  const where = needle ? 'WHERE instr(name, @needle) > 0' : '';
  const total = db.prepare(`SELECT count(*) FROM subdomains ${where}`).pluck().get(needle ? { needle } : {}) as number;
  const rows = db.prepare(`SELECT ${COLUMNS} FROM subdomains ${where} ORDER BY name LIMIT @limit OFFSET @offset`)
    .all({ ...(needle ? { needle } : {}), limit: o.limit, offset: o.offset }) as SubdomainRow[];
  if (rows.length === 0) return { total, records: [] };
  const ids = JSON.stringify(rows.map((r) => r.id));
  const byId = portsBySubdomain(db.prepare('SELECT subdomain_id, port, protocol, position FROM ports WHERE subdomain_id IN (SELECT value FROM json_each(?)) ORDER BY subdomain_id, position').raw().all(ids));
  const keys = new Map<string, KeyRow>();
  for (const k of db.prepare('SELECT * FROM ssh_keys WHERE subdomain_id IN (SELECT value FROM json_each(?))').all(ids) as KeyRow[]) keys.set(k.subdomain_id, k);
  return { total, records: rows.map((r) => toRecord(r, byId.get(r.id) ?? [], keys.get(r.id))) };
}

export function getSubdomainById(db: Db, id: string): SubdomainRecord | undefined {
  const row = db.prepare(`SELECT ${COLUMNS} FROM subdomains WHERE id = ?`).get(id) as SubdomainRow | undefined;
  return row ? load(db, [row])[0] : undefined;
}

/**
 * Looks a subdomain up by its name or fqdn, as a person typed it. A malformed name throws InputError
 * (it cannot name any subdomain, and saying so beats "not found"); a well-formed unknown one is undefined.
 */
export function findSubdomain(db: Db, nameOrFqdn: string): SubdomainRecord | undefined {
  const key = validateLookupName(nameOrFqdn);
  const row = db.prepare(`SELECT ${COLUMNS} FROM subdomains WHERE name = ? OR fqdn = ?`).get(key, key) as SubdomainRow | undefined;
  return row ? load(db, [row])[0] : undefined;
}

export function requireSubdomain(db: Db, nameOrFqdn: string): SubdomainRecord {
  const s = findSubdomain(db, nameOrFqdn);
  if (!s) throw new NotFoundError('no_such_subdomain', `No subdomain named ${JSON.stringify(nameOrFqdn.slice(0, 80))}.`, { hint: 'See the names with `pipe2me-ctl list`.' });
  return s;
}

/**
 * Deletes a subdomain; its ports, key, mappings and probe history go with it (ON DELETE CASCADE). What
 * became of it is kept for 90 days, so that its pod, asking with its secret, is told so and when.
 */
export function deleteSubdomain(db: Db, id: string, reason = 'removed by the operator'): void {
  writeTx(db, () => {
    const t = now();
    db.prepare(`INSERT OR REPLACE INTO removed_subdomains (id, fqdn, secret_hash, removed_at, reason)
                SELECT id, fqdn, secret_hash, ?, ? FROM subdomains WHERE id = ?`).run(t, reason, id);
    db.prepare('DELETE FROM subdomains WHERE id = ?').run(id);
    db.prepare('DELETE FROM removed_subdomains WHERE removed_at < ?').run(t - 90 * 86400);
  });
}

/** A removed subdomain, if this id and its secret were one (the id alone tells nothing). */
export function removedSubdomain(db: Db, id: string, secret: string): { fqdn: string; removedAt: number; reason: string } | undefined {
  const r = db.prepare('SELECT fqdn, removed_at, reason FROM removed_subdomains WHERE id = ? AND secret_hash = ?').get(id, hashSecret(secret)) as { fqdn: string; removed_at: number; reason: string } | undefined;
  return r ? { fqdn: r.fqdn, removedAt: r.removed_at, reason: r.reason } : undefined;
}

/** Marks every active subdomain whose time is up as expired and frees its ports. Returns them. */
export function expireDue(db: Db, at = now()): SubdomainRecord[] {
  return writeTx(db, () => {
    const rows = db.prepare(`SELECT ${COLUMNS} FROM subdomains WHERE status = 'active' AND expires_at IS NOT NULL AND expires_at <= ?`).all(at) as SubdomainRow[];
    const records = load(db, rows);
    for (const r of rows) {
      db.prepare("UPDATE subdomains SET status = 'expired', route = 'server', direct_ipv4 = NULL, route6 = 'server', direct_ipv6 = NULL WHERE id = ?").run(r.id);
      db.prepare('DELETE FROM ports WHERE subdomain_id = ?').run(r.id);
      db.prepare('DELETE FROM mappings WHERE subdomain_id = ?').run(r.id);
    }
    return records;
  });
}

export function setExpiry(db: Db, id: string, expiresAt: number | null): void {
  db.prepare('UPDATE subdomains SET expires_at = ? WHERE id = ?').run(expiresAt, id);
}

export function setSshKey(db: Db, id: string, key: Omit<SshKeyRecord, 'addedAt'>): void {
  writeTx(db, () => {
    const other = db.prepare('SELECT subdomain_id FROM ssh_keys WHERE fingerprint = ? AND subdomain_id <> ?').pluck().get(key.fingerprint, id);
    if (other) {
      // One key, one pod: the key index files a line under the key's fingerprint, so a second pod's line would replace the first's.
      throw new ConflictError('key_in_use', 'This ssh key is already registered for another subdomain.', { hint: 'Every pod needs its own key pair: create a new one (pipe2me setup does).' });
    }
    db.prepare(`INSERT INTO ssh_keys (subdomain_id, algorithm, public_key, fingerprint, bits, added_at) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT(subdomain_id) DO UPDATE SET algorithm = excluded.algorithm, public_key = excluded.public_key,
                fingerprint = excluded.fingerprint, bits = excluded.bits, added_at = excluded.added_at`)
      .run(id, key.algorithm, key.publicKey, key.fingerprint, key.bits, now());
  });
}

/** Turns a pending claim into the per-subdomain secret. Returns the new secret, or undefined if the claim token is unknown/used. */
export function claimSubdomain(db: Db, claimToken: string): { record: SubdomainRecord; secret: string } | undefined {
  return writeTx(db, () => {
    const row = db.prepare("SELECT id FROM subdomains WHERE claim_hash = ? AND status = 'active'").get(hashSecret(claimToken)) as { id: string } | undefined;
    if (!row) return undefined;
    const secret = newSecret('p2ms');
    db.prepare('UPDATE subdomains SET claim_hash = NULL, secret_hash = ? WHERE id = ?').run(hashSecret(secret), row.id);
    return { record: getSubdomainById(db, row.id)!, secret };
  });
}

/** The subdomain a per-subdomain secret belongs to, if it matches this id. */
export function authenticateSubdomain(db: Db, id: string, secret: string): SubdomainRecord | undefined {
  const row = db.prepare(`SELECT ${COLUMNS} FROM subdomains WHERE id = ? AND secret_hash = ?`).get(id, hashSecret(secret)) as SubdomainRow | undefined;
  return row ? load(db, [row])[0] : undefined;
}

/** Where the pod's session came from, kept per family (the IPv4 one is what the probe tests for A). */
export function setObserved(db: Db, id: string, family: 4 | 6, address: string, at: number): void {
  if (family === 4) db.prepare('UPDATE subdomains SET observed_ipv4 = ?, observed_at = ? WHERE id = ?').run(address, at, id);
  else db.prepare('UPDATE subdomains SET observed_ipv6 = ?, observed6_at = ? WHERE id = ?').run(address, at, id);
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

/** One family's route decision; the other family's columns are never touched. */
export function setRoute(db: Db, id: string, family: 4 | 6, fields: RouteFields): void {
  const sql = family === 4
    ? `UPDATE subdomains SET route = ?, direct_ipv4 = ?, route_reason = ?, probe_streak = ?,
              route_changed_at = COALESCE(?, route_changed_at), last_fallback_at = COALESCE(?, last_fallback_at) WHERE id = ?`
    : `UPDATE subdomains SET route6 = ?, direct_ipv6 = ?, route6_reason = ?, probe6_streak = ?,
              route6_changed_at = COALESCE(?, route6_changed_at), last_fallback6_at = COALESCE(?, last_fallback6_at) WHERE id = ?`;
  db.prepare(sql).run(fields.route, fields.direct, fields.reason, fields.streak, fields.changedAt ?? null, fields.fallbackAt ?? null, id);
}
