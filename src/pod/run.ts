/**
 * `pipe2me start`: the pod's long-running process (foreground, for systemd and launchd). It runs the
 * tunnel, logs every state change, keeps status.json current for `pipe2me status`, asks the server now
 * and then how clients reach the pod, renews the certificate before it expires, and on SIGTERM stops
 * the tunnel and cleans up after itself.
 */
import * as fs from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { ConfigError, ConflictError, DeniedError, isPipe2meError } from '../util/errors.js';
import { atomicWrite, readIfExists } from '../util/fsx.js';
import { requirePrograms } from '../util/which.js';
import { pidAlive } from '../daemons/process.js';
import { ApiClient } from './api-client.js';
import { PodFiles, type PodState } from './files.js';
import { collectCertificate, installedIssuer, installedSha256, pendingKeyGivenUp, requestCertificate } from './certificate.js';
import { run } from '../util/exec.js';
import { trustAnchor } from './trust.js';
import { type TunnelEvent } from './tunnel.js';
import { RelayMover, type TunnelSet } from './move.js';
import { checkRelays, relaysChanged, writeRelayFiles } from './relays.js';
import { which } from '../util/which.js';

export interface RouteInfo {
  route: 'server' | 'direct';
  reason: string | null;
  direct_ipv4: string | null;
  /** The IPv6 route, decided on its own: AAAA at this pod's own address while direct. */
  route6?: 'server' | 'direct';
  route6_reason?: string | null;
  direct_ipv6?: string | null;
  online: { since: string; from: string } | null;
  /** When the server said so (ISO). */
  checked_at?: string;
}

/** The route as the server's status answer says it, both families. */
export function routeInfo(v: RouteInfo & { route_reason?: string | null }): RouteInfo {
  return {
    route: v.route, reason: v.route_reason ?? null, direct_ipv4: v.direct_ipv4 ?? null,
    route6: v.route6 ?? 'server', route6_reason: v.route6_reason ?? null, direct_ipv6: v.direct_ipv6 ?? null,
    online: v.online ?? null, checked_at: new Date().toISOString(),
  };
}

export interface PodStatus {
  pid: number;
  fqdn: string;
  updated: string;
  tunnel: { state: string; since: string; detail: string; last_error: string | null; connects: number };
  route: RouteInfo | null;
  certificate: { not_after: string | null; issuer: 'private' | 'acme' | null };
  mappings: unknown[];
  extra?: Record<string, unknown>;
}

export function certificateNotAfter(f: PodFiles): Date | null {
  const pem = readIfExists(f.cert);
  if (!pem) return null;
  try {
    return new Date(new X509Certificate(pem).validTo);
  } catch {
    return null;
  }
}

export function certificateLifetimeMs(f: PodFiles): number {
  const pem = readIfExists(f.cert);
  if (!pem) return 6 * 3600_000;
  const c = new X509Certificate(pem);
  return new Date(c.validTo).getTime() - new Date(c.validFrom).getTime();
}

/** Runs the --on-renew command (argv, no shell, a timeout) and logs how it ended. */
export async function runOnRenew(argv: readonly string[], log: (m: string) => void): Promise<void> {
  const r = await run(argv[0]!, argv.slice(1), { allowFailure: true, timeout: 60_000 }).catch((e: Error) => ({ exitCode: -1, output: e.message }));
  log(`--on-renew ${argv.join(' ')}: ${r.exitCode === 0 ? 'ran' : `exited ${r.exitCode}: ${r.output.trim().slice(0, 300)}`}`);
}

/** Renew when less than a third of the certificate's life is left. */
export function needsRenewal(f: PodFiles, now = Date.now()): boolean {
  const pem = readIfExists(f.cert);
  if (!pem) return true;
  const c = new X509Certificate(pem);
  const from = new Date(c.validFrom).getTime();
  const to = new Date(c.validTo).getTime();
  return now > to - (to - from) / 3;
}

/** One `start` per tunnel set: the pid file is created exclusively; a stale one (dead pid) is replaced. */
function claimPidFile(f: PodFiles): void {
  for (let i = 0; i < 2; i++) {
    try {
      fs.writeFileSync(f.pidFile, `${process.pid}\n`, { flag: 'wx', mode: 0o644 });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number(readIfExists(f.pidFile)?.trim());
      if (pid && pidAlive(pid)) {
        throw new ConflictError('already_running', `pipe2me start is already running for this tunnel set (pid ${pid}).`, { hint: 'Stop it with `pipe2me stop`, or use another --dir.' });
      }
      fs.rmSync(f.pidFile, { force: true });
    }
  }
}

