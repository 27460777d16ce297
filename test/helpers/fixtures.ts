/** Deterministic inputs for pure tests: a configuration and subdomain records, no disk, no clock. */
import { configFromDocument } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import type { Protocol, SubdomainRecord } from '../../src/state/types.js';
import { createHash } from 'node:crypto';
import { parsePublicKey } from '../../src/ssh/pubkey.js';

export function testConfig(overrides: Record<string, unknown> = {}): Config {
  return configFromDocument({
    domain: 'pipe.test',
    server: { ipv4: '203.0.113.1' },
    ssh: { tunnel_user: 'p2m-golden' },
    dns: { daemon: 'bind', ttl: 30, secondaries: [{ name: 'ns2.pipe.test', ipv4: '203.0.113.5' }] },
    paths: {
      state: '/srv/p2m/state', ca: '/srv/p2m/state/ca', sshd: '/srv/p2m/sshd', nginx: '/srv/p2m/nginx',
      dns: '/srv/p2m/dns', run: '/srv/p2m/run', log: '/srv/p2m/log',
    },
    ...overrides,
  }, 'test.yml');
}

/** A distinct, well-formed ed25519 public key per name (its 32 bytes are sha256 of the name), deterministic. */
export function keyFor(name: string): { publicKey: string; fingerprint: string } {
  const str = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
  const blob = Buffer.concat([str(Buffer.from('ssh-ed25519')), str(createHash('sha256').update(name).digest())]);
  const k = parsePublicKey(`ssh-ed25519 ${blob.toString('base64')}`);
  return { publicKey: k.publicKey, fingerprint: k.fingerprint };
}

export function sub(name: string, protocols: Protocol[], firstPort: number, extra: Partial<SubdomainRecord> = {}): SubdomainRecord {
  return {
    id: `id-${name}`,
    name,
    fqdn: `${name}.pipe.test`,
    status: 'active',
    createdAt: 1_700_000_000,
    expiresAt: null,
    passthrough: false,
    tokenId: null,
    route: 'server',
    routeChangedAt: null,
    routeReason: null,
    directIpv4: null,
    probeStreak: 0,
    lastFallbackAt: null,
    route6: 'server',
    route6ChangedAt: null,
    route6Reason: null,
    directIpv6: null,
    probe6Streak: 0,
    lastFallback6At: null,
    observedIpv6: null,
    observed6At: null,
    reportedIpv6: null,
    relay: null,
    slot: 0,
    observedIpv4: null,
    observedAt: null,
    claimPending: false,
    claimed: true,
    ports: protocols.map((protocol, i) => ({ port: firstPort + i, protocol, position: i })),
    key: { algorithm: 'ssh-ed25519', ...keyFor(name), bits: 256, addedAt: 1_700_000_000 },
    ...extra,
  };
}

/** A small, varied world: http+https, https-only with passthrough, tcp-only, a direct-route pod, one without a key, one expired. */
export function goldenSubdomains(): SubdomainRecord[] {
  return [
    sub('calm-red-otter', ['http', 'https'], 20000),
    sub('home-lab', ['https', 'tcp'], 20002, { passthrough: true }),
    sub('raw-tcp', ['tcp'], 20004),
    sub('direct-one', ['http'], 20005, { route: 'direct', directIpv4: '81.2.69.160' }),
    sub('no-key-yet', ['http'], 20006, { key: null }),
    sub('gone-away', ['http'], 20007, { status: 'expired', ports: [] }),
  ];
}
