/**
 * The network of a test world, built only out of network namespaces with a per-world prefix:
 *
 *   <p>-hub   bridge "internet" (203.0.113.0/24), one veth port per internet host
 *   <p>-srv   wan0 203.0.113.1 and 203.0.113.4          (pipe2me server, STUN)
 *   <p>-rtr   wan0 203.0.113.2, bridge lan0 192.168.77.1 (NAT router: nftables masquerade, miniupnpd)
 *   <p>-pod   eth0 192.168.77.10, default via .1         (further pods: <p>-pod2 .11, ...)
 *   <p>-cli   wan0 203.0.113.3                           (a client on the internet)
 *   <p>-ns2   wan0 203.0.113.5                           (host for a secondary nameserver)
 *   <p>-ca    wan0 203.0.113.20                          (a public CA: the tests' ACME CA, Pebble)
 *
 * With `lan6` the LAN also gets the routed prefix 2001:db8:77::/64 (router lan0 ::1, pods ::10, ::11 ...,
 * default route via ::1; the internet hosts route the prefix via the router's wan0 2001:db8:0:1::2), and
 * the router forwards IPv6 without NAT behind a stateful filter (see routerRuleset). With `routerIpv4:
 * false` the router's wan0 has no IPv4 address at all and the router neither routes nor NATs IPv4.
 *
 * Every veth is created inside a namespace with its peer moved straight into another one, so the
 * host namespace never sees an interface, a route or a firewall rule. Deleting the namespaces
 * removes everything (links, addresses, nft tables) with them.
 */
import { run, type RunResult } from '../../src/util/exec.js';
import {
  ADDR,
  ADDR6,
  SLOT1,
  INTERNET6_PREFIX_LEN,
  INTERNET_PREFIX_LEN,
  LAN6_CIDR,
  LAN6_PREFIX_LEN,
  LAN_CIDR,
  LAN_PREFIX_LEN,
  podAddress,
  podAddress6,
} from './addresses.js';
import { netnsInodeOfName, pidsInNetns, signalPid } from './procfs.js';
import { sleep } from './wait.js';

export type PodName = 'pod' | `pod${number}`;
export type InternetHost = 'srv' | 'rtr' | 'cli' | 'ns2' | 'ca' | 'srv2' | 'srv3' | 'db';
export type HostName = 'hub' | InternetHost | PodName;

/** The router's interface names, fixed so that configs (miniupnpd, nft) can name them. */
export const ROUTER_WAN_IF = 'wan0';
export const ROUTER_LAN_IF = 'lan0';

const IP_TIMEOUT_MS = 10_000;

const BRIDGE_NF_OFF = ['net.bridge.bridge-nf-call-iptables=0', 'net.bridge.bridge-nf-call-ip6tables=0', 'net.bridge.bridge-nf-call-arptables=0'];

export interface TopologySpec {
  /** Namespace name prefix, unique per world (e.g. "p2m-1a2b3c"). */
  prefix: string;
  /** Number of pods behind the router (default 1). */
  pods?: number;
  /** Route the IPv6 prefix LAN6_CIDR to the LAN, behind the router's stateful IPv6 filter (default false). */
  lan6?: boolean;
  /** Give the router its IPv4 WAN address and NAT (default true); false: an IPv6-only uplink. */
  routerIpv4?: boolean;
  /** Relays (1–3, default 1): 2 or 3 add the hosts srv2 (and srv3) and db (the shared store's database). */
  relays?: number;
}

/** The internet hosts of a spec: the fixed ones, and the further relays and the database host. */
function internetHostsOf(spec: Pick<TopologySpec, 'relays'>): InternetHost[] {
  const relays = spec.relays ?? 1;
  if (!Number.isInteger(relays) || relays < 1 || relays > 3) throw new RangeError(`relays must be 1..3, got ${relays}`);
  const extra: InternetHost[] = relays === 1 ? [] : [...(['srv2', 'srv3'] as const).slice(0, relays - 1), 'db'];
  return ['srv', 'rtr', 'cli', 'ns2', 'ca', ...extra];
}

