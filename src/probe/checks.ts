/**
 * The probe's network checks, each bounded by a timeout. They answer one question per port: does this
 * address answer *as this pod*? TLS ports must present a certificate the server issued to the pod; the
 * http entry must redirect exactly where the pod's entry redirects; http and raw tcp ports must answer
 * the same as the same service does through the pod's tunnel.
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import * as net from 'node:net';
import * as tls from 'node:tls';

export interface CheckResult {
  ok: boolean;
  detail: string;
}

/**
 * Ends a check's connection once its answer is in: with a reset, as HAProxy's health checks do, not a
 * close that leaves this side in TIME_WAIT for a minute. A probe run over 50,000 ports makes 100,000
 * connections, and a minute of them in TIME_WAIT is what the next run's connects must search past.
 */
function finish(sock: net.Socket): void {
  if (sock.destroyed) return;
  if (sock.readyState === 'open' || sock.readyState === 'writeOnly') sock.resetAndDestroy();
  else sock.destroy();
}

export async function tlsLeafSha256(host: string, port: number, servername: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host, port, servername, rejectUnauthorized: false, timeout: timeoutMs, ALPNProtocols: ['http/1.1'] });
    const timer = setTimeout(() => sock.destroy(new Error(`no TLS answer within ${timeoutMs} ms`)), timeoutMs);
    sock.once('secureConnect', () => {
      const cert = sock.getPeerCertificate();
      clearTimeout(timer);
      // A TLS socket cannot be reset (its handle is TLS's, not TCP's): closed.
      sock.destroy();
      if (!cert?.raw) return reject(new Error('no certificate presented'));
      resolve(createHash('sha256').update(cert.raw).digest('hex'));
    });
    sock.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

export interface HttpAnswer {
  status: number;
  location: string | null;
  server: string | null;
  contentType: string | null;
}

/**
 * What a pod's endpoint says, cut to a length the probe's history and reasons can hold: the text comes
 * from whoever answers at the pod's address, and one pod must not fill the store (or a log line).
 */
export function podText(v: string | undefined | null, max = 200): string | null {
  if (v === undefined || v === null) return null;
  // eslint-disable-next-line no-control-regex
  const clean = v.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

export async function httpHead(host: string, port: number, hostHeader: string, timeoutMs: number): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method: 'GET', path: '/', headers: { host: hostHeader, 'user-agent': 'pipe2me-probe', connection: 'close' }, agent: false, timeout: timeoutMs }, (res) => {
      clearTimeout(deadline);
      res.resume();
      resolve({
        status: res.statusCode ?? 0,
        location: podText(res.headers.location as string | undefined),
        server: podText(res.headers.server as string | undefined),
        contentType: podText((res.headers['content-type'] as string | undefined)?.split(';')[0]),
      });
      if (req.socket) finish(req.socket);
      req.destroy();
    });
    // `timeout` is for a silent socket only: an endpoint that keeps talking (100 Continue every half
    // second, headers byte by byte) would hold the check, and the whole run, forever. A hard deadline too.
    const deadline = setTimeout(() => req.destroy(new Error(`no http answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('timeout', () => req.destroy(new Error(`no http answer within ${timeoutMs} ms`)));
    req.on('error', (e) => {
      clearTimeout(deadline);
      reject(e);
    });
    req.end();
  });
}

/**
 * Connects and collects what the service says first: its first line (ssh, smtp and ftp greet with one),
 * or what came before it closed, or 256 bytes, or what came within `waitMs`; empty for silent services.
 */
export async function tcpBanner(host: string, port: number, timeoutMs: number, waitMs = 400): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    const chunks: Buffer[] = [];
    let size = 0;
    let timer = setTimeout(() => sock.destroy(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        finish(sock);
        resolve(Buffer.concat(chunks));
      }, waitMs);
    });
    const done = () => {
      clearTimeout(timer);
      finish(sock);
      resolve(Buffer.concat(chunks).subarray(0, 256));
    };
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      size += d.length;
      if (size >= 256 || d.includes(10)) done();
    });
    sock.once('end', done);
    sock.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

export const short = (e: unknown) => {
  const err = e as NodeJS.ErrnoException;
  return err?.code ?? err?.message ?? String(e);
};

export async function checkTls(address: string, port: number, fqdn: string, valid: Set<string>, timeoutMs: number): Promise<CheckResult> {
  try {
    const fp = await tlsLeafSha256(address, port, fqdn, timeoutMs);
    return valid.has(fp) ? { ok: true, detail: 'presents the certificate issued to this pod' } : { ok: false, detail: 'answers with a certificate that is not this pod\'s' };
  } catch (e) {
    return { ok: false, detail: `no TLS answer (${short(e)})` };
  }
}

export async function checkEntryHttp(address: string, port: number, fqdn: string, expectedLocation: string, timeoutMs: number): Promise<CheckResult> {
  try {
    const a = await httpHead(address, port, fqdn, timeoutMs);
    if (a.status >= 300 && a.status < 400 && a.location === expectedLocation) return { ok: true, detail: `redirects to ${expectedLocation}` };
    return { ok: false, detail: `answers ${a.status}${a.location ? ` to ${a.location}` : ''}, not the pod's redirect` };
  } catch (e) {
    return { ok: false, detail: `no http answer (${short(e)})` };
  }
}

/** An http service: the direct answer must look like the answer through the tunnel (status, Server, Content-Type). */
export async function checkHttpLikeTunnel(address: string, port: number, fqdn: string, tunnelPort: number, timeoutMs: number, tunnelHost = '127.0.0.1'): Promise<CheckResult> {
  // Both at once: a probe over thousands of ports is bounded by round trips, not by work.
  const [viaR, directR] = await Promise.allSettled([httpHead(tunnelHost, tunnelPort, fqdn, timeoutMs), httpHead(address, port, fqdn, timeoutMs)]);
  if (viaR.status === 'rejected') return { ok: false, detail: `cannot compare: the service does not answer through the tunnel (${short(viaR.reason)})` };
  const via = viaR.value;
  try {
    if (directR.status === 'rejected') throw directR.reason;
    const d = directR.value;
    const same = d.status === via.status && d.server === via.server && d.contentType === via.contentType;
    return same ? { ok: true, detail: `answers like the pod's service (${d.status})` } : { ok: false, detail: `answers ${d.status} ${d.server ?? ''}, unlike the pod's service through the tunnel (${via.status} ${via.server ?? ''})` };
  } catch (e) {
    return { ok: false, detail: `no http answer (${short(e)})` };
  }
}

/** A raw tcp service: what it says first must equal what it says through the tunnel. */
export async function checkTcpLikeTunnel(address: string, port: number, tunnelPort: number, timeoutMs: number, tunnelHost = '127.0.0.1'): Promise<CheckResult> {
  const [viaR, directR] = await Promise.allSettled([tcpBanner(tunnelHost, tunnelPort, timeoutMs), tcpBanner(address, port, timeoutMs)]);
  if (viaR.status === 'rejected') return { ok: false, detail: `cannot compare: the service does not answer through the tunnel (${short(viaR.reason)})` };
  const via = viaR.value;
  try {
    if (directR.status === 'rejected') throw directR.reason;
    const d = directR.value;
    if (d.equals(via)) return { ok: true, detail: via.length ? 'greets like the pod\'s service' : 'accepts connections (the service says nothing first)' };
    return { ok: false, detail: 'greets unlike the pod\'s service through the tunnel' };
  } catch (e) {
    return { ok: false, detail: `no connection (${short(e)})` };
  }
}
