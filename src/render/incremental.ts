/**
 * Incremental rendering, pure: a per-pod file as it is live, the pods that changed since it was written
 * and their rows now → the file a full render would give. Only the changed pods' lines are built, and
 * they are found by binary search (the pods' lines are in name order): a change costs a few lookups and
 * one copy of the file, not a pass over tens of thousands of lines. Every other byte is kept as it was.
 *
 * The caller makes sure the live file is exactly what pipe2me wrote (the render manifest records it), so
 * its shape is the renderer's; what does not fit that shape is refused here, and the caller renders the
 * file whole.
 */
import type { FragmentSpec } from './fragments.js';
import type { DroppedEntry, RenderSubdomain } from './types.js';

export interface PatchedFile {
  content: string;
  dropped: DroppedEntry[];
  /** The lines the patch took out and put in (the key index and a dynamic zone are brought forward by exactly these), the tail's included. */
  removed: string[];
  added: string[];
}

export type Patched = PatchedFile | { refused: string };

/** The line that holds position `at` of `text`: [start, end) without its newline. */
function lineAt(text: string, at: number): [number, number] {
  const start = text.lastIndexOf('\n', at - 1) + 1;
  const nl = text.indexOf('\n', at);
  return [start, nl < 0 ? text.length : nl];
}

/**
 * Where the lines of `name` start in `body` (the pods' part, lines in name order): the start of the first
 * line whose pod sorts at or after it. null when a probed line belongs to no pod.
 */
function lowerBound(body: string, spec: FragmentSpec, name: string, from: number): number | null {
  let lo = from;
  let hi = body.length;
  // Invariant: every line starting before lo sorts before name; the answer is a line start in [lo, hi].
  while (lo < hi) {
    const [start, end] = lineAt(body, (lo + hi) >>> 1);
    const n = spec.nameOf(body.slice(start, end));
    if (n === null) return null;
    if (n < name) lo = end + 1;
    else hi = start;
  }
  return Math.min(lo, body.length);
}

/** The end of the lines of `name` that start at `at` (the start of the next pod's lines). */
function groupEnd(body: string, spec: FragmentSpec, name: string, at: number): number | null {
  let pos = at;
  while (pos < body.length) {
    const [start, end] = lineAt(body, pos);
    const n = spec.nameOf(body.slice(start, end));
    if (n === null) return null;
    if (n !== name) break;
    pos = end + 1;
  }
  return Math.min(pos, body.length);
}

/**
 * `changed` holds every name the journal lists, sorted (as SQLite's ORDER BY name sorts these ASCII
 * names); `rows` the ones of them that still exist. A changed name without a row loses its lines.
 */
export function patchFile(spec: FragmentSpec, live: string, changed: readonly string[], rows: ReadonlyMap<string, RenderSubdomain>): Patched {
  if (!live.startsWith(spec.head)) return { refused: 'its head is not what the configuration renders' };
  const rest = live.slice(spec.head.length);
  const tailAt = spec.tailAt(rest);
  if (tailAt > 0 && rest[tailAt - 1] !== '\n') return { refused: 'its pods\' part does not end with a line' };
  const body = rest.slice(0, tailAt);
  const out: string[] = [spec.head];
  const dropped: DroppedEntry[] = [];
  const removed: string[] = [];
  const added: string[] = [];
  let copied = 0;
  let previous = '';
  for (const name of changed) {
    if (name <= previous) return { refused: 'the changed pods are not in name order' };
    previous = name;
    const at = lowerBound(body, spec, name, copied);
    const end = at === null ? null : groupEnd(body, spec, name, at);
    if (at === null || end === null) return { refused: 'a line of its pods\' part belongs to no pod' };
    out.push(body.slice(copied, at));
    if (end > at) removed.push(...body.slice(at, end - 1).split('\n'));
    const s = rows.get(name);
    if (s) {
      const l = spec.lines(s);
      dropped.push(...l.dropped);
      if (l.text) {
        out.push(l.text);
        added.push(...l.text.slice(0, -1).split('\n'));
      }
    }
    copied = end;
  }
  out.push(body.slice(copied), spec.tail);
  const oldTail = rest.slice(tailAt);
  if (oldTail !== spec.tail) {
    removed.push(...oldTail.split('\n').filter(Boolean));
    added.push(...spec.tail.split('\n').filter(Boolean));
  }
  return { content: out.join(''), dropped, removed, added };
}
