/**
 * Failure injection: the things that go wrong for a pod in real life, each with its undo.
 *
 *   cutPodLink / restorePodLink      the pod's connection goes silent (packets dropped, no RST/ICMP)
 *   restartDaemon                    a daemon dies and comes back (new pid, same config)
 *   removeMapping                    a UPnP mapping disappears from the router
 *   removePinholes                   IPv6 pinholes (IGD2) disappear from the router (listPinholes lists them)
 *   forgetAllMappings                the router reboots and forgets every mapping (and pinhole)
 *   changeRouterPublicAddress        the ISP gives the router a new public address
 */
import { ADDR, IGD6_URL, INTERNET_PREFIX_LEN } from './addresses.js';
import type { Daemon } from './processes.js';
import { ROUTER_LAN_IF, ipBatch, type PodName } from './topology.js';
import { FORWARDING_ENABLED, MINIUPNPD, UPNP_NFT, flushMiniupnpdChains } from './upnp.js';
import type { World } from './world.js';
import * as fs from 'node:fs';

// ------------------------------------------------------------------------------------- link cut

/**
 * "link": everything between the pod and the router is dropped, the router's own services (the IGD)
 *         included — a pulled cable or a dead Wi-Fi, but without a carrier change the pod could notice.
 * "internet": only what the router forwards is dropped; the LAN and the IGD still work — an ISP outage.
 */
export type CutScope = 'link' | 'internet';

function cutTable(pod: PodName): string {
  return `p2m_cut_${pod}`;
}

/**
 * Drop the pod's packets silently in the router. nft `drop` sends nothing back (no RST, no ICMP), so
 * the pod's connections just stop: TCP retransmits, ssh keepalives go unanswered, connects time out.
 * The prerouting chain sits before conntrack (raw - 10), so dropped packets leave no state behind.
 * ARP is left alone on purpose: the pod keeps a valid neighbour entry and sees no link change.
 * Idempotent; restorePodLink() deletes the table and traffic flows again (live TCP connections that
 * were not timed out by the ends resume).
 */
export async function cutPodLink(world: World, pod: PodName = 'pod', scope: CutScope = 'link'): Promise<void> {
  const addr = world.address(pod);
  const table = cutTable(pod);
  // With lan6 the pod's global IPv6 address goes silent too. Neighbour discovery is left alone, as ARP
  // is: the pod sees no link change (ND comes from the link-local address anyway most of the time).
  const addr6 = world.lan6 ? world.address6(pod) : undefined;
  const nd = 'icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept';
  const rules =
    scope === 'link'
      ? `  chain from_pod {
    type filter hook prerouting priority raw - 10; policy accept;
    iifname "${ROUTER_LAN_IF}" ip saddr ${addr} drop${addr6 ? `
    iifname "${ROUTER_LAN_IF}" ip6 saddr ${addr6} ${nd}
    iifname "${ROUTER_LAN_IF}" ip6 saddr ${addr6} drop` : ''}
  }
  chain to_pod {
    type filter hook postrouting priority srcnat + 10; policy accept;
    oifname "${ROUTER_LAN_IF}" ip daddr ${addr} drop${addr6 ? `
    oifname "${ROUTER_LAN_IF}" ip6 daddr ${addr6} ${nd}
    oifname "${ROUTER_LAN_IF}" ip6 daddr ${addr6} drop` : ''}
  }`
      : `  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    ip saddr ${addr} drop
    ip daddr ${addr} drop${addr6 ? `
    ip6 saddr ${addr6} drop
    ip6 daddr ${addr6} drop` : ''}
  }`;
  // Delete-then-add in one transaction: a second cut (or a change of scope) replaces the first.
  await world.inNs('rtr', ['nft', '-f', '-'], {
    input: `table inet ${table} { }\ndelete table inet ${table}\ntable inet ${table} {\n${rules}\n}\n`,
    timeout: 10_000,
  });
}

export async function restorePodLink(world: World, pod: PodName = 'pod'): Promise<void> {
  const table = cutTable(pod);
  // Creating the (empty) table first makes the delete succeed when nothing was cut.
  await world.inNs('rtr', ['nft', '-f', '-'], { input: `table inet ${table} { }\ndelete table inet ${table}\n`, timeout: 10_000 });
}

