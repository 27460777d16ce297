/**
 * A relay's part in the fleet, run by its API every second when relays are configured: renew its own
 * row (its lease, its ssh host key for the pods to pin), share its sessions, and mark down the relays
 * whose lease ran out. A relay judges the others only after it has itself renewed for a whole lease
 * without a failure: coming back from a store outage, every lease has run out, and the first relay to
 * see the store again must not call the whole fleet dead.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { announceMove, cutSessions, readSessionsAsync, userUid } from '../../daemons/sessions.js';
import { sessionDirs } from '../keys.js';
import { dropExpiredSessions, heartbeat, markExpired, recordRelaySchema, supersededSessions } from '../../state/relays.js';
import { schemaVersion } from '../../state/db.js';
import { SCHEMA_VERSION } from '../../state/migrations.js';
import { now } from '../../state/types.js';
import type { ServerContext } from '../context.js';
import type { Log } from '../../util/log.js';
import { RELAY_LEASE_SECONDS, shareSessions } from './sessions.js';
import { CrlFollower } from './ca.js';
import { authority } from '../ca.js';

export interface BeatOutcome {
  state: string;
  markedDown: string[];
  moved: number;
  /** While draining: the pods whose sessions this beat cut (they reconnect to another relay). */
  drained: string[];
  /** Old sessions of pods that hold a newer one on another relay, cut here (newest wins). */
  superseded: string[];
  /** The store's schema version when a newer pipe2me (another relay's upgrade) migrated it past this code's. */
  storeNewer: number | null;
}

/**
 * While draining, this many pods are told to move per beat (a second): the other relays take the logins
 * at the rate they serve them (~40 per second per relay measured; see docs/operations.md), not all at once.
 */
export const DRAIN_PER_BEAT = 20;
/**
 * A pod told to move opens its new session on another relay before its old one ends (make before break);
 * its old session here keeps serving until the name has pointed at the new relay for longer than the
 * zone's TTL (plus this, for every relay's watcher to patch its zone), so that a client's cached answer
 * still reaches the pod. A pod that has not moved this long after it was told (a pod of an older release,
 * no other relay taking it) is cut, and reconnects elsewhere as before.
 */
export const DRAIN_HOLD_EXTRA_SECONDS = 3;
export const DRAIN_UNMOVED_SECONDS = 15;
/** This relay's CRL follows revocations made on other relays, and theirs are published here, every this many beat intervals. */
export const CRL_EVERY_BEATS = 5;

/** The mark in the key index directory that makes the key lookup refuse every login (templates/sshd/pipe2me-keys.hbs). */
export function drainMark(ctx: ServerContext): string {
  return path.join(ctx.layout.sshd.keysDir, '.draining');
}

/** The relay's ssh host key as pods pin it ("ssh-ed25519 AAAA…"), or null while sshd has none. */
export function hostKeyOf(ctx: ServerContext): string | null {
  try {
    const pub = fs.readFileSync(ctx.layout.sshd.hostKey + '.pub', 'utf8').trim().split(/\s+/);
    return pub.length >= 2 ? `${pub[0]} ${pub[1]}` : null;
  } catch {
    return null;
  }
}

/** How often (in beats) a relay looks whether the store was migrated past what its code knows. */
export const SCHEMA_LOOK_EVERY_BEATS = 5;

export class RelayHeartbeat {
  private healthySince: number | null = null;
  private beats = 0;
  private schemaRecorded = false;

  constructor(private readonly ctx: ServerContext) {}

  /** A pod that holds a newer session on another relay keeps that one: its old one here is cut. */
  private async cutSuperseded(): Promise<string[]> {
    const candidates = await supersededSessions(this.ctx.db, this.ctx.config.relays.self, now());
    if (candidates.length === 0) return [];
    const dirs = sessionDirs(this.ctx);
    const local = await readSessionsAsync(dirs.sessionsDir);
    const cut: string[] = [];
    for (const c of candidates) {
      // Only if what this relay holds is older than the other session: a pod that has just come back here
      // (not yet mirrored) keeps its new session.
      const mine = local.get(c.name);
      if (!mine?.alive || mine.since >= c.newerSince) continue;
      await cutSessions({ ...dirs, tunnelUser: this.ctx.config.ssh.tunnelUser, name: c.name, ports: [] });
      cut.push(c.name);
    }
    return cut;
  }

