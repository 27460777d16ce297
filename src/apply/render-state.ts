/**
 * What an apply renders: the small files always whole; each per-pod file (the key index's manifest,
 * nginx's maps, the zone) by patching the live file with the pods that changed since it was written,
 * when that provably gives what a full render would; otherwise whole. The render manifest records, per
 * per-pod file, the digest of what the last apply wrote and the render journal's position it took in; a
 * file that is missing, edited by hand, written by an older format or configuration, or older than the
 * journal's memory is rendered whole, and so is every file of `apply --full`.
 */
import * as path from 'node:path';
import { withLock } from '../util/lock.js';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type { Config } from '../config/types.js';
import { fragmentSpecs, renderAll } from '../render/render.js';
import { FRAGMENT_FORMAT, assembler, type FragmentSpec } from '../render/fragments.js';
import { patchFile } from '../render/incremental.js';
import { templatesDigestSource } from '../render/templates.js';
import type { Layout } from '../render/layout.js';
import type { DroppedEntry, RenderedFile, Unit } from '../render/types.js';
import { allChallenges } from '../state/acme.js';
import type { Store } from '../state/db.js';
import { changedSince, journalPosition, pruneJournal, readConsistently } from '../state/render-journal.js';
import { eachRenderPage, renderSnapshotOf } from '../state/subdomains.js';
import { relayStates } from '../state/relays.js';
import type { RelayStates } from '../render/relays.js';
import { atomicWrite, readIfExists } from '../util/fsx.js';
import { withSerialPlaceholder } from './plan.js';

/** Past this many changed pods a whole render is as cheap as patching (and simpler to reason about). */
export const PATCH_LIMIT = 2000;

const PER_POD_TEMPLATES = ['sshd/keys.list.hbs', 'nginx/entry.map.hbs', 'nginx/sni-route.map.hbs', 'nginx/sni-port.map.hbs', 'zone/zone.hbs'];

/**
 * Which file the last apply wrote: its inode, size and modification time in nanoseconds (what make and git
 * trust to tell a file changed; hashing tens of MiB on every apply is what incremental apply avoids), and
 * the render journal's position its content takes in.
 */
interface ManifestEntry {
  identity: string;
  seq: number;
}

export interface RenderManifest {
  format: number;
  /** The configuration, the templates and the line format this manifest's files were rendered with. */
  digest: string;
  files: Record<string, ManifestEntry>;
}

