import { describe, expect, it } from 'vitest';
import { nextSerial, plan, planDiff, zoneDigest, zoneSerial } from '../../src/apply/plan.js';
import { SERIAL_PLACEHOLDER } from '../../src/render/types.js';
import { renderAll } from '../../src/render/render.js';
import { goldenSubdomains, sub, testConfig } from '../helpers/fixtures.js';

const config = testConfig();

function live(files: { path: string; content: string; mode?: number }[]) {
  return new Map(files.map((f) => [f.path, { content: f.content, mode: f.mode ?? 0o100644 }]));
}

describe('plan', () => {
  it('creates everything on an empty disk and reloads every daemon (and loads the firewall table) except for the key index', () => {
    const p = plan(renderAll(config, goldenSubdomains()), new Map(), { storedSerial: null, now: 1_800_000_000 });
    expect(p.changes.every((c) => c.change === 'create')).toBe(true);
    expect(p.reloads.map((r) => r.action).sort()).toEqual(['dns-reconfig', 'firewall-load', 'nginx-reload', 'sshd-reload']);
    expect(p.serial).toBe(1_800_000_000);
    expect(zoneSerial(p.changes.find((c) => c.file.path.endsWith('.zone'))!.content)).toBe(1_800_000_000);
  });

  it('changes nothing and reloads nothing when the disk already matches', () => {
    const first = plan(renderAll(config, goldenSubdomains()), new Map(), { storedSerial: null, now: 1_800_000_000 });
    const disk = live(first.changes.map((c) => ({ path: c.file.path, content: c.content, mode: 0o100000 | c.file.mode })));
    const again = plan(renderAll(config, goldenSubdomains()), disk, { storedSerial: 1_800_000_000, now: 1_900_000_000 });
    expect(again.changedUnits).toEqual([]);
    expect(again.reloads).toEqual([]);
    expect(again.serial).toBe(1_800_000_000); // unchanged zone keeps its serial even though the clock moved
    expect(planDiff(again)).toBe('');
  });

  it('a new subdomain touches keys, nginx maps and the zone, bumps the serial, and reloads only nginx and the zone', () => {
    const first = plan(renderAll(config, goldenSubdomains()), new Map(), { storedSerial: null, now: 1_800_000_000 });
    const disk = live(first.changes.map((c) => ({ path: c.file.path, content: c.content, mode: 0o100000 | c.file.mode })));
    const more = [...goldenSubdomains(), sub('new-one', ['http'], 20010)];
    const p = plan(renderAll(config, more), disk, { storedSerial: 1_800_000_000, now: 1_700_000_000 });
    expect(p.changedUnits.sort()).toEqual(['dns', 'keys', 'nginx']);
    expect(p.reloads.map((r) => r.action).sort()).toEqual(['dns-reload-zone', 'nginx-reload']);
    expect(p.serial).toBe(1_800_000_001); // above the live serial even when the clock is behind it
    expect(planDiff(p)).toContain('+new-one.pipe.test. 30 IN A 203.0.113.1');
  });

  it('a mode change alone is planned', () => {
    const first = plan(renderAll(config, []), new Map(), { storedSerial: null, now: 1 });
    const disk = live(first.changes.map((c) => ({ path: c.file.path, content: c.content, mode: 0o100600 })));
    const p = plan(renderAll(config, []), disk, { storedSerial: 1, now: 1 });
    expect(p.changes.filter((c) => c.modeChanged)).toHaveLength(first.changes.length);
  });

  it('with relays, one content has one serial: a relay whose live zone has the recorded content at a lower serial takes the recorded one, never a lower one', () => {
    const files = renderAll(config, goldenSubdomains());
    const zone = files.find((f) => f.content.includes(SERIAL_PLACEHOLDER))!;
    const digest = zoneDigest(zone.content);
    // Two relays rendered the same change at once: this one picked 1_800_000_005, the other 1_800_000_007, the store kept 7.
    const mine = plan(files, new Map(), { storedSerial: null, now: 1_800_000_005 });
    const disk = live(mine.changes.map((c) => ({ path: c.file.path, content: c.content, mode: 0o100000 | c.file.mode })));
    const follow = plan(files, disk, { storedSerial: 1_800_000_007, storedZoneDigest: digest, now: 1_800_000_100 });
    expect(follow.serial).toBe(1_800_000_007);
    expect(follow.reloads.map((r) => r.action)).toEqual(['dns-reload-zone']);
    expect(follow.changedUnits).toEqual(['dns']);
    // The other relay (at 7) with the store at 7 changes nothing; a store lower than the live zone is never taken.
    const at7 = live(follow.changes.map((c) => ({ path: c.file.path, content: c.content, mode: 0o100000 | c.file.mode })));
    expect(plan(files, at7, { storedSerial: 1_800_000_007, storedZoneDigest: digest, now: 1_800_000_200 }).changedUnits).toEqual([]);
    expect(plan(files, at7, { storedSerial: 1_800_000_006, storedZoneDigest: digest, now: 1_800_000_200 }).serial).toBe(1_800_000_007);
    // Another content's record is not taken: a changed zone goes above both.
    const other = plan(renderAll(config, [...goldenSubdomains(), sub('new-one', ['http'], 20010)]), at7, { storedSerial: 1_800_000_009, storedZoneDigest: digest, now: 1 });
    expect(other.serial).toBe(1_800_000_010);
  });

  it('serials always increase', () => {
    expect(nextSerial(null, null, 1000)).toBe(1000);
    expect(nextSerial(2000, null, 1000)).toBe(2001);
    expect(nextSerial(10, 5000, 1000)).toBe(5001);
  });
});