  /** When each pod of this relay was told to move (while draining). */
  private told = new Map<string, number>();

  /**
   * Draining: no new logins here; each pod told to move (a slice per beat), and its session here cut once
   * its new one elsewhere has held its name past the TTL, or once it has not moved for too long. Back up:
   * logins again.
   */
  private async follow(state: string): Promise<string[]> {
    const mark = drainMark(this.ctx);
    if (state !== 'draining') {
      if (fs.existsSync(mark)) fs.rmSync(mark, { force: true });
      this.told.clear();
      return [];
    }
    if (!fs.existsSync(mark)) fs.writeFileSync(mark, 'this relay is draining: the key lookup refuses every login\n', { mode: 0o644 });
    const dirs = sessionDirs(this.ctx);
    const t = now();
    const live = [...(await readSessionsAsync(dirs.sessionsDir)).values()].filter((r) => r.alive);
    const names = new Set(live.map((r) => r.name));
    for (const n of this.told.keys()) if (!names.has(n)) this.told.delete(n);
    const tell = live.filter((r) => !this.told.has(r.name)).slice(0, DRAIN_PER_BEAT);
    // Told, so that each pod opens a session on another relay at once (this relay refuses its key now).
    if (tell.length) announceMove(tell, await userUid(this.ctx.config.ssh.tunnelUser), `relay ${this.ctx.config.relays.self} is draining`);
    for (const r of tell) this.told.set(r.name, t);
    const hold = this.ctx.config.dns.ttl + DRAIN_HOLD_EXTRA_SECONDS;
    const movedSince = new Map((await supersededSessions(this.ctx.db, this.ctx.config.relays.self, t)).map((x) => [x.name, x.newerSince]));
    const cut = live.filter((r) => {
      const since = movedSince.get(r.name);
      if (since !== undefined && since > r.since) return t - since >= hold;
      const toldAt = this.told.get(r.name);
      return toldAt !== undefined && t - toldAt >= DRAIN_UNMOVED_SECONDS && !tell.includes(r);
    });
    for (const r of cut) await cutSessions({ ...dirs, tunnelUser: this.ctx.config.ssh.tunnelUser, name: r.name, ports: [] });
    return cut.map((r) => r.name);
  }

  async beat(): Promise<BeatOutcome> {
    const ctx = this.ctx;
    const t = now();
    try {
      const state = await heartbeat(ctx.db, { name: ctx.config.relays.self, hostKey: hostKeyOf(ctx), leaseUntil: t + RELAY_LEASE_SECONDS, now: t });
      this.healthySince ??= t;
      const { moved } = await shareSessions(ctx);
      let markedDown: string[] = [];
      if (t - this.healthySince >= RELAY_LEASE_SECONDS) {
        // A whole lease more of silence before a relay is called down: its pods' names follow their new
        // sessions at once anyway; this mark only moves the names of pods without one, and the server's.
        markedDown = await markExpired(ctx.db, ctx.config.relays.self, t, RELAY_LEASE_SECONDS);
        await dropExpiredSessions(ctx.db, t);
      }
      const drained = await this.follow(state);
      // While draining, the drain decides when an old session goes (after the hold): not at once.
      const superseded = state === 'draining' ? [] : await this.cutSuperseded();
      // Which pipe2me this relay runs, for the fleet to see during an upgrade; and whether another relay's
      // upgrade migrated the store past it (its queries still work: migrations only add).
      if (!this.schemaRecorded) {
        await recordRelaySchema(ctx.db, ctx.config.relays.self, SCHEMA_VERSION);
        this.schemaRecorded = true;
      }
      let storeNewer: number | null = null;
      if (this.beats++ % SCHEMA_LOOK_EVERY_BEATS === 0) {
        const v = await schemaVersion(ctx.db);
        if (v > SCHEMA_VERSION) storeNewer = v;
      }
      return { state, markedDown, moved, drained, superseded, storeNewer };
    } catch (e) {
      this.healthySince = null;
      throw e;
    }
  }
}

