/**
 * `pipe2me-ctl probe`: one run over every subdomain whose pod reported router mappings. It connects to
 * the address the server saw the pod connect from (CGNAT lies to routers about their external address),
 * on every port the direct route needs, concurrently with a bound. Then it decides each route and, however
 * many changed, rewrites the zone once.
 */
import type { ServerContext } from '../server/context.js';
import { apply, type ApplyReport } from '../apply/apply.js';
import { httpEntryTarget } from '../render/entries.js';
import type { Config } from '../config/types.js';
import { hereRelay, slotAddresses } from '../render/relays.js';
import { liveSession, readSessions, type SessionRecord } from '../daemons/sessions.js';
import { allMappings, getMappings } from '../state/mappings.js';
import { findSubdomain, listSubdomains, setObserved } from '../state/subdomains.js';
import { recordProbeRun, type ProbeOutcome } from '../state/probes.js';
import { validFingerprints, validFingerprintsOf } from '../state/certificates.js';
import { writeTx } from '../state/db.js';
import { bumpCounter, observeHistogram, setMark } from '../state/metrics.js';
import { DURATION_BUCKETS } from '../metrics/catalogue.js';
import { now, type MappingRecord, type SubdomainRecord } from '../state/types.js';
import { isIPv4, isIPv6 } from 'node:net';
import { publishRefusal, unmapIPv4 } from '../net/address.js';
import { checkEntryHttp, checkHttpLikeTunnel, checkTcpLikeTunnel, checkTls, type CheckResult } from './checks.js';
import { decide } from './decide.js';

export const ENTRY_HTTP_PORT = 80;
export const ENTRY_HTTPS_PORT = 443;

export interface PortCheck {
  port: number;
  what: string;
  run: () => Promise<CheckResult>;
}

export interface SubdomainProbe {
  name: string;
  fqdn: string;
  /** Each family is probed and decided on its own: 4 for the A record (the router), 6 for AAAA (the pod's own address). */
  family: 4 | 6;
  address: string | null;
  ok: boolean;
  reason: string;
  ports: { port: number; what: string; ok: boolean; detail: string }[];
  route: 'server' | 'direct';
  changed: boolean;
}

export interface ProbeReport {
  started: string;
  durationMs: number;
  probed: number;
  /** Pods whose IPv4 route is direct (A at their router). */
  direct: number;
  /** Pods whose IPv6 route is direct (AAAA at their own address). */
  direct6: number;
  changed: string[];
  results: SubdomainProbe[];
  applied: { changed_units: string[]; zone_serial: number | null; reloads: { action: string; detail: string }[] } | null;
}

/** Which ports the direct route needs, pure: every service port, and the entries when there is a web service. */
export function requiredPorts(s: Pick<SubdomainRecord, 'ports'>): { port: number; role: 'service' | 'entry-http' | 'entry-https'; protocol?: string }[] {
  const out: { port: number; role: 'service' | 'entry-http' | 'entry-https'; protocol?: string }[] = s.ports.map((p) => ({ port: p.port, role: 'service' as const, protocol: p.protocol }));
  if (s.ports.some((p) => p.protocol === 'http' || p.protocol === 'https')) {
    out.push({ port: ENTRY_HTTP_PORT, role: 'entry-http' }, { port: ENTRY_HTTPS_PORT, role: 'entry-https' });
  }
  return out;
}

async function pool<T>(items: T[], limit: number, fn: (t: T) => Promise<void>, onDone?: () => void): Promise<void> {
  let i = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (i < items.length) {
      const item = items[i++]!;
      await fn(item);
      onDone?.();
    }
  });
  await Promise.all(workers);
}

interface Pending { s: SubdomainRecord; family: 4 | 6; address: string | null; pre: string | null; checks: PortCheck[]; results: Map<number, CheckResult> }

/**
 * What to test for one subdomain in one family, pure apart from the checks it returns: the address (the
 * IPv4 one the pod's session came from, or the pod's own IPv6 one it reported from that address), why
 * there is nothing to test, or one check per port the direct route needs.
 */
