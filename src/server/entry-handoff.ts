/**
 * A subdomain added through the CLI, applied as the API applies one it makes: the key index and the zone
 * at once, nginx's entry maps later — when the running API already answers the name's redirects. nginx
 * asks the API for the entry of a name its maps lack (templates/nginx/nginx.conf.hbs), so the redirect
 * is served the moment the name resolves; checking and reloading nginx's whole maps (the larger part of an
 * add at 50,000 names) then waits for the next apply: the watcher's, or the one the API itself asks for
 * once it has answered for a name its maps lack.
 *
 * Only when the API is seen answering exactly the redirects the maps will hold: asked here, through the
 * socket nginx asks it on. Otherwise (no API, an answer that differs, SNI passthrough, which nginx routes
 * without asking anyone) the CLI applies everything, nginx included, as before.
 */
import http from 'node:http';
import { apply, type ApplyReport } from '../apply/apply.js';
import { httpEntryTarget, httpsEntryTarget } from '../render/entries.js';
import type { SubdomainRecord } from '../state/types.js';
import type { ServerContext } from './context.js';

export interface AddedApply {
  report: ApplyReport;
  /** Who serves the name's entry redirects now: nginx's maps, or the API until the maps take it in. */
  entryServedBy: 'nginx' | 'api';
}

export async function applyAdded(ctx: ServerContext, record: SubdomainRecord, progress?: (m: string) => void): Promise<AddedApply> {
  if (!record.passthrough && await apiServesEntry(ctx, record)) {
    return { report: await apply(ctx, { units: ['keys', 'dns'], progress }), entryServedBy: 'api' };
  }
  return { report: await apply(ctx, { progress }), entryServedBy: 'nginx' };
}

/** Whether the API answers every entry of `record` with the redirect nginx's maps will hold. */
export async function apiServesEntry(ctx: ServerContext, record: SubdomainRecord): Promise<boolean> {
  const wanted = { http: httpEntryTarget(record), https: httpsEntryTarget(record) };
  for (const scheme of ['http', 'https'] as const) {
    const target = wanted[scheme];
    if (target === null) continue;
    const got = await askEntry(ctx.layout.nginx.apiSocket, scheme, record.fqdn).catch(() => null);
    if (!got || got.status !== ctx.config.http.redirectStatus || got.location !== `${target}/`) return false;
  }
  return wanted.http !== null || wanted.https !== null;
}

function askEntry(socketPath: string, scheme: 'http' | 'https', fqdn: string): Promise<{ status: number; location: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method: 'GET', path: `/v1/entry/${scheme}`, headers: { host: fqdn, 'x-pipe2me-request-uri': '/' }, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, location: typeof res.headers.location === 'string' ? res.headers.location : undefined }));
    });
    req.on('timeout', () => req.destroy(new Error('the API did not answer within 2 s')));
    req.on('error', reject);
    req.end();
  });
}
