/**
 * The operator's status page on the API's router (so on https://server.<domain>/status through nginx,
 * and on the loopback listener):
 *
 *   GET /status?q=&page=   every pod, a page at a time, with a summary of the fleet; q filters by name
 *   GET /status/:name      one pod: everything `pipe2me-ctl show NAME` shows; reloads itself
 *
 * Both need an operator's credential (HTTP Basic: the name and secret `pipe2me-ctl operator add` gave).
 * Wrong credentials are counted per source address; past the limit that address is refused (429) until
 * the minute is over, whatever it sends.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { storeUnavailable } from '../state/errors.js';
import type { ServerContext } from '../server/context.js';
import { summarizeSubdomain, viewSubdomain } from '../server/subdomains.js';
import { findSubdomain, subdomainPage } from '../state/subdomains.js';
import { authenticateOperator, type OperatorRecord } from '../state/operators.js';
import { recentProbes } from '../state/probes.js';
import { currentCertificates, fleetCounts, latestProbes, soonestCertificateExpiry } from '../state/status-page.js';
import { liveSession, readSessionsAsync } from '../daemons/sessions.js';
import { now } from '../state/types.js';
import { isoSeconds } from '../util/time.js';
import { isPipe2meError } from '../util/errors.js';
import { addressKey, HttpError, RateLimiter, type Router } from '../api/http.js';
import { parseBasicAuth } from './auth.js';
import { PAGE_HEADERS, PER_PAGE, REALM, renderList, renderMessage, renderPod, renderUnauthorized, type FleetSummary, type Frame } from './page.js';

export interface StatusRouteDeps {
  /** The request's source address, as the API tells it (X-Real-IP only from nginx). */
  clientAddress: (req: IncomingMessage) => string;
  log: (m: string) => void;
}

/** Wrong credentials one source address may send per minute before it is refused for the rest of it. */
export const FAILURES_PER_MINUTE = 10;
/** How many probe results the pod's page lists (both families, newest first). */
const PROBE_HISTORY = 20;
/** How long the fleet's summary (counts, online, the soonest certificate) is reused. */
const SUMMARY_TTL_MS = 10_000;

function send(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...PAGE_HEADERS, 'content-length': String(Buffer.byteLength(body)), ...headers });
  res.end(body);
}

/**
 * Counts failures per key with the API's RateLimiter: a key past the limit is refused until its
 * window (the clock minute) ends. O(1) per request, whatever the number of keys.
 */
class FailureLimit {
  private readonly counter = new RateLimiter(() => FAILURES_PER_MINUTE);

  /** Seconds until the key may try again, if it is refused now. */
  refusedFor(key: string, at = Date.now()): number | undefined {
    return this.counter.blockedFor(key, at);
  }

  /** Counts one failure; the seconds to wait if that one went past the limit. */
  fail(key: string, at = Date.now()): number | undefined {
    try {
      this.counter.check(key, at);
    } catch (e) {
      if (!(e instanceof HttpError) || e.httpStatus !== 429) throw e;
    }
    return this.counter.blockedFor(key, at);
  }
}

