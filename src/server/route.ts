/**
 * Keeping a pod's name pointed where its clients can reach it between probe runs. A pod on the direct
 * route whose session now arrives from another address has a new router address: the verified one is
 * dead (clients sent there reach nothing), so the name goes back to the server at once, and the pod is
 * probed again soon at the new address rather than at the next timer run.
 */
import { isIPv4 } from 'node:net';
import { unmapIPv4 } from '../net/address.js';
import type { SessionRecord } from '../daemons/sessions.js';
import { setRoute } from '../state/subdomains.js';
import { now, type SubdomainRecord } from '../state/types.js';
import type { ServerContext } from './context.js';

/** The new address, if the pod is direct and its live session comes from elsewhere than the verified one. */
export function movedFrom(s: Pick<SubdomainRecord, 'route' | 'directIpv4'>, live: Pick<SessionRecord, 'clientIp'> | undefined): string | null {
  if (s.route !== 'direct' || !s.directIpv4 || !live) return null;
  const ip = unmapIPv4(live.clientIp);
  return isIPv4(ip) && ip !== s.directIpv4 ? ip : null;
}

/** Sends the pod back to the server because its router's address changed; returns whether it did. */
export async function fallBackOnMove(ctx: ServerContext, s: SubdomainRecord, live: SessionRecord | undefined): Promise<string | null> {
  const moved = movedFrom(s, live);
  if (!moved) return null;
  // Not a fall-back in the flapping sense (the forward did not fail, the address moved): the new address
  // needs one good probe, not probe.recover_after of them.
  await setRoute(ctx.db, s.id, 4, {
    route: 'server', direct: null, streak: 0, changedAt: now(),
    reason: `back to the server: the pod now connects from ${moved}, not from its router's verified address ${s.directIpv4}; it is probed there next`,
  });
  return moved;
}

/**
 * Probe runs for single pods, soon after something says their route may have changed: one at a time, each
 * pod at most once per `minGapMs` counted from the end of its last run, never twice in the queue (a pod
 * waiting or being probed is not queued again), and no more than `maxQueued` pods waiting — past that a
 * request is dropped (the timer's run probes everyone anyway), so no pod can grow the queue or starve the
 * others.
 */
export class PromptProber {
  private readonly due = new Map<string, NodeJS.Timeout>();
  private readonly busy = new Set<string>();
  private readonly last = new Map<string, number>();
  private chain: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly run: (name: string) => Promise<void>, private readonly minGapMs = 5000, private readonly maxQueued = 1000) {}

  soon(name: string, delayMs: number): void {
    if (this.closed || this.due.has(name) || this.busy.has(name) || this.due.size + this.busy.size >= this.maxQueued) return;
    const wait = Math.max(delayMs, (this.last.get(name) ?? 0) + this.minGapMs - Date.now());
    const timer = setTimeout(() => {
      this.due.delete(name);
      this.busy.add(name);
      this.chain = this.chain.then(async () => {
        try {
          if (!this.closed) await this.run(name).catch(() => undefined);
        } finally {
          this.busy.delete(name);
          this.last.set(name, Date.now());
          if (this.last.size > 100_000) this.last.clear();
        }
      });
    }, wait);
    timer.unref();
    this.due.set(name, timer);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.due.values()) clearTimeout(t);
    this.due.clear();
    await this.chain;
  }
}