function planFamily(ctx: ServerContext, s: SubdomainRecord, family: 4 | 6, opened: MappingRecord[] | undefined, seen: string | null, valid: Set<string>): Omit<Pending, 'results'> {
  const c = ctx.config;
  const timeout = c.probe.timeoutMs;
  const policy = { allowNonGlobal: c.dns.allowNonGlobal };
  const mapped = new Map<number, MappingRecord>((opened ?? []).map((m) => [m.externalPort, m]));
  const need = requiredPorts(s);
  let address: string | null = null;
  let pre: string | null = null;
  if (family === 4) {
    // The A record can only ever hold the IPv4 address the pod's session came from, and only one that may be published.
    address = seen && isIPv4(seen) && publishRefusal(seen, 'A', policy) === null ? seen : null;
    if (mapped.size === 0) pre = 'the pod reported no router mappings';
    else if (!seen) pre = 'the server has not seen the pod connect over IPv4, so it has no address of its router to test';
    else if (!isIPv4(seen)) pre = `the pod connects over IPv6 (${seen}), so the server has no IPv4 address of its router to test`;
    else if (!address) pre = `the pod's session address is never published: ${publishRefusal(seen, 'A', policy)}`;
  } else {
    const reported = s.reportedIpv6;
    address = reported && publishRefusal(reported, 'AAAA', policy) === null ? reported : null;
    if (!reported) pre = 'the pod reported no IPv6 address';
    else if (!address) pre = `the pod's IPv6 address is never published: ${publishRefusal(reported, 'AAAA', policy)}`;
    else if (!c.server.ipv6) pre = 'the server has no IPv6 address (server.ipv6), so it cannot test the pod over IPv6';
    else if (mapped.size === 0) pre = 'the pod reported no port open at its IPv6 address';
  }
  if (!pre) {
    const missing = need.filter((n) => !mapped.has(n.port)).map((n) => n.port);
    if (missing.length) pre = family === 4 ? `not every port is mapped on the router (missing ${missing.join(', ')})` : `not every port is open at the pod's IPv6 address (missing ${missing.join(', ')})`;
  }
  const tunnel = tunnelHostOf(c, s);
  const checks: PortCheck[] = pre ? [] : need.map((n) => {
    const a = address!;
    if (n.role === 'entry-http') {
      const target = httpEntryTarget(s);
      return { port: n.port, what: 'http entry', run: () => checkEntryHttp(a, n.port, s.fqdn, `${target}/`, timeout) };
    }
    if (n.role === 'entry-https') return { port: n.port, what: 'https entry', run: () => checkTls(a, n.port, s.fqdn, valid, timeout) };
    if (n.protocol === 'https') return { port: n.port, what: 'https', run: () => checkTls(a, n.port, s.fqdn, valid, timeout) };
    if (n.protocol === 'http') return { port: n.port, what: 'http', run: () => checkHttpLikeTunnel(a, n.port, s.fqdn, n.port, timeout, tunnel) };
    return { port: n.port, what: 'tcp', run: () => checkTcpLikeTunnel(a, n.port, n.port, timeout, tunnel) };
  });
  return { s, family, address, pre, checks };
}

/** What a run did, in the store's counters (the API exposes them: the probe runs from a timer, not in the API). */
async function recordProbeMetrics(ctx: ServerContext, results: SubdomainProbe[], pending: Pending[], seconds: number): Promise<void> {
  // Counted per outcome first: a few rows to bump, not one statement per pod.
  const counts = new Map<string, { name: string; labels: Record<string, string>; n: number }>();
  const count = (name: string, labels: Record<string, string>) => {
    const key = `${name} ${JSON.stringify(labels)}`;
    const c = counts.get(key) ?? { name, labels, n: 0 };
    c.n++;
    counts.set(key, c);
  };
  results.forEach((r, i) => {
    const family = r.family === 4 ? 'ipv4' : 'ipv6';
    count('pipe2me_probe_results_total', { family, outcome: pending[i]!.pre ? 'skipped' : r.ok ? 'ok' : 'failed' });
    if (r.changed) count('pipe2me_route_changes_total', { family, route: r.route });
  });
  await writeTx(ctx.db, async (db) => {
    await bumpCounter(db, 'pipe2me_probe_runs_total');
    await observeHistogram(db, 'pipe2me_probe_duration_seconds', {}, seconds, DURATION_BUCKETS);
    for (const c of counts.values()) await bumpCounter(db, c.name, c.labels, c.n);
    await setMark(db, 'probe_last_run', Date.now() / 1000);
  });
}

