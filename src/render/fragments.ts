/**
 * The files that hold one line (or a few) per pod — the key index's manifest, nginx's four maps and the
 * zone — as a head, each pod's lines in name order, and a tail. A full render joins every pod's lines; an
 * incremental one (incremental.ts) takes the file as it is live, replaces the lines of the pods that
 * changed and keeps every other byte. Both use the line builders here, so both give the same bytes.
 *
 * The per-pod lines are built in code rather than by a template: a file has tens of thousands of them and
 * an incremental apply renders a handful. Every value still goes through its format's check (checked()),
 * which refuses exactly what the template helper would.
 */
import type { Config } from '../config/types.js';
import { publishRefusal } from '../net/address.js';
import { keyIndexFile } from '../ssh/key-index.js';
import { httpEntryService, httpsEntryService, isPublished, type EntryService, passthroughPort, podRecords, podRelayRecords, serverRecords, type AddressRecord } from './entries.js';
import { hostPort, relayView, type RelayView } from './relays.js';
import type { Layout } from './layout.js';
import { checked, renderTemplate } from './templates.js';
import type { DroppedEntry, RenderSubdomain, Unit } from './types.js';
import { Pipe2meError, ExitCode } from '../util/errors.js';

/** Bump when a per-pod line's format changes: live files written in the old format are then rendered whole. */
export const FRAGMENT_FORMAT = 2;

export interface PodLines {
  text: string;
  dropped: DroppedEntry[];
  /** The key index file this pod's line is filed under (keys only): one key, one pod. */
  keyFile?: string;
}

export interface FragmentSpec {
  unit: Unit;
  path: string;
  mode: number;
  order: number;
  /** Everything before the first pod's lines (rendered from the configuration alone). */
  head: string;
  /** Everything after the last pod's lines. */
  tail: string;
  /** This pod's lines, '' when it has none in this file. */
  lines(s: RenderSubdomain): PodLines;
  /** The pod (its name) a line of the pods' part belongs to; null when the line is not a pod's line. */
  nameOf(line: string): string | null;
  /** Where the tail starts in the part after the head of a live file (the pods' lines never look like it). */
  tailAt(rest: string): number;
}

const none: PodLines = { text: '', dropped: [] };

/** A stored value in a log line: printable ASCII only, and short. */
export function forLog(v: string): string {
  return v.replace(/[^\x20-\x7e]/g, '?').slice(0, 60);
}

/** The first label of a line that starts with an fqdn: the pod's name (names are single labels). */
function firstLabel(line: string): string | null {
  const dot = line.indexOf('.');
  const sp = line.indexOf(' ');
  if (dot <= 0 || (sp >= 0 && sp < dot)) return null;
  return line.slice(0, dot);
}

const endOfFile = (rest: string) => rest.length;

/** With address slots, the addresses a pod of each slot listens on at this relay (see relays.slotBinds). */
export type SlotBinds = ((slot: number | undefined) => string[]) | null;

export function keyListSpec(L: Layout, binds: SlotBinds = null): FragmentSpec {
  const where = 'sshd/keys.list';
  return {
    unit: 'keys', path: L.sshd.keyList, mode: 0o644, order: 0,
    head: renderTemplate('sshd/keys.list.hbs', {}),
    tail: '',
    lines(s) {
      if (!isPublished(s) || !s.key) return none;
      let file: string;
      try {
        file = keyIndexFile(s.key.fingerprint);
      } catch {
        return { text: '', dropped: [{ where: 'key index', owner: s.fqdn, type: 'ssh key', value: forLog(s.key.fingerprint), why: 'its fingerprint is not a SHA256 fingerprint; the pod must register its key again' }] };
      }
      const name = checked(where, 'label', s.name);
      // Without slots a port alone (any address); with them, exactly the pod's slot's addresses here.
      const hosts = binds ? binds(s.slot).map((a) => checked(where, a.includes(':') ? 'ipv6' : 'ipv4', a)) : [];
      if ((binds === null && (s.slot ?? 0) > 0) || (binds !== null && hosts.length === 0)) {
        return { text: '', dropped: [{ where: 'key index', owner: s.fqdn, type: 'ssh key', value: `slot ${s.slot}`, why: 'its address slot is not in the configuration (relays[].ipv4): give every relay that many addresses again, or remove the subdomain' }] };
      }
      const permits = s.ports.flatMap((p) => {
        const port = checked(where, 'port', p.port);
        return hosts.length ? hosts.map((h) => hostPort(h, Number(port))) : [port];
      });
      const listen = permits.map((p) => `permitlisten="${p}"`).join(',');
      const line = `${checked(where, 'word', file)} restrict,port-forwarding,${listen},command="exec ${checked(where, 'path', L.sshd.sessionScript)} ${name}" ${checked(where, 'sshkey', s.key.publicKey)} pipe2me:${name}`;
      assertKeyLineRestricted(line, { name: s.name, file, ports: permits });
      return { text: line + '\n', dropped: [], keyFile: file };
    },
    nameOf(line) {
      const at = line.lastIndexOf(' pipe2me:');
      return at < 0 ? null : line.slice(at + ' pipe2me:'.length);
    },
    tailAt: endOfFile,
  };
}