export interface RenderOutcome {
  files: RenderedFile[];
  /** When the key index's manifest was patched: the lines it lost and gained (the index follows exactly these). */
  keyDelta?: { removed: string[]; added: string[] };
  /** When the zone was patched: the record lines it lost and gained (a dynamic update carries exactly these). */
  zoneDelta?: { removed: string[]; added: string[] };
  /** Per per-pod file: patched (with how many pods) or rendered whole (and why). */
  how: { path: string; mode: 'patched' | 'whole'; pods?: number; why?: string }[];
  /** The journal position the rendered content takes in, and the digest it was rendered with (for the manifest). */
  seq: number;
  digest: string;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** A file's identity (see ManifestEntry), or undefined when it does not exist. */
export function fileIdentity(file: string): string | undefined {
  try {
    const st = fs.statSync(file, { bigint: true });
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
  } catch {
    return undefined;
  }
}

/**
 * What every per-pod file was rendered with besides the pods: the configuration, the templates, the line
 * format and (with relays) each relay's state — a relay going down or up moves the names of pods that
 * did not change, so the files are rendered whole then.
 */
export function renderDigest(c: Config, relays: RelayStates = []): string {
  const states = relays.length ? `\n${relays.map((r) => `${r.name}=${r.state}`).join(' ')}` : '';
  return sha256(`${FRAGMENT_FORMAT}\n${JSON.stringify(c)}\n${templatesDigestSource(PER_POD_TEMPLATES)}${states}`);
}

export function readManifest(L: Layout): RenderManifest | null {
  const text = readIfExists(L.renderManifest);
  if (text === undefined) return null;
  try {
    const m = JSON.parse(text) as RenderManifest;
    return m && m.format === 2 && typeof m.digest === 'string' && m.files && typeof m.files === 'object' ? m : null;
  } catch {
    return null;
  }
}

/**
 * Renders the given units. `live` holds the per-pod files as they are on disk (read once by the caller,
 * which compares them with the result too).
 */
/** The per-pod files as they are on disk, read when asked (a Map of them does as well). */
export type LiveFiles = Pick<ReadonlyMap<string, string | undefined>, 'get'>;

export async function renderForApply(c: Config, L: Layout, store: Store, units: readonly Unit[], live: LiveFiles, opts: { full?: boolean } = {}): Promise<RenderOutcome> {
  const manifest = opts.full ? null : readManifest(L);
  return await readConsistently(store, async (db) => {
    const position = await journalPosition(db);
    const challenges = units.includes('dns') ? await allChallenges(db) : [];
    const relays = c.relays.relayed ? await relayStates(db) : [];
    const digest = renderDigest(c, relays);
    const specs = fragmentSpecs(c, L, units, { challenges, relays });
    const identities = new Map(specs.map((spec) => [spec.path, fileIdentity(spec.path)]));
    const perPod = new Set(specs.map((s) => s.path));
    const files = renderAll(c, [], units, { challenges, relays }).filter((f) => !perPod.has(f.path));
    const how: RenderOutcome['how'] = [];

    // Which files can be brought forward, and from which journal position.
    const plans: { spec: FragmentSpec; why: string | null; names: string[] }[] = [];
    for (const spec of specs) {
      const why = wholeBecause(spec, manifest, digest, identities.get(spec.path), position.prunedThrough, opts.full);
      if (why) {
        plans.push({ spec, why, names: [] });
        continue;
      }
      const names = await changedSince(db, manifest!.files[spec.path]!.seq, PATCH_LIMIT);
      plans.push(names.length > PATCH_LIMIT ? { spec, why: `more than ${PATCH_LIMIT} pods changed`, names } : { spec, why: null, names });
    }
    let keyDelta: RenderOutcome['keyDelta'];
    let zoneDelta: RenderOutcome['zoneDelta'];
    const changed = [...new Set(plans.filter((p) => p.why === null).flatMap((p) => p.names))].sort();
    const rows = new Map((await renderSnapshotOf(db, changed)).map((s) => [s.name, s]));

    // Per plan, in order: its file, patched or the live one; the ones to render whole are left for one
    // pass over the fleet below, which builds all of them side by side a page of pods at a time.
    const out: (RenderedFile | null)[] = [];
    const hows: RenderOutcome['how'][number][] = [];
    const whole: { at: number; spec: FragmentSpec; why: string }[] = [];
    for (const p of plans) {
      const at = out.length;
      out.push(null);
      let why = p.why;
      if (why === null && p.names.length === 0 && p.spec.unit !== 'dns') {
        // What the last apply wrote, and no pod changed since: the live file is the render (the zone is
        // read all the same: its serial and, with relays, its digest are decided from its content).
        out[at] = sameAsLive(p.spec);
        hows[at] = { path: p.spec.path, mode: 'patched', pods: 0 };
        continue;
      }
      const current = why === null ? live.get(p.spec.path) : undefined;
      if (why === null && current === undefined) why = 'the file is missing';
      if (why === null) {
        const patched = patchFile(p.spec, p.spec.unit === 'dns' ? withSerialPlaceholder(current!) : current!, p.names, rows);
        if ('refused' in patched) why = patched.refused;
        else {
          if (p.spec.unit === 'keys') keyDelta = { removed: patched.removed, added: patched.added };
          if (p.spec.unit === 'dns') zoneDelta = { removed: patched.removed, added: patched.added };
          out[at] = toRendered(p.spec, patched);
          hows[at] = { path: p.spec.path, mode: 'patched', pods: p.names.length };
          continue;
        }
      }
      whole.push({ at, spec: p.spec, why: why! });
    }
    if (whole.length) {
      const builders = whole.map((w) => assembler(w.spec));
      await eachRenderPage(db, (page) => {
        for (const b of builders) b.add(page);
      });
      whole.forEach((w, i) => {
        out[w.at] = toRendered(w.spec, builders[i]!.finish());
        hows[w.at] = { path: w.spec.path, mode: 'whole', why: w.why };
      });
    }
    files.push(...(out as RenderedFile[]));
    how.push(...hows);
    return { files, how, seq: position.seq, digest, ...(keyDelta ? { keyDelta } : {}), ...(zoneDelta ? { zoneDelta } : {}) };
  });
}

function wholeBecause(spec: FragmentSpec, m: RenderManifest | null, digest: string, identity: string | undefined, prunedThrough: number, full?: boolean): string | null {
  if (full) return 'a full apply';
  if (!m) return 'no render manifest';
  if (m.digest !== digest) return 'the configuration or the templates changed';
  const entry = m.files[spec.path];
  if (!entry) return 'not in the render manifest';
  if (identity === undefined) return 'the file is missing';
  if (identity !== entry.identity) return 'the file is not what the last apply wrote';
  if (entry.seq < prunedThrough) return 'older than the render journal';
  return null;
}

/** The live file as the render, read only if someone asks for its content (see RenderedFile.sameAsLive). */
function sameAsLive(spec: FragmentSpec): RenderedFile {
  let content: string | undefined;
  return {
    unit: spec.unit, path: spec.path, mode: spec.mode, order: spec.order, sameAsLive: true,
    get content() {
      return (content ??= readIfExists(spec.path) ?? '');
    },
  };
}

function toRendered(spec: FragmentSpec, r: { content: string; dropped: DroppedEntry[] }): RenderedFile {
  return { unit: spec.unit, path: spec.path, content: r.content, mode: spec.mode, order: spec.order, ...(r.dropped.length ? { dropped: r.dropped } : {}) };
}

/**
 * After an apply: record what is now live in each per-pod file it rendered, and let the journal forget
 * what every per-pod file has taken in.
 */
export async function recordRendered(c: Config, L: Layout, db: Store, outcome: RenderOutcome): Promise<void> {
  // Applies of other units (their own locks) record their files in the same manifest: read, merge and
  // write it under a lock of its own, so that neither loses the other's entries.
  const files = await withLock(path.join(L.lockDir, 'render-manifest.lock'), 'the render manifest', async () => writeManifest(L, outcome));
  const all = fragmentSpecs(c, L, ['keys', 'nginx', 'dns']).map((s) => s.path);
  if (all.every((p) => files[p] !== undefined)) await pruneJournal(db, Math.min(...all.map((p) => files[p]!.seq)));
}

function writeManifest(L: Layout, outcome: RenderOutcome): Record<string, ManifestEntry> {
  const before = readManifest(L);
  const digest = outcome.digest;
  const files: Record<string, ManifestEntry> = before && before.digest === digest ? { ...before.files } : {};
  for (const h of outcome.how) {
    const identity = fileIdentity(h.path);
    if (identity === undefined) delete files[h.path];
    else files[h.path] = { identity, seq: outcome.seq };
  }
  const next: RenderManifest = { format: 2, digest, files };
  const text = JSON.stringify(next, null, 1) + '\n';
  if (readIfExists(L.renderManifest) !== text) atomicWrite(L.renderManifest, text, { mode: 0o644 });
  return files;
}