export async function isPodLinkCut(world: World, pod: PodName = 'pod'): Promise<boolean> {
  const r = await world.inNs('rtr', ['nft', 'list', 'tables'], { timeout: 10_000 });
  return r.stdout.split('\n').some((l) => l.trim() === `table inet ${cutTable(pod)}`);
}

// -------------------------------------------------------------------------------- daemon restart

/** Stop a daemon (SIGTERM, SIGKILL after the grace) and start it again; resolves when it is ready. */
export async function restartDaemon(world: World, name: string): Promise<Daemon> {
  return world.procs.restart(name);
}

// ------------------------------------------------------------------------------------ UPnP faults

/**
 * Remove one mapping from the router, through miniupnpd itself: DeletePortMapping (`upnpc -d`) sent
 * from the pod that owns it (secure_mode only lets the owner delete). This keeps miniupnpd's rules,
 * its own rule cache and its lease file consistent, like a real router expiring or dropping a mapping.
 *
 * Why not delete the nft rules behind miniupnpd's back: its nftables backend caches the rule list and
 * only refreshes it after its own changes, so it keeps reporting the mapping (GetSpecificPortMappingEntry
 * still finds it), and a later AddPortMapping from the pod only "updates" the cached entry without
 * recreating the rules — the port stays dead forever. That is an artefact of the test, not a router
 * behaviour pipe2me could be expected to handle.
 */
export async function removeMapping(world: World, externalPort: number, protocol: 'TCP' | 'UDP' = 'TCP', pod: PodName = 'pod'): Promise<void> {
  const r = await world.inNs(pod, ['upnpc', '-u', world.igdUrl, '-i', '-d', String(externalPort), protocol], { timeout: 10_000, allowFailure: true });
  if (!/UPNP_DeletePortMapping\(\) returned : 0/.test(r.output)) {
    throw new Error(`could not remove mapping ${externalPort}/${protocol} via ${pod}: ${r.output}`);
  }
}

// ---------------------------------------------------------------------------------- IPv6 pinholes

/** One of miniupnpd's IGD2 pinholes, as read from its nft rule in the router. */
export interface Pinhole {
  /** The UniqueID that AddPinhole returned (what `upnpc -6 -D/-U/-C` take). */
  id: number;
  /** The internal client (a pod's global address) and port the pinhole lets connections in to. */
  internalAddress: string;
  internalPort: number;
  protocol: 'TCP' | 'UDP';
  /** The only remote address admitted, or undefined for any. */
  remoteAddress: string | undefined;
  /** The only remote port admitted, or undefined for any. */
  remotePort: number | undefined;
  /** Expiry in miniupnpd's clock (CLOCK_MONOTONIC seconds, i.e. seconds since the machine booted). */
  expiresAt: number;
  /** Seconds left on the lease now (0 if due). */
  leaseLeft: number;
  /** The pod whose address it is, if any. */
  pod: PodName | undefined;
  /** nft rule handle in the router's `inet filter miniupnpd` chain. */
  handle: number;
}

/**
 * The IPv6 pinholes miniupnpd currently has, read from the router's nft rules (its label lives in the
 * rule's userdata, "pinhole-<id> ts-<expiry>: <description>", which only `nft --debug=netlink` shows).
 * Port mappings (IPv4, labelled by their description) are not pinholes and are left out.
 */
export async function listPinholes(world: World): Promise<Pinhole[]> {
  const { family, table, forwardChain } = UPNP_NFT;
  const r = await world.inNs('rtr', ['nft', '-a', '--debug=netlink', 'list', 'chain', family, table, forwardChain], { timeout: 10_000, allowFailure: true });
  if (r.exitCode !== 0) {
    if (/No such file or directory/.test(r.output)) return [];
    throw new Error(`nft list chain ${table} ${forwardChain} failed: ${r.output}`);
  }
  return parsePinholes(r.stdout, world, monotonicSeconds());
}

/** Seconds on CLOCK_MONOTONIC (the clock miniupnpd's pinhole timestamps use): /proc/uptime's first field. */
function monotonicSeconds(): number {
  return Math.floor(Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]));
}

