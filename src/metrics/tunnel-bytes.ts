/**
 * The bytes through the tunnel ports, read from the firewall's counters when Prometheus scrapes: the
 * dynamic sets tunnel_in / tunnel_out in pipe2me's own nftables table hold one counter per public port
 * that has seen traffic (see templates/nftables/pipe2me.nft.hbs). Reading needs CAP_NET_ADMIN. A table
 * loaded again starts from zero, which Prometheus's rate() takes as a counter reset.
 */
import { run } from '../util/exec.js';
import type { ServerContext } from '../server/context.js';

export interface TunnelBytes {
  total: { in: number; out: number };
  perPort: Map<number, { in: number; out: number }>;
}

interface NftSet { nftables: ({ set?: { elem?: { elem?: { val: number; counter?: { bytes: number } } }[] } })[] }

/** The per-port byte counts in `nft -j list set` output, pure. */
export function parseSetCounters(json: string): Map<number, number> {
  const out = new Map<number, number>();
  const doc = JSON.parse(json) as NftSet;
  for (const item of doc.nftables ?? []) {
    for (const e of item.set?.elem ?? []) {
      if (e.elem && typeof e.elem.val === 'number') out.set(e.elem.val, e.elem.counter?.bytes ?? 0);
    }
  }
  return out;
}

export async function readTunnelBytes(ctx: ServerContext): Promise<TunnelBytes | null> {
  const c = ctx.config;
  if (!c.metrics.tunnelBytes) return null;
  const read = async (set: string) => {
    const r = await run('nft', ['-j', 'list', 'set', 'inet', c.firewall.table, set], { allowFailure: true, timeout: 5000 });
    return r.exitCode === 0 ? parseSetCounters(r.stdout) : null;
  };
  const [inb, outb] = await Promise.all([read('tunnel_in'), read('tunnel_out')]);
  if (!inb || !outb) return null;
  const perPort = new Map<number, { in: number; out: number }>();
  let tin = 0;
  let tout = 0;
  for (const [port, b] of inb) {
    perPort.set(port, { in: b, out: 0 });
    tin += b;
  }
  for (const [port, b] of outb) {
    perPort.set(port, { in: perPort.get(port)?.in ?? 0, out: b });
    tout += b;
  }
  return { total: { in: tin, out: tout }, perPort };
}
