/**
 * The pod's side of the direct route: UPnP IGD mappings on its router through `upnpc` (miniupnpc), with a
 * lease renewed before it runs out, reported to the server (whose probe decides whether DNS may point at
 * the router), and removed on stop. The tunnel stays up whatever happens here: it is the fallback.
 */
import { run } from '../util/exec.js';
import type { Companion, StartContext } from './run.js';
import { startEntryResponders, type EntryResponders } from './entry.js';

export interface Gateway {
  url: string;
  lanIp: string;
  externalIp: string | null;
}

export interface WantedMapping {
  externalPort: number;
  internalPort: number;
  what: string;
}

export interface MappingOutcome extends WantedMapping {
  ok: boolean;
  detail: string;
  lease: number;
}

const UPNP_ERRORS: Record<string, string> = {
  '718': 'the router already maps this port for another device (ConflictInMappingEntry)',
  '606': 'the router does not allow this mapping (Action not authorized)',
  '725': 'the router takes only permanent leases (OnlyPermanentLeasesSupported)',
  '716': 'the router cannot map this wildcard port',
  '724': 'the router needs the same internal and external port',
  '501': 'the router refused (ActionFailed)',
};

/** Parses `upnpc -s` (or any upnpc run) output. */
export function parseStatus(out: string): Partial<Gateway> {
  const url = /desc: (\S+)/.exec(out)?.[1];
  const lanIp = /Local LAN ip address\s*:\s*(\S+)/.exec(out)?.[1];
  const ext = /ExternalIPAddress = (\S+)/.exec(out)?.[1];
  return { ...(url ? { url } : {}), ...(lanIp ? { lanIp } : {}), ...(ext ? { externalIp: ext } : {}) };
}

export function parseAddResult(out: string): { ok: boolean; code?: string; detail: string } {
  if (/is redirected to internal/.test(out)) return { ok: true, detail: 'mapped' };
  const m = /failed with code (\d+) \(([^)]*)\)/.exec(out);
  if (m) return { ok: false, code: m[1], detail: UPNP_ERRORS[m[1]!] ?? `the router refused: ${m[2]} (${m[1]})` };
  return { ok: false, detail: out.trim().split('\n').pop()?.slice(0, 200) ?? 'upnpc failed' };
}

export class Upnpc {
  constructor(private readonly igdUrl?: string) {}

  private base(url?: string): string[] {
    // -i: miniupnpc 2.2 calls an IGD whose external address is in a reserved range "not connected" and
    // would refuse to use it; the mapping works anyway and the server's probe is the judge.
    const u = url ?? this.igdUrl;
    return u ? ['-u', u, '-i'] : ['-i'];
  }

  async status(url?: string): Promise<Gateway | null> {
    const given = url ?? this.igdUrl;
    const r = await run('upnpc', [...this.base(url), '-s'], { allowFailure: true, timeout: 15_000 });
    const g = parseStatus(r.stdout + r.stderr);
    // With -u there is no discovery, so no "desc:" line: the URL is the one we gave.
    const found = g.url ?? (given && /ExternalIPAddress|Local LAN ip address/.test(r.stdout) ? given : undefined);
    if (!found || !g.lanIp) return null;
    return { url: found, lanIp: g.lanIp, externalIp: g.externalIp ?? null };
  }

  async add(g: Gateway, m: WantedMapping, description: string, lease: number): Promise<{ ok: boolean; code?: string; detail: string }> {
    const r = await run('upnpc', [...this.base(g.url), '-e', description, '-a', g.lanIp, String(m.internalPort), String(m.externalPort), 'TCP', String(lease)], { allowFailure: true, timeout: 15_000 });
    return parseAddResult(r.stdout + r.stderr);
  }

  async remove(g: Gateway, externalPort: number): Promise<void> {
    await run('upnpc', [...this.base(g.url), '-d', String(externalPort), 'TCP'], { allowFailure: true, timeout: 15_000 });
  }
}

export interface UpnpOptions {
  igdUrl?: string;
  leaseSeconds: number;
  redirectStatus?: number;
}

const LOCAL = new Set(['localhost', '127.0.0.1', '::1']);

