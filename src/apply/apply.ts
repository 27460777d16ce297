/**
 * Apply: render → plan → stage every file of a changed unit in a private directory next to its
 * targets → check the staged set with the daemon's own checker → only when every check passed, rename
 * the changed files into place (included files before the files that include them) → reload only the
 * daemons whose files changed. A refused check leaves every live file as it was. Renames are atomic,
 * and Ctrl-C during them is held until they are done, so no daemon ever reads a half-written file.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LiveServer, snapshot, type ServerContext } from '../server/context.js';
import { ALL_UNITS } from '../render/render.js';
import { SERIAL_PLACEHOLDER, type DroppedEntry, type RenderedFile, type Unit } from '../render/types.js';
import { getMeta, recordZoneSerial, setMeta, sharedZoneSerial } from '../state/db.js';
import { recordApplyMetrics } from './apply-metrics.js';
import { now } from '../state/types.js';
import { ensureDir, fsyncDir, readIfExists, writeFresh } from '../util/fsx.js';
import { withLock } from '../util/lock.js';
import { checkKeyList, checkSshdConfig, reloadSshd } from '../daemons/sshd.js';
import { parseKeyList, syncKeyIndex, syncKeyIndexDelta } from '../ssh/key-index.js';
import { checkNginx, reloadNginx } from '../daemons/nginx.js';
import { checkBind, reloadBind, updateBind } from '../daemons/bind.js';
import { checkNsd, reloadNsd } from '../daemons/nsd.js';
import { pidAlive, type ReloadOutcome } from '../daemons/process.js';
import { checkNft, loadNft } from '../daemons/nft.js';
import { plan, zoneDigest, type FileChange, type LiveFile, type Plan, type Reload } from './plan.js';
import { ensureServerCertificates } from '../server/server-certs.js';
import { recordRendered, renderForApply, type RenderOutcome } from './render-state.js';

export interface ApplyOptions {
  units?: readonly Unit[];
  dryRun?: boolean;
  /** Render every per-pod file whole instead of patching what changed (`apply --full`). */
  full?: boolean;
  progress?: (message: string) => void;
}

export interface ReloadReport extends Reload {
  status: ReloadOutcome['status'];
  detail: string;
  /** How long after the reload the daemon served the new files. */
  servedAfterMs?: number;
}

/** An apply's steps in whole milliseconds (for --json and the logs). */
export function stepsMs(r: Pick<ApplyReport, 'steps'>): Record<string, number> {
  return Object.fromEntries(Object.entries(r.steps).map(([k, v]) => [k, Math.round(v * 1000)]));
}

export interface ApplyReport {
  plan: Plan;
  /** How each per-pod file was rendered: patched with the pods that changed, or whole and why. */
  rendered: RenderOutcome['how'];
  dryRun: boolean;
  reloads: ReloadReport[];
  serial: number | null;
  durationMs: number;
  /** Seconds per step (plan, check, swap, reload), for the logs and the store's metrics. */
  steps: Record<string, number>;
  /** Key files written and removed in the key index (only when keys changed). */
  keyIndex?: { written: number; removed: number };
  /** Records left out of the zone, with the reason (a pod's address that may not be published). */
  dropped: DroppedEntry[];
  /** Set when the configuration file does not validate and the last good one was applied. */
  staleConfig: { problem: string; since: string } | null;
}

const SERIAL_KEY = 'zone_serial';
const STAGE_PREFIX = '.p2m-stage-';

function readLive(files: readonly RenderedFile[], read: LiveReader): Map<string, LiveFile | undefined> {
  const live = new Map<string, LiveFile | undefined>();
  for (const f of files) {
    if (f.sameAsLive) {
      // Its content is read only if asked for (see RenderedFile.sameAsLive).
      const mode = modeOf(f.path);
      if (mode !== undefined) {
        live.set(f.path, { mode, get content() { return read.get(f.path) ?? ''; } });
        continue;
      }
    }
    const content = read.get(f.path);
    live.set(f.path, content === undefined ? undefined : { content, mode: fs.statSync(f.path).mode });
  }
  return live;
}

function modeOf(file: string): number | undefined {
  try {
    return fs.statSync(file).mode;
  } catch {
    return undefined;
  }
}

/** Files read once and kept: the renderer patches one, the planner compares with it. */
class LiveReader {
  private readonly read = new Map<string, string | undefined>();
  get(file: string): string | undefined {
    if (!this.read.has(file)) this.read.set(file, readIfExists(file));
    return this.read.get(file);
  }
}

/** Staging directories of applies that were killed (their pid is gone) are removed. */
function sweepStaleStages(dirs: Iterable<string>): void {
  for (const dir of dirs) {
    let entries: string[];
    try {
      entries = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const e of entries) {
      if (!e.startsWith(STAGE_PREFIX)) continue;
      const pid = Number(e.slice(STAGE_PREFIX.length).split('-')[0]);
      if (!pidAlive(pid)) fs.rmSync(path.join(dir, e), { recursive: true, force: true });
    }
  }
}

