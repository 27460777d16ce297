/** What the pod's router protocols have in common: a gateway found, a port mapped (or why not), a lease. */

export interface Gateway {
  /** How the gateway was reached: the IGD's description URL, or the NAT-PMP gateway's address. */
  url: string;
  /** This pod's address on the router's LAN (where the router forwards to). */
  lanIp: string;
  externalIp: string | null;
}

export interface WantedMapping {
  externalPort: number;
  internalPort: number;
  what: string;
}

export type MapResult = { ok: true; detail: string; lease: number } | { ok: false; code?: string; detail: string };

/** One IPv4 port mapping protocol on the router (UPnP IGD, NAT-PMP). */
export interface PortMapper {
  readonly method: 'upnp' | 'natpmp';
  /** The gateway, or null when none answers this protocol. */
  discover(previous?: Gateway): Promise<Gateway | null>;
  /** Map (or renew: mapping the same port again replaces it) for `lease` seconds; 0 asks for a permanent one. */
  add(g: Gateway, m: WantedMapping, description: string, lease: number): Promise<MapResult>;
  remove(g: Gateway, m: WantedMapping): Promise<void>;
}
