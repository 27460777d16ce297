/**
 * What a pod reports about its direct route: its IPv4 router mappings (UPnP IGD, NAT-PMP) and its own IPv6
 * address with the ports open there. A report that takes a route away sends that family's record back to
 * the server at once; a complete one asks for a prompt probe.
 *
 *   PUT /v1/subdomains/:id/mappings  {mappings: [{external_port, internal_port, external_ip?, lease_seconds?, via?}], note?}
 *   PUT /v1/subdomains/:id/ipv6      {address, openings: [{port, internal_port?, via, lease_seconds?}], note?}  (sent from that address)
 */
import type * as http from 'node:http';
import { isIPv4, isIPv6 } from 'node:net';
import type { ServerContext } from '../server/context.js';
import type { Unit } from '../render/types.js';
import { publishRefusal, unmapIPv4 } from '../net/address.js';
import { requiredPorts } from '../probe/run.js';
import { replaceIpv6Openings, replaceMappings } from '../state/mappings.js';
import { getSubdomainById, setRoute } from '../state/subdomains.js';
import { now, type SubdomainRecord } from '../state/types.js';
import { HttpError, sendJson, type Router } from './http.js';
import * as S from './schemas.js';
import { statusView } from './views.js';

export interface DirectReportDeps {
  ctx: ServerContext;
  authenticate: (req: http.IncomingMessage, id: string) => Promise<SubdomainRecord>;
  body: <T>(req: http.IncomingMessage, schema: object) => Promise<T>;
  clientAddress: (req: http.IncomingMessage) => string;
  /** Applies and returns once the daemons serve the result. */
  requestApply: (units: Unit[]) => Promise<unknown>;
  probeSoon: (name: string) => void;
}

/** An IPv6 address in one spelling (lower case, zeros compressed), so that two spellings compare equal. */
export function canonicalIpv6(ip: string): string {
  return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
}

/** Reported ports must be the subdomain's own (or the entries 80/443), each once. */
function checkReportedPorts(s: SubdomainRecord, ports: readonly number[], once: string): Set<number> {
  const allowed = new Set([...s.ports.map((x) => x.port), 80, 443]);
  const seen = new Set<number>();
  for (const port of ports) {
    if (!allowed.has(port)) throw new HttpError(400, 'mapping_not_yours', `Port ${port} is not one of this subdomain's public ports (or 80/443).`);
    if (seen.has(port)) throw new HttpError(400, 'duplicate_mapping', `Port ${port} is listed twice; ${once}.`, { hint: 'Send each port once.' });
    seen.add(port);
  }
  return seen;
}

export function registerDirectRouteReports(router: Router, d: DirectReportDeps): void {
  router.add('PUT', '/v1/subdomains/:id/mappings', async (req, res, p) => {
    const s = await d.authenticate(req, p.id!);
    const b = await d.body<{ mappings: { external_port: number; internal_port: number; external_ip?: string | null; lease_seconds?: number | null; via?: 'upnp' | 'natpmp' }[]; note?: string }>(req, S.mappingsBody);
    const ports = checkReportedPorts(s, b.mappings.map((m) => m.external_port), 'a router forwards each external port to one place');
    for (const m of b.mappings) {
      if (m.external_ip && !isIPv4(m.external_ip)) throw new HttpError(400, 'invalid_request', 'external_ip must be an IPv4 address.');
    }
    await replaceMappings(d.ctx.db, s.id, b.mappings.map((m) => ({ externalPort: m.external_port, internalPort: m.internal_port, externalIp: m.external_ip ?? null, via: m.via ?? 'upnp', leaseSeconds: m.lease_seconds ?? null })), b.note?.trim() || null);
    if (s.route === 'direct' && !s.ports.every((x) => ports.has(x.port))) {
      // A mapping the pod gave up must not keep clients on a dead route until the next probe.
      await setRoute(d.ctx.db, s.id, 4, { route: 'server', direct: null, reason: 'the pod reported its router mappings gone', streak: 0, changedAt: now(), fallbackAt: now() });
      await d.requestApply(['dns']);
    } else if (d.ctx.config.probe.prompt && requiredPorts(s).every((x) => ports.has(x.port))) {
      // Every port the direct route needs is mapped: test it now, not at the next timer run.
      d.probeSoon(s.name);
    }
    sendJson(res, 200, await statusView(d.ctx, (await getSubdomainById(d.ctx.db, s.id))!));
  });

  // The pod's own IPv6 address and the ports open to it there. The report must come from that very
  // address: a completed TCP handshake from it is the pod's proof that it holds the address, so that no
  // pod can point its name at someone else's host (the probe then checks that it answers as the pod).
  router.add('PUT', '/v1/subdomains/:id/ipv6', async (req, res, p) => {
    const s = await d.authenticate(req, p.id!);
    const b = await d.body<{ address: string | null; openings: { port: number; internal_port?: number; via: 'pinhole' | 'open'; lease_seconds?: number | null }[]; note?: string }>(req, S.ipv6Body);
    let address: string | null = null;
    if (b.address !== null) {
      // A zone index (fe80::1%eth0) names an interface of the pod's, not an address anyone else can reach.
      if (!isIPv6(b.address) || b.address.includes('%')) throw new HttpError(400, 'invalid_request', `address must be an IPv6 address without a zone index (got ${JSON.stringify(b.address.slice(0, 45))}).`);
      address = canonicalIpv6(b.address);
      const refusal = publishRefusal(address, 'AAAA', { allowNonGlobal: d.ctx.config.dns.allowNonGlobal });
      if (refusal) throw new HttpError(400, 'address_not_publishable', `${refusal}; pipe2me publishes only global unicast IPv6 addresses.`, { hint: 'Report a global address of this machine, or null for none.' });
      const from = unmapIPv4(d.clientAddress(req));
      if (!isIPv6(from) || canonicalIpv6(from) !== address) {
        throw new HttpError(403, 'address_not_proven', `This report came from ${from}, not from ${address}: a pod proves that it holds an IPv6 address by reporting it from that address.`,
          { hint: 'Send the report over IPv6 with the reported address as the source address (pipe2me start does).' });
      }
    }
    const ports = checkReportedPorts(s, b.openings.map((o) => o.port), 'each port is open once');
    await replaceIpv6Openings(d.ctx.db, s.id, address, b.openings.map((o) => ({ externalPort: o.port, internalPort: o.internal_port ?? o.port, externalIp: address, via: o.via, leaseSeconds: o.lease_seconds ?? null })), b.note?.trim() || null);
    const still = address !== null && address === s.directIpv6 && s.ports.every((x) => ports.has(x.port));
    if (s.route6 === 'direct' && !still) {
      // Address gone or moved, or a port closed: AAAA must not keep clients on a dead route until the next probe.
      const reason = address === null ? 'the pod reported no IPv6 address any more' : address !== s.directIpv6 ? `the pod now reports ${address}, not its verified ${s.directIpv6}; it is probed there next` : 'the pod reported ports closed at its IPv6 address';
      await setRoute(d.ctx.db, s.id, 6, { route: 'server', direct: null, reason: `back to the server: ${reason}`, streak: 0, changedAt: now(), ...(address === s.directIpv6 ? { fallbackAt: now() } : {}) });
      await d.requestApply(['dns']);
    }
    if (address && d.ctx.config.probe.prompt && requiredPorts(s).every((x) => ports.has(x.port))) d.probeSoon(s.name);
    sendJson(res, 200, await statusView(d.ctx, (await getSubdomainById(d.ctx.db, s.id))!));
  });
}