interface ProbeInputs {
  subs: SubdomainRecord[];
  sessions: Map<string, SessionRecord>;
  mappings4: Map<string, MappingRecord[]>;
  mappings6: Map<string, MappingRecord[]>;
  fingerprints: Map<string, Set<string>>;
}

async function fleetInputs(ctx: ServerContext, t: number): Promise<ProbeInputs> {
  return {
    subs: await listSubdomains(ctx.db), sessions: readSessions(ctx.layout.sessionsDir),
    mappings4: await allMappings(ctx.db, 4), mappings6: await allMappings(ctx.db, 6), fingerprints: await validFingerprints(ctx.db, t),
  };
}

async function namedInputs(ctx: ServerContext, names: readonly string[], t: number): Promise<ProbeInputs> {
  const out: ProbeInputs = { subs: [], sessions: new Map(), mappings4: new Map(), mappings6: new Map(), fingerprints: new Map() };
  for (const name of names) {
    const s = await findSubdomain(ctx.db, name);
    if (!s) continue;
    out.subs.push(s);
    const live = liveSession(ctx.layout.sessionsDir, s.name);
    if (live) out.sessions.set(s.name, live);
    const m = await getMappings(ctx.db, s.id);
    out.mappings4.set(s.id, m.filter((x) => x.family === 4));
    out.mappings6.set(s.id, m.filter((x) => x.family === 6));
    out.fingerprints.set(s.id, await validFingerprintsOf(ctx.db, s.id, t));
  }
  return out;
}