function refuseKeyIndex(why: string): never {
  throw new Pipe2meError('render_refused', `Refused to render the key index: ${why}. Nothing was written.`, ExitCode.internal, 500);
}

/**
 * One line of the key index, checked with plain string operations (this runs over every line of a file
 * with tens of thousands): filed under its key's fingerprint, restrict and port-forwarding first, exactly
 * the pod's own ports, the forced session command with the pod's name, and the pod's name at the end.
 */
export function assertKeyLineRestricted(entry: string, k: { name: string; file: string; ports: readonly (number | string)[] }): void {
  if (!entry.startsWith(`${k.file} `) || !/^[A-Za-z0-9_-]{43}$/.test(k.file)) refuseKeyIndex(`the line for ${k.name} is not filed under its key's fingerprint`);
  const line = entry.slice(k.file.length + 1);
  const options = `restrict,port-forwarding,${k.ports.map((p) => `permitlisten="${p}"`).join(',')},command="exec /`;
  if (k.ports.length === 0 || !line.startsWith(options)) refuseKeyIndex(`the line for ${k.name} does not start with restrict, port-forwarding and exactly its own ports`);
  const rest = line.slice(options.length - 1);
  const end = rest.indexOf('" ssh-');
  if (end < 0 || !rest.slice(0, end).endsWith(` ${k.name}`) || rest.slice(0, end).includes('"')) refuseKeyIndex(`the line for ${k.name} has no forced command`);
  if (!line.endsWith(` pipe2me:${k.name}`)) refuseKeyIndex(`the line for ${k.name} does not end with its name`);
}

/** How a map's lines are keyed: on the pod's fqdn (the SNI maps, with `hostnames`), or on its label (the entry map). */
const BY_FQDN = { key: (template: string, s: RenderSubdomain) => checked(template, 'hostname', s.fqdn), nameOf: firstLabel };
const BY_LABEL = { key: (template: string, s: RenderSubdomain) => mapKey(checked(template, 'label', s.name)), nameOf: leadingLabel };

function mapSpec(unit: Unit, path: string, template: string, value: (s: RenderSubdomain) => string | null, keyed = BY_FQDN): FragmentSpec {
  return {
    unit, path, mode: 0o644, order: 0,
    head: renderTemplate(template, {}),
    tail: '',
    lines(s) {
      if (!isPublished(s)) return none;
      const v = value(s);
      return v === null ? none : { text: `${keyed.key(template, s)} ${v};\n`, dropped: [] };
    },
    nameOf: keyed.nameOf,
    tailAt: endOfFile,
  };
}

/** The line's key up to the first space: the pod's name, in the entry map (keyed on the label alone). */
function leadingLabel(line: string): string | null {
  const sp = line.indexOf(' ');
  if (sp <= 0) return null;
  return line.startsWith('\\') ? line.slice(1, sp) : line.slice(0, sp);
}

/**
 * A label as a key of an nginx map: the words nginx reads as the map's own parameters there (a pod may be
 * named default or include) are escaped with a backslash, as nginx documents; any other label as it is.
 */
export function mapKey(label: string): string {
  return MAP_PARAMETERS.has(label) ? `\\${label}` : label;
}
const MAP_PARAMETERS = new Set(['default', 'hostnames', 'include', 'volatile']);

