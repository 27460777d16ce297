/**
 * This relay's online pods, shared through the store: the session holder's records (local files, read
 * without the store) are mirrored into the store's `sessions` with a lease, by the API — every 5 s with
 * one relay, every second with several (where a pod's name follows the relay holding its newest session).
 */
import { isIPv4 } from 'node:net';
import { readSessionsAsync } from '../../daemons/sessions.js';
import { mirrorSessions, pruneSessions } from '../../state/sessions.js';
import { followSessions } from '../../state/relays.js';
import { now } from '../../state/types.js';
import { unmapIPv4 } from '../../net/address.js';
import type { ServerContext } from '../context.js';

/** How long a mirrored session counts without being renewed: a few of the API's 5 s sweeps. */
export const SESSION_LEASE_SECONDS = 30;

/** With several relays: a relay renews every second; a dead one's rows stop counting within this. */
export const RELAY_LEASE_SECONDS = 5;

export async function shareSessions(ctx: ServerContext, relay = ctx.config.relays.self): Promise<{ added: number; removed: number; moved: number }> {
  const records = await readSessionsAsync(ctx.layout.sessionsDir);
  const live = [...records.values()].filter((r) => r.alive).map((r) => {
    const address = unmapIPv4(r.clientIp);
    return { name: r.name, family: (isIPv4(address) ? 4 : 6) as 4 | 6, address, clientPort: r.clientPort, startedAt: r.since };
  });
  const t = now();
  const relayed = ctx.config.relays.relayed;
  const out = await mirrorSessions(ctx.db, relay, live, t + (relayed ? RELAY_LEASE_SECONDS : SESSION_LEASE_SECONDS));
  // A pod that came to this relay points here now (newest session wins), written only where it moved.
  const moved = relayed ? await followSessions(ctx.db, out.fresh, t) : 0;
  await pruneSessions(ctx.db, t - 86400);
  return { added: out.added, removed: out.removed, moved };
}
