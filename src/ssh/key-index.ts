/**
 * The relay-local key index sshd's key lookup reads: one small file per pod key, named by the key's
 * SHA256 fingerprint, holding that pod's single authorized_keys line. sshd hands the lookup the
 * fingerprint of the key a client offers, so a login opens one file whatever the fleet's size, and it
 * never waits on the state store. Apply keeps the index equal to the manifest (keys.list) it renders.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { atomicWriteMany, readIfExists } from '../util/fsx.js';

/** "SHA256:<base64>" → the index file name ('/' and '+' are not safe in one: '_' and '-', as the lookup maps them). */
export function keyIndexFile(fingerprint: string): string {
  const b64 = fingerprint.startsWith('SHA256:') ? fingerprint.slice(7) : fingerprint;
  if (!/^[A-Za-z0-9+/]{43}$/.test(b64)) throw new Error(`not a SHA256 fingerprint: ${fingerprint.slice(0, 60)}`);
  return b64.replace(/\//g, '_').replace(/\+/g, '-');
}

/** The manifest's entries: index file → line. */
export function parseKeyList(content: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const entry of (content ?? '').split('\n')) {
    if (!entry || entry.startsWith('#')) continue;
    const sp = entry.indexOf(' ');
    if (sp !== 43) continue;
    out.set(entry.slice(0, sp), entry.slice(sp + 1));
  }
  return out;
}

export interface IndexSync {
  written: number;
  removed: number;
}

/**
 * Brings the index directory to `next`: writes what is new or changed since `previous` (each file
 * atomically) and removes what is gone; files that exist but are listed nowhere are removed too, and a
 * file the manifest lists but the directory lacks is written again, so an interrupted apply heals on
 * the next one. Unchanged keys cost nothing but a directory listing.
 */
export function syncKeyIndex(dir: string, previous: Map<string, string>, next: Map<string, string>): IndexSync {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const listing = fs.readdirSync(dir);
  // Temporary files of an apply that died between writing and renaming (applies hold the apply lock, so
  // none is another's in progress).
  for (const f of listing) if (f.startsWith('.') && /\.p2m-\d+-[0-9a-f]+\.tmp$/.test(f)) fs.rmSync(path.join(dir, f), { force: true });
  const present = new Set(listing.filter((f) => !f.startsWith('.')));
  let removed = 0;
  const writes: { name: string; content: string; mode: number }[] = [];
  for (const [file, line] of next) {
    if (present.has(file)) {
      const was = previous.get(file);
      if (was === line) continue;
      // Not in the old manifest (it was lost or is new here): the file on disk decides, so that a lost
      // manifest does not make the next apply rewrite every pod's file.
      if (was === undefined && readIfExists(path.join(dir, file)) === line + '\n') continue;
    }
    writes.push({ name: file, content: line + '\n', mode: 0o644 });
  }
  atomicWriteMany(dir, writes);
  const written = writes.length;
  for (const file of present) {
    if (next.has(file)) continue;
    fs.rmSync(path.join(dir, file), { force: true });
    removed++;
  }
  return { written, removed };
}

/**
 * Brings the index forward by a patch's delta: the lines a patched manifest lost and gained. A file whose
 * line went is removed unless the same file came back with a new line (a pod whose ports changed); every
 * gained line is written. Costs what changed, whatever the fleet's size; a whole apply (syncKeyIndex)
 * still compares the directory with the manifest and heals anything else.
 */
export function syncKeyIndexDelta(dir: string, removed: Map<string, string>, added: Map<string, string>): IndexSync {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const writes = [...added].filter(([file, line]) => removed.get(file) !== line).map(([name, line]) => ({ name, content: line + '\n', mode: 0o644 }));
  atomicWriteMany(dir, writes);
  let gone = 0;
  for (const file of removed.keys()) {
    if (added.has(file)) continue;
    fs.rmSync(path.join(dir, file), { force: true });
    gone++;
  }
  return { written: writes.length, removed: gone };
}