/**
 * The entry map: one line per pod with an http(s) service, keyed on its label, valued
 * "SCHEME:PORT[ https:PORT]" (the http entry's target, then the https entry's). nginx.conf turns it into
 * both redirects with $host; one map of short lines costs nginx a third of two maps of whole URLs on
 * every check and reload (measured at 50,000 names).
 */
export function entryValue(s: RenderSubdomain): string | null {
  const http = httpEntryService(s);
  if (http === null) return null;
  const https = httpsEntryService(s);
  const part = (e: EntryService) => `${e.protocol}:${checked('nginx/entry.map.hbs', 'port', e.port)}`;
  return `"${part(http)}${https === null ? '' : ` ${part(https)}`}"`;
}

export function nginxMapSpecs(L: Layout, binds: SlotBinds = null): FragmentSpec[] {
  const N = L.nginx;
  return [
    mapSpec('nginx', N.entryMap, 'nginx/entry.map.hbs', entryValue, BY_LABEL),
    mapSpec('nginx', N.sniRouteMap, 'nginx/sni-route.map.hbs', (s) => (passthroughPort(s) === null ? null : `unix:${checked('nginx/sni-route.map.hbs', 'path', N.passthroughSocket)}`)),
    mapSpec('nginx', N.sniPortMap, 'nginx/sni-port.map.hbs', (s) => {
      const port = passthroughPort(s);
      if (port === null) return null;
      // With slots the tunnel listens on the pod's slot address only (sshd binds what the pod names).
      const bound = binds ? binds(s.slot)[0] : (s.slot ?? 0) > 0 ? undefined : '127.0.0.1';
      if (bound === undefined) return null;
      const at = checked('nginx/sni-port.map.hbs', 'ipv4', bound);
      return `${at}:${checked('nginx/sni-port.map.hbs', 'port', port)}`;
    }),
  ];
}

function recordLine(r: AddressRecord, ttl: number): string {
  const w = 'zone/zone.hbs';
  const owner = checked(w, 'hostname', r.owner);
  return r.type === 'A' ? `${owner}. ${checked(w, 'int', ttl)} IN A ${checked(w, 'ipv4', r.value)}\n` : `${owner}. ${checked(w, 'int', ttl)} IN AAAA ${checked(w, 'ipv6', r.value)}\n`;
}

/** The zone's own records before the pods': nameserver glue, the apex and the server's name. */
export function headRecords(c: Config, view: RelayView = relayView(c, undefined)): AddressRecord[] {
  const records: AddressRecord[] = [];
  const inZone = (name: string) => name === c.domain || name.endsWith('.' + c.domain);
  const glue = new Map<string, string>();
  // With relays every relay is a nameserver of the zone: its name and address, whether it is up or not
  // (resolvers ask the others when one does not answer).
  const relayNs = c.relays.relayed ? c.relays.list.map((r) => ({ name: r.fqdn, ipv4: r.ipv4 })) : [];
  for (const ns of [c.dns.primary, ...relayNs, ...c.dns.secondaries]) if (inZone(ns.name) && !glue.has(ns.name)) glue.set(ns.name, ns.ipv4);
  for (const [owner, value] of glue) records.push({ owner, type: 'A', value, source: 'config' });
  for (const owner of [c.domain, c.server.fqdn]) {
    if (glue.has(owner)) continue;
    records.push(...serverRecords(owner, c, view));
  }
  return records;
}

/** The zone's nameservers: every relay (with relays), else the primary, then the secondaries. */
export function zoneNameservers(c: Config): string[] {
  const names = c.relays.relayed ? c.relays.list.map((r) => r.fqdn) : [c.dns.primary.name];
  if (!names.includes(c.dns.primary.name)) names.unshift(c.dns.primary.name);
  return [...names, ...c.dns.secondaries.map((s) => s.name).filter((n) => !names.includes(n))];
}

/**
 * A pod's records. Its own address passes the publishing rules (src/net/address.ts) or is dropped with
 * its reason: no single pod's data can make the zone one that the nameserver's checker refuses, which
 * would stop every later apply for every pod. A pod whose own address was refused still has a name: the
 * server's (in that family), where its tunnel is.
 */
