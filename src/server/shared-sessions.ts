/**
 * This relay's online pods, shared through the store: the session holder's records (local files, read
 * without the store) are mirrored into the store's `sessions` with a lease, every few seconds, by the API.
 */
import * as os from 'node:os';
import { isIPv4 } from 'node:net';
import { readSessionsAsync } from '../daemons/sessions.js';
import { mirrorSessions, pruneSessions } from '../state/sessions.js';
import { now } from '../state/types.js';
import { unmapIPv4 } from '../net/address.js';
import type { ServerContext } from './context.js';

/** How long a mirrored session counts without being renewed: a few of the API's 5 s sweeps. */
export const SESSION_LEASE_SECONDS = 30;

/** The name this relay's rows carry (its host name: one relay per machine). */
export function relayName(): string {
  return os.hostname();
}

export async function shareSessions(ctx: ServerContext, relay = relayName()): Promise<{ added: number; removed: number }> {
  const records = await readSessionsAsync(ctx.layout.sessionsDir);
  const live = [...records.values()].filter((r) => r.alive).map((r) => {
    const address = unmapIPv4(r.clientIp);
    return { name: r.name, family: (isIPv4(address) ? 4 : 6) as 4 | 6, address, clientPort: r.clientPort, startedAt: r.since };
  });
  const t = now();
  const out = await mirrorSessions(ctx.db, relay, live, t + SESSION_LEASE_SECONDS);
  await pruneSessions(ctx.db, t - 86400);
  return out;
}
