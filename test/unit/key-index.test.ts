/**
 * The key index directory against its manifest, on a real directory: what an apply writes, keeps and
 * removes, and how it heals after a lost manifest or an interrupted apply.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { keyIndexFile, syncKeyIndex } from '../../src/ssh/key-index.js';
import { tempDir } from '../helpers/pki.js';
import { keyFor } from '../helpers/fixtures.js';

let tmp: ReturnType<typeof tempDir>;
let dir: string;
beforeEach(() => {
  tmp = tempDir('key-index');
  dir = path.join(tmp.dir, 'keys');
});
afterEach(() => tmp.cleanup());

/** A manifest of n pods: index file → line. */
function manifest(n: number, from = 0, tag = ''): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = from; i < from + n; i++) {
    const k = keyFor(`pod-${i}`);
    m.set(keyIndexFile(k.fingerprint), `restrict,port-forwarding,permitlisten="${20000 + i}" ${k.publicKey} pipe2me:pod-${i}${tag}`);
  }
  return m;
}
const inode = (f: string) => fs.statSync(path.join(dir, f)).ino;

describe('the key index directory', () => {
  it('writes every line under its file (0644), and only what changed on the next apply', () => {
    const a = manifest(40);
    expect(syncKeyIndex(dir, new Map(), a)).toEqual({ written: 40, removed: 0 });
    const [first, line] = [...a][0]!;
    expect(fs.readFileSync(path.join(dir, first), 'utf8')).toBe(line + '\n');
    expect(fs.statSync(path.join(dir, first)).mode & 0o777).toBe(0o644);
    const before = inode(first);
    const b = new Map(a);
    const [changed] = [...b.keys()].slice(1);
    b.set(changed!, b.get(changed!)!.replace('permitlisten="20001"', 'permitlisten="20999"'));
    b.delete([...b.keys()][2]!);
    expect(syncKeyIndex(dir, a, b)).toEqual({ written: 1, removed: 1 });
    expect(inode(first)).toBe(before);
    expect(fs.readFileSync(path.join(dir, changed!), 'utf8')).toContain('permitlisten="20999"');
    // No temporary file is left behind.
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('.'))).toEqual([]);
  });

  it('a lost manifest rewrites nothing that is right on disk, and corrects what is not', () => {
    const a = manifest(30);
    syncKeyIndex(dir, new Map(), a);
    const files = [...a.keys()];
    // As after a crash before the data reached the disk: one file empty, one missing, one stray.
    fs.writeFileSync(path.join(dir, files[3]!), '');
    fs.rmSync(path.join(dir, files[4]!));
    fs.writeFileSync(path.join(dir, keyIndexFile(keyFor('gone').fingerprint)), 'stale\n');
    const leftover = path.join(dir, `.${files[5]}.p2m-4242-0badcafe.tmp`);
    fs.writeFileSync(leftover, 'half');
    const kept = inode(files[0]!);
    expect(syncKeyIndex(dir, new Map(), a)).toEqual({ written: 2, removed: 1 });
    expect(inode(files[0]!)).toBe(kept);
    expect(fs.existsSync(leftover), 'a dead apply\'s temporary file is removed').toBe(false);
    for (const [f, l] of a) expect(fs.readFileSync(path.join(dir, f), 'utf8')).toBe(l + '\n');
  });

  it('thousands of files at once are written with one flush and are all there afterwards', () => {
    const big = manifest(3000, 0, ' x');
    expect(syncKeyIndex(dir, new Map(), big).written).toBe(3000);
    expect(fs.readdirSync(dir).length).toBe(3000);
  });
});
