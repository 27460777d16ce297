/**
 * The bytes through the tunnel ports, read from the firewall's counters when Prometheus scrapes: the
 * dynamic sets tunnel_{in,out}{4,6} in pipe2me's own nftables table hold one counter per port that has
 * seen traffic — with address slots, per slot address and port (see templates/nftables/pipe2me.nft.hbs). Reading needs CAP_NET_ADMIN.
 * A table loaded again starts from zero, which Prometheus's rate() takes as a counter reset.
 */
import { canonicalIp } from '../net/address.js';
import { run } from '../util/exec.js';
import type { ServerContext } from '../server/context.js';

/** The bytes of one public address and port, in (from clients) and out (back to them). */
export interface EndpointBytes { address: string; port: number; in: number; out: number }

export interface TunnelBytes {
  total: { in: number; out: number };
  /** One per address and port that has seen traffic. */
  endpoints: EndpointBytes[];
}

interface NftSet { nftables: ({ set?: { elem?: ({ elem?: { val: unknown; counter?: { bytes: number } } } | null)[] } })[] }

/**
 * The byte count of each address and port in `nft -j list set` output, pure: of an `addr . inet_service`
 * set (with address slots), or of an `inet_service` set (without: the address is '', any of this relay's).
 */
export function parseSetCounters(json: string): Map<string, { address: string; port: number; bytes: number }> {
  const out = new Map<string, { address: string; port: number; bytes: number }>();
  const doc = JSON.parse(json) as NftSet;
  for (const item of doc.nftables ?? []) {
    for (const e of item.set?.elem ?? []) {
      const el = e?.elem;
      if (!el) continue;
      const val = el.val;
      const bytes = Number(el.counter?.bytes ?? 0);
      if (!Number.isFinite(bytes)) continue;
      if (typeof val === 'number') {
        out.set(endpointKey('', val), { address: '', port: val, bytes });
        continue;
      }
      const parts = (val as { concat?: unknown[] } | undefined)?.concat;
      if (!Array.isArray(parts) || typeof parts[0] !== 'string' || typeof parts[1] !== 'number') continue;
      const address = canonicalIp(parts[0]);
      out.set(endpointKey(address, parts[1]), { address, port: parts[1], bytes });
    }
  }
  return out;
}

export const endpointKey = (address: string, port: number) => `${address} ${port}`;

/**
 * The IPv4 and IPv6 sets of one direction as one, pure: without address slots both are keyed on the port
 * alone, and a port that carried both families has its bytes in each.
 */
export function mergeCounters(...sets: ReturnType<typeof parseSetCounters>[]): ReturnType<typeof parseSetCounters> {
  const out: ReturnType<typeof parseSetCounters> = new Map();
  for (const set of sets) {
    for (const [k, e] of set) {
      const have = out.get(k);
      out.set(k, have ? { ...have, bytes: have.bytes + e.bytes } : { ...e });
    }
  }
  return out;
}

/** The in and out counters of the same endpoints side by side, and their totals, pure. */
export function joinCounters(inb: ReturnType<typeof parseSetCounters>, outb: ReturnType<typeof parseSetCounters>): TunnelBytes {
  const by = new Map<string, EndpointBytes>();
  const total = { in: 0, out: 0 };
  for (const [dir, set] of [['in', inb], ['out', outb]] as const) {
    for (const [k, e] of set) {
      const x = by.get(k) ?? { address: e.address, port: e.port, in: 0, out: 0 };
      x[dir] += e.bytes;
      total[dir] += e.bytes;
      by.set(k, x);
    }
  }
  return { total, endpoints: [...by.values()] };
}

export async function readTunnelBytes(ctx: ServerContext): Promise<TunnelBytes | null> {
  const c = ctx.config;
  if (!c.metrics.tunnelBytes) return null;
  const read = async (set: string) => {
    const r = await run('nft', ['-j', 'list', 'set', 'inet', c.firewall.table, set], { allowFailure: true, timeout: 5000 });
    return r.exitCode === 0 ? parseSetCounters(r.stdout) : null;
  };
  const sets = await Promise.all(['tunnel_in4', 'tunnel_in6', 'tunnel_out4', 'tunnel_out6'].map(read));
  if (sets.some((s) => s === null)) return null;
  const [in4, in6, out4, out6] = sets as NonNullable<(typeof sets)[number]>[];
  return joinCounters(mergeCounters(in4!, in6!), mergeCounters(out4!, out6!));
}
