/**
 * The pod's side of the IPv4 direct route: port mappings on its router — by UPnP IGD, or by NAT-PMP when
 * no IGD answers (the first protocol that answers is kept while it works, and asked again when it stops) —
 * with a lease renewed at half of what the router granted, reported to the server (whose probe decides
 * whether the A record may point at the router), and removed on stop. The tunnel stays up whatever
 * happens here: it is the fallback.
 */
import { isIPv4 } from 'node:net';
import type { Companion, StartContext } from '../run.js';
import type { EntryResponders } from '../entry.js';
import type { Gateway, PortMapper, WantedMapping } from './types.js';
import { UpnpMapper } from './upnp.js';
import { NatpmpMapper } from './natpmp.js';
import type { PodState } from '../files.js';

export interface MappingOutcome extends WantedMapping {
  ok: boolean;
  detail: string;
  lease: number;
}

export interface Ipv4Options {
  /** Which protocols to try, in order (default: UPnP IGD, then NAT-PMP). */
  protocols?: ('upnp' | 'natpmp')[];
  igdUrl?: string;
  natpmpGateway?: string;
  leaseSeconds: number;
  entries: () => Promise<EntryResponders>;
}

const LOCAL = new Set(['localhost', '127.0.0.1', '::1']);
/** The API's bound on a reported lease (a year). */
const MAX_REPORTED_LEASE = 31_536_000;

/** What the router must forward for the IPv4 direct route, pure: the services and the web entries. */
export function wantedMappings(s: Pick<PodState, 'services' | 'passthrough'>, entries: Pick<EntryResponders, 'httpPort' | 'httpsPort'> | null): WantedMapping[] {
  const list: WantedMapping[] = [];
  for (const svc of s.services) {
    // The router can forward only to this machine (UPnP secure mode, NAT-PMP by design), and only to a
    // service that listens on its LAN address; one bound to loopback only fails the probe and keeps the tunnel.
    if (LOCAL.has(svc.localHost)) list.push({ externalPort: svc.port, internalPort: svc.localPort, what: svc.protocol });
  }
  if (entries && s.services.some((x) => x.protocol === 'http' || x.protocol === 'https')) {
    list.push({ externalPort: 80, internalPort: entries.httpPort, what: 'http entry' });
    const firstHttps = s.services.find((x) => x.protocol === 'https');
    if (s.passthrough && firstHttps) list.push({ externalPort: 443, internalPort: firstHttps.localPort, what: 'https entry (passthrough)' });
    else if (entries.httpsPort) list.push({ externalPort: 443, internalPort: entries.httpsPort, what: 'https entry' });
  }
  return list;
}

const NAMES = { upnp: 'UPnP IGD', natpmp: 'NAT-PMP' } as const;