export interface StartOptions {
  dir: string;
  /** Run after each new certificate is installed (argv, no shell), so the pod's services reload it. */
  onRenew?: string[];
  log: (m: string) => void;
  /** How often to ask the server for the route (ms). */
  statusIntervalMs?: number;
  /** With several relays: the relay to try first (the operator's pin), else the pod's home relay. */
  relay?: string;
  /** Extra work that runs with the tunnel (UPnP mappings): started after the tunnel, stopped before it. */
  companions?: ((ctx: StartContext) => Companion)[];
}

export interface Companion {
  stop(): Promise<void>;
  status(): Record<string, unknown>;
}

export interface StartContext {
  state: PodState;
  files: PodFiles;
  client: ApiClient;
  log: (m: string) => void;
  refreshStatus: () => void;
}

export function apiClientFor(f: PodFiles, s: PodState, timeoutMs?: number): ApiClient {
  const text = readIfExists(f.ca);
  // The pinned CA alone, even in a ca.pem written by an older pipe2me that kept whatever came with it.
  const ca = text === undefined ? undefined : trustAnchor(text, { what: f.ca });
  return new ApiClient({ server: s.server, secret: f.readSecret(), ...(ca ? { ca } : {}), ...(timeoutMs ? { timeoutMs } : {}) });
}

