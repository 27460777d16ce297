/**
 * Pure rendering: configuration + state → every file the daemons read, in memory. No I/O here apart from
 * reading the templates; apply/ decides what changes on disk.
 */
import type { Config } from '../config/types.js';
import { Pipe2meError, ExitCode } from '../util/errors.js';
import { httpEntryTarget, httpsEntryTarget, isPublished, passthroughPort, podRecords, serverRecords, type AddressRecord } from './entries.js';
import { publishRefusal } from '../net/address.js';
import { keyIndexFile } from '../ssh/key-index.js';
import { layout, type Layout } from './layout.js';
import { renderTemplate } from './templates.js';
import { SERIAL_PLACEHOLDER, type DroppedEntry, type RenderedFile, type RenderSubdomain, type Unit } from './types.js';

/** How long a dead session holds its ports (see templates/sshd/sshd_config.hbs). */
export function aliveWindowSeconds(c: Config): number {
  return 2 * c.ssh.clientAliveInterval * (c.ssh.clientAliveCountMax + 1);
}

export const ALL_UNITS: readonly Unit[] = ['sshd', 'keys', 'nginx', 'dns', 'firewall'];

function listenAddresses(c: Config) {
  return { listen: [c.server.ipv4], listen6: c.server.ipv6 ? [c.server.ipv6] : [] };
}

export function renderSshd(c: Config, L: Layout): RenderedFile[] {
  const data = {
    ...listenAddresses(c),
    port: c.ssh.port,
    hostKey: L.sshd.hostKey,
    pidFile: L.sshd.pidFile,
    tunnelUser: c.ssh.tunnelUser,
    keysUser: c.ssh.keysUser,
    keysCommand: L.sshd.keysCommand,
    loginGrace: c.ssh.loginGraceSeconds,
    perSourceMaxStartups: c.ssh.perSourceMaxStartups,
    clientAliveInterval: c.ssh.clientAliveInterval,
    clientAliveCountMax: c.ssh.clientAliveCountMax,
    aliveWindow: aliveWindowSeconds(c),
    ciphers: c.ssh.ciphers,
  };
  const keysCommand = renderTemplate('sshd/pipe2me-keys.hbs', {
    keysDir: L.sshd.keysDir, connsDir: L.connsDir, maxSessions: c.ssh.maxSessionsPerPod, keysUser: c.ssh.keysUser, tunnelUser: c.ssh.tunnelUser,
  });
  return [
    { unit: 'sshd', path: L.sshd.sessionScript, content: renderTemplate('sshd/pipe2me-session.hbs', { sessionsDir: L.sessionsDir }), mode: 0o755, order: 0 },
    // sshd runs the key lookup only if it is root-owned and writable by nobody else (so are its directories).
    { unit: 'sshd', path: L.sshd.keysCommand, content: keysCommand, mode: 0o755, order: 0 },
    { unit: 'sshd', path: L.sshd.config, content: renderTemplate('sshd/sshd_config.hbs', data), mode: 0o644, order: 1 },
  ];
}

/**
 * The key index's manifest: one authorized_keys line per published pod key, each with restrict, its own
 * permitlisten options and the forced session command, filed under the key's fingerprint (what sshd gives
 * the key lookup). A key of a subdomain without ports gets no line at all, and the result is checked line
 * by line: a line that could open more than its pod's ports must never reach the index. A key the index
 * cannot file (a fingerprint that is not one, a key some earlier pod already holds) is left out with its
 * reason — that pod cannot log in until it registers its key again — and every other pod's line is kept.
 */
export function renderKeyList(subdomains: readonly RenderSubdomain[], L: Layout): RenderedFile {
  const keys: { name: string; file: string; publicKey: string; ports: number[] }[] = [];
  const dropped: DroppedEntry[] = [];
  const owners = new Map<string, string>();
  for (const s of subdomains) {
    if (!isPublished(s) || !s.key) continue;
    const leave = (why: string) => dropped.push({ where: 'key index', owner: s.fqdn, type: 'ssh key', value: forLog(s.key!.fingerprint), why });
    let file: string;
    try {
      file = keyIndexFile(s.key.fingerprint);
    } catch {
      leave('its fingerprint is not a SHA256 fingerprint; the pod must register its key again');
      continue;
    }
    const first = owners.get(file);
    if (first !== undefined) {
      leave(`the same key is ${first}'s; one key opens one pod's ports only`);
      continue;
    }
    owners.set(file, s.name);
    keys.push({ name: s.name, file, publicKey: s.key.publicKey, ports: s.ports.map((p) => p.port) });
  }
  const content = renderTemplate('sshd/keys.list.hbs', { keys, sessionScript: L.sshd.sessionScript });
  assertKeyLinesRestricted(content, keys);
  return { unit: 'keys', path: L.sshd.keyList, content, mode: 0o644, order: 0, ...(dropped.length ? { dropped } : {}) };
}

