/**
 * The pod's own entry responders, for the direct route: when the pod's name points at its router, a
 * browser typing http://NAME/ or https://NAME/ reaches the router's ports 80/443, which the pod maps
 * here. They answer exactly like the server's nginx entry (same rules, src/render/entries.ts): http goes
 * to the first http service (else the first https one), https to the first https service only, served
 * with the pod's own certificate. Only redirects: no data path.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { httpEntryTarget, httpsEntryTarget } from '../render/entries.js';
import type { PodFiles, PodState } from './files.js';

export interface EntryResponders {
  httpPort: number;
  httpsPort: number | null;
  reloadCertificate(): void;
  close(): Promise<void>;
}

function handler(target: string | null, status: number, what: string) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (!target) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`pipe2me: no ${what} service is published under this name.\n`);
      return;
    }
    // Keep path and query, like the server's `return 302 $target$request_uri`.
    const uri = (req.url ?? '/').startsWith('/') ? req.url ?? '/' : '/';
    res.writeHead(status, { location: target + uri, 'content-type': 'text/plain; charset=utf-8', 'content-length': '0' });
    res.end();
  };
}

/** On every address of both families (IPv6 direct reaches them too); IPv4 only where the host has no IPv6. */
async function listen(server: http.Server | https.Server): Promise<number> {
  const on = (host: string) => new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host, ipv6Only: false }, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  await on('::').catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EAFNOSUPPORT' && e.code !== 'EADDRNOTAVAIL') throw e;
    return on('0.0.0.0');
  });
  return (server.address() as AddressInfo).port;
}

export async function startEntryResponders(s: PodState, f: PodFiles, redirectStatus = 302): Promise<EntryResponders> {
  const rec = { fqdn: s.fqdn, ports: s.services.map((x, i) => ({ port: x.port, protocol: x.protocol, position: i })) };
  const httpServer = http.createServer(handler(httpEntryTarget(rec), redirectStatus, 'http'));
  httpServer.keepAliveTimeout = 2000;
  const httpPort = await listen(httpServer);
  let httpsServer: https.Server | null = null;
  let httpsPort: number | null = null;
  const haveCert = fs.existsSync(f.tlsKey) && fs.existsSync(f.fullchain);
  if (haveCert) {
    httpsServer = https.createServer({ key: fs.readFileSync(f.tlsKey), cert: fs.readFileSync(f.fullchain) }, handler(httpsEntryTarget(rec), redirectStatus, 'https'));
    httpsPort = await listen(httpsServer);
  }
  return {
    httpPort,
    httpsPort,
    reloadCertificate() {
      httpsServer?.setSecureContext({ key: fs.readFileSync(f.tlsKey), cert: fs.readFileSync(f.fullchain) });
    },
    async close() {
      await Promise.all([httpServer, httpsServer].filter(Boolean).map((srv) => new Promise<void>((r) => srv!.close(() => r()))));
    },
  };
}
