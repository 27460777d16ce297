/**
 * The router's UPnP IGD through `upnpc` (miniupnpc): IPv4 port mappings (IGD v1/v2 WANIPConnection) and
 * IPv6 pinholes (IGD v2 WANIPv6FirewallControl). One adapter per daemon: nothing else runs upnpc.
 */
import { run } from '../../util/exec.js';
import type { MapResult, PortMapper, Gateway, WantedMapping } from './types.js';

const UPNP_ERRORS: Record<string, string> = {
  '718': 'the router already maps this port for another device (ConflictInMappingEntry)',
  '606': 'the router does not allow this (Action not authorized)',
  '725': 'the router takes only permanent leases (OnlyPermanentLeasesSupported)',
  '716': 'the router cannot map this wildcard port',
  '724': 'the router needs the same internal and external port',
  '501': 'the router refused (ActionFailed)',
  '402': 'the router refused the arguments (Invalid Args; a pinhole lease must be 1-86400 s)',
  '702': 'the router\'s IPv6 firewall is off (FirewallDisabled)',
  '701': 'the router lets no inbound pinholes in (PinholeSpaceExhausted or not allowed)',
  '704': 'the router has no such pinhole (NoSuchEntry)',
  '706': 'the router refused the pinhole (InboundPinholeNotAllowed)',
};

const TIMEOUT_MS = 15_000;

/** Parses `upnpc -s` (or any upnpc run) output. */
export function parseStatus(out: string): Partial<Gateway> {
  const url = /desc: (\S+)/.exec(out)?.[1];
  const lanIp = /Local LAN ip address\s*:\s*(\S+)/.exec(out)?.[1];
  const ext = /ExternalIPAddress = (\S+)/.exec(out)?.[1];
  return { ...(url ? { url } : {}), ...(lanIp ? { lanIp } : {}), ...(ext ? { externalIp: ext } : {}) };
}

export function upnpFailure(out: string, fallback: string): { ok: false; code?: string; detail: string } {
  const m = /failed with code (\d+) \(([^)]*)\)/.exec(out) ?? /returned (\d+) \(([^)]*)\)/.exec(out);
  if (m) return { ok: false, code: m[1], detail: UPNP_ERRORS[m[1]!] ?? `the router refused: ${m[2]} (${m[1]})` };
  return { ok: false, detail: out.trim().split('\n').pop()?.slice(0, 200) || fallback };
}

export function parseAddResult(out: string): { ok: true; detail: string } | { ok: false; code?: string; detail: string } {
  if (/is redirected to internal/.test(out)) return { ok: true, detail: 'mapped' };
  return upnpFailure(out, 'upnpc failed');
}

/** `upnpc -6 -A` prints "AddPinhole: ([]:0 -> [ADDR]:PORT) / Pinhole ID = N" (and exits 0 on refusals too). */
export function parsePinholeId(out: string): number | null {
  const m = /AddPinhole: \(.*\) \/ Pinhole ID = (\d+)/.exec(out);
  return m ? Number(m[1]) : null;
}

