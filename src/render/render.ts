/**
 * Pure rendering: configuration + state → every file the daemons read, in memory. No I/O here apart from
 * reading the templates; apply/ decides what changes on disk.
 */
import type { Config } from '../config/types.js';
import type { AddressRecord } from './entries.js';
import { assemble, keyListSpec, nginxMapSpecs, zoneNameservers, zoneSpec, type FragmentSpec, type SlotBinds } from './fragments.js';
import { hereRelay, relayView, slotBinds, type RelayStates } from './relays.js';
import { layout, type Layout } from './layout.js';
import { renderTemplate } from './templates.js';
import { SERIAL_PLACEHOLDER, type RenderedFile, type RenderSubdomain, type Unit } from './types.js';

/** How long a dead session holds its ports (see templates/sshd/sshd_config.hbs). */
export function aliveWindowSeconds(c: Config): number {
  return 2 * c.ssh.clientAliveInterval * (c.ssh.clientAliveCountMax + 1);
}

export const ALL_UNITS: readonly Unit[] = ['sshd', 'keys', 'nginx', 'dns', 'firewall'];

/** nginx and sshd listen on this relay's first address; nginx on every slot's (a pod's name points at its slot's). */
function listenAddresses(c: Config, allSlots = false) {
  const slots = allSlots ? hereRelay(c).slots : [{ ipv4: c.server.ipv4, ipv6: c.server.ipv6 }];
  return { listen: slots.map((a) => a.ipv4), listen6: slots.flatMap((a) => (a.ipv6 ? [a.ipv6] : [])) };
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
    // With slots each pod names the address it listens on (its slot's; its key permits only that one).
    slotted: slotBinds(c) !== null,
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
 * the key lookup). A key of a subdomain without ports gets no line at all, and every line is checked as it
 * is built: a line that could open more than its pod's ports must never reach the index. A key the index
 * cannot file (a fingerprint that is not one, a key some earlier pod already holds) is left out with its
 * reason — that pod cannot log in until it registers its key again — and every other pod's line is kept.
 */
export function renderKeyList(subdomains: readonly RenderSubdomain[], L: Layout, binds: SlotBinds = null): RenderedFile {
  return toFile(keyListSpec(L, binds), subdomains);
}

function toFile(spec: FragmentSpec, subdomains: readonly RenderSubdomain[]): RenderedFile {
  const { content, dropped } = assemble(spec, subdomains);
  return { unit: spec.unit, path: spec.path, content, mode: spec.mode, order: spec.order, ...(dropped.length ? { dropped } : {}) };
}

