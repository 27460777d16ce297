/**
 * What the relays share through the store, on both engines: heartbeats and their leases, a relay marked
 * down only by another one and only once its lease ran out, a pod's name following its newest session
 * (journalled once per move, not per renewal), job leases that exactly one of two relays gets, and ACME's
 * orders and accounts per relay.
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ENGINES, closeTestStores, openTestStore, type TestStore } from '../helpers/stores.js';
import { createSubdomain, getSubdomainById } from '../../src/state/subdomains.js';
import { followSessions, heartbeat, listRelays, markExpired, recordRelaySchema, relaySchemas, relayStates, setRelayState, supersededSessions } from '../../src/state/relays.js';
import { mirrorSessions } from '../../src/state/sessions.js';
import { releaseLease, takeLease } from '../../src/state/leases.js';
import { journalPosition } from '../../src/state/render-journal.js';
import { accountOf, getOrder, latestServerOrder, listAccounts, nextDueAt, queueOrder, recordAccount, takeDueOrder, keepWorking, ORDER_STALE_SECONDS, addChallenges, allChallenges, deferOrder, finishOrder, orderStillWanted, removeChallenges, removeOrphanChallenges } from '../../src/state/acme.js';

const ctx = { domain: 'pipe.test', range: { first: 20000, last: 29999 }, maxPorts: 4, reserved: [] };

afterAll(closeTestStores);

describe.each(ENGINES)('relays in the %s store', (engine) => {
  let t: TestStore;
  beforeEach(async () => {
    t = await openTestStore(engine);
  });
  afterEach(async () => {
    await t.cleanup();
  });

  it('with address slots a new subdomain goes to the emptier slot, ports are unique per slot (the same port in two slots), and 20 at once never share a slot and port', async () => {
    const s = t.store;
    const slotted = { ...ctx, range: { first: 20000, last: 20039 }, slots: 2 };
    const a = await createSubdomain(s, { protocols: ['http'], expiresAt: null }, slotted);
    const b = await createSubdomain(s, { protocols: ['http'], expiresAt: null }, slotted);
    expect([a.record.slot, b.record.slot]).toEqual([0, 1]);
    expect(a.record.ports[0]!.port).toBe(20000);
    expect(b.record.ports[0]!.port).toBe(20000);
    expect((await getSubdomainById(s, b.record.id))!.slot).toBe(1);
    const many = await Promise.all(Array.from({ length: 20 }, () => createSubdomain(s, { protocols: ['http', 'tcp'], expiresAt: null }, slotted)));
    const keys = [a, b, ...many].flatMap((m) => m.record.ports.map((p) => `${m.record.slot}:${p.port}`));
    expect(new Set(keys).size).toBe(keys.length);
    const perSlot = [0, 1].map((i) => [a, b, ...many].filter((m) => m.record.slot === i).length);
    expect(Math.abs(perSlot[0]! - perSlot[1]!)).toBeLessThanOrEqual(1);
    // Full: both slots' ranges are used up, and the error says so.
    await expect(createSubdomain(s, { protocols: ['http', 'tcp', 'tcp', 'tcp'], expiresAt: null }, { ...slotted, range: { first: 20000, last: 20021 } })).rejects.toThrow(/address slot|free port/);
  });

  it('a heartbeat registers the relay with its host key; an expired one is marked down by another relay, never by itself, and comes back up with its next heartbeat', async () => {
    const s = t.store;
    expect(await heartbeat(s, { name: 'a', hostKey: 'ssh-ed25519 AAAA', leaseUntil: 105, now: 100 })).toBe('up');
    expect(await heartbeat(s, { name: 'b', hostKey: null, leaseUntil: 105, now: 100 })).toBe('up');
    expect(await markExpired(s, 'b', 104)).toEqual([]);
    expect(await markExpired(s, 'a', 110)).toEqual(['b']);
    expect(await markExpired(s, 'b', 110)).toEqual(['a']);
    expect(await relayStates(s)).toEqual([{ name: 'a', state: 'down' }, { name: 'b', state: 'down' }]);
    expect(await heartbeat(s, { name: 'a', hostKey: 'ssh-ed25519 BBBB', leaseUntil: 120, now: 115 })).toBe('up');
    const a = (await listRelays(s)).find((r) => r.name === 'a')!;
    expect([a.state, a.hostKey, a.leaseUntil, a.changedAt]).toEqual(['up', 'ssh-ed25519 BBBB', 120, 115]);
    // Draining stays draining through heartbeats, and is never "expired" back to up.
    expect(await setRelayState(s, 'a', 'draining', 116)).toBe(true);
    expect(await heartbeat(s, { name: 'a', hostKey: null, leaseUntil: 125, now: 120 })).toBe('draining');
    // Stopped while draining (maintenance) and marked down: it comes back draining, not up.
    expect(await markExpired(s, 'b', 140)).toEqual(['a']);
    expect(await heartbeat(s, { name: 'a', hostKey: null, leaseUntil: 150, now: 145 })).toBe('draining');
    // Undrain takes it back up; undrain of a relay that is down leaves it down.
    expect(await setRelayState(s, 'a', 'up', 146)).toBe(true);
    expect((await relayStates(s)).find((r) => r.name === 'a')!.state).toBe('up');
    await markExpired(s, 'b', 170);
    await setRelayState(s, 'a', 'up', 171);
    expect((await relayStates(s)).find((r) => r.name === 'a')!.state).toBe('down');
  });

  it('a pod points at the relay of its newest session; renewals do not touch the journal, a move journals once', async () => {
    const s = t.store;
    const pod = (await createSubdomain(s, { protocols: ['http'], expiresAt: null }, ctx)).record;
    const session = (startedAt: number) => [{ name: pod.name, family: 4 as const, address: '198.51.100.7', clientPort: 40000, startedAt }];
    const a = await mirrorSessions(s, 'a', session(1000), 1010);
    expect(a.fresh).toEqual([pod.name]);
    expect(await followSessions(s, a.fresh, 1001)).toBe(1);
    expect((await getSubdomainById(s, pod.id))!.relay).toBe('a');
    // Renewed: nothing fresh, nothing moves, the journal stays where it was.
    const before = (await journalPosition(s)).seq;
    const again = await mirrorSessions(s, 'a', session(1000), 1012);
    expect(again.fresh).toEqual([]);
    expect(await followSessions(s, [pod.name], 1002)).toBe(0);
    expect((await journalPosition(s)).seq).toBe(before);
    // A reconnect to b (newer) wins, even while a's older row still counts.
    const b = await mirrorSessions(s, 'b', session(1005), 1015);
    expect(await followSessions(s, b.fresh, 1006)).toBe(1);
    expect((await getSubdomainById(s, pod.id))!.relay).toBe('b');
    expect((await journalPosition(s)).seq).toBeGreaterThan(before);
    // a's older session is superseded by b's (b is up), b's is not by a's.
    await heartbeat(s, { name: 'a', hostKey: null, leaseUntil: 1100, now: 1000 });
    await heartbeat(s, { name: 'b', hostKey: null, leaseUntil: 1100, now: 1000 });
    expect(await supersededSessions(s, 'a', 1006)).toEqual([{ name: pod.name, newerSince: 1005 }]);
    expect(await supersededSessions(s, 'b', 1006)).toEqual([]);
    // A newer session on a relay that is down supersedes nothing.
    await markExpired(s, 'a', 1200);
    expect(await supersededSessions(s, 'a', 1006)).toEqual([]);
    // a renewing its older row does not take the pod back.
    await mirrorSessions(s, 'a', session(1000), 1020);
    expect(await followSessions(s, [pod.name], 1007)).toBe(0);
    expect((await getSubdomainById(s, pod.id))!.relay).toBe('b');
  });

  it('of two relays asking for a job\'s lease at once, exactly one gets it; it moves when it runs out or is given back', async () => {
    const s = t.store;
    // Two handles on PostgreSQL (relays share one there); on SQLite two handles in one process would wait
    // on each other's lock (better-sqlite3 is synchronous), so both asks go through the one handle.
    const other = engine === 'postgres' ? await t.open() : s;
    const [x, y] = await Promise.all([takeLease(s, 'probe', 'a', 130, 100), takeLease(other, 'probe', 'b', 130, 100)]);
    expect([x.held, y.held].filter(Boolean)).toHaveLength(1);
    const holder = x.held ? 'a' : 'b';
    const loser = holder === 'a' ? 'b' : 'a';
    expect((await takeLease(s, 'probe', loser, 140, 110)).lease.holder).toBe(holder);
    expect((await takeLease(s, 'probe', holder, 140, 110)).held).toBe(true);
    expect((await takeLease(s, 'probe', loser, 160, 141)).held).toBe(true);
    await releaseLease(s, 'probe', holder); // not the holder any more: nothing happens
    expect((await takeLease(s, 'probe', holder, 170, 142)).held).toBe(false);
    await releaseLease(s, 'probe', loser);
    expect((await takeLease(s, 'probe', holder, 170, 142)).held).toBe(true);
  });

  it('ACME: each relay\'s wildcard order is its own (only it works it, a newer one replaces only its own), a pod\'s order goes to any relay, and each relay key has its own account', async () => {
    const s = t.store;
    const names = ['*.pipe.test', 'pipe.test'];
    const wa = await queueOrder(s, { subdomainId: null, purpose: 'server', names, csrPem: 'a', keySha256: 'ka', relay: 'a' });
    const wb = await queueOrder(s, { subdomainId: null, purpose: 'server', names, csrPem: 'b', keySha256: 'kb', relay: 'b' });
    // b's order did not cancel a's: the two relays' keys differ and both are wanted.
    expect((await getOrder(s, wa.id))!.state).toBe('queued');
    expect((await latestServerOrder(s, names, 'a'))!.id).toBe(wa.id);
    expect((await latestServerOrder(s, names, 'b'))!.id).toBe(wb.id);
    const wa2 = await queueOrder(s, { subdomainId: null, purpose: 'server', names, csrPem: 'a2', keySha256: 'ka2', relay: 'a' });
    expect([(await getOrder(s, wa.id))!.state, (await getOrder(s, wb.id))!.state]).toEqual(['cancelled', 'queued']);
    const sub = await createSubdomain(s, { protocols: ['https'], expiresAt: null }, ctx);
    const pod = await queueOrder(s, { subdomainId: sub.record.id, purpose: 'pod', names: [sub.record.fqdn], csrPem: 'p', keySha256: 'kp' });
    const due = Math.max(wa2.nextAttemptAt, wb.nextAttemptAt, pod.nextAttemptAt) + 1;
    expect(await nextDueAt(s, 'c')).toBe(pod.nextAttemptAt);
    // Relay a takes its own wildcard and the pod's, never b's.
    const takenByA = [await takeDueOrder(s, 'a', due), await takeDueOrder(s, 'a', due), await takeDueOrder(s, 'a', due)];
    expect(takenByA.map((o) => o?.id).sort()).toEqual([wa2.id, pod.id, undefined].sort());
    expect(takenByA.filter(Boolean).every((o) => o!.workedBy === 'a')).toBe(true);
    expect((await takeDueOrder(s, 'b', due))!.id).toBe(wb.id);
    expect(await takeDueOrder(s, 'c', due)).toBeUndefined();
    // An order from before relays (bound to none) is any relay's.
    const old = await queueOrder(s, { subdomainId: null, purpose: 'server', names: ['other.test'], csrPem: 'o', keySha256: 'ko' });
    expect((await takeDueOrder(s, 'c', due))!.id).toBe(old.id);

    await recordAccount(s, { directoryUrl: 'https://ca/dir', keySha256: 'acct-a', url: 'https://ca/acct/1', relay: 'a', email: 'x@pipe.test' });
    await recordAccount(s, { directoryUrl: 'https://ca/dir', keySha256: 'acct-b', url: 'https://ca/acct/2', relay: 'b', email: 'x@pipe.test' });
    expect((await accountOf(s, 'https://ca/dir', 'acct-a'))!.url).toBe('https://ca/acct/1');
    expect((await accountOf(s, 'https://ca/dir', 'acct-b'))!.relay).toBe('b');
    expect(await accountOf(s, 'https://other/dir', 'acct-a')).toBeUndefined();
    expect((await listAccounts(s)).map((x) => x.relay)).toEqual(['a', 'b']);
  });

  it('each relay records the schema version its code knows, once, and the fleet reads them all', async () => {
    const s = t.store;
    expect((await relaySchemas(s)).size).toBe(0);
    await recordRelaySchema(s, 'a', 14);
    await recordRelaySchema(s, 'b', 13);
    await recordRelaySchema(s, 'b', 14);
    expect([...(await relaySchemas(s))].sort()).toEqual([['a', 14], ['b', 14]]);
  });

  it('ACME: an order its worker keeps touching is never taken over, however long it is worked; one left untouched is, and the old attempt then changes nothing of its successor\'s', async () => {
    const s = t.store;
    const sub = await createSubdomain(s, { protocols: ['https'], expiresAt: null }, ctx);
    const queued = await queueOrder(s, { subdomainId: sub.record.id, purpose: 'pod', names: [sub.record.fqdn], csrPem: 'p', keySha256: 'kp' });
    const t0 = queued.nextAttemptAt + 1;
    const taken = (await takeDueOrder(s, 'a', t0))!;
    expect([taken.id, taken.workedBy, taken.attempts]).toEqual([queued.id, 'a', 1]);
    const first = { relay: 'a', attempts: taken.attempts };
    // An hour of validation and nameserver waits, touched every minute: no other worker takes it.
    for (let at = t0 + 60; at <= t0 + 3600; at += 60) {
      expect(await keepWorking(s, taken.id, first, at)).toBe(true);
      expect(await takeDueOrder(s, 'b', at + 59)).toBeUndefined();
    }
    expect(await takeDueOrder(s, 'b', t0 + 3600 + ORDER_STALE_SECONDS - 1)).toBeUndefined();
    // Untouched past the window (its worker died): the next worker takes it, even a's own successor.
    const later = t0 + 3600 + ORDER_STALE_SECONDS + 1;
    const over = (await takeDueOrder(s, 'a', later))!;
    expect([over.id, over.attempts]).toEqual([taken.id, 2]);
    const second = { relay: 'a', attempts: over.attempts };
    await addChallenges(s, taken.id, [{ owner: `_acme-challenge.${sub.record.fqdn}`, value: 'first-token' }]);
    await addChallenges(s, taken.id, [{ owner: `_acme-challenge.${sub.record.fqdn}`, value: 'second-token' }]);
    // The first attempt, had it only stalled, comes back: it is told, and nothing it writes lands.
    expect(await keepWorking(s, taken.id, first, later + 1)).toBe(false);
    expect(await orderStillWanted(s, taken.id, first)).toBe(false);
    expect(await finishOrder(s, taken.id, 'acme:01', first)).toBe(false);
    await deferOrder(s, taken.id, 'the first attempt failed', later + 100, first);
    expect(await removeChallenges(s, taken.id, [{ owner: `_acme-challenge.${sub.record.fqdn}`, value: 'first-token' }])).toBe(1);
    expect((await allChallenges(s)).map((c) => c.value)).toEqual(['second-token']);
    expect(await keepWorking(s, taken.id, { relay: 'b', attempts: over.attempts }, later + 1)).toBe(false);
    const now = (await getOrder(s, taken.id))!;
    expect([now.state, now.attempts, now.lastError, now.certSerial]).toEqual(['working', 2, null, null]);
    // The successor's own writes do land.
    expect(await orderStillWanted(s, taken.id, second)).toBe(true);
    expect(await finishOrder(s, taken.id, 'acme:02', second)).toBe(true);
    expect((await getOrder(s, taken.id))!.certSerial).toBe('acme:02');
    // Its records are orphans now (the order ended), and go; a worked order's stay.
    const other = await queueOrder(s, { subdomainId: sub.record.id, purpose: 'pod', names: [sub.record.fqdn], csrPem: 'p2', keySha256: 'kp2' });
    const working = (await takeDueOrder(s, 'b', other.nextAttemptAt + 1))!;
    await addChallenges(s, working.id, [{ owner: `_acme-challenge.${sub.record.fqdn}`, value: 'worked-token' }]);
    expect(await removeOrphanChallenges(s)).toBe(1);
    expect((await allChallenges(s)).map((c) => c.value)).toEqual(['worked-token']);
  });
});