export function registerStatusRoutes(router: Router, ctx: ServerContext, deps: StatusRouteDeps): void {
  const failures = new FailureLimit();

  const tooMany = (res: ServerResponse, retry: number) =>
    send(res, 429, renderMessage('Too many failed sign-ins', `This address sent too many wrong credentials. Try again in ${retry} s.`), { 'retry-after': String(retry) });

  /** The operator the request signs in as; otherwise the 401 (or 429) has been sent. */
  async function signIn(req: IncomingMessage, res: ServerResponse): Promise<OperatorRecord | undefined> {
    const from = deps.clientAddress(req);
    const key = 'o:' + addressKey(from);
    const wait = failures.refusedFor(key);
    if (wait !== undefined) {
      tooMany(res, wait);
      return undefined;
    }
    const header = req.headers.authorization;
    const creds = parseBasicAuth(header);
    const operator = creds ? await authenticateOperator(ctx.db, creds.name, creds.secret) : undefined;
    if (operator) return operator;
    // A browser asks first without credentials (then shows its sign-in dialog): only wrong ones count.
    if (header !== undefined) {
      deps.log(`status page: wrong operator credentials${creds ? ` for ${JSON.stringify(creds.name)}` : ''} from ${from}`);
      const retry = failures.fail(key);
      if (retry !== undefined) {
        tooMany(res, retry);
        return undefined;
      }
    }
    send(res, 401, renderUnauthorized(), { 'www-authenticate': REALM });
    return undefined;
  }

  // The fleet's summary reads every pod's session records (whether it is online) and every current
  // certificate: at 50,000 pods that takes seconds, so it is counted at most every SUMMARY_TTL_MS and
  // shared by every page view meanwhile (the page says when it was counted).
  let counted: FleetSummary | undefined;
  const summary = async (): Promise<FleetSummary> => {
    const at = now();
    if (!counted || Date.now() - counted.countedAt * 1000 >= SUMMARY_TTL_MS || counted.countedAt > at) {
      const soonest = await soonestCertificateExpiry(ctx.db, at);
      // Read without holding the event loop: the API goes on answering pods meanwhile.
      const online = (await readSessionsAsync(ctx.layout.sessionsDir)).size;
      counted = { ...(await fleetCounts(ctx.db)), online, soonest: soonest ?? null, countedAt: at };
    }
    return counted;
  };

  const frame = (operator: OperatorRecord): Frame => ({
    now: now(), server: ctx.config.server.fqdn, serverIpv6: ctx.config.server.ipv6 !== null, operator: operator.name,
  });

  /** Our own failure: a short page and an id; the details go to the log under that id. */
  const guarded = (fn: (req: IncomingMessage, res: ServerResponse, params: Record<string, string>) => Promise<void> | void) =>
    async (req: IncomingMessage, res: ServerResponse, params: Record<string, string>) => {
      try {
        await fn(req, res, params);
      } catch (e) {
        if (res.headersSent) return void res.destroy();
        const id = randomBytes(6).toString('hex');
        if (storeUnavailable(e)) {
          // Not our bug: the database is away (restarting, failing over). Said as such; it reloads itself.
          deps.log(`status page: ${id}: the state store cannot be reached: ${(e as Error).message.split('\n')[0]}`);
          return send(res, 503, renderMessage('The state store cannot be reached', 'The server cannot read its state store right now (a database restart or failover). The tunnels are not affected. Reload in a few seconds.'), { 'retry-after': '5' });
        }
        deps.log(`status page: internal error ${id}: ${(e as Error)?.stack ?? String(e)}`);
        send(res, 500, renderMessage('The status page could not be made', `Something failed on the server; its log has the details under ${id}.`));
      }
    };

  router.add('GET', '/status', guarded(async (req, res) => {
    const operator = await signIn(req, res);
    if (!operator) return;
    const url = new URL(req.url ?? '/status', 'http://localhost');
    const q = (url.searchParams.get('q') ?? '').trim().toLowerCase().slice(0, 63);
    const asked = Number(url.searchParams.get('page') ?? '1');
    const page = Number.isInteger(asked) && asked >= 1 ? Math.min(asked, 1_000_000) : 1;
    const db = ctx.db;
    const { total, records } = await subdomainPage(db, { contains: q, limit: PER_PAGE, offset: (page - 1) * PER_PAGE });
    const ids = records.map((r) => r.id);
    const probes = await latestProbes(db, ids);
    const certs = await currentCertificates(db, ids);
    const sessionsDir = ctx.layout.sessionsDir;
    send(res, 200, renderList({
      ...frame(operator),
      summary: await summary(),
      // Only this page's pods' session records: one small directory each.
      rows: records.map((s) => ({ ...summarizeSubdomain(s, liveSession(sessionsDir, s.name)), probes: probes.get(s.id) ?? {}, certificate: certs.get(s.id) ?? null })),
      q, page, perPage: PER_PAGE, matching: total,
    }));
  }));

  router.add('GET', '/status/:name', guarded(async (req, res, params) => {
    const operator = await signIn(req, res);
    if (!operator) return;
    const f = frame(operator);
    let s;
    try {
      s = await findSubdomain(ctx.db, params.name!);
    } catch (e) {
      if (!isPipe2meError(e)) throw e;
    }
    if (!s) return send(res, 404, renderMessage('No such pod', `No pod is named “${params.name!.slice(0, 80)}”.`, f));
    const view = await viewSubdomain(ctx, s);
    view.probes = (await recentProbes(ctx.db, s.id, PROBE_HISTORY)).map((p) => ({ ...p, at: isoSeconds(p.at) }));
    send(res, 200, renderPod({ ...f, view }));
  }));
}