/**
 * Runs the heartbeat every `intervalMs` in this process (the API), one beat at a time, saying what it did
 * and, once per outage, that it cannot reach the store. Returns the function that stops it.
 */
export function startHeartbeat(ctx: ServerContext, log: Log, intervalMs: number): () => void {
  const beat = new RelayHeartbeat(ctx);
  const crls = new CrlFollower(ctx, () => authority(ctx));
  let beating = false;
  let failing = false;
  let crlFailing = false;
  let storeNewerSaid = false;
  const crlRefusals = new Map<string, string>();
  const some = (names: string[]) => `${names.slice(0, 5).join(', ')}${names.length > 5 ? ', …' : ''}`;
  const tick = async () => {
    if (beating) return;
    beating = true;
    try {
      const r = await beat.beat();
      if (failing) log('the relay\'s heartbeat reaches the state store again', { event: 'relay_heartbeat', outcome: 'ok' });
      failing = false;
      for (const name of r.markedDown) log(`relay ${name} stopped renewing its lease: marked down (its pods' names move to the relays that are up)`, { event: 'relay_down', relay: name, outcome: 'ok' });
      if (r.moved) log(`${r.moved} pod(s) now point at this relay (their newest session is here)`, { event: 'relay_sessions', outcome: 'ok' });
      if (r.superseded.length) log(`cut the old session(s) of ${r.superseded.length} pod(s) now on another relay (newest wins): ${some(r.superseded)}`, { event: 'relay_superseded', outcome: 'ok' });
      if (r.storeNewer !== null && !storeNewerSaid) {
        storeNewerSaid = true;
        log(`the state store is at schema version ${r.storeNewer}, newer than this pipe2me knows (${SCHEMA_VERSION}): another relay runs a newer release; upgrade this one (it keeps serving meanwhile)`, { event: 'relay_upgrade', outcome: 'behind' });
      }
      if (r.drained.length) log(`draining: cut the old sessions of ${r.drained.length} pod(s) (${some(r.drained)}): their names have pointed at another relay for the TTL, or they did not move`, { event: 'relay_drain', outcome: 'ok' });
    } catch (e) {
      // Said once per outage: the tunnels and the daemons do not depend on the store.
      if (!failing) log(`the relay's heartbeat cannot reach the state store: ${(e as Error).message}`, { event: 'relay_heartbeat', outcome: 'failed' });
      failing = true;
    } finally {
      beating = false;
    }
  };
  // On its own timer, so that an openssl run never delays a lease renewal. Revocations are rare and a
  // CRL is good for weeks: every few seconds is prompt enough.
  let following = false;
  const followCrls = async () => {
    if (following) return;
    following = true;
    try {
      for (const r of await crls.follow()) {
        // Said once per signer and reason (one looked at again every few seconds says the same).
        if (crlRefusals.get(r.signer) === r.why) continue;
        crlRefusals.set(r.signer, r.why);
        log(`the state store's CRL of ${r.signer} is not published here: ${r.why}; the one served stays`, { event: 'relay_crl', outcome: 'refused' });
      }
      crlFailing = false;
    } catch (e) {
      if (!crlFailing) log(`cannot bring the CRLs up to date: ${(e as Error).message}`, { event: 'relay_crl', outcome: 'failed' });
      crlFailing = true;
    } finally {
      following = false;
    }
  };
  void tick();
  const timer = setInterval(() => void tick(), intervalMs);
  const crlTimer = setInterval(() => void followCrls(), intervalMs * CRL_EVERY_BEATS);
  return () => {
    clearInterval(timer);
    clearInterval(crlTimer);
  };
}

