/**
 * The ACME issuer at work on the server (ca.issuer: acme): orders wait in the state store and are worked
 * one at a time by the process that runs this service (the API). Each order publishes its dns-01 records
 * in pipe2me's own zone through an ordinary apply, so the zone stays rendered from the store and checked
 * by the nameserver's own checker. What the CA says decides the next attempt: a rate limit's Retry-After,
 * a doubling wait while it cannot be reached or a record has not reached every nameserver, and a failed
 * validation is counted per name so that the CA's few allowed failures per hour are never spent blindly.
 */
import * as fs from 'node:fs';
import { createPublicKey } from 'node:crypto';
import type acme from 'acme-client';
import type { ServerContext } from './context.js';
import { AcmeFailure, openAccount, reachability, type AcmeSettings } from '../ca/acme/client.js';
import { fulfil, revokeAcme, spkiSha256, type Issued, type OrderTiming } from '../ca/acme/order.js';
import { parseCsr } from '../ca/csr.js';
import {
  accountOf, addChallenges, deferOrder, finishOrder, getOrder, nextDueAt, orderStillWanted, removeOrphanChallenges, queueOrder, recentFailures,
  recordAccount, recordFailure, removeChallenges, takeDueOrder, keepWorking, ORDER_STALE_SECONDS, type AcmeOrder, type OrderAttempt,
} from '../state/acme.js';
import { recordCertificate } from '../state/certificates.js';
import { writeTx } from '../state/store.js';
import { relayStates } from '../state/relays.js';
import { now } from '../state/types.js';
import { ConfigError } from '../util/errors.js';
import { withLock } from '../util/lock.js';
import * as path from 'node:path';


/** How the CA's failed validations are budgeted: Let's Encrypt allows 5 per name per hour; pipe2me spends at most 3. */
export const FAILED_VALIDATIONS_PER_HOUR = 3;
/** How often a worker touches the order it works: ten times within the window after which it would look dead. */
const KEEPALIVE_MS = (ORDER_STALE_SECONDS * 1000) / 10;

export function acmeSettings(ctx: ServerContext): AcmeSettings {
  const a = ctx.config.ca.acme;
  if (!a) throw new ConfigError('ca.issuer is acme but ca.acme is not set.', { hint: 'Set ca.acme.directory_url and ca.acme.email.' });
  const read = (file: string, what: string) => {
    try {
      return fs.readFileSync(file, 'utf8').trim();
    } catch (e) {
      throw new ConfigError(`Cannot read ${what} ${file}: ${(e as Error).message}`, { hint: 'Check the path in ca.acme and the file\'s permissions.' });
    }
  };
  return {
    directoryUrl: a.directoryUrl,
    email: a.email,
    trustRoots: a.trustRootsFile ? read(a.trustRootsFile, 'ca.acme.trust_roots_file') : null,
    eab: a.eabKid && a.eabHmacKeyFile ? { kid: a.eabKid, hmacKey: read(a.eabHmacKeyFile, 'ca.acme.eab_hmac_key_file') } : null,
  };
}

/** The account's key lives beside the private CA's (0600); which account URL goes with which directory, in the store. */
export function accountKeyFile(ctx: ServerContext): string {
  return path.join(ctx.config.paths.ca, 'acme-account.key');
}

/** sha256 of a CSR's public key (SPKI DER): which key a certificate is for. */
export function csrKeySha256(csrPem: string): string {
  // Re-encoded by OpenSSL, as the pod's own key is (pod/certificate.ts keySha256): a CSR may carry the same
  // key in another encoding (a compressed EC point), and the two hashes must match.
  const spki = createPublicKey({ key: parseCsr(csrPem).spkiDer, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'der' });
  return spkiSha256(spki);
}

/** Serials of certificates from the ACME CA, kept apart from the private CA's in the store. */
export const acmeSerial = (hex: string) => `acme:${hex}`;

export interface OrderDone {
  order: AcmeOrder;
  issued?: Issued;
  failure?: AcmeFailure;
  timing: OrderTiming;
}

