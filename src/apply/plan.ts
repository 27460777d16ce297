/**
 * Pure planning: rendered files + what is on disk now → what apply would change and which daemons it
 * would reload. The zone's serial is decided here: it changes only when the records change, and then it
 * always goes up (above the live serial, the last one recorded, and the clock).
 */
import { createHash } from 'node:crypto';
import { createTwoFilesPatch } from 'diff';
import type { RenderedFile, Unit } from '../render/types.js';
import { SERIAL_PLACEHOLDER } from '../render/types.js';

export interface LiveFile {
  content: string;
  mode: number;
}

export type ChangeKind = 'create' | 'update' | 'unchanged';

export interface FileChange {
  file: RenderedFile;
  /** Final content (the zone with its serial filled in). */
  content: string;
  before: string | undefined;
  change: ChangeKind;
  modeChanged: boolean;
}

export interface Reload {
  unit: Unit;
  action: 'sshd-reload' | 'nginx-reload' | 'dns-reload-zone' | 'dns-update' | 'dns-reconfig' | 'firewall-load';
  why: string;
}

export interface Plan {
  changes: FileChange[];
  reloads: Reload[];
  /** The zone serial after apply (unchanged zone: the live one). */
  serial: number | null;
  changedUnits: Unit[];
}

const SOA_SERIAL_RE = /^(@ IN SOA \S+ \S+ )(\d+|@@SERIAL@@)( )/m;

export function zoneSerial(content: string | undefined): number | null {
  const m = content ? SOA_SERIAL_RE.exec(content) : null;
  return m && /^\d+$/.test(m[2]!) ? Number(m[2]) : null;
}

/** A live zone as the renderer gives it: its serial replaced by the placeholder the planner fills in. */
export function withSerialPlaceholder(content: string): string {
  return withSerial(content, SERIAL_PLACEHOLDER);
}

function withSerial(content: string, serial: number | string): string {
  return content.replace(SOA_SERIAL_RE, `$1${serial}$3`);
}

export interface PlanContext {
  /** The last serial pipe2me recorded (state meta), if any. */
  storedSerial: number | null;
  /**
   * With relays: the zone (its digest with the serial left out) the last serial was recorded for, by
   * whichever relay. A relay rendering the same zone takes the same serial, so that every nameserver of
   * the zone serves one serial for one content.
   */
  storedZoneDigest?: string | null;
  /** Unix seconds, for the serial floor. */
  now: number;
}

/** The digest a zone's serial is recorded with in the store (the content with the serial left out). */
export function zoneDigest(contentWithPlaceholder: string): string {
  return createHash('sha256').update(contentWithPlaceholder).digest('hex');
}

/** RFC 1982 serials are 32-bit; pipe2me's start at the clock, which fits until 2106. */
export function nextSerial(live: number | null, stored: number | null, nowSeconds: number): number {
  return Math.max((live ?? 0) + 1, (stored ?? 0) + 1, nowSeconds) >>> 0;
}

export function plan(rendered: readonly RenderedFile[], live: ReadonlyMap<string, LiveFile | undefined>, ctx: PlanContext): Plan {
  let serial: number | null = null;
  const changes: FileChange[] = rendered.map((file) => {
    const before = live.get(file.path);
    // Proven equal to the live file by the renderer: unchanged, and neither side is read for it.
    if (file.sameAsLive && before !== undefined) {
      return {
        file, change: 'unchanged', modeChanged: (before.mode & 0o7777) !== file.mode,
        get content() {
          return file.content;
        },
        get before() {
          return before.content;
        },
      };
    }
    let content = file.content;
    if (content.includes(SERIAL_PLACEHOLDER)) {
      const liveSerial = zoneSerial(before?.content);
      const same = before !== undefined && liveSerial !== null && withSerial(before.content, SERIAL_PLACEHOLDER) === content;
      // With relays, the recorded serial is taken whenever it is higher for this same content, also when
      // this relay's live zone already has that content: two relays that rendered one change at the same
      // moment each picked a serial, the store kept the higher, and the lower one follows it here.
      const shared = ctx.storedZoneDigest && ctx.storedSerial !== null && ctx.storedSerial > (liveSerial ?? 0) && zoneDigest(content) === ctx.storedZoneDigest;
      serial = shared ? ctx.storedSerial : same ? liveSerial : nextSerial(liveSerial, ctx.storedSerial, ctx.now);
      content = withSerial(content, serial!);
    }
    const change: ChangeKind = before === undefined ? 'create' : before.content === content ? 'unchanged' : 'update';
    const modeChanged = before !== undefined && (before.mode & 0o7777) !== file.mode;
    return { file, content, before: before?.content, change, modeChanged };
  });

  const reloads: Reload[] = [];
  const changed = (c: FileChange) => c.change !== 'unchanged' || c.modeChanged;
  const changedUnits = [...new Set(changes.filter(changed).map((c) => c.file.unit))];
  for (const unit of changedUnits) {
    const files = changes.filter((c) => c.file.unit === unit && changed(c));
    const names = files.map((c) => c.file.path.split('/').pop()).join(', ');
    if (unit === 'sshd' && files.some((c) => c.file.path.endsWith('/sshd_config'))) reloads.push({ unit, action: 'sshd-reload', why: `${names} changed` });
    if (unit === 'nginx') reloads.push({ unit, action: 'nginx-reload', why: `${names} changed` });
    if (unit === 'dns') {
      const confChanged = files.some((c) => c.file.order === 1);
      reloads.push(confChanged ? { unit, action: 'dns-reconfig', why: `${names} changed` } : { unit, action: 'dns-reload-zone', why: `${names} changed` });
    }
    if (unit === 'firewall') reloads.push({ unit, action: 'firewall-load', why: `${names} changed` });
    // 'keys' (the key index): the key lookup reads it at every login, so a change needs no reload.
  }
  return { changes, reloads, serial, changedUnits };
}

/** A unified diff of every changed file, for `pipe2me-ctl plan`. */
export function planDiff(p: Plan): string {
  return p.changes
    .filter((c) => c.change !== 'unchanged' || c.modeChanged)
    .map((c) => {
      if (c.change === 'unchanged') return `mode of ${c.file.path} -> ${c.file.mode.toString(8)}\n`;
      return createTwoFilesPatch(c.before === undefined ? '/dev/null' : c.file.path, c.file.path, c.before ?? '', c.content, undefined, undefined, { context: 2 });
    })
    .join('');
}
