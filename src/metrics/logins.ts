/**
 * Tunnel logins, as the key lookup counts them: it appends one byte per accepted or refused login to
 * .n-accepted / .n-refused in the connections directory (shell builtins only, on the path of a login).
 * The count is the store's counter plus the file's size; the API's housekeeping moves a grown file's
 * size into the store and empties it, so the files stay small.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ServerContext } from '../server/context.js';
import { bumpCounter } from '../state/metrics.js';

const FILES = { accepted: '.n-accepted', refused: '.n-refused' } as const;
const FOLD_ABOVE = 64 * 1024;

function size(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

/** What the files hold now (not yet in the store). */
export function pendingLogins(connsDir: string): { accepted: number; refused: number } {
  return { accepted: size(path.join(connsDir, FILES.accepted)), refused: size(path.join(connsDir, FILES.refused)) };
}

/**
 * Moves what a grown file counted into the store: counted first, then the file emptied, so a store that
 * cannot be written loses nothing (the file keeps growing and is folded next time). A byte appended
 * between the two steps is lost: one login.
 */
export async function foldLogins(ctx: ServerContext): Promise<void> {
  for (const [result, name] of Object.entries(FILES)) {
    const file = path.join(ctx.layout.connsDir, name);
    const n = size(file);
    if (n <= FOLD_ABOVE) continue;
    await bumpCounter(ctx.db, 'pipe2me_tunnel_logins_total', { result }, n);
    fs.truncateSync(file, 0);
  }
}
