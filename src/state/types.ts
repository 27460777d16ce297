export const PROTOCOLS = ['http', 'https', 'tcp'] as const;
export type Protocol = (typeof PROTOCOLS)[number];
export type Route = 'server' | 'direct';

export interface PortRecord {
  port: number;
  protocol: Protocol;
  position: number;
}

export interface SshKeyRecord {
  algorithm: string;
  publicKey: string;
  fingerprint: string;
  bits: number | null;
  addedAt: number;
}

export interface SubdomainRecord {
  id: string;
  name: string;
  fqdn: string;
  status: 'active' | 'expired';
  createdAt: number;
  expiresAt: number | null;
  passthrough: boolean;
  tokenId: string | null;
  route: Route;
  routeChangedAt: number | null;
  routeReason: string | null;
  /** The router address the probe verified; DNS points here while route is 'direct'. */
  directIpv4: string | null;
  probeStreak: number;
  lastFallbackAt: number | null;
  observedIpv4: string | null;
  observedAt: number | null;
  /** The IPv6 route, decided on its own: AAAA points at the pod's own address while it is 'direct'. */
  route6: Route;
  route6ChangedAt: number | null;
  route6Reason: string | null;
  /** The pod's own IPv6 address the probe verified. */
  directIpv6: string | null;
  probe6Streak: number;
  lastFallback6At: number | null;
  /** Where the pod's session last came from over IPv6 (a pod on an IPv6-only network). */
  observedIpv6: string | null;
  observed6At: number | null;
  /** The IPv6 address the pod says it has (proven by reporting it from that address); the probe tests it. */
  reportedIpv6: string | null;
  /** With relays: the relay holding the pod's newest session (where its name points unless direct). */
  relay: string | null;
  /** The address slot it is published at (0 without slots): its ports are unique within it. */
  slot: number;
  claimPending: boolean;
  claimed: boolean;
  ports: PortRecord[];
  key: SshKeyRecord | null;
}

export interface TokenRecord {
  id: string;
  label: string;
  maxPorts: number;
  lifespanSeconds: number | null;
  extendable: boolean;
  singleUse: boolean;
  uses: number;
  createdAt: number;
  revokedAt: number | null;
  /** null: made before tokens had these bounds (unbounded, as it was issued). */
  maxSubdomains: number | null;
  maxTotalPorts: number | null;
  /** What the token's live subdomains use now. */
  liveSubdomains: number;
  livePorts: number;
}

export interface CertificateRecord {
  serial: string;
  subdomainId: string | null;
  fqdn: string;
  kind: 'pod' | 'server';
  notBefore: number;
  notAfter: number;
  sha256: string;
  issuedAt: number;
  revokedAt: number | null;
  revokeReason: string | null;
  issuer: 'private' | 'acme';
  /** Certificates from the ACME CA: the chain the CA returned (leaf first), what the pod installs. */
  chainPem: string | null;
  /** sha256 of the certificate's public key (SPKI DER, hex): which key it belongs to. */
  keySha256: string | null;
}

/**
 * How a port on the way to the pod was opened: a UPnP IGD or NAT-PMP mapping on its router (IPv4), an
 * IGD2 pinhole in its router's IPv6 firewall, or nothing to open (an IPv6 path that does not filter).
 */
export const MAPPING_METHODS = ['upnp', 'natpmp', 'pinhole', 'open'] as const;
export type MappingMethod = (typeof MAPPING_METHODS)[number];

export interface MappingRecord {
  family: 4 | 6;
  externalPort: number;
  internalPort: number;
  externalIp: string | null;
  via: MappingMethod;
  leaseSeconds: number | null;
  reportedAt: number;
}

export interface ProbeResultRecord {
  at: number;
  family: 4 | 6;
  address: string | null;
  ok: boolean;
  route: Route;
  detail: unknown;
}

export const now = (): number => Math.floor(Date.now() / 1000);
