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

export interface MappingRecord {
  externalPort: number;
  internalPort: number;
  externalIp: string | null;
  reportedAt: number;
}

export interface ProbeResultRecord {
  at: number;
  address: string | null;
  ok: boolean;
  route: Route;
  detail: unknown;
}

export const now = (): number => Math.floor(Date.now() / 1000);
