/**
 * Jobs that run on one relay at a time (see state/leases.ts). With one relay the job simply runs; with
 * several, the relay that takes the lease runs it and renews the lease while it works, and the others
 * say who has it and do nothing.
 */
import { releaseLease, takeLease, type Lease } from '../../state/leases.js';
import { now } from '../../state/types.js';
import type { ServerContext } from '../context.js';

/** How long a lease holds without renewal; renewed every third of it while the job runs. */
export const JOB_LEASE_SECONDS = 30;

export async function asSingleton<T>(ctx: ServerContext, job: string, run: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false; holder: Lease }> {
  if (!ctx.config.relays.relayed) return { ran: true, value: await run() };
  const self = ctx.config.relays.self;
  const first = await takeLease(ctx.db, job, self, now() + JOB_LEASE_SECONDS, now());
  if (!first.held) return { ran: false, holder: first.lease };
  const timer = setInterval(() => {
    takeLease(ctx.db, job, self, now() + JOB_LEASE_SECONDS, now()).catch(() => undefined);
  }, (JOB_LEASE_SECONDS * 1000) / 3);
  try {
    return { ran: true, value: await run() };
  } finally {
    clearInterval(timer);
    await releaseLease(ctx.db, job, self).catch(() => undefined);
  }
}
