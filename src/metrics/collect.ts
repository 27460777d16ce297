/**
 * One scrape: the Prometheus text exposition (prom-client) of the fleet as the store, the session records
 * and the firewall's counters say it now, merged with the API process's own metrics. Nothing is cached
 * between scrapes: a scrape costs a dozen aggregate queries at any fleet size (and the per-pod series, when
 * turned on, one row per pod).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import client from 'prom-client';
import type { ServerContext } from '../server/context.js';
import type { Config } from '../config/types.js';
import { canonicalIp } from '../net/address.js';
import { readSessionsAsync } from '../daemons/sessions.js';
import { readCounters, readMarks } from '../state/metrics.js';
import { acmeOrderCounts, activeRoutes, allocatedPorts, podCertificateExpiry, portOwnerKey, portOwners, soonestExpiry, subdomainCounts, tokenUse } from '../state/fleet-stats.js';
import { reasonClass } from '../probe/reasons.js';
import { PACKAGE_ROOT } from '../package-root.js';
import { SCRAPE_METRICS, STORE_METRICS, type MetricSpec } from './catalogue.js';
import { readTunnelBytes, type TunnelBytes } from './tunnel-bytes.js';
import { pendingLogins } from './logins.js';

const VERSION = (() => {
  try {
    return (JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
})();

type Values = { labels: Record<string, string>; value: number; metricName?: string }[];

/** A metric whose values are computed here, registered as prom-client would register its own. */
function fixed(name: string, spec: MetricSpec, values: Values): client.Metric {
  const m = {
    name, help: spec.help, type: spec.type, aggregator: 'sum',
    get: async () => ({ name, help: spec.help, type: spec.type, aggregator: 'sum', values }),
    reset: () => undefined,
  };
  return m as unknown as client.Metric;
}

function add(reg: client.Registry, name: string, values: Values, specs: Record<string, MetricSpec> = SCRAPE_METRICS): void {
  reg.registerMetric(fixed(name, specs[name]!, values));
}

/** The store's counters and histograms: known names only, with their initial zeroes. */
async function storeMetrics(reg: client.Registry, ctx: ServerContext): Promise<void> {
  const rows = await readCounters(ctx.db);
  // Logins: the store's share plus what the key lookup's files hold now.
  const pending = pendingLogins(ctx.layout.connsDir);
  for (const result of ['accepted', 'refused'] as const) {
    const row = rows.find((r) => r.name === 'pipe2me_tunnel_logins_total' && r.labels['result'] === result);
    if (row) row.value += pending[result];
    else rows.push({ name: 'pipe2me_tunnel_logins_total', labels: { result }, value: pending[result] });
  }
  for (const [name, spec] of Object.entries(STORE_METRICS)) {
    if (spec.type === 'histogram') {
      const values: Values = [];
      for (const r of rows) {
        for (const suffix of ['_bucket', '_sum', '_count'] as const) if (r.name === name + suffix) values.push({ labels: r.labels, value: r.value, metricName: name + suffix });
      }
      reg.registerMetric(fixed(name, spec, values));
      continue;
    }
    const values: Values = rows.filter((r) => r.name === name).map((r) => ({ labels: r.labels, value: r.value }));
    for (const init of spec.initial ?? []) {
      if (!values.some((v) => JSON.stringify(v.labels) === JSON.stringify(init))) values.push({ labels: { ...init }, value: 0 });
    }
    reg.registerMetric(fixed(name, spec, values));
  }
}

export interface ScrapeOptions {
  /** The firewall's byte counters (a stand-in in tests that run no nft). */
  tunnelBytes?: () => Promise<TunnelBytes | null>;
}