/** Parse `nft -a --debug=netlink list chain inet filter miniupnpd`: netlink blocks first, then the listing. */
export function parsePinholes(text: string, world: Pick<World, 'pods' | 'lan6' | 'address6'> | undefined, now: number): Pinhole[] {
  // Netlink blocks: "inet filter miniupnpd <handle> [<previous handle>]" ... "userdata = { ... }".
  const labels = new Map<number, string>();
  let handle: number | undefined;
  for (const line of text.split('\n')) {
    const head = /^inet \S+ \S+ (\d+)(?: \d+)?$/.exec(line.trim());
    if (head) {
      handle = Number(head[1]);
      continue;
    }
    const ud = /^userdata = \{ (.*) \}$/.exec(line.trim());
    if (ud && handle !== undefined) labels.set(handle, ud[1]!);
  }
  const owner = new Map<string, PodName>();
  if (world?.lan6) for (const p of world.pods) owner.set(world.address6(p), p as PodName);
  const out: Pinhole[] = [];
  for (const line of text.split('\n')) {
    const h = /# handle (\d+)\s*$/.exec(line);
    if (!h) continue;
    const label = labels.get(Number(h[1]));
    const l = label ? /^pinhole-(\d+) ts-(\d+):/.exec(label) : null;
    if (!l) continue;
    const daddr = /@nh,192,128 (0x[0-9a-f]+)/.exec(line)?.[1];
    const saddr = /@nh,64,128 (0x[0-9a-f]+)/.exec(line)?.[1];
    const proto = /@nh,48,8 (0x[0-9a-f]+)/.exec(line)?.[1];
    const dport = /th dport (\d+)/.exec(line)?.[1];
    const sport = /th sport (\d+)/.exec(line)?.[1];
    if (!daddr || !dport) continue;
    const internalAddress = hexToIpv6(daddr);
    const expiresAt = Number(l[2]);
    out.push({
      id: Number(l[1]),
      internalAddress,
      internalPort: Number(dport),
      protocol: proto !== undefined && Number(proto) === 17 ? 'UDP' : 'TCP',
      remoteAddress: saddr ? hexToIpv6(saddr) : undefined,
      remotePort: sport ? Number(sport) : undefined,
      expiresAt,
      leaseLeft: Math.max(0, expiresAt - now),
      pod: owner.get(internalAddress),
      handle: Number(h[1]),
    });
  }
  return out;
}

/** "0x20010db8007700000000000000000010" → "2001:db8:77::10" (canonical, RFC 5952). */
export function hexToIpv6(hex: string): string {
  const h = hex.replace(/^0x/, '').padStart(32, '0');
  const groups = Array.from({ length: 8 }, (_, i) => parseInt(h.slice(i * 4, i * 4 + 4), 16));
  // The longest run (of two or more) of zero groups becomes "::", the first such run on a tie.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const text = (gs: number[]) => gs.map((g) => g.toString(16)).join(':');
  if (best < 0) return text(groups);
  return `${text(groups.slice(0, best))}::${text(groups.slice(best + bestLen))}`;
}

export interface RemovePinholesOptions {
  /** Only this pod's pinholes (default: every pod's). */
  pod?: PodName;
  /** Only pinholes to this internal port. */
  port?: number;
}

/**
 * Lose IPv6 pinholes: each is deleted through miniupnpd itself, with DeletePinhole (`upnpc -6 -D id`)
 * sent over IPv6 from the pod that owns it (secure mode lets only the owner delete), so miniupnpd's rule
 * cache and its view of the pinholes stay right — as when a router drops or expires them. What the pod
 * sees afterwards: new inbound connections to the port time out; UpdatePinhole on the lost ID (upnpc
 * -U) answers 402 in CheckPinholeWorking and updates nothing, DeletePinhole answers 402.
 *
 * Why not delete the nft rules behind miniupnpd's back: like its port mappings (see removeMapping),
 * its pinhole code works from a cached copy of the chain that only its own changes refresh.
 *
 * Resolves with the pinholes that were removed.
 */