/** `upnpc -6 -U ID LEASE` succeeded: it printed the update and no "UpdatePinhole: ID (N) failed" line. */
export function pinholeRenewed(out: string, id: number): boolean {
  return new RegExp(`UpdatePinhole: Pinhole ID = ${id} with Lease Time`).test(out) && !/UpdatePinhole: ID \(/.test(out);
}

/** IPv4 port mappings by UPnP IGD. */
export class UpnpMapper implements PortMapper {
  readonly method = 'upnp' as const;
  constructor(private readonly igdUrl?: string) {}

  private base(url?: string): string[] {
    // -i: miniupnpc 2.2 calls an IGD whose external address is in a reserved range "not connected" and
    // would refuse to use it; the mapping works anyway and the server's probe is the judge.
    const u = url ?? this.igdUrl;
    return u ? ['-u', u, '-i'] : ['-i'];
  }

  async discover(previous?: Gateway): Promise<Gateway | null> {
    const url = previous?.url ?? this.igdUrl;
    const r = await run('upnpc', [...this.base(url), '-s'], { allowFailure: true, timeout: TIMEOUT_MS });
    const g = parseStatus(r.stdout + r.stderr);
    // With -u there is no discovery, so no "desc:" line: the URL is the one we gave.
    const found = g.url ?? (url && /ExternalIPAddress|Local LAN ip address/.test(r.stdout) ? url : undefined);
    if (!found || !g.lanIp) return null;
    return { url: found, lanIp: g.lanIp, externalIp: g.externalIp ?? null };
  }

  async add(g: Gateway, m: WantedMapping, description: string, lease: number): Promise<MapResult> {
    const r = await this.addOnce(g, m, description, lease);
    // Some routers take only permanent leases: map permanently then (renewal still re-checks it).
    if (!r.ok && r.code === '725') return this.addOnce(g, m, description, 0);
    return r;
  }

  private async addOnce(g: Gateway, m: WantedMapping, description: string, lease: number): Promise<MapResult> {
    const r = await run('upnpc', [...this.base(g.url), '-e', description, '-a', g.lanIp, String(m.internalPort), String(m.externalPort), 'TCP', String(lease)], { allowFailure: true, timeout: TIMEOUT_MS });
    const res = parseAddResult(r.stdout + r.stderr);
    return res.ok ? { ...res, lease } : res;
  }

  async remove(g: Gateway, m: WantedMapping): Promise<void> {
    await run('upnpc', [...this.base(g.url), '-d', String(m.externalPort), 'TCP'], { allowFailure: true, timeout: TIMEOUT_MS });
  }
}

/** IPv6 pinholes in the router's firewall by UPnP IGD v2 (WANIPv6FirewallControl), asked over IPv6. */
export class UpnpPinholes {
  /**
   * @param igdUrl the IGD's description URL at its IPv6 address: the router opens a pinhole only for the
   *   address a request comes from (secure mode), so the request must come from the pod's own IPv6 address.
   */
  constructor(private readonly igdUrl?: string) {}

  private base(): string[] {
    return this.igdUrl ? ['-6', '-u', this.igdUrl, '-i'] : ['-6', '-i'];
  }

  /** Whether an IGD with an IPv6 firewall answers, and whether it lets pinholes in. */
  async firewall(): Promise<{ found: boolean; inboundAllowed: boolean; detail: string }> {
    const r = await run('upnpc', [...this.base(), '-S'], { allowFailure: true, timeout: TIMEOUT_MS });
    const out = r.stdout + r.stderr;
    // "FirewallEnabled: 1 & Inbound Pinhole Allowed: 1"
    const enabled = /FirewallEnabled:\s*(\d)/.exec(out);
    const inbound = /Inbound Pinhole Allowed:\s*(\d)/.exec(out);
    if (!enabled && !inbound) return { found: false, inboundAllowed: false, detail: /No IGD/i.test(out) ? 'no UPnP IGD answers over IPv6' : out.trim().split('\n').pop()?.slice(0, 200) ?? 'no answer' };
    return { found: true, inboundAllowed: inbound?.[1] === '1', detail: `firewall ${enabled?.[1] === '1' ? 'on' : 'off'}, inbound pinholes ${inbound?.[1] === '1' ? 'allowed' : 'not allowed'}` };
  }

  async add(address: string, port: number, lease: number): Promise<{ ok: true; id: number } | { ok: false; code?: string; detail: string }> {
    // Remote host empty and remote port 0: any client may connect (it is a public service).
    const r = await run('upnpc', [...this.base(), '-A', '', '0', address, String(port), 'TCP', String(lease)], { allowFailure: true, timeout: TIMEOUT_MS });
    const out = r.stdout + r.stderr;
    const id = parsePinholeId(out);
    if (id !== null) return { ok: true, id };
    const f = upnpFailure(out, 'upnpc -A failed');
    // miniupnpd refuses pinholes below 1024 outright (hard-coded, no option): say so, it is not this pod's fault.
    if (f.code === '606' && port < 1024) return { ...f, detail: `the router refuses IPv6 pinholes for ports below 1024 (606 Action not authorized)` };
    return f;
  }

  /** Renew with UpdatePinhole (adding the same pinhole again is not a renewal in miniupnpd 2.3). */
  async renew(id: number, lease: number): Promise<boolean> {
    const r = await run('upnpc', [...this.base(), '-U', String(id), String(lease)], { allowFailure: true, timeout: TIMEOUT_MS });
    return pinholeRenewed(r.stdout + r.stderr, id);
  }

  async remove(id: number): Promise<void> {
    await run('upnpc', [...this.base(), '-D', String(id)], { allowFailure: true, timeout: TIMEOUT_MS });
  }
}