export function ipv4Companion(opts: Ipv4Options) {
  return (ctx: StartContext): Companion => {
    const s = ctx.state;
    const mappers: PortMapper[] = (opts.protocols ?? ['upnp', 'natpmp']).map((p) => (p === 'upnp' ? new UpnpMapper(opts.igdUrl) : new NatpmpMapper(opts.natpmpGateway)));
    let mapper: PortMapper | null = null;
    let gateway: Gateway | null = null;
    let entries: EntryResponders | null = null;
    let outcomes: MappingOutcome[] = [];
    let problem: string | null = null;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    let lastReport = '';
    const log = (m: string) => ctx.log(`router: ${m}`);

    const report = async () => {
      // What the router said is reported only in shapes the server takes: an IPv4 address, a lease of at most a year.
      const ext = gateway?.externalIp && isIPv4(gateway.externalIp) ? gateway.externalIp : null;
      const mappings = outcomes.filter((o) => o.ok).map((o) => ({ external_port: o.externalPort, internal_port: o.internalPort, external_ip: ext, lease_seconds: Math.min(o.lease, MAX_REPORTED_LEASE), via: mapper?.method ?? 'upnp' }));
      const note = problem ?? outcomes.filter((o) => !o.ok).map((o) => `${o.externalPort}: ${o.detail}`).join('; ');
      const key = JSON.stringify({ mappings, note });
      if (key === lastReport) return;
      try {
        await ctx.client.call('PUT', `/v1/subdomains/${s.id}/mappings`, { mappings, ...(note ? { note: note.slice(0, 500) } : {}) });
        lastReport = key;
        ctx.refreshStatus();
      } catch (e) {
        log(`could not report mappings to the server: ${(e as Error).message}`);
      }
    };

    /** The gateway of the protocol in use if it still answers, else of the first one that does. */
    const find = async (): Promise<{ mapper: PortMapper; gateway: Gateway } | null> => {
      if (mapper) {
        const g = await mapper.discover(gateway ?? undefined);
        if (g) return { mapper, gateway: g };
      }
      for (const m of mappers) {
        if (m === mapper) continue;
        const g = await m.discover();
        if (g) return { mapper: m, gateway: g };
      }
      return null;
    };

    let shortestLease = opts.leaseSeconds;
    const cycle = async () => {
      if (stopped) return;
      try {
        if (!entries) entries = await opts.entries();
        const found = await find();
        if (!found) {
          if (gateway || problem === null) log(`no ${mappers.map((m) => NAMES[m.method]).join(' or ')} gateway answers; clients reach this pod through the server`);
          mapper = null;
          gateway = null;
          problem = `no ${mappers.map((m) => NAMES[m.method]).join(' or ')} gateway found on the LAN`;
          outcomes = [];
        } else {
          const g = found.gateway;
          if (mapper !== found.mapper) log(`${NAMES[found.mapper.method]} gateway ${g.url}, this pod is ${g.lanIp}, router's external address ${g.externalIp ?? 'unknown'}`);
          else if (gateway && gateway.externalIp !== g.externalIp) log(`the router's external address changed from ${gateway.externalIp} to ${g.externalIp}`);
          if (mapper && mapper !== found.mapper) outcomes = [];
          mapper = found.mapper;
          gateway = g;
          problem = null;
          const next: MappingOutcome[] = [];
          shortestLease = opts.leaseSeconds;
          for (const m of wantedMappings(s, entries)) {
            const r = await mapper.add(g, m, `pipe2me ${s.fqdn} ${m.what}`, opts.leaseSeconds);
            const prev = outcomes.find((o) => o.externalPort === m.externalPort);
            if (!prev || prev.ok !== r.ok) log(`${r.ok ? 'mapped' : 'could not map'} router port ${m.externalPort} -> ${g.lanIp}:${m.internalPort} (${m.what}, ${NAMES[mapper.method]})${r.ok ? '' : `: ${r.detail}`}`);
            if (r.ok && r.lease > 0) shortestLease = Math.min(shortestLease || r.lease, r.lease);
            next.push({ ...m, ok: r.ok, detail: r.detail, lease: r.ok ? r.lease : 0 });
          }
          outcomes = next;
        }
      } catch (e) {
        problem = `port mapping failed: ${(e as Error).message}`;
        log(problem);
      }
      await report();
      // Renew at half the shortest lease granted (a permanent one is still re-checked, to notice an address
      // change), and at least twice a day whatever a router grants (a timer past 2^31 ms would fire at once).
      const every = Math.min(Math.max(5, Math.floor((shortestLease || 600) / 2)), 12 * 3600) * 1000;
      if (!stopped) timer = setTimeout(() => void cycle(), gateway ? every : Math.min(every, 60_000));
    };
    void cycle();

    return {
      async stop() {
        stopped = true;
        clearTimeout(timer);
        if (gateway && mapper) {
          // All at once: a stopping pod has a few seconds (systemd, a test's teardown) before it is killed.
          const m = mapper;
          const g = gateway;
          await Promise.all(outcomes.filter((x) => x.ok).map((o) => m.remove(g, o)));
          if (outcomes.some((o) => o.ok)) log(`mappings removed (${NAMES[mapper.method]})`);
        }
        outcomes = [];
        await report();
      },
      status() {
        return {
          router: {
            protocol: mapper?.method ?? null,
            gateway: gateway?.url ?? null,
            lan_ip: gateway?.lanIp ?? null,
            external_ip: gateway?.externalIp ?? null,
            problem,
            mappings: outcomes.map((o) => ({ external_port: o.externalPort, internal_port: o.internalPort, what: o.what, ok: o.ok, detail: o.detail, lease: o.lease, via: mapper?.method ?? null })),
          },
        };
      },
    };
  };
}
