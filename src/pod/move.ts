/**
 * Moving to another relay without a gap (make before break). A draining relay tells the pod on its
 * session's stderr that it is moving it; the pod then opens a second tunnel set — its own autossh, its
 * own ssh wrapper with its own backoff and relay position, starting at the relay after the current one —
 * while the first keeps serving. Once the new session is up it is the pod's tunnel; the draining relay
 * keeps the old session until the name has pointed at the new relay for longer than the TTL (so a
 * client's cached answer still reaches the pod), then cuts it, and the old set is retired: its wrapper
 * is replaced by one that connects nowhere (autossh runs it again at once when its ssh ends), then it
 * is stopped and its files removed.
 */
import * as fs from 'node:fs';
import type { PodFiles, PodState } from './files.js';
import { sshWrapperScript, TunnelSupervisor, tunnelArgv, tunnelEnv, type TunnelEvent } from './tunnel.js';
import { atomicWrite, readIfExists } from '../util/fsx.js';
import { MOVING_LINE } from '../ssh/session-lines.js';

/** The files of one tunnel set: generation 0 is the pod's own (PodFiles); a move makes the next. */
export interface TunnelSetFiles {
  wrapper: string;
  backoff: string;
  next: string;
  log: string;
}

export interface TunnelSet {
  gen: number;
  files: TunnelSetFiles;
  sup: TunnelSupervisor;
  /** The relay its wrapper last said it connects to. */
  relay: string | null;
}

export function tunnelSetFiles(f: PodFiles, gen: number): TunnelSetFiles {
  const base = { wrapper: f.sshWrapper, backoff: f.backoffState, next: f.relayNext, log: f.autosshLog };
  if (gen === 0) return base;
  return { wrapper: `${base.wrapper}.${gen}`, backoff: `${base.backoff}.${gen}`, next: `${base.next}.${gen}`, log: `${base.log}.${gen}` };
}

/** The longest a retired set waits for its relay to end its session (the TTL's maximum, 300 s, + the relay's 3 s, with room). */
const RETIRE_AFTER_MS = 330_000;

/** A wrapper that connects nowhere: what a retired set's autossh runs until it is stopped. */
export const RETIRED_WRAPPER = '#!/bin/sh\n# pipe2me: this tunnel set handed its session over to another relay (src/pod/move.ts); it is being stopped.\nexec sleep 120\n';

/**
 * A tunnel set: its wrapper written (relayed: walking the pod's relay list from `startAt`, the index of
 * the list's line to try first), its first attempt at once, its autossh not started yet.
 */
export function makeTunnelSet(o: {
  gen: number;
  state: PodState;
  files: PodFiles;
  ssh: string;
  relayed: boolean;
  startAt?: number;
  onEvent: (set: TunnelSet, e: TunnelEvent) => void;
  onLine: (set: TunnelSet, line: string) => void;
}): TunnelSet {
  const files = tunnelSetFiles(o.files, o.gen);
  fs.writeFileSync(files.log, '', { mode: 0o644 });
  if (o.relayed) atomicWrite(files.next, `${o.startAt ?? 0}\n`, { mode: 0o600 });
  atomicWrite(files.wrapper, sshWrapperScript(files.backoff, o.ssh, o.relayed ? { list: o.files.relays, next: files.next } : undefined), { mode: 0o700 });
  atomicWrite(files.backoff, 'now\n', { mode: 0o600 });
  const set = {} as TunnelSet;
  const sup = new TunnelSupervisor(tunnelArgv(o.state, o.files), (e) => o.onEvent(set, e), tunnelEnv(files.log, files.wrapper), 1000, (line) => o.onLine(set, line));
  Object.assign(set, { gen: o.gen, files, sup, relay: null });
  return set;
}

/** Where a set's next attempt goes: the index its wrapper wrote after its last attempt. */
export function nextIndex(set: TunnelSet): number {
  const n = Number(readIfExists(set.files.next)?.trim());
  return Number.isInteger(n) && n >= 0 ? n : 0;
}

/** Retires a set that handed over (its wrapper connects nowhere already): it stops; its files go (not the pod's own). */
export async function retire(set: TunnelSet): Promise<void> {
  atomicWrite(set.files.wrapper, RETIRED_WRAPPER, { mode: 0o700 });
  await set.sup.stop();
  if (set.gen > 0) for (const file of Object.values(set.files)) fs.rmSync(file, { force: true });
}