interface Staged {
  unit: Unit;
  dir: string;
  /** final path → staged path */
  paths: Map<string, string>;
}

function stageUnit(unit: Unit, changes: readonly FileChange[]): Staged {
  const dirs = [...new Set(changes.map((c) => path.dirname(c.file.path)))];
  if (dirs.length !== 1) throw new Error(`internal: unit ${unit} spans ${dirs.join(', ')}`);
  const dir = path.join(dirs[0]!, `${STAGE_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`);
  fs.mkdirSync(dir, { mode: 0o700 });
  const paths = new Map<string, string>();
  for (const c of changes) {
    const staged = path.join(dir, path.basename(c.file.path));
    if (c.file.sameAsLive && !c.modeChanged && linked(c.file.path, staged)) {
      // The live file itself (a second name for it): checked with the rest, never renamed (unchanged).
      paths.set(c.file.path, staged);
      continue;
    }
    writeFresh(staged, c.content, { mode: c.file.mode });
    paths.set(c.file.path, staged);
  }
  return { unit, dir, paths };
}

function linked(file: string, to: string): boolean {
  try {
    fs.linkSync(file, to);
    return true;
  } catch {
    return false;
  }
}

async function checkUnit(ctx: ServerContext, s: Staged, keyDelta: RenderOutcome['keyDelta'], dynamicUpdate: boolean): Promise<void> {
  const L = ctx.layout;
  const staged = (p: string) => s.paths.get(p);
  switch (s.unit) {
    case 'sshd':
      return checkSshdConfig(staged(L.sshd.config), [staged(L.sshd.sessionScript), staged(L.sshd.keysCommand)]);
    case 'keys':
      return checkKeyList(staged(L.sshd.keyList)!, keyDelta ? { added: keyDelta.added } : { live: readIfExists(L.sshd.keyList) });
    case 'nginx':
      return checkNginx(L, staged(L.nginx.config)!);
    case 'dns':
      // A dynamic update is checked by named itself, which takes all of it or none; a whole zone is
      // checked here before named ever sees it.
      return ctx.config.dns.daemon === 'bind'
        ? checkBind(ctx.config, staged(L.bind.config), dynamicUpdate ? undefined : staged(L.bind.zone))
        : checkNsd(ctx.config, staged(L.nsd.config), staged(L.nsd.zone));
    case 'firewall':
      return checkNft(staged(L.sshd.firewall)!);
  }
}

/** Runs `fn` with SIGINT/SIGTERM held back; they are delivered again once it is done. */
function withSignalsHeld(fn: () => void): void {
  const held: NodeJS.Signals[] = [];
  const hold = (sig: NodeJS.Signals) => held.push(sig);
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, hold);
  try {
    fn();
  } finally {
    for (const s of signals) process.off(s, hold);
    for (const s of new Set(held)) process.kill(process.pid, s);
  }
}

/** Reloads one daemon and returns once it serves the new files (bounded; a daemon that does not get there is an error). */
async function reload(ctx: ServerContext, r: Reload, serial: number | null): Promise<ReloadOutcome> {
  switch (r.action) {
    case 'sshd-reload':
      return reloadSshd(ctx.layout, { host: ctx.config.server.ipv4, port: ctx.config.ssh.port });
    case 'nginx-reload':
      return reloadNginx(ctx.layout);
    case 'firewall-load':
      return loadNft(ctx.layout.sshd.firewall);
    case 'dns-reconfig':
    case 'dns-update':
    case 'dns-reload-zone': {
      const reconfig = r.action === 'dns-reconfig';
      return ctx.config.dns.daemon === 'bind' ? reloadBind(ctx.config, ctx.layout, reconfig, serial) : reloadNsd(ctx.config, ctx.layout, reconfig, serial);
    }
  }
}

/**
 * Each unit's files have a lock of their own: applies of different units run side by side (the API's
 * zone apply for a new name does not wait for an nginx check of 100,000 names), two applies of one unit
 * never do. An apply of several units takes their locks in one order (ALL_UNITS), so none waits in a cycle.
 */
export function lockFile(ctx: ServerContext, unit: Unit): string {
  return path.join(ctx.layout.lockDir, `apply-${unit}.lock`);
}

async function withUnitLocks<T>(ctx: ServerContext, units: readonly Unit[], fn: () => Promise<T>): Promise<T> {
  const ordered = ALL_UNITS.filter((u) => units.includes(u));
  const take = (i: number): Promise<T> => (i === ordered.length ? fn() : withLock(lockFile(ctx, ordered[i]!), `apply (${ordered[i]})`, () => take(i + 1)));
  return take(0);
}