/** A stored value in a log line: printable ASCII only, and short. */
function forLog(v: string): string {
  return v.replace(/[^\x20-\x7e]/g, '?').slice(0, 60);
}

export function assertKeyLinesRestricted(content: string, keys: { name: string; file: string; ports: number[] }[]): void {
  const lines = content.split('\n').filter((l) => l.trim() && !l.startsWith('#'));
  const fail = (why: string) => {
    throw new Pipe2meError('render_refused', `Refused to render the key index: ${why}. Nothing was written.`, ExitCode.internal, 500);
  };
  if (lines.length !== keys.length) fail(`expected ${keys.length} key lines, got ${lines.length}`);
  // Plain string checks: this runs over every line of a file that has tens of thousands at scale.
  const files = new Set<string>();
  lines.forEach((entry, i) => {
    const k = keys[i]!;
    if (!entry.startsWith(`${k.file} `) || !/^[A-Za-z0-9_-]{43}$/.test(k.file)) fail(`the line for ${k.name} is not filed under its key's fingerprint`);
    // One key, one pod: the lookup could only ever print one of two lines filed under the same key.
    if (files.has(k.file)) fail(`the key of ${k.name} is filed for another pod too`);
    files.add(k.file);
    const line = entry.slice(k.file.length + 1);
    const options = `restrict,port-forwarding,${k.ports.map((p) => `permitlisten="${p}"`).join(',')},command="exec /`;
    if (k.ports.length === 0 || !line.startsWith(options)) fail(`the line for ${k.name} does not start with restrict, port-forwarding and exactly its own ports`);
    const rest = line.slice(options.length - 1);
    const end = rest.indexOf('" ssh-');
    if (end < 0 || !rest.slice(0, end).endsWith(` ${k.name}`) || rest.slice(0, end).includes('"')) fail(`the line for ${k.name} has no forced command`);
    if (!line.endsWith(` pipe2me:${k.name}`)) fail(`the line for ${k.name} does not end with its name`);
  });
}

export function renderNginx(c: Config, L: Layout, subdomains: readonly RenderSubdomain[]): RenderedFile[] {
  const live = subdomains.filter(isPublished);
  const http = live.flatMap((s) => {
    const target = httpEntryTarget(s);
    return target ? [{ fqdn: s.fqdn, target }] : [];
  });
  const https = live.flatMap((s) => {
    const target = httpsEntryTarget(s);
    return target ? [{ fqdn: s.fqdn, target }] : [];
  });
  const passthrough = live.flatMap((s) => {
    const port = passthroughPort(s);
    return port ? [{ fqdn: s.fqdn, port }] : [];
  });
  const N = L.nginx;
  const conf = renderTemplate('nginx/nginx.conf.hbs', {
    ...listenAddresses(c),
    domain: c.domain,
    serverFqdn: c.server.fqdn,
    streamModule: c.http.streamModule,
    workerProcesses: String(c.http.workerProcesses),
    pidFile: N.pidFile,
    errorLog: N.errorLog,
    accessLog: N.accessLog,
    tmpDir: N.tmpDir,
    redirectStatus: c.http.redirectStatus,
    crlFile: L.crlFile,
    caCertFile: L.caCertFile,
    httpsSocket: N.httpsSocket,
    passthroughSocket: N.passthroughSocket,
    wildcardCert: L.wildcardCert,
    wildcardKey: L.wildcardKey,
    serverCert: L.serverCert,
    serverKey: L.serverKey,
    apiSocket: N.apiSocket,
    workerUser: c.http.workerUser,
    maxBodyBytes: c.api.maxBodyBytes,
  });
  return [
    { unit: 'nginx', path: N.httpEntryMap, content: renderTemplate('nginx/http-entry.map.hbs', { entries: http }), mode: 0o644, order: 0 },
    { unit: 'nginx', path: N.httpsEntryMap, content: renderTemplate('nginx/https-entry.map.hbs', { entries: https }), mode: 0o644, order: 0 },
    { unit: 'nginx', path: N.sniRouteMap, content: renderTemplate('nginx/sni-route.map.hbs', { entries: passthrough, passthroughSocket: N.passthroughSocket }), mode: 0o644, order: 0 },
    { unit: 'nginx', path: N.sniPortMap, content: renderTemplate('nginx/sni-port.map.hbs', { entries: passthrough }), mode: 0o644, order: 0 },
    { unit: 'nginx', path: N.config, content: conf, mode: 0o644, order: 1 },
  ];
}


/**
 * The zone's records apart from SOA and NS: nameserver glue, the server's own name, the apex, every pod.
 * A pod's address passes the publishing rules (src/net/address.ts) or is dropped with its reason: no
 * single pod's data can make the zone one that the nameserver's checker refuses, which would stop every
 * later apply for every pod.
 */