export interface AcmeServiceOptions {
  log: (m: string) => void;
  /** Applies the zone (the dns-01 records are rendered into it); resolves once the primary serves it. */
  applyDns: () => Promise<unknown>;
  /** After an order for the server's own names was issued (write its files, reload nginx). */
  onServerIssued?: (order: AcmeOrder, issued: Issued) => Promise<void>;
  /** Looked at every few seconds while the worker runs: orders the server's own renewals when they fall due. */
  maintain?: () => Promise<void>;
}

export class AcmeService {
  private client: acme.Client | undefined;
  private clientKey = '';
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly waiters = new Map<string, ((o: AcmeOrder) => void)[]>();

  constructor(private readonly ctx: ServerContext, private readonly opts: AcmeServiceOptions) {}

  private async account(): Promise<acme.Client> {
    const s = acmeSettings(this.ctx);
    const key = `${s.directoryUrl} ${s.email} ${s.eab?.kid ?? ''}`;
    if (this.client && this.clientKey === key) return this.client;
    // One account per relay key: the key never leaves its relay, the store says which URL is whose.
    const relay = this.ctx.config.relays.self;
    this.client = await openAccount(s, { keyFile: accountKeyFile(this.ctx) }, {
      get: async (keySha256) => (await accountOf(this.ctx.db, s.directoryUrl, keySha256))?.url,
      set: async (u, keySha256) => {
        await recordAccount(this.ctx.db, { directoryUrl: s.directoryUrl, keySha256, url: u, relay, email: s.email });
        this.opts.log(`ACME account ${u} at ${s.directoryUrl} for ${s.email} (relay ${relay}, key sha256 ${keySha256})`);
      },
    });
    this.clientKey = key;
    return this.client;
  }

  /** Queues an order and has it worked on soon. */
  async order(o: Parameters<typeof queueOrder>[1]): Promise<AcmeOrder> {
    const order = await queueOrder(this.ctx.db, o);
    this.kick();
    return order;
  }

  /** Resolves with the order once it is valid or failed, or as it is after `ms`. */
  async waitFor(id: string, ms: number): Promise<AcmeOrder> {
    const current = (await getOrder(this.ctx.db, id))!;
    if (current.state === 'valid' || current.state === 'failed' || current.state === 'cancelled' || ms <= 0) return current;
    return new Promise((resolve) => {
      const list = this.waiters.get(id) ?? [];
      const done = (o: AcmeOrder) => {
        clearTimeout(timer);
        resolve(o);
      };
      const timer = setTimeout(() => {
        this.waiters.set(id, (this.waiters.get(id) ?? []).filter((w) => w !== done));
        getOrder(this.ctx.db, id).then((o) => resolve(o ?? current), () => resolve(current));
      }, ms);
      list.push(done);
      this.waiters.set(id, list);
    });
  }

