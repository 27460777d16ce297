/**
 * The pod's side of the IPv6 direct route: its own global IPv6 address, a pinhole per public port in the
 * router's firewall (UPnP IGD v2) with a lease renewed at half-time — or none where no IGD answers, since
 * then either nothing filters or nothing can be opened, and the server's probe tells which — and the
 * pod's own translation of public ports to local ones. The pod reports the address *from* that address
 * (its proof that it holds it) with the ports open there; the server's probe tests every port over IPv6
 * as this pod before AAAA ever points here. Stop closes the pinholes and withdraws the address.
 */
import * as os from 'node:os';
import { BlockList, isIPv6 } from 'node:net';
import type { Companion, StartContext } from '../run.js';
import type { EntryResponders } from '../entry.js';
import { wantedMappings } from './ipv4.js';
import { UpnpPinholes } from './upnp.js';
import { loadTranslation, removeTranslation, translationTable } from './translate.js';
import type { WantedMapping } from './types.js';

/** The pinhole lease range IGD v2 allows (miniupnpd refuses anything outside it with 402). */
export const PINHOLE_LEASE_MAX = 86400;

const GLOBAL_UNICAST = (() => {
  const b = new BlockList();
  b.addSubnet('2000::', 3, 'ipv6');
  return b;
})();

/**
 * This machine's global IPv6 address (2000::/3), the first one on an interface that is up; null when it
 * has none. Privacy (temporary) addresses cannot be told apart here; pass --ipv6 ADDRESS to choose.
 */
export function globalIpv6(ifaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces()): string | null {
  for (const list of Object.values(ifaces)) {
    for (const a of list ?? []) {
      if (a.family === 'IPv6' && !a.internal && GLOBAL_UNICAST.check(a.address, 'ipv6')) return canonical(a.address);
    }
  }
  return null;
}

function canonical(ip: string): string {
  return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
}

export interface Ipv6Options {
  /** 'auto': this machine's global address; an address: that one (it must be this machine's). */
  address: 'auto' | string;
  /** The IGD's description URL at its IPv6 address (skips SSDP discovery). */
  igdUrl?: string;
  leaseSeconds: number;
  entries: () => Promise<EntryResponders>;
}

interface Opening extends WantedMapping {
  ok: boolean;
  via: 'pinhole' | 'open' | null;
  id: number | null;
  lease: number | null;
  detail: string;
}

