/**
 * `pipe2me-ctl serve`: the JSON API pods talk to, on loopback behind nginx (which terminates TLS for the
 * server's own name and passes the client's address in X-Real-IP).
 *
 *   GET    /v1                          server info (public)
 *   GET    /v1/ca                       the CA certificate (public)
 *   POST   /v1/subdomains               {token, protocols, name?, passthrough?} -> 201 setup info + secret
 *   POST   /v1/claim                    {claim_token} -> setup info + secret (operator-made subdomains)
 *   GET    /v1/subdomains/:id           status                       (Authorization: Bearer <secret>)
 *   PUT    /v1/subdomains/:id/ssh-key   {public_key}
 *   POST   /v1/subdomains/:id/certificate {csr} -> certificate and chain
 *   PUT    /v1/subdomains/:id/mappings  IPv4 router mappings       (direct-reports.ts)
 *   PUT    /v1/subdomains/:id/ipv6      the pod's own IPv6 address (direct-reports.ts; sent from that address)
 *   POST   /v1/subdomains/:id/sessions/reset {} -> cut this pod's own stale sessions
 *   POST   /v1/subdomains/:id/extend    {}
 *   DELETE /v1/subdomains/:id
 *   GET    /status, /status/:name       the operator's status page, HTML (src/status/; HTTP Basic as an operator)
 *   GET    /metrics                     Prometheus text format (loopback listener only, never through nginx)
 */
import * as http from 'node:http';
import client from 'prom-client';
import { ApiMetrics } from '../metrics/api.js';
import { scrapeFleet } from '../metrics/collect.js';
import { foldLogins } from '../metrics/logins.js';
import { createLog, type Log } from '../util/log.js';
import * as fs from 'node:fs';
import { isIP } from 'node:net';
import { unmapIPv4 } from '../net/address.js';
import { onStore, type ServerContext } from '../server/context.js';
import { ApplyQueue } from '../server/apply-queue.js';
import { addSubdomainRecord, expireSweep, removeSubdomain } from '../server/subdomains.js';
import { podCertificate, requestPodCertificate } from '../server/issuers.js';
import type { IssuedPodCertificate } from '../server/ca.js';
import { AcmeService } from '../server/acme.js';
import { installServerCertificate, orderPublicWildcard } from '../server/server-certs.js';
import { reloadNginx } from '../daemons/nginx.js';
import { authenticateSubdomain, claimSubdomain, getSubdomainById, removedSubdomain, setExpiry } from '../state/subdomains.js';
import { withToken, getToken } from '../state/tokens.js';
import { now, type SubdomainRecord } from '../state/types.js';
import { registerPodKey, sessionDirs, tunnelsOf } from '../server/keys.js';
import { cutSessions, liveSession, sweepStaleRecords } from '../daemons/sessions.js';
import { fallBackOnMove, PromptProber } from '../server/route.js';
import { probeAll } from '../probe/run.js';
import { LiveServer } from '../server/context.js';
import { looksLikeSecret, hashSecret } from '../util/secrets.js';
import { DeniedError } from '../util/errors.js';
import { readIfExists } from '../util/fsx.js';
import { addressKey, HttpError, RateLimiter, readJson, Router, sendError, sendJson, validateBody } from './http.js';
import * as S from './schemas.js';
import { registerStatusRoutes } from '../status/routes.js';
import { registerDirectRouteReports } from './direct-reports.js';
import { registerEntryLookup } from './entry-lookup.js';
import { setupInfo, statusView } from './views.js';
import { shareSessions } from '../server/relays/sessions.js';
import { startHeartbeat } from '../server/relays/heartbeat.js';
import { storeUnavailable } from '../state/errors.js';
import { writeTx } from '../state/store.js';

export interface ApiOptions {
  host?: string;
  port?: number;
  log?: Log;
  /** The unix socket nginx proxies to (default: the layout's, in nginx's private socket directory). */
  socket?: string;
  /** How often to expire subdomains whose time is up (ms); 0 disables. */
  expiryIntervalMs?: number;
  /** With relays: how often the heartbeat runs (0: never; tests that drive it themselves). */
  relayIntervalMs?: number;
}

const VERSION = '1';