export async function start(o: StartOptions): Promise<number> {
  const f = new PodFiles(o.dir);
  const s = f.read();
  requirePrograms(['autossh', 'ssh']);
  claimPidFile(f);
  const client = apiClientFor(f, s);
  const log = o.log;
  let route: RouteInfo | null = null;
  // The sha256 of the certificate the server last said this pod should serve.
  let serverCertificate: string | null = installedSha256(f);
  let mappings: unknown[] = [];
  const companions: Companion[] = [];

  const writeStatus = () => {
    const status: PodStatus = {
      pid: process.pid,
      fqdn: s.fqdn,
      updated: new Date().toISOString(),
      tunnel: { state: tunnels.current.sup.state, since: new Date(tunnels.current.sup.since).toISOString(), detail: lastDetail, last_error: tunnels.current.sup.lastError, connects: tunnels.current.sup.connects, ...(relayed ? { relay: tunnels.current.relay } : {}) },
      route,
      certificate: { not_after: certificateNotAfter(f)?.toISOString() ?? null, issuer: installedIssuer(f) },
      mappings,
      extra: Object.assign({}, ...companions.map((c) => c.status())),
    };
    try {
      atomicWrite(f.status, JSON.stringify(status, null, 2) + '\n', { mode: 0o644 });
    } catch (e) {
      log(`could not write ${f.status}: ${(e as Error).message}`);
    }
  };

  let lastDetail = '';
  let exitCode = 0;
  let stopRequested: (() => void) | undefined;
  const stopped = new Promise<void>((r) => (stopRequested = r));

  const refreshRoute = async () => {
    try {
      const v = await client.call<RouteInfo & { route_reason?: string | null; mappings: unknown[]; certificate?: { sha256?: string | null } }>('GET', `/v1/subdomains/${s.id}`);
      const sha = v.certificate?.sha256 ?? null;
      if (sha && sha !== serverCertificate) {
        serverCertificate = sha;
        if (sha !== installedSha256(f)) void certificateTick(true);
      }
      // The fleet's relays as the server lists them now: a relay added is pinned and dialled from the next
      // attempt on (the answer came over the API's pinned TLS, with this pod's secret).
      const relays = (v as { relays?: unknown }).relays === undefined ? null : checkRelays((v as { relays?: unknown }).relays);
      if (relays && s.relays?.length && relaysChanged(s.relays, relays)) {
        s.relays = relays;
        f.write(s);
        writeRelayFiles(f, s, o.relay);
        log(`relays: ${relays.map((r) => r.name).join(', ')} (as the server lists them now)`);
      }
      const prev = route;
      route = routeInfo(v);
      mappings = v.mappings ?? [];
      if (!prev || prev.route !== route.route || prev.direct_ipv4 !== route.direct_ipv4) {
        log(`route: IPv4 clients reach ${s.fqdn} ${route.route === 'direct' ? `directly at the router ${route.direct_ipv4}` : 'through the server (tunnel)'}${route.reason ? ` — ${route.reason}` : ''}`);
      }
      if ((prev?.route6 ?? 'server') !== route.route6 || (prev?.direct_ipv6 ?? null) !== route.direct_ipv6) {
        log(`route: IPv6 clients reach ${s.fqdn} ${route.route6 === 'direct' ? `directly at ${route.direct_ipv6}` : 'through the server (tunnel)'}${route.route6_reason ? ` — ${route.route6_reason}` : ''}`);
      }
    } catch (e) {
      if (isPipe2meError(e) && e instanceof DeniedError) {
        log(`the server refuses this pod: ${e.message}${e.hint ? ` (${e.hint})` : ''}; stopping`);
        exitCode = e.exitCode;
        stopRequested?.();
      } else {
        log(`could not ask the server for the route: ${(e as Error).message}`);
      }
    }
    writeStatus();
  };

  let lastReset = 0;
  const resetStale = async () => {
    // At most every 5 s: the server cuts only this pod's own sessions, and only when asked.
    if (Date.now() - lastReset < 5000) return;
    lastReset = Date.now();
    try {
      const r = await client.call<{ cut_sessions: number }>('POST', `/v1/subdomains/${s.id}/sessions/reset`, {});
      if (r.cut_sessions) {
        log(`the server cut ${r.cut_sessions} stale session(s) of this pod that still held its ports; reconnecting now`);
        tunnels.current.sup.kick();
      }
    } catch (e) {
      lastReset = 0; // a failed request may be retried at the next refusal
      log(`could not ask the server to cut a stale session: ${(e as Error).message}`);
    }
  };

  const onEvent = (e: TunnelEvent) => {
    lastDetail = e.detail;
    // The status first: whoever reads the log's "tunnel up" finds it in status.json too.
    writeStatus();
    log(`tunnel ${e.state}: ${e.detail}`);
    if (e.state === 'up') {
      backoff(tunnels.current, '0');
      void refreshRoute();
    }
    // A refused key usually means the subdomain was removed or expired: ask, and stop if so.
    if (e.state === 'down' && /Permission denied/.test(e.detail)) void refreshRoute();
    // Our ports are still held: by our own old session that the server has not yet seen die.
    if (e.state === 'down' && /remote port forwarding failed/.test(e.detail)) void resetStale();
  };
  // The reconnect backoff lives in the ssh that autossh runs; the first attempt goes at once.
  const ssh = which('ssh') ?? 'ssh';
  const relayed = Boolean(s.relays?.length);
  if (o.relay && !s.relays?.some((r) => r.name === o.relay)) {
    throw new ConfigError(`--relay ${o.relay}: the server names no such relay${s.relays?.length ? ` (its relays: ${s.relays.map((r) => r.name).join(', ')})` : ' (it has no relays)'}.`);
  }
  // Every start begins at the pod's home relay (the list's first line).
  if (relayed) writeRelayFiles(f, s, o.relay);
  const backoff = (set: TunnelSet, v: string) => {
    try {
      atomicWrite(set.files.backoff, `${v}\n`, { mode: 0o600 });
    } catch (e) {
      log(`could not write ${set.files.backoff}: ${(e as Error).message}`);
    }
  };
  // The tunnel set in use, and while a relay moves the pod the one that takes over (move.ts).
  const tunnels: RelayMover = new RelayMover({
    state: s, files: f, ssh, relayed, log,
    onEvent: (e) => onEvent(e),
    onKick: (set) => backoff(set, 'now'),
  });

  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: stopping`);
    stopRequested?.();
  };
  for (const sig of signals) process.on(sig, onSignal);

  log(`starting ${s.fqdn}: ${s.services.map((x) => `${x.protocol} ${x.port} -> ${x.localHost}:${x.localPort}`).join(', ')}`);
  tunnels.current.sup.start();
  const ctx: StartContext = { state: s, files: f, client, log, refreshStatus: () => void refreshRoute() };
  for (const make of o.companions ?? []) companions.push(make(ctx));

  const statusTimer = setInterval(() => void refreshRoute(), o.statusIntervalMs ?? 60_000);
  const trimTimer = setInterval(() => {
    try {
      if (fs.statSync(tunnels.current.files.log).size > 1024 * 1024) fs.truncateSync(tunnels.current.files.log, 0);
    } catch {
      /* gone: autossh recreates it */
    }
  }, 3600_000);
  // A new certificate in place: the pod's own services are told (--on-renew), as after a renewal.
  const installed = async (what: string) => {
    log(`${what}; valid until ${certificateNotAfter(f)?.toISOString()} (${installedIssuer(f) === 'acme' ? 'from the public ACME CA' : 'from the server\'s CA'})`);
    writeStatus();
    if (o.onRenew?.length) await runOnRenew(o.onRenew, log);
  };
  let certBusy = false;
  // After a failed attempt, the next one waits (2, 4, 8 … s, at most 5 min): never a request per tick.
  let certFailures = 0;
  let certNotBefore = 0;
  const certificateTick = async (force = false) => {
    if (certBusy || Date.now() < certNotBefore) return;
    certBusy = true;
    try {
      // A certificate the server has for us and we do not (the public one an order produced, say); while a
      // key waits for one, every tick asks, so that an order that ended without it is noticed.
      const waiting = fs.existsSync(f.pendingKey);
      if (force || waiting || serverCertificate !== installedSha256(f)) {
        const { installed: c, order } = await collectCertificate(client, f, s);
        if (c) await installed(`collected the ${c.issuer === 'acme' ? 'public' : 'new'} certificate the server has for this pod`);
        const why = fs.existsSync(f.pendingKey) ? pendingKeyGivenUp(order, f) : null;
        if (why) {
          fs.rmSync(f.pendingKey, { force: true });
          log(`no longer waiting for the public certificate (${why}); asking again`);
        }
      }
      if (needsRenewal(f) && !fs.existsSync(f.pendingKey)) {
        const r = await requestCertificate(client, f, s);
        if (r === 'pending') log('certificate renewal ordered; the current certificate serves until the new one is issued');
        else await installed(r === 'installed' ? 'certificate renewed' : 'certificate renewed from the server\'s CA while the public one is ordered');
      }
      certFailures = 0;
    } catch (e) {
      certFailures++;
      const wait = Math.min(300_000, 1000 * 2 ** certFailures);
      certNotBefore = Date.now() + wait;
      log(`certificate renewal failed (next attempt in ${Math.round(wait / 1000)} s): ${(e as Error).message}`);
    } finally {
      certBusy = false;
    }
  };
  // Short lifetimes (a 6-day public certificate, an hour in tests) need a check more often than 6-hourly.
  const renewEvery = Math.max(1000, Math.min(6 * 3600_000, certificateLifetimeMs(f) / 30));
  const renewTimer = setInterval(() => void certificateTick(), renewEvery);
  void certificateTick();

  await stopped;
  clearInterval(statusTimer);
  clearInterval(renewTimer);
  clearInterval(trimTimer);
  for (const c of companions) await c.stop().catch((e) => log(`stopping: ${(e as Error).message}`));
  await tunnels.stop();
  for (const sig of signals) process.off(sig, onSignal);
  writeStatus();
  fs.rmSync(f.pidFile, { force: true });
  log('stopped');
  return exitCode;
}

/** `pipe2me stop`: SIGTERM to the running start, then wait for it to finish cleaning up. */
export async function stop(dir: string, timeoutMs = 15_000): Promise<{ wasRunning: boolean; pid: number | null }> {
  const f = new PodFiles(dir);
  f.read();
  const pid = Number(readIfExists(f.pidFile)?.trim());
  if (!pid || !pidAlive(pid)) return { wasRunning: false, pid: null };
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (pidAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (pidAlive(pid)) throw new ConflictError('stop_timeout', `pipe2me start (pid ${pid}) did not stop within ${timeoutMs / 1000} s.`, { hint: `kill -9 ${pid} if it hangs` });
  return { wasRunning: true, pid };
}

export function readStatus(f: PodFiles): { status: PodStatus | null; running: boolean } {
  const text = readIfExists(f.status);
  const pid = Number(readIfExists(f.pidFile)?.trim());
  const running = Boolean(pid && pidAlive(pid));
  if (!text) return { status: null, running };
  try {
    return { status: JSON.parse(text) as PodStatus, running };
  } catch {
    return { status: null, running };
  }
}
