/**
 * Which relay's addresses the zone gives out, decided purely from the configuration and the relays' states
 * in the store, so that every relay renders the same zone. A pod's name points at the relay holding its
 * newest session; a pod with none (or whose relay is down) at its home relay: one of the relays that are
 * up, picked by a stable hash of its name so that pods spread and every relay picks the same one.
 */
import type { Config, RelayConfig } from '../config/types.js';

export type RelayStates = readonly { name: string; state: 'up' | 'down' | 'draining' }[];

export interface RelayView {
  /** The relay a pod's name points at while it is not direct. */
  forPod(s: { name: string; relay: string | null }): RelayConfig;
  /** The relays the server's own name (API, https entry, CRL) and the apex point at. */
  serving: readonly RelayConfig[];
}

/** FNV-1a (32 bits): stable across machines and Node versions, cheap, and spreads short names well. */
export function stableHash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export function relayView(c: Config, states: RelayStates | undefined): RelayView {
  const list = c.relays.list;
  if (!c.relays.relayed) return { forPod: () => list[0]!, serving: list };
  const state = new Map((states ?? []).map((r) => [r.name, r.state]));
  // A relay the store has no row for has never started: nothing there to point at.
  const up = list.filter((r) => state.get(r.name) === 'up');
  const notDown = list.filter((r) => { const s = state.get(r.name); return s === 'up' || s === 'draining'; });
  // With no relay known to be up (the first start, a store without heartbeats), every configured one:
  // a name that points somewhere plausible is better than none.
  const home = up.length ? up : notDown.length ? notDown : list;
  const serving = up.length ? up : home;
  const byName = new Map(list.map((r) => [r.name, r]));
  return {
    forPod(s) {
      const holder = s.relay ? byName.get(s.relay) : undefined;
      if (holder && state.get(holder.name) !== 'down' && state.get(holder.name) !== undefined) return holder;
      return home[stableHash(s.name) % home.length]!;
    },
    serving,
  };
}

/** This machine's relay (the only one without relays:). */
export function hereRelay(c: Config): RelayConfig {
  return c.relays.list.find((r) => r.name === c.relays.self) ?? c.relays.list[0]!;
}

/**
 * A relay's addresses for a pod in `slot`; null when the relay has no such slot (the configuration lost
 * one the store still uses): never another slot's, where another pod holds the same port.
 */
export function slotAddresses(r: RelayConfig, slot: number | undefined): { ipv4: string; ipv6: string | null } | null {
  return r.slots[slot ?? 0] ?? null;
}

/**
 * With address slots, the addresses a pod in `slot` listens on at this relay (its -R bind addresses, its
 * key's permitlisten hosts); null without slots: tunnels listen on every address, ports are fleet-wide.
 */
export function slotBinds(c: Config): ((slot: number | undefined) => string[]) | null {
  if (c.relays.slots <= 1) return null;
  const here = hereRelay(c);
  return (slot) => {
    const a = slotAddresses(here, slot);
    return a ? [a.ipv4, ...(a.ipv6 ? [a.ipv6] : [])] : [];
  };
}

/** An address and port as ssh writes a listen address: [v6]:port, v4:port. */
export const hostPort = (address: string, port: number) => (address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`);
