/**
 * What a probe run writes, on both engines: each pod's route decision per family (reason, streak, times),
 * the route and its address changed only where they change — so a run that confirms every route leaves
 * the render journal alone — and each pod's history bounded to its last HISTORY_PER_POD results.
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ENGINES, closeTestStores, openTestStore, type TestStore } from '../helpers/stores.js';
import { createSubdomain, getSubdomainById } from '../../src/state/subdomains.js';
import { HISTORY_PER_POD, recentProbes, recordProbeRun, type ProbeOutcome } from '../../src/state/probes.js';
import { journalPosition } from '../../src/state/render-journal.js';

const ctx = { domain: 'pipe.test', range: { first: 20000, last: 29999 }, maxPorts: 4, reserved: [] };

afterAll(closeTestStores);

describe.each(ENGINES)('a probe run in the %s store', (engine) => {
  let t: TestStore;
  beforeEach(async () => {
    t = await openTestStore(engine);
  });
  afterEach(async () => {
    await t.cleanup();
  });

  const outcome = (id: string, family: 4 | 6, route: 'server' | 'direct', direct: string | null, streak: number, extra: { changedAt?: number } = {}): ProbeOutcome => ({
    subdomainId: id, family, address: direct, ok: route === 'direct', route, detail: { reason: `${route} ${streak}` },
    decision: { route, direct, reason: `${route} ${streak}`, streak, ...extra },
  });

  it('writes each decision, changes the route only where it changes, and journals only those pods', async () => {
    const s = t.store;
    const pods = [];
    for (let i = 0; i < 3; i++) pods.push((await createSubdomain(s, { protocols: ['http'], expiresAt: null }, ctx)).record);
    const [a, b, c] = pods as [typeof pods[0], typeof pods[0], typeof pods[0]];
    await recordProbeRun(s, 1000, [outcome(a.id, 4, 'direct', '198.51.100.2', 1, { changedAt: 1000 }), outcome(b.id, 4, 'server', null, 0), outcome(c.id, 6, 'direct', '2001:db8::7', 1, { changedAt: 1000 })]);
    const ra = (await getSubdomainById(s, a.id))!;
    expect([ra.route, ra.directIpv4, ra.routeReason, ra.probeStreak, ra.routeChangedAt, ra.route6]).toEqual(['direct', '198.51.100.2', 'direct 1', 1, 1000, 'server']);
    const rc = (await getSubdomainById(s, c.id))!;
    expect([rc.route, rc.route6, rc.directIpv6, rc.route6Reason]).toEqual(['server', 'direct', '2001:db8::7', 'direct 1']);
    // The same routes confirmed: reasons and streaks move, the journal does not.
    const before = await journalPosition(s);
    await recordProbeRun(s, 1060, [outcome(a.id, 4, 'direct', '198.51.100.2', 2), outcome(b.id, 4, 'server', null, 0), outcome(c.id, 6, 'direct', '2001:db8::7', 2)]);
    expect((await journalPosition(s)).seq).toBe(before.seq);
    const again = (await getSubdomainById(s, a.id))!;
    expect([again.probeStreak, again.routeReason, again.routeChangedAt]).toEqual([2, 'direct 2', 1000]);
    // One pod's address moves and another falls back: exactly those two are journaled.
    await recordProbeRun(s, 1120, [outcome(a.id, 4, 'direct', '198.51.100.3', 3), outcome(b.id, 4, 'server', null, 0), outcome(c.id, 6, 'server', null, 0, { changedAt: 1120 })]);
    expect((await journalPosition(s)).seq).toBe(before.seq + 2);
    expect((await getSubdomainById(s, a.id))!.directIpv4).toBe('198.51.100.3');
    expect((await getSubdomainById(s, c.id))!.directIpv6).toBeNull();
  });

  it('keeps each pod\'s last results only, both families counted', async () => {
    const s = t.store;
    const a = (await createSubdomain(s, { protocols: ['http'], expiresAt: null }, ctx)).record;
    const b = (await createSubdomain(s, { protocols: ['http'], expiresAt: null }, ctx)).record;
    for (let run = 0; run < HISTORY_PER_POD + 5; run++) {
      await recordProbeRun(s, 2000 + run, [outcome(a.id, 4, 'server', null, run), outcome(a.id, 6, 'server', null, run), outcome(b.id, 4, 'server', null, run)]);
    }
    const historyA = await recentProbes(s, a.id, 1000);
    expect(historyA).toHaveLength(HISTORY_PER_POD);
    expect(historyA[0]!.at).toBe(2000 + HISTORY_PER_POD + 4);
    expect(await recentProbes(s, b.id, 1000)).toHaveLength(HISTORY_PER_POD);
  });
});
