/**
 * The router's UPnP IGD: miniupnpd (Debian's nftables build) in the router namespace, with a STUN
 * server in the server namespace.
 *
 * Why STUN: 203.0.113.0/24 is on miniupnpd's list of reserved ranges, so with the router's real WAN
 * address it logs "Port forwarding is impossible" and refuses every AddPortMapping (501); `ext_ip=`
 * refuses reserved addresses too. With `ext_perform_stun=yes` miniupnpd asks a STUN server what its
 * public address is and whether the NAT in front of it is "full cone"; a STUN server that sees the
 * router's own address convinces it, and forwarding is enabled.
 *
 * Debian's `stund` (package stun-server, the classic Vovida RFC 3489 server) works: it binds all four
 * address/port pairs and honours CHANGE-REQUEST, which is exactly what miniupnpd's four-probe check
 * needs. So no STUN server of our own is needed.
 *
 * Why our own nft tables: miniupnpd's nftables build only adds rules to chains that must already exist,
 * and the shipped /etc/miniupnpd/nft_init.sh is broken (it sources the iptables helper script and dies
 * with "-f: not found"). So the harness loads the tables itself.
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RunOptions, RunResult } from '../../src/util/exec.js';
import { ADDR, ADDR6, IGD6_URL, IGD_HTTP_PORT, IGD_URL, LAN_CIDR, STUN_ALT_PORT, STUN_PORT } from './addresses.js';
import type { Daemon, DaemonSpec, Processes } from './processes.js';
import { PINHOLE_MARK, ROUTER_LAN_IF, ROUTER_WAN_IF, type HostName } from './topology.js';

export const MINIUPNPD = 'miniupnpd';
export const STUND = 'stund';
/** What miniupnpd logs once mappings can be made. */
export const FORWARDING_ENABLED = 'Port forwarding is now enabled';
/** What it logs when it decided it cannot forward (e.g. reserved WAN address and no STUN). */
export const FORWARDING_IMPOSSIBLE = /Port forwarding is impossible|Performing STUN failed/;
/** What it logs once each service's sockets are open (the last step before its main loop). */
export const LISTENING = {
  upnp: `HTTP listening on port ${IGD_HTTP_PORT}`,
  /** With lan6: the IGD's IPv6 address, found on lan0 (without one miniupnpd disables IPv6). */
  upnp6: `HTTP IPv6 address given to control points : [${ADDR6.routerLan}]`,
  natpmp: 'Listening for NAT-PMP/PCP traffic on port 5351',
} as const;

/** Names of the nft table and chains miniupnpd (Debian 2.3.1, nftables) uses by default. */
export const UPNP_NFT = {
  table: 'filter',
  family: 'inet',
  forwardChain: 'miniupnpd',
  dnatChain: 'prerouting_miniupnpd',
  snatChain: 'postrouting_miniupnpd',
} as const;

export interface UpnpHost {
  readonly procs: Processes;
  inNs(host: HostName, argv: readonly string[], opts?: RunOptions): Promise<RunResult>;
  mkdir(rel: string, mode?: number): string;
}

/** What the router's miniupnpd speaks (each defaults to true). */
export interface RouterProtocols {
  /** UPnP IGD (SSDP + HTTP/SOAP on port 5000): enable_upnp. */
  upnp?: boolean;
  /** NAT-PMP (and PCP) on UDP 5351 of the LAN address: enable_natpmp. */
  natpmp?: boolean;
}

export interface RouterUpnp {
  /** The IGD's root description over IPv4 (meaningless when UPnP is off). */
  igdUrl: string;
  /** The same over IPv6 (only with lan6). */
  igd6Url: string | undefined;
  protocols: Required<RouterProtocols>;
  /**
   * miniupnpd's readiness: "Port forwarding is now enabled" (after STUN; only with an IPv4 WAN address:
   * without one there is nothing to forward and STUN would make it exit), then every LISTENING line of
   * the services it runs.
   */
  readiness: { forwarding: boolean; lines: readonly string[] };
  configFile: string;
  leaseFile: string;
  pidFile: string;
}