/**
 * The pod's tunnel sets: the one in use (`current`), and while a relay moves the pod the one that takes
 * over. Events of the set in use go to `onEvent`; a move is said in the log.
 */
export class RelayMover {
  current: TunnelSet;
  private successor: TunnelSet | null = null;
  private readonly retiring = new Set<TunnelSet>();
  private generation = 0;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(private readonly o: {
    state: PodState;
    files: PodFiles;
    ssh: string;
    relayed: boolean;
    log: (m: string) => void;
    onEvent: (e: TunnelEvent) => void;
    /** A reconnect this process asks for itself: the set's wrapper must not wait. */
    onKick: (set: TunnelSet) => void;
  }) {
    this.current = this.newSet(0);
  }

  private newSet(gen: number, startAt = 0): TunnelSet {
    const set = makeTunnelSet({
      gen, state: this.o.state, files: this.o.files, ssh: this.o.ssh, relayed: this.o.relayed, startAt,
      onEvent: (x, e) => this.onSetEvent(x, e), onLine: (x, line) => this.onSetLine(x, line),
    });
    set.sup.onKick = () => this.o.onKick(set);
    return set;
  }

  private onSetEvent(set: TunnelSet, e: TunnelEvent): void {
    const { log } = this.o;
    if (set === this.successor) {
      log(`moving: the new tunnel ${e.state}: ${e.detail}`);
      if (e.state !== 'up') return;
      // The new session serves: it is the pod's tunnel now; the old one serves until its relay ends it.
      const old = this.current;
      this.current = set;
      this.successor = null;
      this.retiring.add(old);
      // At once: when its session ends, its autossh runs the wrapper again, and that must connect nowhere
      // (autossh reads the file only then; the live session is not touched).
      atomicWrite(old.files.wrapper, RETIRED_WRAPPER, { mode: 0o700 });
      log(`moved to relay ${set.relay ?? '?'}; the old session on relay ${old.relay ?? '?'} serves until that relay ends it`);
      // The relay ends it once the name has pointed here for the TTL (at most 300 s) + 3 s; however that
      // relay behaves, the old set goes after that.
      const timer = setTimeout(() => void this.retireSet(old), RETIRE_AFTER_MS);
      timer.unref();
      this.timers.add(timer);
      this.o.onEvent(e);
      return;
    }
    if (this.retiring.has(set)) {
      if (e.state === 'down') void this.retireSet(set);
      return;
    }
    if (set !== this.current) return;
    // The old session ended before the new one came up: the move is given up, the tunnel reconnects as always.
    if (e.state === 'down' && this.successor) {
      const gone = this.successor;
      this.successor = null;
      this.retiring.add(gone);
      log('moving: the old session ended before the new one was up; reconnecting as usual');
      void this.retireSet(gone);
    }
    this.o.onEvent(e);
  }

  private onSetLine(set: TunnelSet, line: string): void {
    const { log } = this.o;
    // A relay about to move this pod elsewhere (a drain): a second tunnel to the next relay, at once.
    if (line.startsWith(MOVING_LINE)) {
      if (set !== this.current || this.successor || !this.o.relayed) return;
      log(`the relay moves this pod: ${line.slice(MOVING_LINE.length + 2)}; opening a tunnel to the next relay before this one ends`);
      this.successor = this.newSet(++this.generation, nextIndex(this.current));
      this.successor.sup.start();
      return;
    }
    // The wrapper says which relay each attempt goes to (see tunnel.ts).
    const m = /^pipe2me-relay: connecting to relay (\S+)/.exec(line);
    if (m) {
      set.relay = m[1]!;
      if (set === this.current) log(`connecting to relay ${set.relay}`);
      return;
    }
    log(`ssh: ${line}`);
  }

  private async retireSet(set: TunnelSet): Promise<void> {
    if (!this.retiring.delete(set)) return;
    await retire(set).catch((e) => this.o.log(`stopping the old tunnel: ${(e as Error).message}`));
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    for (const set of [this.current, ...(this.successor ? [this.successor] : []), ...this.retiring]) await set.sup.stop();
  }
}
