/**
 * A relay's part in the fleet, run by its API every second when relays are configured: renew its own
 * row (its lease, its ssh host key for the pods to pin), share its sessions, and mark down the relays
 * whose lease ran out. A relay judges the others only after it has itself renewed for a whole lease
 * without a failure: coming back from a store outage, every lease has run out, and the first relay to
 * see the store again must not call the whole fleet dead.
 */
import * as fs from 'node:fs';
import { dropExpiredSessions, heartbeat, markExpired } from '../../state/relays.js';
import { now } from '../../state/types.js';
import type { ServerContext } from '../context.js';
import { RELAY_LEASE_SECONDS, shareSessions } from './sessions.js';

export interface BeatOutcome {
  state: string;
  markedDown: string[];
  moved: number;
}

/** The relay's ssh host key as pods pin it ("ssh-ed25519 AAAA…"), or null while sshd has none. */
export function hostKeyOf(ctx: ServerContext): string | null {
  try {
    const pub = fs.readFileSync(ctx.layout.sshd.hostKey + '.pub', 'utf8').trim().split(/\s+/);
    return pub.length >= 2 ? `${pub[0]} ${pub[1]}` : null;
  } catch {
    return null;
  }
}

export class RelayHeartbeat {
  private healthySince: number | null = null;

  constructor(private readonly ctx: ServerContext) {}

  async beat(): Promise<BeatOutcome> {
    const ctx = this.ctx;
    const t = now();
    try {
      const state = await heartbeat(ctx.db, { name: ctx.config.relays.self, hostKey: hostKeyOf(ctx), leaseUntil: t + RELAY_LEASE_SECONDS, now: t });
      this.healthySince ??= t;
      const { moved } = await shareSessions(ctx);
      let markedDown: string[] = [];
      if (t - this.healthySince >= RELAY_LEASE_SECONDS) {
        markedDown = await markExpired(ctx.db, ctx.config.relays.self, t);
        await dropExpiredSessions(ctx.db, t);
      }
      return { state, markedDown, moved };
    } catch (e) {
      this.healthySince = null;
      throw e;
    }
  }
}
