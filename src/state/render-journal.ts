/**
 * The render journal (migration 7): the store's triggers note every subdomain whose rendered lines may
 * have changed, with a sequence number. An apply asks which names changed since the sequence a rendered
 * file was written at and re-renders only those; a file whose sequence is older than what the journal
 * still holds is rendered whole.
 */
import type { Db } from './db.js';

export interface JournalPosition {
  /** The latest change. */
  seq: number;
  /** Changes up to here may have been pruned: a file rendered before it cannot be brought forward by the journal. */
  prunedThrough: number;
}

export function journalPosition(db: Db): JournalPosition {
  const [seq, prunedThrough] = db.prepare('SELECT seq, pruned_through FROM render_seq WHERE id = 1').raw().get() as [number, number];
  return { seq, prunedThrough };
}

/** The names changed after `since` (at most `limit` + 1, so that a caller can tell "too many"). */
export function changedSince(db: Db, since: number, limit: number): string[] {
  return db.prepare('SELECT name FROM render_journal WHERE seq > ? ORDER BY name LIMIT ?').pluck().all(since, limit + 1) as string[];
}

/** Forgets the changes every rendered file has taken in (up to `through`). */
export function pruneJournal(db: Db, through: number): void {
  db.transaction(() => {
    const { prunedThrough } = journalPosition(db);
    if (through <= prunedThrough) return;
    db.prepare('DELETE FROM render_journal WHERE seq <= ?').run(through);
    db.prepare('UPDATE render_seq SET pruned_through = ? WHERE id = 1').run(through);
  }).immediate();
}

/** A read of the journal and of the rows it names, from one snapshot of the store. */
export function readConsistently<T>(db: Db, fn: () => T): T {
  return db.transaction(fn).deferred();
}