export interface RouterUpnpOptions {
  /** Run the STUN server (default true). Without it miniupnpd never enables forwarding here. */
  stun?: boolean;
  readyTimeoutMs?: number;
  /** What miniupnpd speaks (default UPnP and NAT-PMP). */
  protocols?: RouterProtocols;
  /** The LAN has the routed IPv6 prefix: serve IGD2 pinholes to it (default false). */
  lan6?: boolean;
  /** The router has its IPv4 WAN address (default true). */
  routerIpv4?: boolean;
}

/**
 * The permission rules: the LAN may map any high port, and also the router's 80 and 443 (pipe2me may
 * publish a pod's web service on the router's standard ports, to any local port); nothing else.
 */
export const PERMISSIONS = [
  `allow 1024-65535 ${LAN_CIDR} 1024-65535`,
  `allow 80 ${LAN_CIDR} 1-65535`,
  `allow 443 ${LAN_CIDR} 1-65535`,
  'deny 0-65535 0.0.0.0/0 0-65535',
] as const;

export function miniupnpdConfig(opts: { leaseFile: string; stun: boolean; uuid: string; protocols?: RouterProtocols }): string {
  const yes = (b: boolean | undefined) => (b ?? true ? 'yes' : 'no');
  return [
    `ext_ifname=${ROUTER_WAN_IF}`,
    `listening_ip=${ROUTER_LAN_IF}`,
    `http_port=${IGD_HTTP_PORT}`,
    `enable_upnp=${yes(opts.protocols?.upnp)}`,
    `enable_natpmp=${yes(opts.protocols?.natpmp)}`,
    // A LAN host may only map ports to itself.
    'secure_mode=yes',
    'system_uptime=no',
    'notify_interval=60',
    'clean_ruleset_interval=600',
    ...(opts.stun ? ['ext_perform_stun=yes', `ext_stun_host=${ADDR.server}`, `ext_stun_port=${STUN_PORT}`] : []),
    `lease_file=${opts.leaseFile}`,
    `uuid=${opts.uuid}`,
    ...PERMISSIONS,
    '',
  ].join('\n');
}

/**
 * The tables/chains miniupnpd expects (what the broken nft_init.sh was meant to create).
 *
 * With lan6, the forward chain also hands miniupnpd's pinhole verdicts to the router's own filter
 * (topology.ts, p2m_fw, policy drop): an inbound IPv6 packet is marked PINHOLE_MARK before the jump
 * into miniupnpd's chain, where a pinhole rule accepts it (which ends this base chain with the mark
 * on); one that no pinhole accepts comes back and loses the mark. p2m_fw accepts marked packets only.
 * This chain runs just before p2m_fw (priority filter - 1), so the mark is there when p2m_fw looks.
 */
export function miniupnpdTables(opts: { lan6?: boolean } = {}): string {
  const { table, family, forwardChain, dnatChain, snatChain } = UPNP_NFT;
  const inbound6 = `iifname "${ROUTER_WAN_IF}" oifname "${ROUTER_LAN_IF}" meta nfproto ipv6`;
  const mark = `0x${PINHOLE_MARK.toString(16).padStart(8, '0')}`;
  const jump = opts.lan6
    ? `    ${inbound6} meta mark set ${mark}
    jump ${forwardChain}
    ${inbound6} meta mark set 0x00000000`
    : `    jump ${forwardChain}`;
  return `table ${family} ${table} {
  chain forward {
    type filter hook forward priority filter - 1; policy accept;
${jump}
  }
  chain ${forwardChain} { }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    jump ${dnatChain}
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    jump ${snatChain}
  }
  chain ${dnatChain} { }
  chain ${snatChain} { }
}
`;
}

