/** Pure rules: where the entry redirects go and which address a pod's name points at. */
import type { Config } from '../config/types.js';
import type { SubdomainRecord } from '../state/types.js';
import { relayView, slotAddresses, type RelayView } from './relays.js';

/** How a client reaches one service: a URL for http(s), host:port for raw tcp. */
export function serviceUrl(fqdn: string, protocol: string, port: number): string {
  return protocol === 'tcp' ? `${fqdn}:${port}` : `${protocol}://${fqdn}:${port}/`;
}

export interface EntryService { protocol: 'http' | 'https'; port: number }

/** http://NAME/ goes to the first http service, else the first https service. */
export function httpEntryService(s: Pick<SubdomainRecord, 'ports'>): EntryService | null {
  const http = s.ports.find((p) => p.protocol === 'http');
  if (http) return { protocol: 'http', port: http.port };
  return httpsEntryService(s);
}

/** https://NAME/ goes to the first https service only: never from https down to http. */
export function httpsEntryService(s: Pick<SubdomainRecord, 'ports'>): EntryService | null {
  const https = s.ports.find((p) => p.protocol === 'https');
  return https ? { protocol: 'https', port: https.port } : null;
}

const target = (fqdn: string, e: EntryService | null) => (e ? `${e.protocol}://${fqdn}:${e.port}` : null);

export function httpEntryTarget(s: Pick<SubdomainRecord, 'fqdn' | 'ports'>): string | null {
  return target(s.fqdn, httpEntryService(s));
}

export function httpsEntryTarget(s: Pick<SubdomainRecord, 'fqdn' | 'ports'>): string | null {
  return target(s.fqdn, httpsEntryService(s));
}

/** The pod's https tunnel port that SNI passthrough on :443 leads to, if the pod asked for passthrough. */
export function passthroughPort(s: Pick<SubdomainRecord, 'passthrough' | 'ports'>): number | null {
  if (!s.passthrough) return null;
  return s.ports.find((p) => p.protocol === 'https')?.port ?? null;
}

export interface AddressRecord {
  owner: string;
  type: 'A' | 'AAAA';
  value: string;
  /**
   * Where the value came from: the operator's configuration (validated when it was loaded), or a pod —
   * an address the network reported, which must pass the publishing rules before it reaches the zone.
   */
  source: 'config' | 'pod';
}

/**
 * A pod's records, one decision per address family, each on its own: A is its router's verified address
 * while the IPv4 route is direct, else its relay's (the server's, with one relay); AAAA is the pod's own
 * verified address while the IPv6 route is direct, else the relay's IPv6 when it has one, else none. The
 * tunnel is always the fallback.
 */
export function podRecords(s: Pick<SubdomainRecord, 'name' | 'fqdn' | 'route' | 'directIpv4' | 'route6' | 'directIpv6' | 'relay'> & { slot?: number }, c: Config, view: RelayView = relayView(c, undefined)): AddressRecord[] {
  const out: AddressRecord[] = [];
  // The pod's slot at the relay holding it: its ports are there on every relay. A slot the configuration
  // no longer has gets no name at all (any other address would be another pod's port).
  const relay = slotAddresses(view.forPod(s), s.slot);
  if (!relay) return out;
  if (s.route === 'direct' && s.directIpv4) out.push({ owner: s.fqdn, type: 'A', value: s.directIpv4, source: 'pod' });
  else out.push({ owner: s.fqdn, type: 'A', value: relay.ipv4, source: 'config' });
  if (s.route6 === 'direct' && s.directIpv6) out.push({ owner: s.fqdn, type: 'AAAA', value: s.directIpv6, source: 'pod' });
  else if (relay.ipv6) out.push({ owner: s.fqdn, type: 'AAAA', value: relay.ipv6, source: 'config' });
  return out;
}

/** The relay's records for a pod whose own address was refused (per family), as podRecords would give. */
export function podRelayRecords(s: Pick<SubdomainRecord, 'name' | 'fqdn' | 'relay'> & { slot?: number }, c: Config, view: RelayView): AddressRecord[] {
  const relay = slotAddresses(view.forPod(s), s.slot);
  if (!relay) return [];
  return [{ owner: s.fqdn, type: 'A', value: relay.ipv4, source: 'config' }, ...(relay.ipv6 ? [{ owner: s.fqdn, type: 'AAAA' as const, value: relay.ipv6, source: 'config' as const }] : [])];
}

/** The server's own names (the apex, server.<domain>): every relay serving. */
export function serverRecords(owner: string, c: Config, view: RelayView = relayView(c, undefined)): AddressRecord[] {
  const out: AddressRecord[] = view.serving.map((r) => ({ owner, type: 'A' as const, value: r.ipv4, source: 'config' as const }));
  for (const r of view.serving) if (r.ipv6) out.push({ owner, type: 'AAAA', value: r.ipv6, source: 'config' });
  return out;
}

export function isPublished(s: Pick<SubdomainRecord, 'status' | 'ports'>): boolean {
  return s.status === 'active' && s.ports.length > 0;
}