/** Plans without touching anything (no lock, no certificates, no staging): `pipe2me-ctl plan`. */
export async function planOnly(live: ServerContext, units: readonly Unit[] = ALL_UNITS, opts: { full?: boolean } = {}): Promise<Plan & { render: RenderOutcome }> {
  const ctx = snapshot(live);
  const L = ctx.layout;
  // Every per-pod file is read at most once, and only when needed: the renderer patches it, the planner
  // compares with it; one proven unchanged is not read at all (a no-op apply reads none of them).
  const contents = new LiveReader();
  const render = await renderForApply(ctx.config, L, ctx.db, units, contents, opts);
  // With relays the serial and the zone it was given for are one record, whichever relay wrote it.
  const shared = ctx.config.relays.relayed ? await sharedZoneSerial(ctx.db) : null;
  const stored = shared ? String(shared.serial) : await getMeta(ctx.db, SERIAL_KEY);
  return { ...plan(render.files, readLive(render.files, contents), { storedSerial: stored ? Number(stored) : null, storedZoneDigest: shared?.digest ?? null, now: now() }), render };
}

export async function apply(live: ServerContext, opts: ApplyOptions = {}): Promise<ApplyReport> {
  const started = performance.now();
  // The configuration as it is now, and the same one for the whole apply.
  const ctx = snapshot(live);
  const stale = live instanceof LiveServer ? live.stale : null;
  if (stale) opts.progress?.(`applying with the last good configuration: ${live instanceof LiveServer ? live.file : 'the file'} does not validate (${stale.problem.split('\n')[0]})`);
  const units = opts.units ?? ALL_UNITS;
  const progress = opts.progress ?? (() => {});
  // What the run did, for the store's metrics (the API exposes them; apply runs in every process).
  const steps: Record<string, number> = {};
  let stepStart = performance.now();
  const step = (name: string) => {
    const t = performance.now();
    steps[name] = (t - stepStart) / 1000;
    stepStart = t;
  };
  let failedUnit: string | null = null;
  const run = async (): Promise<ApplyReport> => {
    const renewed = !opts.dryRun && units.includes('nginx') ? await ensureServerCertificates(ctx, progress) : false;
    const p = await planOnly(ctx, units, { full: opts.full });
    step('plan');
    // A full apply has every daemon load what it renders whole, changed or not: the way back from a
    // daemon that lost its files (named's served zone removed, say) or missed a reload.
    if (opts.full && !opts.dryRun) {
      if (units.includes('nginx') && !p.reloads.some((r) => r.unit === 'nginx')) p.reloads.push({ unit: 'nginx', action: 'nginx-reload', why: 'a full apply' });
      if (units.includes('dns') && !p.reloads.some((r) => r.unit === 'dns')) p.reloads.push({ unit: 'dns', action: 'dns-reload-zone', why: 'a full apply' });
    }
    // New certificates under the same file names: nginx serves them only after a reload.
    if (renewed && !p.reloads.some((r) => r.action === 'nginx-reload')) p.reloads.push({ unit: 'nginx', action: 'nginx-reload', why: 'the server\'s certificates were renewed' });
    const dropped = p.changes.flatMap((c) => c.file.dropped ?? []);
    for (const d of dropped) progress(`left out of the ${d.where}: ${d.owner} ${d.type} ${d.value} (${d.why})`);
    const report: ApplyReport = { plan: p, rendered: p.render.how, dryRun: Boolean(opts.dryRun), reloads: [], serial: p.serial, durationMs: 0, steps, dropped, staleConfig: stale };
    const L = ctx.layout;
    // An apply killed after its renames but before it removed its staging directory leaves one behind
    // with nothing left to change: sweep before deciding there is nothing to do.
    if (!opts.dryRun) sweepStaleStages([L.sshd.dir, L.nginx.dir, L.bind.dir]);
    const record = () => recordRendered(ctx.config, L, ctx.db, p.render);
    // BIND takes a patched zone as a dynamic update of exactly the changed records (see daemons/bind.ts).
    const dynamicUpdate = ctx.config.dns.daemon === 'bind' && p.render.zoneDelta !== undefined && p.reloads.some((r) => r.action === 'dns-reload-zone');
    if (dynamicUpdate) for (const r of p.reloads) if (r.action === 'dns-reload-zone') r.action = 'dns-update';
    if (opts.dryRun || (p.changedUnits.length === 0 && p.reloads.length === 0)) {
      if (!opts.dryRun) await record();
      report.durationMs = performance.now() - started;
      return report;
    }
    for (const d of [L.sshd.dir, L.nginx.dir, L.bind.dir]) ensureDir(d, 0o755);

    const stagedUnits: Staged[] = [];
    try {
      for (const unit of p.changedUnits) stagedUnits.push(stageUnit(unit, p.changes.filter((c) => c.file.unit === unit)));
      progress(`checking ${p.changedUnits.join(', ')}`);
      // Checkers run side by side; the first refusal is reported, and then nothing is renamed.
      const results = await Promise.allSettled(stagedUnits.map((s) => checkUnit(ctx, s, p.render.keyDelta, dynamicUpdate)));
      const refusedAt = results.findIndex((r) => r.status === 'rejected');
      if (refusedAt >= 0) {
        failedUnit = stagedUnits[refusedAt]!.unit;
        throw (results[refusedAt] as PromiseRejectedResult).reason;
      }
      step('check');

      withSignalsHeld(() => {
        const changed = p.changes
          .filter((c) => c.change !== 'unchanged' || c.modeChanged)
          .sort((a, b) => a.file.order - b.file.order);
        // The key index first, its manifest after it (with the other renames): an apply that dies in
        // between is healed by the next one, which compares the directory with the manifest again.
        const keyList = changed.find((c) => c.file.path === L.sshd.keyList);
        if (keyList) {
          // A patched manifest says exactly which lines went and came; a whole one is compared with the last.
          const delta = p.render.keyDelta;
          report.keyIndex = delta
            ? syncKeyIndexDelta(L.sshd.keysDir, parseKeyList(delta.removed.join('\n')), parseKeyList(delta.added.join('\n')))
            : syncKeyIndex(L.sshd.keysDir, parseKeyList(keyList.before), parseKeyList(keyList.content));
        }
        const dirs = new Set<string>();
        for (const c of changed) {
          const staged = stagedUnits.find((s) => s.unit === c.file.unit)!.paths.get(c.file.path)!;
          fs.renameSync(staged, c.file.path);
          dirs.add(path.dirname(c.file.path));
        }
        for (const d of dirs) fsyncDir(d);
      });
    } finally {
      for (const s of stagedUnits) fs.rmSync(s.dir, { recursive: true, force: true });
    }
    step('swap');

    // One reload per daemon at most, and the daemons do not depend on each other: they reload side by
    // side (at 10,000 subdomains nginx takes ~60 ms and BIND ~130 ms to take their new files).
    for (const r of p.reloads) progress(`reloading: ${r.action} (${r.why})`);
    const zoneDelta = p.render.zoneDelta;
    const zoneContent = p.changes.find((c) => c.file.path === L.bind.zone)?.content ?? '';
    const outcomes = await Promise.all(p.reloads.map(async (r) => {
      try {
        if (r.action !== 'dns-update' || !zoneDelta) return await reload(ctx, r, p.serial);
        const soa = /^@ IN SOA .*$/m.exec(zoneContent)?.[0] ?? '';
        try {
          return await updateBind(ctx.config, L, { ...zoneDelta, soa }, p.serial);
        } catch (e) {
          // named holds none of it: without the rendered zone the next apply renders, checks and loads it whole.
          fs.rmSync(L.bind.zone, { force: true });
          throw e;
        }
      } catch (e) {
        failedUnit ??= r.unit;
        throw e;
      }
    }));
    step('reload');
    p.reloads.forEach((r, i) => report.reloads.push({ ...r, ...outcomes[i]! }));
    // Files an earlier release rendered and this one does not: gone once nginx serves without them (a
    // rollback before this point would have needed them).
    if (p.reloads.some((r) => r.unit === 'nginx')) for (const f of L.nginx.obsolete) fs.rmSync(f, { force: true });
    // Recorded only once the daemons serve the files: a store that fails here (a failover) leaves an apply
    // that the next one repeats in full (nothing recorded: every file rendered whole, found equal, nothing
    // reloaded twice), never files in place that no daemon was told about.
    if (p.serial !== null && !ctx.config.relays.relayed) await setMeta(ctx.db, SERIAL_KEY, String(p.serial));
    // With relays the store holds the serial of the zone last changed, by any relay, with its digest: a
    // relay whose zone did not change must not put its older serial back.
    const zone = p.changes.find((c) => c.file.unit === 'dns' && c.file.content.includes(SERIAL_PLACEHOLDER));
    if (p.serial !== null && ctx.config.relays.relayed && zone && zone.change !== 'unchanged') {
      await recordZoneSerial(ctx.db, p.serial, zoneDigest(zone.file.content));
    }
    // The files are in place: the next apply may patch them.
    await record();
    report.durationMs = performance.now() - started;
    return report;
  };
  return withUnitLocks(ctx, units, async () => {
    try {
      const report = await run();
      if (!opts.dryRun) await recordApplyMetrics(ctx.db, { ok: true, steps, reloads: report.reloads.map((r) => r.unit) });
      return report;
    } catch (e) {
      if (!opts.dryRun) await recordApplyMetrics(ctx.db, { ok: false, steps, reloads: [], failedUnit: failedUnit ?? 'none' });
      throw e;
    }
  });
}
