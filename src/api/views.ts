/** What the API tells a pod: everything it needs to set up, and its status later. */
import * as fs from 'node:fs';
import type { ServerContext } from '../server/context.js';
import { viewSubdomain } from '../server/subdomains.js';
import { getMappings } from '../state/mappings.js';
import type { SubdomainRecord } from '../state/types.js';
import { readIfExists } from '../util/fsx.js';

export function hostKeyLine(ctx: ServerContext): string {
  const pub = fs.readFileSync(ctx.layout.sshd.hostKey + '.pub', 'utf8').trim().split(/\s+/);
  return `${pub[0]} ${pub[1]}`;
}

export async function setupInfo(ctx: ServerContext, s: SubdomainRecord, secret: string) {
  const v = await viewSubdomain(ctx, s);
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
    ca: readIfExists(ctx.layout.caCertFile) ?? null,
    api: `https://${ctx.config.server.fqdn}/`,
  };
}

export async function statusView(ctx: ServerContext, s: SubdomainRecord) {
  const v = await viewSubdomain(ctx, s);
  return {
    ...v,
    mappings: (await getMappings(ctx.db, s.id)).map((m) => ({ family: m.family, external_port: m.externalPort, internal_port: m.internalPort, external_ip: m.externalIp, via: m.via })),
  };
}
