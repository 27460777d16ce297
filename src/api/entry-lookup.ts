/**
 * The entry redirect of a name that nginx's maps do not hold yet. A subdomain made through the API is
 * answered once its name resolves; nginx's entry maps take it in with the next apply, which runs after
 * the answer (at 100,000 names an nginx check and reload take longer than the whole create should). Until
 * then nginx asks here for a name its map lacks (see templates/nginx/nginx.conf.hbs), and the redirect is
 * the one the map will hold: the same rules (render/entries.ts), read from the store by the name's fqdn.
 * A name that is not published gets the same 404 nginx gives. A name answered here is one nginx's maps
 * lack: the maps are brought up to date through the API's apply queue.
 */
import type http from 'node:http';
import type { ServerContext } from '../server/context.js';
import { findSubdomain } from '../state/subdomains.js';
import { httpEntryTarget, httpsEntryTarget } from '../render/entries.js';
import { addressKey, RateLimiter, type Router } from './http.js';
import { isPipe2meError } from '../util/errors.js';
import { storeUnavailable } from '../state/errors.js';
import type { Log } from '../util/log.js';

/** After a failed apply of the entry maps that a lookup asked for, the next lookup asks again only this much later. */
const MAPS_RETRY_MS = 30_000;

/** What nginx answers for a name it has no entry for (the same text, from either place). */
export const NO_ENTRY: Record<'http' | 'https', string> = {
  http: 'pipe2me: no service is published under this name.\n',
  https: 'pipe2me: no https service is published under this name.\n',
};

/** The request target nginx hands on ($request_uri): origin-form, no spaces or controls (raw bytes above 0x7f pass, as in nginx's own redirect). */
const REQUEST_URI = /^\/[\x21-\x7e\x80-\xff]{0,8191}$/;

function plain(res: http.ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers });
  res.end(text);
}

/**
 * Lookups have a limit of their own per visitor's address (10× the API's): a visitor is not counted
 * against the budget of token and claim calls, and a scanner asking for names that do not exist gets
 * nginx's 404 (nginx turns the 429 into it) without reaching the store more than that often.
 */
export function registerEntryLookup(router: Router, ctx: ServerContext, o: { clientAddress: (req: http.IncomingMessage) => string; applyNginx: () => Promise<unknown>; log: Log }): void {
  const perVisitor = new RateLimiter(() => ctx.config.api.ratePerMinute * 10);
  // The API's apply queue merges the requests that come while an apply runs into one apply after it (which
  // takes in every name committed before): a name asked for often until the maps hold it costs one or two
  // applies. After a failed one (logged; `status` shows it) lookups ask again only a while later: every
  // visitor of a name the maps lack must not start another check of nginx's whole maps.
  let failedAt = 0;
  const mapsBehind = () => {
    if (Date.now() - failedAt < MAPS_RETRY_MS) return;
    o.applyNginx().catch((e) => {
      failedAt = Date.now();
      if (!storeUnavailable(e)) o.log(`nginx's entry maps could not take in the names the API answers for: ${(e as Error).message}`, { event: 'apply', outcome: 'failed' });
    });
  };
  for (const scheme of ['http', 'https'] as const) {
    router.add('GET', `/v1/entry/${scheme}`, async (req, res) => {
      perVisitor.check('v:' + addressKey(o.clientAddress(req)));
      const host = (req.headers.host ?? '').toLowerCase().replace(/\.$/, '');
      const uri = req.headers['x-pipe2me-request-uri'];
      if (typeof uri !== 'string' || !REQUEST_URI.test(uri)) return plain(res, 400, 'pipe2me: the request target is not one this entry redirects.\n');
      // Only names of this domain; anything else (an address, another domain, a malformed name) is not published here.
      if (!host.endsWith(`.${ctx.config.domain}`)) return plain(res, 404, NO_ENTRY[scheme]);
      let found;
      try {
        found = await findSubdomain(ctx.db, host);
      } catch (e) {
        if (isPipe2meError(e) && e.httpStatus < 500) return plain(res, 404, NO_ENTRY[scheme]);
        throw e;
      }
      const target = found && found.status === 'active' && found.fqdn === host ? (scheme === 'http' ? httpEntryTarget(found) : httpsEntryTarget(found)) : null;
      if (!target) return plain(res, 404, NO_ENTRY[scheme]);
      plain(res, ctx.config.http.redirectStatus, '', { location: `${target}${uri}` });
      // A published name nginx's maps lack: they are behind the store (a CLI's add left them to the next
      // apply); the API has them take it in, whether or not a watcher runs.
      mapsBehind();
    });
  }
}