export function zoneRecords(c: Config, subdomains: readonly RenderSubdomain[]): { records: AddressRecord[]; dropped: DroppedEntry[] } {
  const records: AddressRecord[] = [];
  const dropped: DroppedEntry[] = [];
  const inZone = (name: string) => name === c.domain || name.endsWith('.' + c.domain);
  const glue = new Map<string, string>();
  for (const ns of [c.dns.primary, ...c.dns.secondaries]) if (inZone(ns.name)) glue.set(ns.name, ns.ipv4);
  for (const [owner, value] of glue) records.push({ owner, type: 'A', value, source: 'config' });
  for (const owner of [c.domain, c.server.fqdn]) {
    if (glue.has(owner)) continue;
    records.push(...serverRecords(owner, c));
  }
  const policy = { allowNonGlobal: c.dns.allowNonGlobal };
  for (const s of subdomains) {
    if (!isPublished(s)) continue;
    let kept = 0;
    for (const r of podRecords(s, c)) {
      const why = r.source === 'pod' ? publishRefusal(r.value, r.type, policy) : null;
      if (why === null) {
        records.push(r);
        kept++;
      } else {
        dropped.push({ where: 'zone', owner: r.owner, type: r.type, value: r.value, why });
      }
    }
    // A pod whose own address was refused still has a name: the server's, where its tunnel is.
    if (kept === 0) records.push(...serverRecords(s.fqdn, c));
  }
  return { records, dropped };
}

/** Extra state a render needs besides the subdomains. */
export interface RenderExtras {
  /** dns-01 records the ACME orders under way need in the zone. */
  challenges?: readonly { owner: string; value: string }[];
}

export function renderZone(c: Config, L: Layout, subdomains: readonly RenderSubdomain[], extras: RenderExtras = {}): RenderedFile {
  const path = c.dns.daemon === 'bind' ? L.bind.zone : L.nsd.zone;
  const { records, dropped } = zoneRecords(c, subdomains);
  // Only records in this zone: anything else could not be served by it.
  const challenges = (extras.challenges ?? []).filter((r) => r.owner.endsWith(`.${c.domain}`));
  const content = renderTemplate('zone/zone.hbs', {
    domain: c.domain,
    ttl: c.dns.ttl,
    primary: c.dns.primary.name,
    hostmaster: c.dns.hostmaster,
    serial: SERIAL_PLACEHOLDER,
    nameservers: [c.dns.primary.name, ...c.dns.secondaries.map((s) => s.name)],
    records,
    challenges,
  });
  return { unit: 'dns', path, content, mode: 0o644, order: 0, ...(dropped.length ? { dropped } : {}) };
}

export function renderDnsConfig(c: Config, L: Layout): RenderedFile {
  const secondaries = c.dns.secondaries.map((s) => s.ipv4);
  if (c.dns.daemon === 'bind') {
    return {
      unit: 'dns', path: L.bind.config, mode: 0o644, order: 1,
      content: renderTemplate('bind/named.conf.hbs', {
        ...listenAddresses(c), domain: c.domain, rndcKey: L.bind.rndcKey, workDir: L.bind.workDir, pidFile: L.bind.pidFile,
        controlPort: c.dns.controlPort, zoneFile: L.bind.zone, secondaries, responsesPerSecond: c.dns.responsesPerSecond,
      }),
    };
  }
  return {
    unit: 'dns', path: L.nsd.config, mode: 0o644, order: 1,
    content: renderTemplate('nsd/nsd.conf.hbs', {
      ...listenAddresses(c), domain: c.domain, pidFile: L.nsd.pidFile, workDir: L.nsd.workDir,
      controlSocket: L.nsd.controlSocket, zoneFile: L.nsd.zone, secondaries, responsesPerSecond: c.dns.responsesPerSecond,
    }),
  };
}

export function renderFirewall(c: Config, L: Layout): RenderedFile {
  const content = renderTemplate('nftables/pipe2me.nft.hbs', { enabled: c.firewall.enabled, table: c.firewall.table, sshPort: c.ssh.port, rate: c.firewall.sshNewPerSecond, burst: c.firewall.sshBurst });
  return { unit: 'firewall', path: L.sshd.firewall, content, mode: 0o644, order: 0 };
}

/** Every file of the given units. */
export function renderAll(c: Config, subdomains: readonly RenderSubdomain[], units: readonly Unit[] = ALL_UNITS, extras: RenderExtras = {}): RenderedFile[] {
  const L = layout(c);
  const out: RenderedFile[] = [];
  if (units.includes('sshd')) out.push(...renderSshd(c, L));
  if (units.includes('keys')) out.push(renderKeyList(subdomains, L));
  if (units.includes('nginx')) out.push(...renderNginx(c, L, subdomains));
  if (units.includes('dns')) out.push(renderZone(c, L, subdomains, extras), renderDnsConfig(c, L));
  if (units.includes('firewall')) out.push(renderFirewall(c, L));
  return out;
}