export async function scrapeFleet(ctx: ServerContext, o: ScrapeOptions = {}): Promise<client.Registry> {
  const reg = new client.Registry();
  const c = ctx.config;
  const perPod = c.metrics.perPod;
  add(reg, 'pipe2me_build_info', [{ labels: { version: VERSION, node: process.version }, value: 1 }]);

  const counts = await subdomainCounts(ctx.db);
  add(reg, 'pipe2me_subdomains', [{ labels: { status: 'active' }, value: counts.active }, { labels: { status: 'expired' }, value: counts.expired }]);

  const routes = await activeRoutes(ctx.db);
  const sessions = await readSessionsAsync(ctx.layout.sessionsDir);
  const online = routes.filter((r) => sessions.get(r.name)?.alive);
  add(reg, 'pipe2me_pods', [{ labels: {}, value: routes.length }]);
  add(reg, 'pipe2me_pods_online', [{ labels: {}, value: online.length }]);
  const byRoute = new Map<string, number>();
  const byReason = new Map<string, number>();
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  for (const r of routes) {
    bump(byRoute, `ipv4|${r.route}`);
    bump(byRoute, `ipv6|${r.route6}`);
    bump(byReason, `ipv4|${reasonClass(r.routeReason)}`);
    // IPv6 reasons only for pods that take part (reported an address, or were decided): the rest never asked.
    if (r.reportedIpv6 || r.route6Reason) bump(byReason, `ipv6|${reasonClass(r.route6Reason)}`);
  }
  for (const family of ['ipv4', 'ipv6']) for (const route of ['direct', 'server']) if (!byRoute.has(`${family}|${route}`)) byRoute.set(`${family}|${route}`, 0);
  const split = (m: Map<string, number>, second: string): Values => [...m].map(([k, value]) => {
    const [family, v] = k.split('|') as [string, string];
    return { labels: { family, [second]: v }, value };
  });
  add(reg, 'pipe2me_pods_by_route', split(byRoute, 'route'));
  add(reg, 'pipe2me_pods_by_reason', split(byReason, 'reason'));

  add(reg, 'pipe2me_ports_allocated', [{ labels: {}, value: await allocatedPorts(ctx.db) }]);
  add(reg, 'pipe2me_ports_range_size', [{ labels: {}, value: c.ports.last - c.ports.first + 1 }]);
  add(reg, 'pipe2me_certificate_expiry_soonest_timestamp_seconds', (await soonestExpiry(ctx.db)).map((x) => ({ labels: { issuer: x.issuer, kind: x.kind }, value: x.notAfter })));
  add(reg, 'pipe2me_acme_orders', Object.entries(await acmeOrderCounts(ctx.db)).map(([state, value]) => ({ labels: { state }, value })));

  // Labels need not be unique (nor given: ''): tokens that share one are one series, summed — two samples
  // of one series in a scrape would be dropped by Prometheus as duplicates.
  const tokens = (await tokenUse(ctx.db)).filter((t) => !t.revoked);
  const byLabel = (pick: (t: (typeof tokens)[number]) => number | null): Values => {
    const m = new Map<string, number>();
    for (const t of tokens) {
      const v = pick(t);
      if (v !== null) m.set(t.label, (m.get(t.label) ?? 0) + v);
    }
    return [...m].map(([token, value]) => ({ labels: { token }, value }));
  };
  add(reg, 'pipe2me_token_subdomains', byLabel((t) => t.subdomains));
  add(reg, 'pipe2me_token_subdomains_limit', byLabel((t) => t.maxSubdomains));
  add(reg, 'pipe2me_token_ports', byLabel((t) => t.ports));
  add(reg, 'pipe2me_token_ports_limit', byLabel((t) => t.maxTotalPorts));

  const marks = await readMarks(ctx.db);
  const mark = (name: string, metric: string) => {
    const m = marks.get(name);
    if (m) add(reg, metric, [{ labels: {}, value: m.value }]);
  };
  mark('probe_last_run', 'pipe2me_probe_last_run_timestamp_seconds');
  mark('apply_last_run', 'pipe2me_apply_last_run_timestamp_seconds');
  mark('apply_last_success', 'pipe2me_apply_last_success_timestamp_seconds');
  mark('apply_last_failed', 'pipe2me_apply_last_run_failed');

  await storeMetrics(reg, ctx);

  const bytes = await (o.tunnelBytes ?? (() => readTunnelBytes(ctx)))().catch(() => null);
  if (bytes) {
    add(reg, 'pipe2me_tunnel_bytes_total', [{ labels: { direction: 'in' }, value: bytes.total.in }, { labels: { direction: 'out' }, value: bytes.total.out }]);
  }

  if (perPod) {
    const names = routes.map((r) => r.name);
    add(reg, 'pipe2me_pod_online', names.map((n) => ({ labels: { subdomain: n }, value: sessions.get(n)?.alive ? 1 : 0 })));
    add(reg, 'pipe2me_pod_route_direct', routes.flatMap((r) => [
      { labels: { subdomain: r.name, family: 'ipv4' }, value: r.route === 'direct' ? 1 : 0 },
      { labels: { subdomain: r.name, family: 'ipv6' }, value: r.route6 === 'direct' ? 1 : 0 },
    ]));
    add(reg, 'pipe2me_pod_certificate_expiry_timestamp_seconds', [...(await podCertificateExpiry(ctx.db))].map(([n, v]) => ({ labels: { subdomain: n }, value: v })));
    if (bytes) {
      const owners = await portOwners(ctx.db);
      const slotOf = endpointSlot(ctx.config);
      const per = new Map<string, { in: number; out: number }>();
      for (const e of bytes.endpoints) {
        const slot = slotOf(e.address);
        const name = slot === null ? undefined : owners.get(portOwnerKey(slot, e.port));
        if (!name) continue;
        const x = per.get(name) ?? { in: 0, out: 0 };
        x.in += e.in;
        x.out += e.out;
        per.set(name, x);
      }
      add(reg, 'pipe2me_pod_tunnel_bytes_total', [...per].flatMap(([n, b]) => [{ labels: { subdomain: n, direction: 'in' }, value: b.in }, { labels: { subdomain: n, direction: 'out' }, value: b.out }]));
    }
  }
  return reg;
}

/**
 * Which address slot a tunnel's public address is, on this relay: always 0 without slots (ports are
 * fleet-wide, tunnels listen on every address); null for an address that is none of this relay's slots.
 */
export function endpointSlot(c: Config): (address: string) => number | null {
  if (c.relays.slots <= 1) return () => 0;
  const here = c.relays.list.find((r) => r.name === c.relays.self);
  const slots = new Map<string, number>();
  for (const [i, a] of (here?.slots ?? []).entries()) {
    slots.set(canonicalIp(a.ipv4), i);
    if (a.ipv6) slots.set(canonicalIp(a.ipv6), i);
  }
  return (address) => slots.get(canonicalIp(address)) ?? null;
}
