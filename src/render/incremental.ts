/**
 * Incremental rendering, pure: a per-pod file as it is live, the pods that changed since it was written
 * and their rows now → the file a full render would give. Only the changed pods' lines are built; every
 * other byte is kept as it was. The caller makes sure the live file is exactly what pipe2me wrote (its
 * digest is in the render manifest); a file that does not have the shape a render gives is refused here,
 * and the caller renders it whole.
 */
import type { FragmentSpec } from './fragments.js';
import type { DroppedEntry, RenderSubdomain } from './types.js';

export type Patched = { content: string; dropped: DroppedEntry[] } | { refused: string };

/**
 * `changed` holds every name the journal lists (sorted, as SQLite's ORDER BY name sorts these ASCII
 * names); `rows` the ones of them that still exist. A changed name without a row lost its lines.
 */
export function patchFile(spec: FragmentSpec, live: string, changed: readonly string[], rows: ReadonlyMap<string, RenderSubdomain>): Patched {
  if (!live.startsWith(spec.head)) return { refused: 'its head is not what the configuration renders' };
  const rest = live.slice(spec.head.length);
  const tailAt = spec.tailAt(rest);
  const body = rest.slice(0, tailAt);
  if (changed.length === 0) return { content: spec.head + body + spec.tail, dropped: [] };

  const fresh = new Map<string, string>();
  const dropped: DroppedEntry[] = [];
  const newKeyFiles = new Map<string, string>();
  for (const name of changed) {
    const s = rows.get(name);
    if (!s) {
      fresh.set(name, '');
      continue;
    }
    const l = spec.lines(s);
    dropped.push(...l.dropped);
    if (l.keyFile !== undefined) newKeyFiles.set(l.keyFile, name);
    fresh.set(name, l.text);
  }

  const out: string[] = [spec.head];
  let next = 0;
  let replacing: string | null = null;
  let previous = '';
  const keptKeyFiles = newKeyFiles.size ? new Set<string>() : null;
  const lines = body.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  for (const line of lines) {
    const name = spec.nameOf(line);
    if (name === null) return { refused: `a line of its pods' part belongs to no pod: ${JSON.stringify(line.slice(0, 60))}` };
    if (name < previous) return { refused: 'its pods are not in name order' };
    previous = name;
    if (name === replacing) continue;
    while (next < changed.length && changed[next]! < name) out.push(fresh.get(changed[next++]!)!);
    if (next < changed.length && changed[next] === name) {
      out.push(fresh.get(name)!);
      next++;
      replacing = name;
      continue;
    }
    if (keptKeyFiles) keptKeyFiles.add(line.slice(0, line.indexOf(' ')));
    out.push(line, '\n');
  }
  while (next < changed.length) out.push(fresh.get(changed[next++]!)!);
  // One key, one pod: a changed pod's key that an unchanged pod's line already holds is decided by name
  // order over the whole file, which only a full render sees.
  if (keptKeyFiles) for (const file of newKeyFiles.keys()) if (keptKeyFiles.has(file)) return { refused: `the key of ${newKeyFiles.get(file)} is filed for another pod too` };
  out.push(spec.tail);
  return { content: out.join(''), dropped };
}

