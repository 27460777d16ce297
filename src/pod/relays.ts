/**
 * The relays a pod may hold its tunnel to (with several relays): what the server said, checked, pinned
 * (one known_hosts line per relay, each under its own alias), and the list the ssh wrapper walks — the
 * pod's home relay first (a stable hash of its name, so that pods spread), then the others in order.
 * Every connection attempt goes to the relay after the one the previous attempt went to: a pod whose
 * relay died is on the next one at its first reconnect, and nothing moves it back (no flapping).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { stableHash } from '../render/relays.js';
import { atomicWrite, readIfExists } from '../util/fsx.js';
import type { PodFiles, PodRelay, PodState } from './files.js';
import { defaultRoutes, knownHostsLine } from './tunnel.js';

export interface RelayAnswer {
  name: string;
  host: string;
  host6?: string | null;
  port: number;
  user: string;
  host_key: string;
  host_key_alias: string;
  listen?: string[];
}

/** The server's list, if every entry has the shape a pipe2me server sends (it reaches ssh's arguments). */
export function checkRelays(list: unknown): PodRelay[] | null {
  if (!Array.isArray(list) || list.length === 0 || list.length > 64) return null;
  const out: PodRelay[] = [];
  for (const r of list as RelayAnswer[]) {
    const ok = r && typeof r === 'object' && /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(r.name ?? '') && isIPv4(r.host ?? '') &&
      (r.host6 === undefined || r.host6 === null || isIPv6(r.host6)) && Number.isInteger(r.port) && r.port > 0 && r.port < 65536 &&
      /^[a-z_][a-z0-9_-]{0,30}$/.test(r.user ?? '') && /^ssh-ed25519 [A-Za-z0-9+/]+=*$/.test(r.host_key ?? '') && /^[a-z0-9.-]{1,253}$/.test(r.host_key_alias ?? '');
    // The listen addresses reach ssh's -R arguments: addresses only, one per family at most.
    const listen = r.listen;
    const listenOk = listen === undefined || (Array.isArray(listen) && listen.length >= 1 && listen.length <= 2 &&
      listen.filter((a) => isIPv4(a)).length === 1 && listen.every((a) => isIPv4(a) || (isIPv6(a) && !a.includes('%'))));
    if (!ok || !listenOk) return null;
    out.push({ name: r.name, host: r.host, host6: r.host6 ?? null, port: r.port, user: r.user, hostKeyAlias: r.host_key_alias, hostKey: r.host_key, ...(listen ? { listen: [...listen] } : {}) });
  }
  return out;
}

/** known_hosts: the server's own alias (setup's) and every relay's, each with exactly its key. */
export function knownHostsText(s: PodState, legacy: { alias: string; key: string } | null): string {
  const lines = legacy ? [knownHostsLine(legacy.alias, legacy.key)] : [];
  for (const r of s.relays ?? []) lines.push(knownHostsLine(r.hostKeyAlias, r.hostKey));
  return lines.join('');
}

/** The order this pod tries the relays in: the pinned relay or its home relay first, then on round the list. */
export function relayOrder(s: Pick<PodState, 'name' | 'relays'>, pinned?: string): PodRelay[] {
  const list = s.relays ?? [];
  if (list.length === 0) return [];
  const at = pinned ? list.findIndex((r) => r.name === pinned) : -1;
  const home = at >= 0 ? at : stableHash(s.name) % list.length;
  return [...list.slice(home), ...list.slice(0, home)];
}

/**
 * The wrapper's list: one relay per line, "name alias address port user listen" (all checked above);
 * listen is the slot's addresses there, comma-separated, or "-" without slots.
 */
export function relaysFileText(s: Pick<PodState, 'name' | 'relays'>, routes = defaultRoutes(), pinned?: string): string {
  return relayOrder(s, pinned).map((r) => `${r.name} ${r.hostKeyAlias} ${r.host6 && !routes.v4 && routes.v6 ? r.host6 : r.host} ${r.port} ${r.user} ${r.listen?.join(',') || '-'}\n`).join('');
}

/** Writes the pinned keys and the wrapper's list for the relays in `s` (nothing when there are none). */
export function writeRelayFiles(f: PodFiles, s: PodState, pinned?: string): void {
  if (!s.relays?.length) return;
  const current = readIfExists(f.knownHosts) ?? '';
  // The setup's own line (the alias of the relay that answered setup) is kept first.
  const first = current.split('\n')[0]?.split(' ');
  const legacy = first && first.length >= 3 && first[0] === s.ssh.hostKeyAlias ? { alias: first[0]!, key: `${first[1]} ${first[2]}` } : null;
  atomicWrite(f.knownHosts, knownHostsText(s, legacy), { mode: 0o644 });
  atomicWrite(f.relays, relaysFileText(s, defaultRoutes(), pinned), { mode: 0o644 });
}

/** Whether two relay lists differ in anything the pod pins or dials. */
export function relaysChanged(a: readonly PodRelay[] | undefined, b: readonly PodRelay[]): boolean {
  return JSON.stringify(a ?? []) !== JSON.stringify(b);
}
