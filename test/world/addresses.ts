/**
 * The addresses of the test world. They exist only inside network namespaces the world creates:
 * 203.0.113.0/24 (TEST-NET-3, RFC 5737) plays "the internet", 192.168.77.0/24 is the pod's LAN.
 * Every world uses the same addresses; worlds never collide because each lives in its own namespaces.
 */

export const INTERNET_CIDR = '203.0.113.0/24';
export const LAN_CIDR = '192.168.77.0/24';
export const INTERNET_PREFIX_LEN = 24;
export const LAN_PREFIX_LEN = 24;

export const ADDR = {
  /** The pipe2me server (sshd, nginx, BIND/NSD, STUN). */
  server: '203.0.113.1',
  /** Second server address: STUN's alternate address (RFC 3489 CHANGE-REQUEST needs two). */
  serverAlt: '203.0.113.4',
  /** The router's public (WAN) address at world start. */
  routerWan: '203.0.113.2',
  /** Where `changeRouterPublicAddress()` moves the router by default. */
  routerWanAlt: '203.0.113.6',
  /** The router's LAN address: the pod's default gateway and the UPnP IGD. */
  routerLan: '192.168.77.1',
  /** The first pod. Further pods get .11, .12, ... */
  pod: '192.168.77.10',
  /** A client on the internet (curl, dig, openssl s_client). */
  client: '203.0.113.3',
  /** Host for a secondary nameserver. */
  ns2: '203.0.113.5',
  /** A public CA on the internet (the tests run Pebble there as the ACME CA). */
  ca: '203.0.113.20',
  /** Further relays of a world with `relays: 2` or 3 (the first relay is srv). */
  srv2: '203.0.113.11',
  srv3: '203.0.113.12',
  /** The shared store's database host of a world with relays (PostgreSQL). */
  db: '203.0.113.30',
} as const;

/** Each relay's second public address in a world with relays: its address slot 1 (slot 0 is ADDR's). */
export const SLOT1 = { srv: '203.0.113.21', srv2: '203.0.113.22', srv3: '203.0.113.23' } as const;

/**
 * The world's internet speaks IPv6 too: 2001:db8::/32 (RFC 3849, documentation) inside the namespaces
 * only. Every internet host has an address on one /64; the router's LAN stays IPv4-only unless the
 * world is created with `lan6: true`, which routes LAN6_CIDR to the pods (see topology.ts).
 */
export const INTERNET6_CIDR = '2001:db8:0:1::/64';
export const INTERNET6_PREFIX_LEN = 64;
/** The routed IPv6 prefix of the pod's LAN (`lan6: true`): the router routes it, nobody NATs it. */
export const LAN6_CIDR = '2001:db8:77::/64';
export const LAN6_PREFIX_LEN = 64;
export const ADDR6 = {
  server: '2001:db8:0:1::1',
  routerWan: '2001:db8:0:1::2',
  client: '2001:db8:0:1::3',
  ns2: '2001:db8:0:1::5',
  ca: '2001:db8:0:1::20',
  srv2: '2001:db8:0:1::11',
  srv3: '2001:db8:0:1::12',
  db: '2001:db8:0:1::30',
  /** The router's LAN address with `lan6`: the pods' IPv6 gateway and the IGD over IPv6 (IGD6_URL). */
  routerLan: '2001:db8:77::1',
  /** The first pod's global address with `lan6`. Further pods get ::11, ::12, ... (podAddress6). */
  pod: '2001:db8:77::10',
} as const;

export const STUN_PORT = 3478;
export const STUN_ALT_PORT = 3479;
export const IGD_HTTP_PORT = 5000;
/** The URL `upnpc -u` takes; it skips the 2 s SSDP discovery. */
export const IGD_URL = `http://${ADDR.routerLan}:${IGD_HTTP_PORT}/rootDesc.xml`;
/**
 * The same IGD over IPv6 (`lan6: true`), for `upnpc -6 -u IGD6_URL ...`. Pinholes (WANIPv6FirewallControl)
 * must be asked for over IPv6: miniupnpd only lets a client open a pinhole to the very address its
 * request came from (compared as text with the InternalClient argument).
 */
export const IGD6_URL = `http://[${ADDR6.routerLan}]:${IGD_HTTP_PORT}/rootDesc.xml`;

/** The LAN address of pod number `index` (1 is "pod", 2 is "pod2", ...). */
export function podAddress(index: number): string {
  if (!Number.isInteger(index) || index < 1 || index > 100) throw new RangeError(`pod index ${index} is out of range 1..100`);
  return `192.168.77.${9 + index}`;
}

/**
 * The global IPv6 address of pod number `index` with `lan6` (1 is "pod" 2001:db8:77::10, 2 is "pod2"
 * ::11, ...): the same digits as the IPv4 address's last byte, read as hex, so 2001:db8:77::10 is
 * 192.168.77.10's. Always in the canonical text form (RFC 5952), which is what miniupnpd compares.
 */
export function podAddress6(index: number): string {
  if (!Number.isInteger(index) || index < 1 || index > 100) throw new RangeError(`pod index ${index} is out of range 1..100`);
  return `2001:db8:77::${9 + index}`;
}
