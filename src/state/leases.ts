/**
 * Leases on jobs that must run on one relay at a time (the probe's run over the whole fleet): a meta row
 * per job naming the holder and until when, taken in a write transaction, so that of two relays asking at
 * once exactly one gets it. A holder renews while it works; a relay that died stops renewing, and the
 * job moves to whichever relay asks next after the lease ran out.
 */
import { writeTx, type Store } from './store.js';

export interface Lease {
  holder: string;
  until: number;
}

const key = (job: string) => `lease ${job}`;

function parse(text: string | undefined): Lease | null {
  if (!text) return null;
  try {
    const l = JSON.parse(text) as Lease;
    return typeof l.holder === 'string' && Number.isFinite(l.until) ? l : null;
  } catch {
    return null;
  }
}

/** Takes (or renews) the job's lease for `holder` unless another holder's lease is still running; returns who holds it now. */
export async function takeLease(store: Store, job: string, holder: string, until: number, now: number): Promise<{ held: boolean; lease: Lease }> {
  return writeTx(store, async (s) => {
    const row = await s.q.selectFrom('meta').select('value').where('key', '=', key(job)).executeTakeFirst();
    const current = parse(row?.value);
    if (current && current.holder !== holder && current.until >= now) return { held: false, lease: current };
    const lease = { holder, until };
    const value = JSON.stringify(lease);
    await s.q.insertInto('meta').values({ key: key(job), value }).onConflict((oc) => oc.column('key').doUpdateSet({ value })).execute();
    return { held: true, lease };
  });
}

/** Gives the lease back (only the holder's own): the next run may go anywhere at once. */
export async function releaseLease(store: Store, job: string, holder: string): Promise<void> {
  await writeTx(store, async (s) => {
    const row = await s.q.selectFrom('meta').select('value').where('key', '=', key(job)).executeTakeFirst();
    if (parse(row?.value)?.holder === holder) await s.q.deleteFrom('meta').where('key', '=', key(job)).execute();
  });
}
