/**
 * A cross-process mutex that the operating system releases when its holder dies: an SQLite write lock
 * (BEGIN IMMEDIATE) on a small lock file. The CLI, the API and the watcher all apply; the CA's
 * `openssl ca` keeps index.txt and serial that must never be written by two signers at once.
 * Waiting polls without blocking the event loop, so the API keeps answering while it waits.
 */
import Database from 'better-sqlite3';
import * as path from 'node:path';
import { ensureDir } from './fsx.js';
import { DaemonError } from './errors.js';

export interface LockOptions {
  /** Give up after this many ms. */
  timeoutMs?: number;
  pollMs?: number;
}

export async function withLock<T>(lockFile: string, what: string, fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
  ensureDir(path.dirname(lockFile), 0o700);
  const db = new Database(lockFile, { timeout: 0 });
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  try {
    db.pragma('journal_mode = DELETE');
    for (;;) {
      try {
        db.exec('BEGIN IMMEDIATE');
        break;
      } catch (e) {
        if ((e as { code?: string }).code !== 'SQLITE_BUSY') throw e;
        if (Date.now() > deadline) {
          throw new DaemonError('lock_timeout', `another pipe2me process holds the ${what} lock (${lockFile}) and did not release it in time.`, {
            hint: 'Wait for the other apply to finish, or find it with: fuser ' + lockFile,
          });
        }
        await new Promise((r) => setTimeout(r, opts.pollMs ?? 25));
      }
    }
    try {
      return await fn();
    } finally {
      db.exec('ROLLBACK');
    }
  } finally {
    db.close();
  }
}