export function ipv6Companion(opts: Ipv6Options) {
  return (ctx: StartContext): Companion => {
    const s = ctx.state;
    const pinholes = new UpnpPinholes(opts.igdUrl);
    const table = translationTable(s.id);
    const lease = Math.min(Math.max(opts.leaseSeconds || PINHOLE_LEASE_MAX, 1), PINHOLE_LEASE_MAX);
    let address: string | null = null;
    let openings: Opening[] = [];
    let problem: string | null = null;
    let firewall: string | null = null;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    let lastReport = '';
    let published = false;
    const log = (m: string) => ctx.log(`ipv6: ${m}`);

    const closeAll = async () => {
      await Promise.all(openings.filter((o) => o.id !== null).map((o) => pinholes.remove(o.id!)));
      openings = [];
    };

    const report = async () => {
      // An address with no port open is of no use to anyone: it is withdrawn, with the reason.
      const open = address && !problem ? openings.filter((o) => o.ok) : [];
      const body = {
        address: open.length ? address : null,
        openings: open.map((o) => ({ port: o.externalPort, internal_port: o.internalPort, via: o.via!, lease_seconds: o.lease })),
      };
      const note = problem ?? openings.filter((o) => !o.ok).map((o) => `${o.externalPort}: ${o.detail}`).join('; ');
      const key = JSON.stringify({ body, note });
      if (key === lastReport) return;
      try {
        // Sent from the address itself: the server takes an address only from the address.
        await ctx.client.call('PUT', `/v1/subdomains/${s.id}/ipv6`, { ...body, ...(note ? { note: note.slice(0, 500) } : {}) }, undefined, body.address ? { from: body.address } : {});
        lastReport = key;
        published = body.address !== null;
        ctx.refreshStatus();
      } catch (e) {
        log(`could not report the IPv6 route to the server: ${(e as Error).message}`);
      }
    };

    const cycle = async () => {
      if (stopped) return;
      try {
        const entries = await opts.entries();
        const now = opts.address === 'auto' ? globalIpv6() : isIPv6(opts.address) ? canonical(opts.address) : null;
        if (now !== address) {
          if (address) log(`this machine's IPv6 address changed from ${address} to ${now ?? 'none'}`);
          else if (now) log(`this machine's global IPv6 address is ${now}`);
          await closeAll();
          address = now;
        }
        if (!address) {
          problem = 'this machine has no global IPv6 address';
          await removeTranslation(table);
        } else {
          const wanted = wantedMappings(s, entries);
          const t = await loadTranslation(table, address, wanted.map((w) => ({ publicPort: w.externalPort, localPort: w.internalPort })));
          problem = t.ok ? null : t.detail;
          if (!t.ok) {
            if (openings.length === 0 || openings.some((o) => o.ok)) log(t.detail);
            await closeAll();
          } else {
            const fw = await pinholes.firewall();
            // A router that gave this pod pinholes is still one until renewing them fails: one status
            // query that went unanswered (a busy router) must not close the pod's pinholes.
            const igd = fw.found || openings.some((o) => o.via === 'pinhole' && o.ok);
            if (fw.detail !== firewall) log(fw.found ? `the router's IPv6 firewall: ${fw.detail}` : igd ? `the router did not say how its IPv6 firewall is (${fw.detail}); renewing the pinholes it gave` : `${fw.detail}: no pinholes to open; the ports count as open if nothing filters (the server's probe tells)`);
            firewall = fw.detail;
            const next: Opening[] = [];
            for (const w of wanted) {
              const prev = openings.find((o) => o.externalPort === w.externalPort && o.internalPort === w.internalPort);
              let o: Opening;
              if (!igd) {
                if (prev?.id) await pinholes.remove(prev.id);
                o = { ...w, ok: true, via: 'open', id: null, lease: null, detail: 'nothing to open' };
              } else if (prev?.id && (await pinholes.renew(prev.id, lease))) {
                o = { ...prev, ok: true, lease };
              } else {
                const r = await pinholes.add(address, w.externalPort, lease);
                o = r.ok ? { ...w, ok: true, via: 'pinhole', id: r.id, lease, detail: `pinhole ${r.id}` } : { ...w, ok: false, via: null, id: null, lease: null, detail: r.detail };
                if (!prev || prev.ok !== o.ok) log(`${o.ok ? 'opened a pinhole' : 'could not open a pinhole'} for [${address}]:${w.externalPort} (${w.what})${o.ok ? '' : `: ${o.detail}`}`);
              }
              next.push(o);
            }
            // Ports no longer wanted (a service removed) close.
            for (const o of openings) if (o.id !== null && !next.some((n) => n.id === o.id)) await pinholes.remove(o.id);
            openings = next;
          }
        }
      } catch (e) {
        problem = `the IPv6 route failed: ${(e as Error).message}`;
        log(problem);
      }
      await report();
      const every = Math.max(5, Math.floor(lease / 2)) * 1000;
      if (!stopped) timer = setTimeout(() => void cycle(), address ? every : Math.min(every, 60_000));
    };
    void cycle();

    return {
      async stop() {
        stopped = true;
        clearTimeout(timer);
        const had = openings.some((o) => o.id !== null);
        await closeAll();
        if (had) log('pinholes removed');
        await removeTranslation(table);
        // Withdraw the address only if one was published: a stopping pod makes no call it does not need.
        if (published) {
          problem = 'the pod stopped';
          await report();
        }
      },
      status() {
        return {
          ipv6: {
            address,
            firewall,
            problem,
            openings: openings.map((o) => ({ port: o.externalPort, internal_port: o.internalPort, what: o.what, ok: o.ok, via: o.via, pinhole: o.id, lease: o.lease, detail: o.detail })),
          },
        };
      },
    };
  };
}
