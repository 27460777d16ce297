/**
 * The direct route from the pod's side, both families: IPv4 mappings on the router (UPnP IGD or NAT-PMP)
 * and the IPv6 route at the pod's own address (pinholes), sharing one pair of entry responders (the
 * pod's answers for http://NAME/ and https://NAME/). Each family reports on its own; the server decides
 * A and AAAA separately.
 */
import type { Companion, StartContext } from '../run.js';
import { startEntryResponders, type EntryResponders } from '../entry.js';
import { ipv4Companion, type Ipv4Options } from './ipv4.js';
import { ipv6Companion, type Ipv6Options } from './ipv6.js';

export interface DirectRouteOptions {
  /** null: no router mappings for IPv4. */
  ipv4: Omit<Ipv4Options, 'entries'> | null;
  /** null: no IPv6 direct route. */
  ipv6: Omit<Ipv6Options, 'entries'> | null;
  redirectStatus?: number;
}

export function directRouteCompanion(opts: DirectRouteOptions) {
  return (ctx: StartContext): Companion => {
    let entries: Promise<EntryResponders> | null = null;
    const shared = () => (entries ??= startEntryResponders(ctx.state, ctx.files, opts.redirectStatus ?? 302).catch((e) => {
      entries = null;
      throw e;
    }));
    const parts: Companion[] = [];
    if (opts.ipv4) parts.push(ipv4Companion({ ...opts.ipv4, entries: shared })(ctx));
    if (opts.ipv6) parts.push(ipv6Companion({ ...opts.ipv6, entries: shared })(ctx));
    return {
      async stop() {
        await Promise.all(parts.map((p) => p.stop()));
        await (await entries?.catch(() => null))?.close();
      },
      status() {
        return Object.assign({}, ...parts.map((p) => p.status()));
      },
    };
  };
}
