/**
 * Failure injection: the things that go wrong for a pod in real life, each with its undo.
 *
 *   cutPodLink / restorePodLink      the pod's connection goes silent (packets dropped, no RST/ICMP)
 *   restartDaemon                    a daemon dies and comes back (new pid, same config)
 *   removeMapping                    a UPnP mapping disappears from the router
 *   forgetAllMappings                the router reboots and forgets every mapping
 *   changeRouterPublicAddress        the ISP gives the router a new public address
 */
import { ADDR, INTERNET_PREFIX_LEN } from './addresses.js';
import type { Daemon } from './processes.js';
import { ROUTER_LAN_IF, ipBatch, type PodName } from './topology.js';
import { FORWARDING_ENABLED, MINIUPNPD, flushMiniupnpdChains } from './upnp.js';
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
  const rules =
    scope === 'link'
      ? `  chain from_pod {
    type filter hook prerouting priority raw - 10; policy accept;
    iifname "${ROUTER_LAN_IF}" ip saddr ${addr} drop
  }
  chain to_pod {
    type filter hook postrouting priority srcnat + 10; policy accept;
    oifname "${ROUTER_LAN_IF}" ip daddr ${addr} drop
  }`
      : `  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    ip saddr ${addr} drop
    ip daddr ${addr} drop
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

/**
 * The router reboots and forgets every mapping: miniupnpd is stopped, its chains flushed and its lease
 * file deleted, then it starts again (and re-runs STUN). Pods see NoSuchEntry (714) for their mappings
 * and must add them again; the router's public address does not change.
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