  /** Looks for due orders now (and then whenever one falls due). */
  kick(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.running.then(() => this.runDue()).then(() => false, (e) => {
        this.opts.log(`ACME worker: ${(e as Error).message}`);
        return true;
      }).then((failed) => this.scheduleNext(failed));
    }, 0);
  }

  private async scheduleNext(failed = false): Promise<void> {
    if (this.stopped) return;
    // The store unreachable: look again in 10 s (the orders wait in the store, nothing is lost).
    const due = await nextDueAt(this.ctx.db, this.ctx.config.relays.self).catch(() => undefined);
    if (this.stopped) return;
    // After a failed round (a store that reads but cannot write, after a failover to a standby) not at
    // once, however due an order looks: that would be a loop as fast as the store answers.
    const wait = due === undefined || failed ? 10_000 : Math.max(0, (due - now()) * 1000);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.kick(), Math.min(wait, 10_000));
    this.timer.unref();
  }

  start(): void {
    this.stopped = false;
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** Works every order that is due, one at a time (one process at a time, too: a lock). */
  async runDue(): Promise<OrderDone[]> {
    const done: OrderDone[] = [];
    await this.opts.maintain?.().catch((e) => this.opts.log(`ACME: could not look at the server's certificates: ${(e as Error).message}`));
    await withLock(path.join(this.ctx.layout.lockDir, 'acme.lock'), 'ACME', async () => {
      await this.cleanOrphans();
      const relay = this.ctx.config.relays.self;
      for (let order = await takeDueOrder(this.ctx.db, relay); order; order = await takeDueOrder(this.ctx.db, relay)) {
        done.push(await this.work(order));
        if (this.stopped) break;
      }
    }, { timeoutMs: 600_000 });
    return done;
  }

  /** Records of orders whose worker died are taken out of the zone. */
  private async cleanOrphans(): Promise<void> {
    if (await removeOrphanChallenges(this.ctx.db) === 0) return;
    await this.opts.applyDns();
  }

  private async work(order: AcmeOrder): Promise<OrderDone> {
    const c = this.ctx.config;
    const a = c.ca.acme!;
    const timing: OrderTiming = {};
    const finish = (o: AcmeOrder) => {
      for (const w of this.waiters.get(o.id) ?? []) w(o);
      this.waiters.delete(o.id);
    };
    // Failed validations are not retried blindly: past the budget, the name waits out the CA's hour.
    if (await recentFailures(this.ctx.db, order.names) >= FAILED_VALIDATIONS_PER_HOUR) {
      const why = `${FAILED_VALIDATIONS_PER_HOUR} validations of ${order.names.join(', ')} failed within the hour; waiting before the next attempt`;
      await deferOrder(this.ctx.db, order.id, why, now() + 3600, { relay: this.ctx.config.relays.self, attempts: order.attempts });
      const o = (await getOrder(this.ctx.db, order.id))!;
      finish(o);
      return { order: o, timing };
    }
    // Validation and the wait for every nameserver may take up to an hour: the order is touched meanwhile,
    // so that no other worker takes it for a dead one's (ORDER_STALE_SECONDS) and orders it a second time.
    // Had this worker stalled that long anyway (the store away, a paused machine), the order is its
    // successor's: every write below is fenced on this attempt and changes nothing of the successor's.
    const attempt: OrderAttempt = { relay: this.ctx.config.relays.self, attempts: order.attempts };
    let lost = false;
    const alive = setInterval(() => {
      keepWorking(this.ctx.db, order.id, attempt).then((held) => {
        if (!held && !lost) this.opts.log(`ACME: ${order.names.join(', ')}: the order is no longer this attempt's (taken over, cancelled or removed); whatever it gets is not recorded`);
        lost ||= !held;
      }, (e) => this.opts.log(`ACME: ${order.names.join(', ')}: could not mark the order as still worked on: ${(e as Error).message}`));
    }, KEEPALIVE_MS);
    alive.unref();
    let published: { owner: string; value: string }[] = [];
    try {
      const client = await this.account();
      const nameservers = await this.nameservers();
      const issued = await fulfil(client, order.names, order.csrPem, {
        nameservers,
        publish: async (records) => {
          // An attempt that lost its order publishes nothing more into its successor's.
          if (lost || !await keepWorking(this.ctx.db, order.id, attempt)) throw new AcmeFailure('other', 'the order is no longer this attempt\'s (taken over, cancelled or removed)');
          published = [...published, ...records];
          await addChallenges(this.ctx.db, order.id, records);
          await this.opts.applyDns();
        },
        withdraw: async () => {
          // Only this attempt's records: a successor's (the same order, other tokens) stay.
          if (await removeChallenges(this.ctx.db, order.id, published)) await this.opts.applyDns();
        },
      }, { propagationTimeoutMs: a.propagationTimeoutSeconds * 1000, timing });
      if (!await orderStillWanted(this.ctx.db, order.id, attempt)) {
        // Replaced by a newer CSR, its subdomain gone, or the order taken over: the certificate is of no use.
        await revokeAcme(client, issued.chainPem, 4).catch(() => undefined);
        const o = (await getOrder(this.ctx.db, order.id))!;
        finish(o);
        return { order: o, issued, timing };
      }
      const serial = acmeSerial(issued.serial);
      const fqdn = order.purpose === 'pod' ? order.names[0]! : order.names.find((n) => n.startsWith('*.')) ?? order.names[0]!;
      // The order marked done and its certificate recorded at once, and only while this attempt holds it:
      // an order cancelled or taken over between the look above and here gets no certificate of this one.
      const recorded = await writeTx(this.ctx.db, async (t) => {
        if (!await finishOrder(t, order.id, serial, attempt)) return false;
        await recordCertificate(t, {
          serial, subdomainId: order.subdomainId, fqdn, kind: order.purpose, notBefore: sec(issued.notBefore), notAfter: sec(issued.notAfter),
          sha256: issued.sha256, issuer: 'acme', chainPem: issued.chainPem, keySha256: issued.keySha256,
        });
        return true;
      });
      if (!recorded) {
        this.opts.log(`ACME: ${order.names.join(', ')}: issued, but the order is no longer this attempt's; the certificate is revoked, not recorded`);
        await revokeAcme(client, issued.chainPem, 4).catch(() => undefined);
        const o = (await getOrder(this.ctx.db, order.id))!;
        finish(o);
        return { order: o, issued, timing };
      }
      if (order.purpose === 'server') await this.opts.onServerIssued?.(order, issued);
      this.opts.log(`ACME: issued ${order.names.join(', ')} (serial ${issued.serial}, until ${issued.notAfter.toISOString()}) in ${Math.round(timing.issuedMs ?? 0)} ms (record published ${Math.round(timing.publishedMs ?? 0)}, served by every nameserver ${Math.round(timing.servedEverywhereMs ?? 0)}, validated ${Math.round(timing.validatedMs ?? 0)})`);
      const o = (await getOrder(this.ctx.db, order.id))!;
      finish(o);
      return { order: o, issued, timing };
    } catch (e) {
      const f = e instanceof AcmeFailure ? e : new AcmeFailure('other', (e as Error).message);
      let why = f.message;
      if (f.kind === 'unreachable') why = `${why} (${await reachability(a.directoryUrl)})`;
      const next = this.nextAttempt(order, f);
      // A failure of an attempt that lost its order spends nothing of the names' hourly budget.
      if (f.kind === 'validation' && await orderStillWanted(this.ctx.db, order.id, attempt)) await recordFailure(this.ctx.db, order.names);
      await deferOrder(this.ctx.db, order.id, why, next, attempt);
      this.opts.log(`ACME: ${order.names.join(', ')}: ${why}; ${next === null ? 'given up' : `next attempt at ${new Date(next * 1000).toISOString()}`}`);
      const o = (await getOrder(this.ctx.db, order.id))!;
      finish(o);
      return { order: o, failure: f, timing };
    } finally {
      clearInterval(alive);
    }
  }

  /**
   * Every nameserver the CA may ask, to wait for before it is asked to validate: the secondaries and, with
   * relays, each relay's own that is not down (each renders the zone from the store at its watcher's pace;
   * a down relay's nameserver does not answer, and a CA's resolver takes the next).
   */
  private async nameservers(): Promise<string[]> {
    const c = this.ctx.config;
    const secondaries = c.dns.secondaries.map((s) => s.ipv4);
    if (!c.relays.relayed) return [...new Set([c.dns.primary.ipv4, ...secondaries])];
    const live = new Set((await relayStates(this.ctx.db)).filter((r) => r.state !== 'down').map((r) => r.name));
    const relayNs = c.relays.list.filter((r) => r.name === c.relays.self || live.has(r.name)).map((r) => r.ipv4);
    return [...new Set([...relayNs, ...secondaries])];
  }

  /** When to try an order again after a failure, or null to give it up. */
  private nextAttempt(order: AcmeOrder, f: AcmeFailure): number | null {
    const base = this.ctx.config.ca.acme!.retryBaseSeconds;
    const doubling = Math.min(3600, base * 2 ** Math.max(0, order.attempts - 1));
    switch (f.kind) {
      case 'rate_limited':
        // The CA says when; without a Retry-After, an hour. Never sooner than it asked.
        return now() + Math.min(2 * 86400, f.retryAfterSeconds ?? 3600);
      case 'validation':
        return now() + Math.max(doubling, 900);
      case 'refused':
        return order.attempts >= 3 ? null : now() + doubling;
      default:
        return now() + doubling;
    }
  }

  async revoke(chainPem: string, reason: number): Promise<void> {
    await revokeAcme(await this.account(), chainPem, reason);
  }
}

const sec = (d: Date) => Math.floor(d.getTime() / 1000);