/**
 * Connections that came through nginx: accepted on the API's unix socket, in a directory only nginx's
 * workers (and root) may enter. Only there is X-Real-IP the client's address; on the loopback listener
 * any local process could forge it (and dodge the rate limits), so there the peer is the client.
 */
const viaNginx = new WeakSet<object>();

function certificateBody(c: IssuedPodCertificate) {
  return { serial: c.serial, issuer: c.issuer, certificate: c.certificate, chain: c.chain, fullchain: c.fullchain, not_after: c.notAfter, sha256: c.sha256, key_sha256: c.keySha256 };
}

function clientAddress(req: http.IncomingMessage): string {
  const forwarded = req.headers['x-real-ip'];
  if (viaNginx.has(req.socket) && typeof forwarded === 'string' && isIP(forwarded)) return forwarded;
  return req.socket.remoteAddress ?? 'local';
}

/**
 * A scrape from this machine: the peer is a loopback address (a listener moved with --listen 0.0.0.0 does
 * not serve the fleet's metrics to the network) and the Host is a loopback name or address (a browser
 * page that rebinds a name to 127.0.0.1 is not let in).
 */
function localScrape(req: http.IncomingMessage): boolean {
  const peer = unmapIPv4(req.socket.remoteAddress ?? '');
  const host = (req.headers.host ?? '').replace(/:\d+$/, '').replace(/^\[|\]$/g, '').toLowerCase();
  const loop = (a: string) => a === '::1' || /^127\./.test(a);
  return loop(peer) && (host === 'localhost' || loop(host));
}