export async function removePinholes(world: World, opts: RemovePinholesOptions = {}): Promise<Pinhole[]> {
  if (!world.lan6) throw new Error('this world has no IPv6 LAN (created without lan6: true), so no pinholes');
  const all = await listPinholes(world);
  const chosen = all.filter((p) => p.pod !== undefined && (opts.pod === undefined || p.pod === opts.pod) && (opts.port === undefined || p.internalPort === opts.port));
  for (const p of chosen) {
    const r = await world.inNs(p.pod!, ['upnpc', '-6', '-u', IGD6_URL, '-D', String(p.id)], { timeout: 10_000, allowFailure: true });
    if (!/UPNP_DeletePinhole\(\) returned : 0\b/.test(r.output)) throw new Error(`could not remove pinhole ${p.id} (${p.internalAddress} port ${p.internalPort}) via ${p.pod}: ${r.output}`);
  }
  return chosen;
}

/**
 * The router reboots and forgets every mapping: miniupnpd is stopped, its chains flushed and its lease
 * file deleted, then it starts again (and re-runs STUN). Pods see NoSuchEntry (714) for their mappings
 * and must add them again; the router's public address does not change. IPv6 pinholes live in the same
 * chain and are gone too (their IDs start at 1 again).
 */
export async function forgetAllMappings(world: World): Promise<Daemon> {
  if (!world.upnp) throw new Error('this world runs no miniupnpd (created with upnp: false)');
  await world.procs.stop(MINIUPNPD);
  await flushMiniupnpdChains(world);
  fs.rmSync(world.upnp.leaseFile, { force: true });
  return world.procs.start(world.procs.get(MINIUPNPD).spec);
}

// ------------------------------------------------------------------------ router address change

export interface AddressChange {
  previous: string;
  current: string;
}

/**
 * The ISP moves the router to a new public address (default 203.0.113.6); the old one is gone.
 *
 * What pods observe:
 *  - New outbound connections leave from the new address at once (masquerade uses the interface's
 *    address of the moment).
 *  - Established outbound connections break: deleting the address makes the kernel flush the conntrack
 *    entries masqueraded to it, so the pod's next packet leaves from the new address and the server
 *    answers it with a RST (the pod's socket gets ECONNRESET; an idle one finds out at its next write
 *    or keepalive). autossh reconnects; the server sees the new address.
 *  - miniupnpd notices on its own (netlink RTM_DELADDR/RTM_NEWADDR on wan0), re-runs STUN, and
 *    GetExternalIPAddress returns the new address; NAT-PMP clients get an address-change announcement.
 *    This function waits until miniupnpd's STUN run has seen the new address.
 *  - Existing mappings keep working, at the new address (their rules match `iif wan0`, not an address).
 *  - The old address answers nothing (the internet hosts' neighbour entries for it are flushed, as an
 *    ISP stops routing it): clients that still use it (a stale DNS record) time out.
 */
export async function changeRouterPublicAddress(world: World, address: string = ADDR.routerWanAlt): Promise<AddressChange> {
  if (!/^203\.0\.113\.\d{1,3}$/.test(address)) throw new Error(`the router's public address must be in 203.0.113.0/${INTERNET_PREFIX_LEN}, got ${address}`);
  const previous = world.routerPublicAddress;
  const upnpRunning = world.upnp !== undefined && world.procs.has(MINIUPNPD) && world.procs.get(MINIUPNPD).running;
  const since = upnpRunning ? world.procs.logSize(MINIUPNPD) : 0;
  await world.topology.setRouterPublicAddress(address);
  // The ISP stops routing the old address to the router. Here that means the internet hosts forget
  // the router's MAC for it: miniupnpd's DNAT rules match on `iif wan0` only, so a client with a
  // cached neighbour entry would otherwise still reach the mappings through the old address.
  await Promise.all((['srv', 'cli', 'ns2', 'ca'] as const).map((h) => ipBatch(world.ns(h), [`neigh flush to ${previous}`])));
  if (upnpRunning) {
    // After a re-run of STUN miniupnpd logs "Port forwarding is now enabled" if forwarding had been
    // off in between (it may see the address deletion alone first), and "STUN: ... done" otherwise.
    const escaped = address.replaceAll('.', '\\.');
    await world.procs.waitLog(MINIUPNPD, new RegExp(`MAPPED-ADDRESS ${escaped}:\\d+[\\s\\S]*?(?:STUN: \\.\\.\\. done|${FORWARDING_ENABLED})`), {
      since,
      timeoutMs: 10_000,
      failOn: /Port forwarding is now disabled/,
    });
  }
  return { previous, current: address };
}