export function renderNginx(c: Config, L: Layout, subdomains: readonly RenderSubdomain[]): RenderedFile[] {
  const N = L.nginx;
  const conf = renderTemplate('nginx/nginx.conf.hbs', {
    ...listenAddresses(c, true),
    domain: c.domain,
    // The entry map is keyed on the pod's label: nginx matches $host against the domain, label by label.
    domainLabels: c.domain.split('.'),
    serverFqdn: c.server.fqdn,
    streamModule: c.http.streamModule,
    workerProcesses: String(c.http.workerProcesses),
    pidFile: N.pidFile,
    errorLog: N.errorLog,
    accessLog: N.accessLog,
    tmpDir: N.tmpDir,
    redirectStatus: c.http.redirectStatus,
    crlFile: L.crlFile,
    crlDir: L.crlDir,
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
    ...nginxMapSpecs(L, slotBinds(c)).map((spec) => toFile(spec, subdomains)),
    { unit: 'nginx', path: N.config, content: conf, mode: 0o644, order: 1 },
  ];
}


/** Extra state a render needs besides the subdomains. */
export interface RenderExtras {
  /** dns-01 records the ACME orders under way need in the zone. */
  challenges?: readonly { owner: string; value: string }[];
  /** With relays: each relay's state in the store (what the pods' names and the server's name point at). */
  relays?: RelayStates;
}

/** The zone's head (SOA, NS, the zone's own records) from its template; the serial is the planner's. */
function zoneHead(c: Config): (records: AddressRecord[]) => string {
  return (records) => renderTemplate('zone/zone.hbs', {
    domain: c.domain,
    ttl: c.dns.ttl,
    primary: c.dns.primary.name,
    hostmaster: c.dns.hostmaster,
    serial: SERIAL_PLACEHOLDER,
    nameservers: zoneNameservers(c),
    records,
  });
}

export function zoneFileSpec(c: Config, L: Layout, extras: RenderExtras = {}): FragmentSpec {
  return zoneSpec(c, L, zoneHead(c), extras.challenges ?? [], relayView(c, extras.relays));
}

export function renderZone(c: Config, L: Layout, subdomains: readonly RenderSubdomain[], extras: RenderExtras = {}): RenderedFile {
  return toFile(zoneFileSpec(c, L, extras), subdomains);
}

/** Every per-pod file of the given units, as head, pods' lines and tail (see fragments.ts). */
export function fragmentSpecs(c: Config, L: Layout, units: readonly Unit[], extras: RenderExtras = {}): FragmentSpec[] {
  const out: FragmentSpec[] = [];
  if (units.includes('keys')) out.push(keyListSpec(L, slotBinds(c)));
  if (units.includes('nginx')) out.push(...nginxMapSpecs(L, slotBinds(c)));
  if (units.includes('dns')) out.push(zoneFileSpec(c, L, extras));
  return out;
}

export function renderDnsConfig(c: Config, L: Layout): RenderedFile {
  const secondaries = c.dns.secondaries.map((s) => s.ipv4);
  if (c.dns.daemon === 'bind') {
    return {
      unit: 'dns', path: L.bind.config, mode: 0o644, order: 1,
      content: renderTemplate('bind/named.conf.hbs', {
        ...listenAddresses(c), domain: c.domain, rndcKey: L.bind.rndcKey, workDir: L.bind.workDir, pidFile: L.bind.pidFile,
        controlPort: c.dns.controlPort, servedZone: L.bind.servedZone, secondaries, responsesPerSecond: c.dns.responsesPerSecond,
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

/**
 * The firewall's byte counters by slot: with address slots, this relay's slot addresses (each family;
 * only they are counted) and room for every tunnel port at each; null without slots (counted by port).
 */
export function tunnelCounterSlots(c: Config): { slot4: string[]; slot6: string[]; setSize: number } | null {
  if (c.relays.slots <= 1) return null;
  const here = c.relays.list.find((r) => r.name === c.relays.self);
  const slots = here?.slots ?? [];
  if (slots.length === 0) return null;
  return {
    slot4: slots.map((a) => a.ipv4),
    slot6: slots.flatMap((a) => (a.ipv6 ? [a.ipv6] : [])),
    setSize: (c.ports.last - c.ports.first + 1) * slots.length,
  };
}

export function renderFirewall(c: Config, L: Layout): RenderedFile {
  const content = renderTemplate('nftables/pipe2me.nft.hbs', {
    any: c.firewall.enabled || c.metrics.tunnelBytes, enabled: c.firewall.enabled, countBytes: c.metrics.tunnelBytes,
    table: c.firewall.table, sshPort: c.ssh.port, rate: c.firewall.sshNewPerSecond, burst: c.firewall.sshBurst, firstPort: c.ports.first, lastPort: c.ports.last,
    ...(() => {
      const bySlot = tunnelCounterSlots(c);
      return bySlot ? { bySlot: true, ...bySlot } : { bySlot: false };
    })(),
  });
  return { unit: 'firewall', path: L.sshd.firewall, content, mode: 0o644, order: 0 };
}

/** Every file of the given units. */
export function renderAll(c: Config, subdomains: readonly RenderSubdomain[], units: readonly Unit[] = ALL_UNITS, extras: RenderExtras = {}): RenderedFile[] {
  const L = layout(c);
  const out: RenderedFile[] = [];
  if (units.includes('sshd')) out.push(...renderSshd(c, L));
  if (units.includes('keys')) out.push(renderKeyList(subdomains, L, slotBinds(c)));
  if (units.includes('nginx')) out.push(...renderNginx(c, L, subdomains));
  if (units.includes('dns')) out.push(renderZone(c, L, subdomains, extras), renderDnsConfig(c, L));
  if (units.includes('firewall')) out.push(renderFirewall(c, L));
  return out;
}
