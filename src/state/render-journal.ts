/**
 * The render journal (migration 7): the store's triggers note every subdomain whose rendered lines may
 * have changed, with a sequence number. An apply asks which names changed since the sequence a rendered
 * file was written at and re-renders only those; a file whose sequence is older than what the journal
 * still holds is rendered whole.
 */
import { readTx, writeTx, type Store } from './store.js';

export interface JournalPosition {
  /** The latest change. */
  seq: number;
  /** Changes up to here may have been pruned: a file rendered before it cannot be brought forward by the journal. */
  prunedThrough: number;
}

export async function journalPosition(s: Store): Promise<JournalPosition> {
  const r = await s.q.selectFrom('render_seq').select(['seq', 'pruned_through']).where('id', '=', 1).executeTakeFirstOrThrow();
  return { seq: r.seq, prunedThrough: r.pruned_through };
}

/** The names changed after `since` (at most `limit` + 1, so that a caller can tell "too many"). */
export async function changedSince(s: Store, since: number, limit: number): Promise<string[]> {
  return (await s.q.selectFrom('render_journal').select('name').where('seq', '>', since).orderBy('name').limit(limit + 1).execute()).map((r) => r.name);
}

/** Forgets the changes every rendered file has taken in (up to `through`). */
export async function pruneJournal(store: Store, through: number): Promise<void> {
  await writeTx(store, async (s) => {
    const { prunedThrough } = await journalPosition(s);
    if (through <= prunedThrough) return;
    await s.q.deleteFrom('render_journal').where('seq', '<=', through).execute();
    await s.q.updateTable('render_seq').set({ pruned_through: through }).where('id', '=', 1).execute();
  });
}

/** A read of the journal and of the rows it names, from one snapshot of the store. */
export function readConsistently<T>(s: Store, fn: (t: Store) => Promise<T>): Promise<T> {
  return readTx(s, fn);
}