export function podZoneRecords(s: RenderSubdomain, c: Config, view: RelayView = relayView(c, undefined)): { records: AddressRecord[]; dropped: DroppedEntry[] } {
  if (!isPublished(s)) return { records: [], dropped: [] };
  const records: AddressRecord[] = [];
  const dropped: DroppedEntry[] = [];
  const policy = { allowNonGlobal: c.dns.allowNonGlobal };
  for (const r of podRecords(s, c, view)) {
    const why = r.source === 'pod' ? publishRefusal(r.value, r.type, policy) : null;
    if (why === null) records.push(r);
    else dropped.push({ where: 'zone', owner: r.owner, type: r.type, value: r.value, why });
  }
  // Per family: a refused A falls back to the server's A, a refused AAAA to the server's AAAA (if any).
  for (const d of dropped) {
    if (!records.some((r) => r.type === d.type)) records.push(...podRelayRecords(s, c, view).filter((r) => r.type === d.type));
  }
  return { records, dropped };
}

const CHALLENGE_PREFIX = '_acme-challenge.';

/** dns-01 records of the ACME orders under way (only those in this zone: nothing else could be served by it). */
export function challengeLines(c: Config, challenges: readonly { owner: string; value: string }[]): string {
  const w = 'zone/zone.hbs';
  return challenges
    .filter((r) => r.owner.endsWith(`.${c.domain}`))
    .map((r) => `${checked(w, 'acmeowner', r.owner)}. ${checked(w, 'int', c.dns.ttl)} IN TXT "${checked(w, 'acmevalue', r.value)}"\n`)
    .join('');
}

export function zoneSpec(c: Config, L: Layout, headTemplate: (records: AddressRecord[]) => string, challenges: readonly { owner: string; value: string }[], view: RelayView = relayView(c, undefined)): FragmentSpec {
  return {
    unit: 'dns', path: c.dns.daemon === 'bind' ? L.bind.zone : L.nsd.zone, mode: 0o644, order: 0,
    head: headTemplate(headRecords(c, view)),
    tail: challengeLines(c, challenges),
    lines(s) {
      const { records, dropped } = podZoneRecords(s, c, view);
      return { text: records.map((r) => recordLine(r, c.dns.ttl)).join(''), dropped };
    },
    nameOf: (line) => (line.startsWith(CHALLENGE_PREFIX) ? null : firstLabel(line)),
    tailAt(rest) {
      if (rest.startsWith(CHALLENGE_PREFIX)) return 0;
      const at = rest.indexOf(`\n${CHALLENGE_PREFIX}`);
      return at < 0 ? rest.length : at + 1;
    },
  };
}

/**
 * The whole file: head, every pod's lines in the order given (name order), tail. Of two pods whose keys
 * file under the same index file (the store's unique fingerprints make this impossible; this is the
 * second line of defence), the first keeps its line and the second is left out with the reason.
 */
export function assemble(spec: FragmentSpec, subdomains: readonly RenderSubdomain[]): { content: string; dropped: DroppedEntry[] } {
  const a = assembler(spec);
  a.add(subdomains);
  return a.finish();
}

export interface Assembler {
  /** The next pods in name order. */
  add(subdomains: readonly RenderSubdomain[]): void;
  /** The whole file, once every pod was added. */
  finish(): { content: string; dropped: DroppedEntry[] };
}

/** assemble, fed a page of pods at a time (a whole render that never holds every pod's record at once). */
export function assembler(spec: FragmentSpec): Assembler {
  const parts: string[] = [spec.head];
  const dropped: DroppedEntry[] = [];
  const owners = new Map<string, string>();
  return {
    add(subdomains) {
      // This batch's lines joined into one flat string at once: a line built from a template is a tree of
      // the pieces it was made of, and 50,000 of them kept until the end cost several times the text.
      const batch: string[] = [];
      for (const s of subdomains) {
        const l = spec.lines(s);
        dropped.push(...l.dropped);
        if (l.keyFile !== undefined) {
          const first = owners.get(l.keyFile);
          if (first !== undefined) {
            dropped.push({ where: 'key index', owner: s.fqdn, type: 'ssh key', value: forLog(s.key!.fingerprint), why: `the same key is ${first}'s; one key opens one pod's ports only` });
            continue;
          }
          owners.set(l.keyFile, s.name);
        }
        if (l.text) batch.push(l.text);
      }
      if (batch.length) parts.push(batch.join(''));
    },
    finish() {
      parts.push(spec.tail);
      return { content: parts.join(''), dropped };
    },
  };
}