/**
 * The nft mark with which the router's UPnP forward chain (upnp.ts, miniupnpdTables) tells the router's
 * own filter "one of miniupnpd's IPv6 pinholes accepted this packet". Both are base chains on the forward
 * hook, and a packet must be accepted by every base chain: an accept in miniupnpd's chain alone does not
 * get it past p2m_fw's policy drop, so miniupnpd's chain marks the packet and p2m_fw accepts marked ones.
 */
export const PINHOLE_MARK = 0x7032;

/** Pod names for a pod count: "pod", "pod2", "pod3", ... */
export function podNames(count: number): PodName[] {
  if (!Number.isInteger(count) || count < 1 || count > 50) throw new RangeError(`pods must be 1..50, got ${count}`);
  return Array.from({ length: count }, (_, i) => (i === 0 ? 'pod' : (`pod${i + 1}` as PodName)));
}

function podIndex(pod: PodName): number {
  return pod === 'pod' ? 1 : Number(pod.slice(3));
}

/** Namespace names a spec will create, known before anything exists (the world records them first). */
export function namespaceNames(spec: TopologySpec): string[] {
  const hosts: HostName[] = ['hub', ...internetHostsOf(spec), ...podNames(spec.pods ?? 1)];
  return hosts.map((h) => `${spec.prefix}-${h}`);
}

export class Topology {
  readonly prefix: string;
  readonly pods: readonly PodName[];
  readonly hosts: readonly HostName[];
  readonly internetHosts: readonly InternetHost[];
  /** nsfs inode per namespace: identifies our namespaces even after their name is gone (leak checks). */
  readonly inodes = new Map<string, number>();
  /** The LAN has the routed IPv6 prefix (`lan6`). */
  readonly lan6: boolean;
  /** The router has an IPv4 WAN address and NATs the LAN (false: IPv6-only uplink). */
  readonly routerIpv4: boolean;
  private publicAddress: string = ADDR.routerWan;

  constructor(spec: TopologySpec) {
    this.prefix = spec.prefix;
    this.pods = podNames(spec.pods ?? 1);
    this.lan6 = spec.lan6 ?? false;
    this.routerIpv4 = spec.routerIpv4 ?? true;
    this.internetHosts = internetHostsOf(spec);
    this.hosts = ['hub', ...this.internetHosts, ...this.pods];
  }

  ns(host: HostName): string {
    if (!this.hosts.includes(host)) throw new Error(`this world has no host "${host}" (hosts: ${this.hosts.join(', ')})`);
    return `${this.prefix}-${host}`;
  }

  namespaces(): string[] {
    return this.hosts.map((h) => this.ns(h));
  }

  /** The host's main address: what its peers see. For the router that is its current public address. */
  address(host: HostName): string {
    switch (host) {
      case 'srv':
        return ADDR.server;
      case 'rtr':
        if (!this.routerIpv4) throw new Error('the router has no IPv4 public address in this world (routerIpv4: false); use address6("rtr")');
        return this.publicAddress;
      case 'cli':
        return ADDR.client;
      case 'ns2':
        return ADDR.ns2;
      case 'ca':
        return ADDR.ca;
      case 'srv2':
      case 'srv3':
      case 'db':
        this.ns(host);
        return ADDR[host];
      case 'hub':
        throw new Error('the hub has no address: it is only a bridge');
      default:
        this.ns(host);
        return podAddress(podIndex(host));
    }
  }

  /**
   * The host's IPv6 address: the internet hosts' (the router's is its wan0 2001:db8:0:1::2) always, the
   * pods' only with `lan6`.
   */
  address6(host: HostName): string {
    switch (host) {
      case 'srv':
        return ADDR6.server;
      case 'rtr':
        return ADDR6.routerWan;
      case 'cli':
        return ADDR6.client;
      case 'ns2':
        return ADDR6.ns2;
      case 'ca':
        return ADDR6.ca;
      case 'srv2':
      case 'srv3':
      case 'db':
        this.ns(host);
        return ADDR6[host];
      case 'hub':
        throw new Error('the hub has no address: it is only a bridge');
      default:
        this.ns(host);
        if (!this.lan6) throw new Error(`${host} has no global IPv6 address: create the world with lan6: true`);
        return podAddress6(podIndex(host));
    }
  }

