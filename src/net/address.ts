/**
 * What kind of address an IP is, and whether pipe2me may publish it in the public zone. Addresses that
 * reach the zone come from the network (the address a pod's session arrives from, what a pod reports):
 * only global unicast ones may be published, so that no pod can point a name at a private, loopback or
 * link-local address, nor put an IPv6 address where an IPv4 one belongs. Labs and test worlds whose
 * "internet" uses private or documentation ranges turn on `dns.allow_non_global`.
 */
import { BlockList, isIP, isIPv4, isIPv6 } from 'node:net';

export type AddressFamily = 4 | 6;

export type AddressScope =
  | 'global'
  | 'private' // RFC 1918, IPv6 unique local fc00::/7
  | 'shared' // RFC 6598 carrier-grade NAT, 100.64.0.0/10
  | 'documentation' // 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32
  | 'benchmarking' // 198.18.0.0/15, 2001:2::/48
  | 'loopback'
  | 'link-local'
  | 'multicast'
  | 'unspecified'
  | 'reserved'; // everything else that is not routable: 0/8, 240/4, broadcast, IETF protocol space, ::ffff:0:0/96 …

interface Range { net: string; prefix: number; scope: AddressScope }

// Order matters: the first range that contains the address decides.
const V4: Range[] = [
  { net: '0.0.0.0', prefix: 32, scope: 'unspecified' },
  { net: '0.0.0.0', prefix: 8, scope: 'reserved' },
  { net: '10.0.0.0', prefix: 8, scope: 'private' },
  { net: '100.64.0.0', prefix: 10, scope: 'shared' },
  { net: '127.0.0.0', prefix: 8, scope: 'loopback' },
  { net: '169.254.0.0', prefix: 16, scope: 'link-local' },
  { net: '172.16.0.0', prefix: 12, scope: 'private' },
  { net: '192.0.0.0', prefix: 24, scope: 'reserved' },
  { net: '192.0.2.0', prefix: 24, scope: 'documentation' },
  { net: '192.168.0.0', prefix: 16, scope: 'private' },
  { net: '198.18.0.0', prefix: 15, scope: 'benchmarking' },
  { net: '198.51.100.0', prefix: 24, scope: 'documentation' },
  { net: '203.0.113.0', prefix: 24, scope: 'documentation' },
  { net: '224.0.0.0', prefix: 4, scope: 'multicast' },
  { net: '240.0.0.0', prefix: 4, scope: 'reserved' },
];

const V6: Range[] = [
  { net: '::', prefix: 128, scope: 'unspecified' },
  { net: '::1', prefix: 128, scope: 'loopback' },
  { net: '::ffff:0:0', prefix: 96, scope: 'reserved' }, // IPv4-mapped: never an IPv6 record of its own
  { net: '64:ff9b:1::', prefix: 48, scope: 'private' },
  { net: '100::', prefix: 64, scope: 'reserved' }, // discard-only
  { net: '2001:2::', prefix: 48, scope: 'benchmarking' },
  { net: '2001:db8::', prefix: 32, scope: 'documentation' },
  { net: '2001::', prefix: 23, scope: 'reserved' }, // IETF protocol assignments (TEREDO, ORCHID …)
  { net: 'fc00::', prefix: 7, scope: 'private' },
  { net: 'fe80::', prefix: 10, scope: 'link-local' },
  { net: 'ff00::', prefix: 8, scope: 'multicast' },
];

function compile(ranges: Range[], type: 'ipv4' | 'ipv6'): { list: BlockList; scope: AddressScope }[] {
  return ranges.map((r) => {
    const list = new BlockList();
    list.addSubnet(r.net, r.prefix, type);
    return { list, scope: r.scope };
  });
}

const V4_LISTS = compile(V4, 'ipv4');
const V6_LISTS = compile(V6, 'ipv6');
// Global unicast IPv6 is 2000::/3 (RFC 4291); anything outside it that is not listed above is reserved.
const GLOBAL_V6 = (() => {
  const b = new BlockList();
  b.addSubnet('2000::', 3, 'ipv6');
  return b;
})();

export function addressFamily(ip: string): AddressFamily | null {
  if (isIPv4(ip)) return 4;
  if (isIPv6(ip)) return 6;
  return null;
}

/** The scope of an IP address, or null when it is not one. */
export function addressScope(ip: string): AddressScope | null {
  const family = addressFamily(ip);
  if (family === 4) return V4_LISTS.find((r) => r.list.check(ip, 'ipv4'))?.scope ?? 'global';
  if (family === 6) {
    const hit = V6_LISTS.find((r) => r.list.check(ip, 'ipv6'));
    if (hit) return hit.scope;
    return GLOBAL_V6.check(ip, 'ipv6') ? 'global' : 'reserved';
  }
  return null;
}

/** Scopes a lab may publish with `dns.allow_non_global`: never loopback, link-local, multicast or unspecified. */
const LAB_SCOPES: ReadonlySet<AddressScope> = new Set(['global', 'private', 'shared', 'documentation', 'benchmarking']);

export interface PublishPolicy {
  /** dns.allow_non_global: labs and test worlds. */
  allowNonGlobal: boolean;
}

/**
 * Whether `ip` may be published as a record of `type`: an A record only for an IPv4 address and AAAA only
 * for an IPv6 one, and only global unicast unless the policy allows lab ranges. Returns why not, or null.
 */
export function publishRefusal(ip: string, type: 'A' | 'AAAA', policy: PublishPolicy): string | null {
  const family = addressFamily(ip);
  if (family === null) return `${JSON.stringify(ip.slice(0, 60))} is not an IP address`;
  if (ip.includes('%')) return `${JSON.stringify(ip.slice(0, 60))} has a zone index: it names an interface, not a public address`;
  if (type === 'A' && family !== 4) return `${ip} is an IPv6 address, not one an A record can hold`;
  if (type === 'AAAA' && family !== 6) return `${ip} is an IPv4 address, not one an AAAA record can hold`;
  const scope = addressScope(ip)!;
  if (scope === 'global') return null;
  if (policy.allowNonGlobal && LAB_SCOPES.has(scope)) return null;
  return `${ip} is a ${scope} address, not a global unicast one${LAB_SCOPES.has(scope) ? ' (dns.allow_non_global publishes such addresses in labs)' : ''}`;
}

/** An IPv4 address given in IPv6 form (::ffff:a.b.c.d, as dual-stack sockets report it) in its plain form. */
export function unmapIPv4(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m ? m[1]! : ip;
}

/** An IP address in its one canonical spelling (IPv6 lower-case and compressed, as RFC 5952 writes it). */
export function canonicalIp(ip: string): string {
  if (!isIP(ip)) return ip;
  return ip.includes(':') ? new URL(`http://[${ip}]/`).hostname.slice(1, -1) : ip;
}

/** A local address as /proc/net/tcp{,6} writes it (HEX, 32-bit words in host order, little-endian here) → its text. */
export function procNetAddress(hex: string): string | null {
  if (/^[0-9A-Fa-f]{8}$/.test(hex)) return [6, 4, 2, 0].map((i) => parseInt(hex.slice(i, i + 2), 16)).join('.');
  if (!/^[0-9A-Fa-f]{32}$/.test(hex)) return null;
  const groups: string[] = [];
  for (let w = 0; w < 4; w++) {
    const word = hex.slice(w * 8, w * 8 + 8);
    const bytes = [6, 4, 2, 0].map((i) => word.slice(i, i + 2)).join('');
    groups.push(bytes.slice(0, 4), bytes.slice(4, 8));
  }
  return canonicalIp(groups.join(':'));
}