export function upnpCompanion(opts: UpnpOptions) {
  return (ctx: StartContext): Companion => {
    const upnpc = new Upnpc(opts.igdUrl);
    const s = ctx.state;
    let gateway: Gateway | null = null;
    let entries: EntryResponders | null = null;
    let outcomes: MappingOutcome[] = [];
    let problem: string | null = null;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    let lastReport = '';

    const wanted = (): WantedMapping[] => {
      const list: WantedMapping[] = [];
      for (const svc of s.services) {
        // The router can forward only to this machine (UPnP secure mode), and only to a service that
        // listens on its LAN address; one bound to loopback only fails the probe and keeps the tunnel.
        if (LOCAL.has(svc.localHost)) list.push({ externalPort: svc.port, internalPort: svc.localPort, what: svc.protocol });
      }
      if (entries && s.services.some((x) => x.protocol === 'http' || x.protocol === 'https')) {
        list.push({ externalPort: 80, internalPort: entries.httpPort, what: 'http entry' });
        const firstHttps = s.services.find((x) => x.protocol === 'https');
        if (s.passthrough && firstHttps) list.push({ externalPort: 443, internalPort: firstHttps.localPort, what: 'https entry (passthrough)' });
        else if (entries.httpsPort) list.push({ externalPort: 443, internalPort: entries.httpsPort, what: 'https entry' });
      }
      return list;
    };

    const report = async () => {
      const mappings = outcomes.filter((o) => o.ok).map((o) => ({ external_port: o.externalPort, internal_port: o.internalPort, external_ip: gateway?.externalIp ?? null, lease_seconds: o.lease }));
      const note = problem ?? outcomes.filter((o) => !o.ok).map((o) => `${o.externalPort}: ${o.detail}`).join('; ');
      const key = JSON.stringify({ mappings, note });
      if (key === lastReport) return;
      try {
        await ctx.client.call('PUT', `/v1/subdomains/${s.id}/mappings`, { mappings, ...(note ? { note: note.slice(0, 500) } : {}) });
        lastReport = key;
        ctx.refreshStatus();
      } catch (e) {
        ctx.log(`upnp: could not report mappings to the server: ${(e as Error).message}`);
      }
    };

    const cycle = async () => {
      if (stopped) return;
      try {
        if (!entries) entries = await startEntryResponders(s, ctx.files, opts.redirectStatus ?? 302);
        const g = await upnpc.status(gateway?.url);
        if (!g) {
          if (gateway || problem === null) ctx.log('upnp: no UPnP gateway found; clients reach this pod through the server');
          gateway = null;
          problem = 'no UPnP gateway found on the LAN';
          outcomes = [];
        } else {
          if (gateway && gateway.externalIp !== g.externalIp) ctx.log(`upnp: the router's external address changed from ${gateway.externalIp} to ${g.externalIp}`);
          if (!gateway) ctx.log(`upnp: gateway ${g.url}, this pod is ${g.lanIp}, router's external address ${g.externalIp ?? 'unknown'}`);
          gateway = g;
          problem = null;
          const next: MappingOutcome[] = [];
          for (const m of wanted()) {
            const desc = `pipe2me ${s.fqdn} ${m.what}`;
            let lease = opts.leaseSeconds;
            let r = await upnpc.add(g, m, desc, lease);
            if (!r.ok && r.code === '725') {
              lease = 0;
              r = await upnpc.add(g, m, desc, 0);
            }
            const prev = outcomes.find((o) => o.externalPort === m.externalPort);
            if (!prev || prev.ok !== r.ok) ctx.log(`upnp: ${r.ok ? 'mapped' : 'could not map'} router port ${m.externalPort} -> ${g.lanIp}:${m.internalPort} (${m.what})${r.ok ? '' : `: ${r.detail}`}`);
            next.push({ ...m, ok: r.ok, detail: r.detail, lease });
          }
          outcomes = next;
        }
      } catch (e) {
        problem = `upnp failed: ${(e as Error).message}`;
        ctx.log(problem);
      }
      await report();
      // Renew at half the lease (a permanent lease is still re-checked, to notice an address change).
      const every = Math.max(5, Math.floor((opts.leaseSeconds || 600) / 2)) * 1000;
      if (!stopped) timer = setTimeout(() => void cycle(), gateway ? every : Math.min(every, 60_000));
    };
    void cycle();

    return {
      async stop() {
        stopped = true;
        clearTimeout(timer);
        if (gateway) {
          for (const o of outcomes.filter((x) => x.ok)) await upnpc.remove(gateway, o.externalPort);
          if (outcomes.some((o) => o.ok)) ctx.log('upnp: mappings removed');
        }
        outcomes = [];
        await report();
        await entries?.close();
      },
      status() {
        return {
          upnp: {
            gateway: gateway?.url ?? null,
            lan_ip: gateway?.lanIp ?? null,
            external_ip: gateway?.externalIp ?? null,
            problem,
            mappings: outcomes.map((o) => ({ external_port: o.externalPort, internal_port: o.internalPort, what: o.what, ok: o.ok, detail: o.detail, lease: o.lease })),
          },
        };
      },
    };
  };
}
