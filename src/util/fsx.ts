/**
 * File writes that never leave a half-written file: write a temporary file in the target's own
 * directory (same filesystem, so the rename is atomic), fsync it, rename it over the target, fsync the
 * directory. A crash or a kill at any point leaves either the old file or the new one.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface WriteOptions {
  mode?: number;
  uid?: number;
  gid?: number;
  /** false: leave the flush to the caller, who writes many files and flushes them together (see flushFiles). */
  fsync?: boolean;
}

export function tempPathFor(target: string, tag = 'tmp'): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.p2m-${process.pid}-${randomBytes(4).toString('hex')}.${tag}`);
}

/** Write `content` to a fresh file with exactly `mode` (not subject to umask), fsynced unless told not to. */
export function writeFresh(file: string, content: string | Buffer, opts: WriteOptions = {}): void {
  const mode = opts.mode ?? 0o644;
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, mode);
  try {
    fs.fchmodSync(fd, mode);
    if (opts.uid !== undefined || opts.gid !== undefined) fs.fchownSync(fd, opts.uid ?? -1, opts.gid ?? -1);
    fs.writeSync(fd, typeof content === 'string' ? Buffer.from(content, 'utf8') : content);
    if (opts.fsync !== false) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself is still atomic.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

export function atomicWrite(target: string, content: string | Buffer, opts: WriteOptions = {}): void {
  const tmp = tempPathFor(target);
  try {
    writeFresh(tmp, content, opts);
    fs.renameSync(tmp, target);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(path.dirname(target));
}

export function readIfExists(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

export function statIfExists(file: string): fs.Stats | undefined {
  try {
    return fs.statSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** mkdir -p, then force the mode of the last component (mkdir is subject to umask). */
export function ensureDir(dir: string, mode = 0o755, owner?: { uid: number; gid: number }): void {
  fs.mkdirSync(dir, { recursive: true, mode });
  fs.chmodSync(dir, mode);
  if (owner) fs.chownSync(dir, owner.uid, owner.gid);
}

/**
 * Flushes files written with `fsync: false` to disk. A few are fsynced one by one; many at once take one
 * syncfs of their filesystem (`sync -f`) instead, because each fsync is a journal commit of its own: ten
 * thousand of them take seconds, one syncfs takes milliseconds.
 */
export function flushFiles(files: readonly string[]): void {
  if (files.length === 0) return;
  if (files.length <= 16) {
    for (const f of files) {
      const fd = fs.openSync(f, 'r');
      try {
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    return;
  }
  execFileSync('sync', ['-f', files[0]!], { timeout: 60_000, stdio: 'ignore' });
}

/**
 * Writes many small files in one directory, each atomically (temporary file, rename), with one flush for
 * all of them and one fsync of the directory: for the key index, whose full rewrite is a file per pod.
 */
export function atomicWriteMany(dir: string, files: readonly { name: string; content: string; mode: number }[]): void {
  if (files.length === 0) return;
  const staged: { tmp: string; target: string }[] = [];
  try {
    for (const f of files) {
      const target = path.join(dir, f.name);
      const tmp = tempPathFor(target);
      staged.push({ tmp, target });
      writeFresh(tmp, f.content, { mode: f.mode, fsync: false });
    }
    flushFiles(staged.map((s) => s.tmp));
    for (const s of staged) fs.renameSync(s.tmp, s.target);
  } catch (e) {
    for (const s of staged) fs.rmSync(s.tmp, { force: true });
    throw e;
  }
  fsyncDir(dir);
}