export function createApi(ctx: ServerContext, opts: ApiOptions = {}) {
  const log: Log = opts.log ?? createLog('api');
  const queue = new ApplyQueue(ctx, log);
  /**
   * An apply after a change that is committed already (a subdomain made, its token spent): if the store
   * goes away meanwhile, the pod still gets its answer — the change is in the store, and the next apply
   * (the watcher's, or the next request's) renders it.
   */
  const deferred = (name: string, e: unknown) => log(`applying ${name} waits for the state store: ${(e as Error).message}`, { event: 'apply', outcome: 'deferred', subdomain: name });
  const applyAfterCommit = async (units: Parameters<ApplyQueue['request']>[0], name: string) => {
    try {
      await queue.request(units);
    } catch (e) {
      if (!storeUnavailable(e)) throw e;
      deferred(name, e);
    }
  };
  /**
   * An apply nobody waits for, once a burst of such requests has settled (ApplyQueue.settled): the queue
   * logs its failure (and the watcher or the next apply renders it).
   */
  const applyLater = (units: Parameters<ApplyQueue['request']>[0], name: string) => {
    queue.settled(units).catch((e: unknown) => {
      if (storeUnavailable(e)) deferred(name, e);
    });
  };
  // The ACME worker, when the configuration (as it is now) says ca.issuer: acme.
  let acmeService: AcmeService | undefined;
  const acme = (): AcmeService | undefined => {
    if (ctx.config.ca.issuer !== 'acme') return undefined;
    if (!acmeService) {
      acmeService = new AcmeService(ctx, {
        log,
        applyDns: () => queue.request(['dns']),
        onServerIssued: async (order, issued) => {
          if (installServerCertificate(ctx, order, issued)) await reloadNginx(ctx.layout);
        },
        maintain: () => orderPublicWildcard(ctx, log),
      });
      acmeService.start();
    }
    return acmeService;
  };
  const prober = new PromptProber(async (name) => {
    const r = await probeAll(ctx, { names: [name], progress: () => {} });
    for (const y of r.results.filter((z) => z.changed)) log(`prompt probe of ${y.fqdn}: IPv${y.family} ${y.route} (${y.reason})`, { event: 'route_changed', subdomain: y.name, family: `ipv${y.family}`, outcome: y.route, reason: y.reason });
  });
  // Limits are read at every request: they follow the configuration as it is now.
  const perAddress = new RateLimiter(() => ctx.config.api.ratePerMinute);
  const perCredential = new RateLimiter(() => ctx.config.api.ratePerMinute);
  const router = new Router();
  const metrics = new ApiMetrics();

  const body = async <T>(req: http.IncomingMessage, schema: object): Promise<T> => validateBody<T>(schema, await readJson(req, ctx.config.api.maxBodyBytes));

  const unauthorized = () => new DeniedError('unauthorized', 'Missing or wrong credentials for this subdomain.', {
    httpStatus: 401,
    hint: 'Send the secret you received at setup: Authorization: Bearer p2ms_...',
  });

  async function authenticate(req: http.IncomingMessage, id: string): Promise<SubdomainRecord> {
    const auth = req.headers.authorization ?? '';
    const m = /^Bearer (\S+)$/.exec(auth);
    if (!m || !looksLikeSecret(m[1], 'p2ms')) throw unauthorized();
    perCredential.check('s:' + hashSecret(m[1]!));
    const s = await authenticateSubdomain(ctx.db, id, m[1]!);
    if (!s) {
      // A wrong secret counts against its address after all (see handle): guessing stays limited there.
      perAddress.check('a:' + addressKey(clientAddress(req)));
      // The pod did send its secret: if the subdomain was removed, say so (and when), not "wrong credentials".
      const gone = await removedSubdomain(ctx.db, id, m[1]!);
      if (gone) {
        throw new DeniedError('subdomain_removed', `${gone.fqdn} was removed at ${new Date(gone.removedAt * 1000).toISOString()} (${gone.reason}).`, {
          httpStatus: 410, hint: 'This pod\'s setup is of no use any more: set up again with a new token or claim (pipe2me setup --force).',
        });
      }
      throw unauthorized();
    }
    if (s.status !== 'active') {
      const when = s.expiresAt ? ` at ${new Date(s.expiresAt * 1000).toISOString()}` : '';
      throw new DeniedError('subdomain_expired', `${s.fqdn} expired${when}.`, { httpStatus: 410, hint: 'Set up again with a new token (pipe2me setup --force), or ask the operator for one that can be extended.' });
    }
    return s;
  }

  router.add('GET', '/v1', async (_req, res) => {
    sendJson(res, 200, { name: 'pipe2me', api: VERSION, domain: ctx.config.domain, server: ctx.config.server.fqdn });
  });

  router.add('GET', '/v1/ca', async (_req, res) => {
    const pem = readIfExists(ctx.layout.caCertFile);
    if (!pem) throw new HttpError(404, 'ca_missing', 'This server has no CA yet.');
    res.writeHead(200, { 'content-type': 'application/x-pem-file' });
    res.end(pem);
  });

  router.add('POST', '/v1/subdomains', async (req, res) => {
    const b = await body<{ token: string; protocols: string[]; name?: string; passthrough?: boolean }>(req, S.createSubdomainBody);
    if (!looksLikeSecret(b.token, 'p2mt')) {
      throw new DeniedError('token_invalid', 'The token is not valid: it is unknown, revoked or already used.', { httpStatus: 401 });
    }
    perCredential.check('t:' + hashSecret(b.token));
    // The quota is checked and the token used in the same transaction as the allocation, and the answer
    // (with the secret, shown once) is read in it too: once the token is spent, the pod must get its answer.
    const { created, info } = await withToken(ctx.db, b.token, b.protocols.length, async (t, tx) => {
      const made = await addSubdomainRecord(onStore(ctx, tx), { name: b.name, protocols: b.protocols, lifespanSeconds: t.lifespanSeconds, passthrough: b.passthrough ?? false, tokenId: t.id, withSecret: true },
        Math.min(t.maxPorts, ctx.config.ports.maxPerSubdomain));
      return { created: made, info: await setupInfo(onStore(ctx, tx), made.record, made.secret!) };
    });
    // The answer waits for the name to resolve. nginx's entry maps follow in an apply after the answer,
    // one for a burst of creates: until then nginx asks the API for the redirect of a name its maps lack
    // (entry-lookup.ts, which also asks for that apply at once), so the name's http(s) entry works at once
    // too. A passthrough name needs nginx's SNI route, so its answer waits for nginx as well.
    if (created.record.passthrough) await applyAfterCommit(['keys', 'nginx', 'dns'], created.record.name);
    else {
      await applyAfterCommit(['dns'], created.record.name);
      applyLater(['nginx'], created.record.name);
    }
    log(`created ${created.record.fqdn} (${created.record.ports.map((p) => `${p.protocol}:${p.port}`).join(',')}) for ${clientAddress(req)}`, { event: 'subdomain_created', subdomain: created.record.name, outcome: 'ok', client: clientAddress(req) });
    sendJson(res, 201, info);
  });

  router.add('POST', '/v1/claim', async (req, res) => {
    const b = await body<{ claim_token: string }>(req, S.claimBody);
    const denied = () => new DeniedError('claim_invalid', 'The claim token is not valid: it is unknown or already used.', {
      httpStatus: 401, hint: 'Ask the operator for a new one (pipe2me-ctl add-subdomain prints it).',
    });
    if (!looksLikeSecret(b.claim_token, 'p2mc')) throw denied();
    perCredential.check('c:' + hashSecret(b.claim_token));
    // The claim and the answer that carries the new secret in one transaction: a claim is spent only
    // together with the answer (a store failing in between rolls both back, and the pod may ask again).
    const claimed = await writeTx(ctx.db, async (tx) => {
      const c = await claimSubdomain(tx, b.claim_token);
      return c ? { ...c, info: await setupInfo(onStore(ctx, tx), c.record, c.secret) } : undefined;
    });
    if (!claimed) throw denied();
    log(`claimed ${claimed.record.fqdn} from ${clientAddress(req)}`, { event: 'subdomain_claimed', subdomain: claimed.record.name, outcome: 'ok', client: clientAddress(req) });
    sendJson(res, 200, claimed.info);
  });

  // What the pod asks when its tunnel comes up (and now and then): also the moment to notice that it
  // now connects from another address than the router address its direct route was verified at.
  router.add('GET', '/v1/subdomains/:id', async (req, res, p) => {
    let s = await authenticate(req, p.id!);
    const moved = await fallBackOnMove(ctx, s, liveSession(ctx.layout.sessionsDir, s.name));
    if (moved) {
      log(`${s.fqdn}: now connects from ${moved}, not from ${s.directIpv4}: back to the server`, { event: 'route_changed', subdomain: s.name, family: 'ipv4', outcome: 'server', reason: 'address_moved' });
      await queue.request(['dns']);
      if (ctx.config.probe.prompt) prober.soon(s.name, 2000);
      s = (await getSubdomainById(ctx.db, s.id))!;
    }
    sendJson(res, 200, await statusView(ctx, s));
  });

  router.add('PUT', '/v1/subdomains/:id/ssh-key', async (req, res, p) => {
    const s = await authenticate(req, p.id!);
    const b = await body<{ public_key: string }>(req, S.sshKeyBody);
    // The key index is written at once; sshd's key lookup reads it at the next login, no reload.
    const r = await registerPodKey(ctx, s, b.public_key, async (units) => (await queue.request(units))[0]!);
    if (r.replaced) log(`${s.fqdn}: key ${r.replaced} replaced by ${r.key.fingerprint}; ${r.cutSessions} of its connections cut`, { event: 'key_replaced', subdomain: s.name, outcome: 'ok', cut_sessions: r.cutSessions });
    sendJson(res, 200, { fingerprint: r.key.fingerprint, algorithm: r.key.algorithm, bits: r.key.bits, ports: s.ports.map((x) => x.port) });
  });

  // A new certificate for the pod's CSR: 200 with it, or — while an order at the ACME CA is under way —
  // 202 with a Retry-After, and a private CA certificate for the same key if the pod has none yet.
  router.add('POST', '/v1/subdomains/:id/certificate', async (req, res, p) => {
    const s = await authenticate(req, p.id!);
    const b = await body<{ csr: string }>(req, S.csrBody);
    const a = await requestPodCertificate(ctx, s, b.csr, { acme: acme() });
    const cert = a.certificate ? certificateBody(a.certificate) : null;
    if (a.status === 'issued') return sendJson(res, 200, { ...cert!, order: a.order });
    sendJson(res, 202, { status: 'pending', certificate: cert, order: a.order, retry_after: a.retryAfterSeconds }, { 'retry-after': String(a.retryAfterSeconds) });
  });

  // The certificate the pod should serve now: the public one as soon as its order finished.
  router.add('GET', '/v1/subdomains/:id/certificate', async (req, res, p) => {
    const s = await authenticate(req, p.id!);
    const c = await podCertificate(ctx, s);
    sendJson(res, 200, { certificate: c.certificate ? certificateBody(c.certificate) : null, order: c.order });
  });

  registerDirectRouteReports(router, { ctx, authenticate, body, clientAddress, requestApply: (units) => queue.request(units), probeSoon: (name) => prober.soon(name, 500) });

  // A pod whose link came back finds its ports still held by its own stale session (sshd has not noticed
  // the old connection died): it asks for that session to be cut instead of waiting for ClientAlive.
  router.add('POST', '/v1/subdomains/:id/sessions/reset', async (req, res, p) => {
    const s = await authenticate(req, p.id!);
    await body(req, S.extendBody);
    const r = await cutSessions({ ...sessionDirs(ctx), ...tunnelsOf(ctx, s) });
    if (r.killed.length) log(`cut ${r.killed.length} stale session(s) of ${s.fqdn} at its request`, { event: 'sessions_reset', subdomain: s.name, outcome: 'ok', cut_sessions: r.killed.length });
    sendJson(res, 200, { cut_sessions: r.killed.length });
  });

  router.add('POST', '/v1/subdomains/:id/extend', async (req, res, p) => {
    const s = await authenticate(req, p.id!);
    await body(req, S.extendBody);
    const t = s.tokenId ? await getToken(ctx.db, s.tokenId) : undefined;
    if (!t || !t.extendable || t.lifespanSeconds === null || t.revokedAt !== null) {
      throw new DeniedError('not_extendable', `${s.fqdn} cannot be extended.`, { hint: 'Its token does not allow extending; ask the operator.' });
    }
    const expires = now() + t.lifespanSeconds;
    await setExpiry(ctx.db, s.id, expires);
    sendJson(res, 200, await statusView(ctx, (await getSubdomainById(ctx.db, s.id))!));
  });

  router.add('DELETE', '/v1/subdomains/:id', async (req, res, p) => {
    const s = await authenticate(req, p.id!);
    const r = await removeSubdomain(ctx, s.name, { apply: false, reason: 'given up by its pod' });
    await queue.request(['nginx', 'dns']);
    log(`destroyed ${s.fqdn} at the pod's request`, { event: 'subdomain_removed', subdomain: s.name, outcome: 'ok', by: 'pod' });
    sendJson(res, 200, { removed: r.removed.fqdn, cut_sessions: r.cutSessions.length, revoked: r.revoked });
  });

  registerStatusRoutes(router, ctx, { clientAddress, log });
  registerEntryLookup(router, ctx, { clientAddress, applyNginx: () => queue.request(['nginx']), log });

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const started = performance.now();
    let route = 'unmatched';
    res.once('finish', () => metrics.observe(route, req.method ?? 'GET', res.statusCode, (performance.now() - started) / 1000));
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      // The metrics are for the operator's Prometheus on this machine: never through nginx, never public,
      // and not counted against the per-address limit (a scrape every second must not lock pods out).
      const scrape = url.pathname === '/metrics' && !viaNginx.has(req.socket) && req.method === 'GET' && localScrape(req);
      // Pods with a secret are limited per secret, not per address: a fleet behind one NAT address or one
      // IPv6 /64 must not lock each other out (a wrong secret is counted against the address in authenticate).
      const podCall = /^Bearer p2ms_[A-Za-z0-9_-]{43}$/.test(req.headers.authorization ?? '');
      // nginx's entry lookups (entry-lookup.ts) have a limit of their own.
      const entryLookup = url.pathname.startsWith('/v1/entry/');
      if (!scrape && !podCall && !entryLookup) perAddress.check('a:' + addressKey(clientAddress(req)));
      if (scrape) {
        route = '/metrics';
        const reg = client.Registry.merge([await scrapeFleet(ctx), metrics.registry]);
        res.writeHead(200, { 'content-type': reg.contentType });
        res.end(await reg.metrics());
        return;
      }
      const m = router.match(req.method ?? 'GET', url.pathname);
      route = m.route;
      await m.handler(req, res, m.params);
    } catch (e) {
      sendError(res, e, log);
    }
  };
  const configure = (srv: http.Server) => {
    srv.requestTimeout = 30_000;
    srv.headersTimeout = 10_000;
    srv.keepAliveTimeout = 5_000;
    srv.maxHeadersCount = 50;
    return srv;
  };
  const server = configure(http.createServer(handle));
  const proxied = configure(http.createServer(handle));
  proxied.on('connection', (sock) => viaNginx.add(sock));

  let expiryTimer: NodeJS.Timeout | undefined;
  let refreshTimer: NodeJS.Timeout | undefined;
  let stopHeartbeat: (() => void) | undefined;
  let bound: { host: string; port: number; asked: number; socket: string } | undefined;
  let binding = false;

  const listenOn = async (srv: http.Server, ...args: [number, string] | [string]) => {
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      const done = () => {
        srv.off('error', reject);
        resolve();
      };
      if (args.length === 2) srv.listen(args[0], args[1], done);
      else srv.listen(args[0], done);
    });
  };
  const closeOf = (srv: http.Server) => new Promise<void>((resolve) => srv.close(() => resolve()));

  /** Binds the loopback listener and nginx's socket where the configuration says, moving them if it changed. */
  const bind = async () => {
    const want = { host: opts.host ?? '127.0.0.1', port: opts.port ?? ctx.config.http.apiPort, socket: opts.socket ?? ctx.layout.nginx.apiSocket };
    // Compared with what was asked for (port 0 asks for any free port), not with the port that was given.
    if (bound && bound.host === want.host && bound.asked === want.port && bound.socket === want.socket) return;
    if (bound) {
      await Promise.all([closeOf(server), closeOf(proxied)]);
      log(`moving the API to ${want.host}:${want.port} and ${want.socket}, as the configuration now says`, { event: 'api_moved', outcome: 'ok' });
    }
    await listenOn(server, want.port, want.host);
    // A socket left by a serve that died would make listen fail; nothing else may own this path.
    fs.rmSync(want.socket, { force: true });
    await listenOn(proxied, want.socket);
    // nginx's workers must be able to connect; the directory's mode keeps everyone else out.
    fs.chmodSync(want.socket, 0o666);
    bound = { ...want, asked: want.port, port: (server.address() as { port: number }).port };
  };

  return {
    server,
    async listen(): Promise<{ host: string; port: number }> {
      await bind();
      acme();
      if (ctx instanceof LiveServer) {
        // The configuration file is looked at every second even when no request comes.
        refreshTimer = setInterval(() => {
          ctx.refresh();
          acme();
          // One move at a time: closing waits for open connections, which can take longer than a second.
          if (binding) return;
          binding = true;
          bind().catch((e) => log(`could not move the API's listeners: ${(e as Error).message}; the old ones were closed`, { event: 'api_moved', outcome: 'failed' })).finally(() => (binding = false));
        }, 1000);
      }
      const interval = opts.expiryIntervalMs ?? 5000;
      if (interval > 0) {
        let busy = false;
        expiryTimer = setInterval(async () => {
          if (busy) return;
          busy = true;
          try {
            const expired = await expireSweep(ctx, { apply: true, progress: log });
            for (const s of expired) log(`expired ${s.fqdn}`, { event: 'subdomain_expired', subdomain: s.name, outcome: 'ok' });
            await sweepStaleRecords(sessionDirs(ctx));
            // With relays the heartbeat shares the sessions every second (below).
            if (!ctx.config.relays.relayed) await shareSessions(ctx);
            await foldLogins(ctx);
          } catch (e) {
            log(`expiry sweep failed: ${(e as Error).message}`, { event: 'expiry_sweep', outcome: 'failed' });
          } finally {
            busy = false;
          }
        }, interval);
      }
      if (ctx.config.relays.relayed && (opts.relayIntervalMs ?? 1000) > 0) stopHeartbeat = startHeartbeat(ctx, log, opts.relayIntervalMs ?? 1000);
      return { host: bound!.host, port: bound!.port };
    },
    async close(): Promise<void> {
      queue.close();
      stopHeartbeat?.();
      clearInterval(expiryTimer);
      clearInterval(refreshTimer);
      await prober.close();
      await acmeService?.stop();
      await Promise.all([closeOf(server), closeOf(proxied)]);
    },
  };
}