  /** The router's current public address (changes with `setRouterPublicAddress`). */
  get routerPublicAddress(): string {
    if (!this.routerIpv4) throw new Error('the router has no IPv4 public address in this world (routerIpv4: false)');
    return this.publicAddress;
  }

  /** Build every namespace, link, address, route and the router's NAT/firewall. */
  async build(): Promise<void> {
    const ns = (h: HostName) => this.ns(h);
    await ipBatch(undefined, this.namespaces().map((n) => `netns add ${n}`));
    for (const n of this.namespaces()) {
      const ino = netnsInodeOfName(n);
      if (ino === undefined) throw new Error(`namespace ${n} was not created`);
      this.inodes.set(n, ino);
    }
    if (this.lan6) {
      // A router forwarding IPv6 solicits a neighbour from its link-local address when the packet's
      // source is not its own, and sends nothing while that address is still tentative (DAD, ~1 s after
      // link up): the first forwarded SYN of a fresh world was lost (a 1 s retransmit). The router's
      // interfaces do not exist yet, so this default is what they are born with.
      await netnsExec(ns('rtr'), ['sysctl', '-qw', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.accept_dad=0']);
    }

    // The hub's bridge, one veth per internet host; the peer is born inside the host's namespace as wan0.
    const internetHosts = this.internetHosts;
    await ipBatch(ns('hub'), [
      'link set lo up',
      'link add internet type bridge',
      'link set internet up',
      ...internetHosts.flatMap((h) => [
        `link add inet-${h} type veth peer name ${ROUTER_WAN_IF} netns ${ns(h)}`,
        `link set inet-${h} master internet up`,
      ]),
    ]);

    // The router's LAN is a bridge, so that more than one pod can hang off it; each pod's end is eth0.
    const inet = (addr: string) => `${addr}/${INTERNET_PREFIX_LEN}`;
    // nodad: no duplicate address detection on a link we built ourselves, so IPv6 works at once.
    const inet6 = (addr: string) => `${addr}/${INTERNET6_PREFIX_LEN} dev ${ROUTER_WAN_IF} nodad`;
    const lan = (addr: string) => `${addr}/${LAN_PREFIX_LEN}`;
    const lan6 = (addr: string, dev: string) => `${addr}/${LAN6_PREFIX_LEN} dev ${dev} nodad`;
    await ipBatch(ns('rtr'), [
      'link set lo up',
      ...(this.routerIpv4 ? [`address add ${inet(ADDR.routerWan)} dev ${ROUTER_WAN_IF}`] : []),
      `address add ${inet6(ADDR6.routerWan)}`,
      `link set ${ROUTER_WAN_IF} up`,
      `link add ${ROUTER_LAN_IF} type bridge`,
      `address add ${lan(ADDR.routerLan)} dev ${ROUTER_LAN_IF}`,
      ...(this.lan6 ? [`address add ${lan6(ADDR6.routerLan, ROUTER_LAN_IF)}`] : []),
      `link set ${ROUTER_LAN_IF} up`,
      ...this.pods.flatMap((p) => [`link add lan-${p} type veth peer name eth0 netns ${ns(p)}`, `link set lan-${p} master ${ROUTER_LAN_IF} up`]),
    ]);

    // With lan6 the internet routes the LAN's prefix to the router, as an ISP routes a delegated prefix.
    const lan6Route = this.lan6 ? [`route add ${LAN6_CIDR} via ${ADDR6.routerWan}`] : [];
    const wanHost = (h: InternetHost, addrs: string[], addr6: string) =>
      ipBatch(ns(h), ['link set lo up', ...addrs.map((a) => `address add ${inet(a)} dev wan0`), `address add ${inet6(addr6)}`, 'link set wan0 up', ...lan6Route]);
    await Promise.all([
      // With relays every relay has a second address (its slot 1: see SLOT1).
      wanHost('srv', [ADDR.server, ADDR.serverAlt, ...(this.internetHosts.includes('db') ? [SLOT1.srv] : [])], ADDR6.server),
      wanHost('cli', [ADDR.client], ADDR6.client),
      wanHost('ns2', [ADDR.ns2], ADDR6.ns2),
      wanHost('ca', [ADDR.ca], ADDR6.ca),
      ...this.internetHosts.filter((h): h is 'srv2' | 'srv3' | 'db' => h === 'srv2' || h === 'srv3' || h === 'db').map((h) => wanHost(h, [ADDR[h], ...(h === 'db' ? [] : [SLOT1[h]])], ADDR6[h])),
      ...this.pods.map((p) =>
        ipBatch(ns(p), [
          'link set lo up',
          `address add ${lan(this.address(p))} dev eth0`,
          ...(this.lan6 ? [`address add ${lan6(this.address6(p), 'eth0')}`] : []),
          'link set eth0 up',
          // An IPv6-only uplink hands out no IPv4 default route: the pod's IPv4 connections off the LAN
          // fail at once (ENETUNREACH) instead of timing out at the router.
          ...(this.routerIpv4 ? [`route add default via ${ADDR.routerLan}`] : []),
          ...(this.lan6 ? [`route add ::/0 via ${ADDR6.routerLan}`] : []),
        ]),
      ),
      // br_netfilter is built into these kernels and on by default in every namespace: without turning it
      // off, frames between two pods on the LAN bridge would go through the router's forward chain
      // (policy drop) as if they were routed.
      // routerIpv4 false: no IPv4 routing at all, so nothing IPv4 leaves the LAN (the pods keep their
      // 192.168.77.x addresses for the LAN and the router's IGD / NAT-PMP).
      netnsExec(ns('rtr'), [
        'sysctl',
        '-qw',
        `net.ipv4.ip_forward=${this.routerIpv4 ? 1 : 0}`,
        ...(this.lan6 ? ['net.ipv6.conf.all.forwarding=1'] : []),
        ...BRIDGE_NF_OFF,
      ]),
      netnsExec(ns('rtr'), ['nft', '-f', '-'], routerRuleset({ ipv4: this.routerIpv4, lan6: this.lan6 })),
    ]);
  }

  /**
   * Move the router to a new public address. The old one is deleted first: deleting a primary address
   * also deletes the secondaries of its subnet, so adding the new one first would lose it.
   */
  async setRouterPublicAddress(address: string): Promise<void> {
    if (!this.routerIpv4) throw new Error('the router has no IPv4 public address in this world (routerIpv4: false)');
    const old = this.publicAddress;
    if (old === address) return;
    await ipBatch(this.ns('rtr'), [
      `address del ${old}/${INTERNET_PREFIX_LEN} dev ${ROUTER_WAN_IF}`,
      `address add ${address}/${INTERNET_PREFIX_LEN} dev ${ROUTER_WAN_IF}`,
    ]);
    this.publicAddress = address;
  }
}

/**
 * The router: masquerade the LAN out of wan0, and a forward chain that drops by default, accepts the
 * LAN going out, replies, and whatever was DNAT-ed in (the UPnP mappings miniupnpd adds).
 *
 * With lan6 the same chain is the IPv6 firewall (RFC 6092's "simple security"): the LAN goes out and
 * replies come back, and a new inbound connection gets in only if one of miniupnpd's IGD2 pinholes
 * accepted it (PINHOLE_MARK, set in miniupnpd's own forward chain: upnp.ts). Without miniupnpd nothing
 * gets in. Without ipv4 there is no masquerade (and no IPv4 forwarding, see build()).
 */
export function routerRuleset(opts: { ipv4: boolean; lan6: boolean } = { ipv4: true, lan6: false }): string {
  const nat = `table ip p2m_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr ${LAN_CIDR} oifname "${ROUTER_WAN_IF}" masquerade
  }
}
`;
  const pinholes = opts.lan6
    ? `
    iifname "${ROUTER_WAN_IF}" oifname "${ROUTER_LAN_IF}" meta nfproto ipv6 meta mark ${hex(PINHOLE_MARK)} accept`
    : '';
  return `${opts.ipv4 ? nat : ''}table inet p2m_fw {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "${ROUTER_LAN_IF}" oifname "${ROUTER_WAN_IF}" accept
    ct status dnat accept${pinholes}
  }
}
`;
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

/** `ip [-n NS] -batch -`: one process for many commands, which keeps bring-up fast. */
export async function ipBatch(ns: string | undefined, commands: readonly string[]): Promise<RunResult> {
  const args = ns === undefined ? ['-batch', '-'] : ['-n', ns, '-batch', '-'];
  return run('ip', args, { input: commands.join('\n') + '\n', timeout: IP_TIMEOUT_MS });
}

/** Run a command inside a namespace (the one primitive topology needs; processes.ts has the full API). */
export async function netnsExec(ns: string, argv: readonly string[], input?: string, timeout = IP_TIMEOUT_MS): Promise<RunResult> {
  return run('ip', ['netns', 'exec', ns, ...argv], { input, timeout });
}

export interface SweepReport {
  /** Processes found in the namespaces and signalled. */
  signalled: number;
  /** Of those, how many needed SIGKILL. */
  killed: number;
  /** What could not be cleaned up. */
  errors: string[];
}

/**
 * Kill every process that still lives in the named namespaces (sshd session children and nsd's server
 * child outlive their parent), SIGTERM first and SIGKILL after `graceMs`, then delete the namespaces.
 * Namespaces are found by name only: an inode recorded earlier may by now belong to someone else's
 * namespace (nsfs reuses inode numbers). If a process survives, its namespace keeps its name, so
 * that a later sweep can still find it.
 */
export async function sweepNamespaces(names: readonly string[], graceMs = 2000): Promise<SweepReport> {
  const inodes = new Set<number>();
  for (const n of names) {
    const ino = netnsInodeOfName(n);
    if (ino !== undefined) inodes.add(ino);
  }
  const report: SweepReport = { signalled: 0, killed: 0, errors: [] };
  const first = pidsInNetns(inodes);
  report.signalled = first.length;
  for (const pid of first) signalPid(pid, 'SIGTERM');
  const deadline = performance.now() + graceMs;
  let left = pidsInNetns(inodes);
  while (left.length > 0 && performance.now() < deadline) {
    await sleep(20);
    left = pidsInNetns(inodes);
  }
  for (let round = 0; left.length > 0 && round < 50; round++) {
    for (const pid of left) if (signalPid(pid, 'SIGKILL')) report.killed++;
    await sleep(20);
    left = pidsInNetns(inodes);
  }
  if (left.length > 0) {
    report.errors.push(`processes survived SIGKILL in namespaces ${names.join(', ')}: ${left.join(', ')}; namespaces kept`);
    return report;
  }

  const existing = names.filter((n) => netnsInodeOfName(n) !== undefined);
  if (existing.length > 0) {
    // -force: keep going past a failed line, so one stuck namespace does not keep the others alive.
    const r = await run('ip', ['-force', '-batch', '-'], {
      input: existing.map((n) => `netns del ${n}`).join('\n') + '\n',
      timeout: IP_TIMEOUT_MS,
      allowFailure: true,
    });
    const still = existing.filter((n) => netnsInodeOfName(n) !== undefined);
    if (still.length > 0) report.errors.push(`could not delete namespaces ${still.join(', ')}: ${r.output}`);
  }
  return report;
}

export async function listNamespaces(): Promise<string[]> {
  const r = await run('ip', ['netns', 'list'], { timeout: IP_TIMEOUT_MS });
  // Lines look like "p2m-1a2b3c-srv (id: 3)" or just the name.
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}
