/** What the API tells a pod: everything it needs to set up, and its status later. */
import * as fs from 'node:fs';
import type { ServerContext } from '../server/context.js';
import { viewSubdomain } from '../server/subdomains.js';
import { getMappings } from '../state/mappings.js';
import { listRelays } from '../state/relays.js';
import type { SubdomainRecord } from '../state/types.js';
import { slotAddresses } from '../render/relays.js';
import { readIfExists } from '../util/fsx.js';

export function hostKeyLine(ctx: ServerContext): string {
  const pub = fs.readFileSync(ctx.layout.sshd.hostKey + '.pub', 'utf8').trim().split(/\s+/);
  return `${pub[0]} ${pub[1]}`;
}

/**
 * Every relay a pod may hold its tunnel to, with the ssh host key each relay registered in the store
 * (pinned by the pod under the relay's own alias). Only with relays configured; a relay that has not
 * started yet (no key in the store) is left out until it has.
 */
export async function relaysView(ctx: ServerContext, slot?: number) {
  if (!ctx.config.relays.relayed) return undefined;
  const keys = new Map((await listRelays(ctx.db)).map((r) => [r.name, r]));
  const slotted = ctx.config.relays.slots > 1;
  return ctx.config.relays.list.flatMap((r) => {
    const row = keys.get(r.name);
    if (!row?.hostKey) return [];
    // With address slots: where this pod's tunnel listens on that relay (its slot's addresses there).
    const at = slotted ? slotAddresses(r, slot) ?? undefined : undefined;
    return [{
      name: r.name, host: r.ipv4, host6: r.ipv6, port: ctx.config.ssh.port, user: ctx.config.ssh.tunnelUser, host_key: row.hostKey, host_key_alias: `pipe2me-${r.fqdn}`, state: row.state,
      ...(at ? { listen: [at.ipv4, ...(at.ipv6 ? [at.ipv6] : [])] } : {}),
    }];
  });
}

export async function setupInfo(ctx: ServerContext, s: SubdomainRecord, secret: string) {
  const v = await viewSubdomain(ctx, s);
  const relays = await relaysView(ctx, s.slot);
  return {
    id: s.id,
    secret,
    name: v.name,
    fqdn: v.fqdn,
    expires: v.expires,
    ports: v.ports,
    entry: v.entry,
    passthrough: v.passthrough,
    ssh: {
      host: ctx.config.server.ipv4,
      // A pod on an IPv6-only network tunnels to this one.
      host6: ctx.config.server.ipv6,
      port: ctx.config.ssh.port,
      user: ctx.config.ssh.tunnelUser,
      host_key: hostKeyLine(ctx),
      // The pod pins the key under this alias, whatever address it connects to.
      host_key_alias: `pipe2me-${ctx.config.domain}`,
    },
    ...(relays ? { relays, slot: s.slot } : {}),
    ca: readIfExists(ctx.layout.caCertFile) ?? null,
    api: `https://${ctx.config.server.fqdn}/`,
  };
}

export async function statusView(ctx: ServerContext, s: SubdomainRecord) {
  const v = await viewSubdomain(ctx, s);
  const relays = await relaysView(ctx, s.slot);
  return {
    ...v,
    ...(relays ? { relays, relay: s.relay, slot: s.slot } : {}),
    mappings: (await getMappings(ctx.db, s.id)).map((m) => ({ family: m.family, external_port: m.externalPort, internal_port: m.internalPort, external_ip: m.externalIp, via: m.via })),
  };
}