export function stundSpec(): DaemonSpec {
  return {
    name: STUND,
    host: 'srv',
    // -v: stund only says it has bound its four sockets in verbose mode, and that is its readiness signal.
    argv: ['stund', '-v', '-h', ADDR.server, '-a', ADDR.serverAlt, '-p', String(STUN_PORT), '-o', String(STUN_ALT_PORT)],
    ready: async (d, procs) => {
      await procs.waitLog(d.name, /(?:Opened port \d+ with fd \d+[\s\S]*?){4}/, { timeoutMs: 5000 });
    },
  };
}

export function miniupnpdSpec(files: RouterUpnp, readyTimeoutMs: number): DaemonSpec {
  return {
    name: MINIUPNPD,
    host: 'rtr',
    argv: ['/usr/sbin/miniupnpd', '-d', '-f', files.configFile, '-P', files.pidFile],
    ready: async (d, procs) => {
      const deadline = performance.now() + readyTimeoutMs;
      const left = () => Math.max(1, deadline - performance.now());
      if (files.readiness.forwarding) await procs.waitLog(d.name, FORWARDING_ENABLED, { timeoutMs: left(), failOn: FORWARDING_IMPOSSIBLE });
      // Each search covers this start's whole log, so the order of the lines does not matter.
      for (const line of files.readiness.lines) await procs.waitLog(d.name, line, { timeoutMs: left(), failOn: FORWARDING_IMPOSSIBLE });
    },
  };
}

/** Load the tables, start stund then miniupnpd, and wait until miniupnpd says forwarding works. */
export async function startRouterUpnp(world: UpnpHost, opts: RouterUpnpOptions = {}): Promise<RouterUpnp> {
  const stun = opts.stun ?? true;
  const ipv4 = opts.routerIpv4 ?? true;
  const dir = world.mkdir('upnp');
  const protocols = { upnp: opts.protocols?.upnp ?? true, natpmp: opts.protocols?.natpmp ?? true };
  const lines = [
    ...(protocols.upnp ? [LISTENING.upnp] : []),
    ...(protocols.upnp && opts.lan6 ? [LISTENING.upnp6] : []),
    ...(protocols.natpmp ? [LISTENING.natpmp] : []),
  ];
  const files: RouterUpnp = {
    igdUrl: IGD_URL,
    igd6Url: opts.lan6 ? IGD6_URL : undefined,
    protocols,
    readiness: { forwarding: ipv4, lines },
    configFile: path.join(dir, 'miniupnpd.conf'),
    leaseFile: path.join(dir, 'upnp.leases'),
    pidFile: path.join(dir, 'miniupnpd.pid'),
  };
  // Without an IPv4 WAN address miniupnpd's STUN fails ("Performing STUN failed. EXITING"): it runs
  // without, logs "Cannot get IP address for ext interface wan0" and serves pinholes all the same.
  fs.writeFileSync(files.configFile, miniupnpdConfig({ leaseFile: files.leaseFile, stun: stun && ipv4, uuid: randomUUID(), protocols }), {
    mode: 0o644,
  });
  // miniupnpd asks STUN once at start-up and gives up if nobody answers, so stund must be bound first.
  await Promise.all([
    world.inNs('rtr', ['nft', '-f', '-'], { input: miniupnpdTables({ lan6: opts.lan6 }), timeout: 10_000 }),
    stun ? world.procs.start(stundSpec()) : Promise.resolve(undefined as Daemon | undefined),
  ]);
  await world.procs.start(miniupnpdSpec(files, opts.readyTimeoutMs ?? 10_000));
  return files;
}

/** Empty miniupnpd's chains: with its lease file gone too, that is a router that lost every mapping. */
export async function flushMiniupnpdChains(world: UpnpHost): Promise<void> {
  const { family, table, forwardChain, dnatChain, snatChain } = UPNP_NFT;
  const script = [forwardChain, dnatChain, snatChain].map((c) => `flush chain ${family} ${table} ${c}`).join('\n') + '\n';
  await world.inNs('rtr', ['nft', '-f', '-'], { input: script, timeout: 10_000 });
}