export async function probeAll(ctx: ServerContext, opts: { names?: string[]; progress?: (m: string) => void; applyDns?: boolean } = {}): Promise<ProbeReport> {
  const started = Date.now();
  const t = now();
  const c = ctx.config;
  // A run over named pods (the API's prompt probes: one pod) reads only those pods' records, not the fleet's.
  const inputs = opts.names ? await namedInputs(ctx, opts.names, t) : await fleetInputs(ctx, t);
  const { sessions, mappings4, mappings6, fingerprints } = inputs;
  const subs = inputs.subs.filter((s) => s.status === 'active' && s.ports.length > 0);

  // Remember where each live pod connects from, per family: the IPv4 one is the probe's address for A,
  // both are history for `show`.
  await writeTx(ctx.db, async (db) => {
    for (const s of subs) {
      const live = sessions.get(s.name);
      const ip = live?.alive ? unmapIPv4(live.clientIp) : '';
      if (isIPv4(ip) && ip !== s.observedIpv4) await setObserved(db, s.id, 4, ip, live!.since || t);
      else if (isIPv6(ip) && ip !== s.observedIpv6) await setObserved(db, s.id, 6, ip, live!.since || t);
    }
  });

  const pending: Pending[] = [];
  for (const s of subs) {
    const live = sessions.get(s.name);
    const liveIp = live?.alive ? unmapIPv4(live.clientIp) : null;
    // A live session is where the pod is now (over IPv6 it says nothing of its router's IPv4 address).
    const seen4 = liveIp ?? s.observedIpv4;
    const valid = fingerprints.get(s.id) ?? new Set<string>();
    pending.push({ ...planFamily(ctx, s, 4, mappings4.get(s.id), seen4, valid), results: new Map() });
    // IPv6 is decided only for pods that take part in it: one that reported an address, or whose AAAA
    // still points at it (so that it falls back); the others would only fill the history with "none".
    if (s.reportedIpv6 || s.route6 === 'direct') pending.push({ ...planFamily(ctx, s, 6, mappings6.get(s.id), null, valid), results: new Map() });
  }

  const all = pending.flatMap((p) => p.checks.map((ch) => ({ p, ch })));
  let done = 0;
  let lastProgress = Date.now();
  await pool(all, c.probe.concurrency, async ({ p, ch }) => {
    p.results.set(ch.port, await ch.run());
  }, () => {
    done++;
    if (opts.progress && Date.now() - lastProgress > 2000) {
      lastProgress = Date.now();
      opts.progress(`probed ${done}/${all.length} ports`);
    }
  });

  const results: SubdomainProbe[] = [];
  const outcomes: ProbeOutcome[] = [];
  for (const p of pending) {
    const ports = p.checks.map((ch) => ({ port: ch.port, what: ch.what, ...p.results.get(ch.port)! }));
    const bad = ports.filter((x) => !x.ok);
    const ok = !p.pre && bad.length === 0;
    const reason = p.pre ?? (ok ? `every port answers as this pod at ${p.address}` : bad.map((b) => `${b.what} ${b.port}: ${b.detail}`).join('; '));
    const prev = p.family === 4
      ? { route: p.s.route, direct: p.s.directIpv4, streak: p.s.probeStreak, lastFallbackAt: p.s.lastFallbackAt }
      : { route: p.s.route6, direct: p.s.directIpv6, streak: p.s.probe6Streak, lastFallbackAt: p.s.lastFallback6At };
    const d = decide(prev, { ok, address: p.address, reason }, { recoverAfter: c.probe.recoverAfter, flapWindowSeconds: c.probe.flapWindowSeconds }, t);
    outcomes.push({
      subdomainId: p.s.id, family: p.family, address: p.address, ok, route: d.route, detail: { reason, ports },
      decision: { route: d.route, direct: d.direct, reason: d.reason, streak: d.streak, ...(d.changedAt ? { changedAt: d.changedAt } : {}), ...(d.fallbackAt ? { fallbackAt: d.fallbackAt } : {}) },
    });
    results.push({ name: p.s.name, fqdn: p.s.fqdn, family: p.family, address: p.address, ok, reason: d.reason, ports, route: d.route, changed: d.changed });
  }
  await recordProbeRun(ctx.db, t, outcomes);

  const changed = [...new Set(results.filter((r) => r.changed).map((r) => r.name))];
  await recordProbeMetrics(ctx, results, pending, (Date.now() - started) / 1000);
  let applied: ApplyReport | null = null;
  if (changed.length && opts.applyDns !== false) {
    opts.progress?.(`${changed.length} route(s) changed; rewriting the zone once`);
    applied = await apply(ctx, { units: ['dns'], progress: opts.progress ?? (() => {}) });
  }
  return {
    started: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    probed: subs.length,
    direct: results.filter((r) => r.family === 4 && r.route === 'direct').length,
    direct6: results.filter((r) => r.family === 6 && r.route === 'direct').length,
    changed,
    results,
    applied: applied ? { changed_units: applied.plan.changedUnits, zone_serial: applied.serial, reloads: applied.reloads.map((r) => ({ action: r.action, detail: r.detail })) } : null,
  };
}

/**
 * Where the probe reaches the pod's service through its tunnel, to compare: this machine's loopback on
 * one server; with relays, the pod's slot address on the relay holding its session (the probe runs on
 * one relay for the whole fleet, and with slots a tunnel listens on its slot's address only).
 */
export function tunnelHostOf(c: Config, s: Pick<SubdomainRecord, 'relay' | 'slot'>): string {
  if (!c.relays.relayed) return '127.0.0.1';
  const holder = c.relays.list.find((r) => r.name === s.relay) ?? hereRelay(c);
  return slotAddresses(holder, s.slot)?.ipv4 ?? '127.0.0.1';
}
