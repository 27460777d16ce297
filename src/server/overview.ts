/**
 * The whole server in one view, for `pipe2me-ctl status`: its daemons (running, and how their last reload
 * went), the fleet (pods, online, the direct share per family), ports, the soonest certificate expiry, ACME
 * orders, and when the probe and apply last ran. Everything comes from pid files, the session records and
 * the store; only the API is asked (is it answering?).
 */
import * as http from 'node:http';
import type { ServerContext } from './context.js';
import { runningPid } from '../daemons/process.js';
import { readSessions } from '../daemons/sessions.js';
import { readMarks } from '../state/metrics.js';
import { acmeOrderCounts, activeRoutes, allocatedPorts, soonestExpiry, subdomainCounts } from '../state/fleet-stats.js';
import { isoSeconds } from '../util/time.js';

export interface DaemonState { name: string; unit: string; running: boolean; pid: number | null; last_reload: string | null; last_reload_failed: string | null }

export interface Overview {
  server: string;
  at: string;
  daemons: DaemonState[];
  api: { answering: boolean; address: string };
  pods: { active: number; expired: number; online: number; direct_ipv4: number; direct_ipv6: number };
  ports: { allocated: number; range: number };
  certificates: { issuer: string; kind: string; fqdn: string; not_after: string; days_left: number }[];
  acme_orders: Record<string, number>;
  last_probe: string | null;
  last_apply: { at: string; ok: boolean } | null;
  /** What is wrong, in words; empty when all is well. */
  problems: string[];
}

function apiAnswers(port: number, timeoutMs = 1500): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/v1', timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

export async function overview(ctx: ServerContext, nowMs = Date.now()): Promise<Overview> {
  const c = ctx.config;
  const L = ctx.layout;
  const marks = await readMarks(ctx.db);
  const iso = (s: number | undefined) => (s === undefined ? null : isoSeconds(Math.floor(s)));
  const daemon = (name: string, unit: string, pidFile: string, comm: string): DaemonState => {
    const pid = runningPid(pidFile, comm) ?? null;
    return { name, unit, running: pid !== null, pid, last_reload: iso(marks.get(`reload_ok:${unit}`)?.value), last_reload_failed: iso(marks.get(`reload_failed:${unit}`)?.value) };
  };
  const daemons = [
    daemon('sshd', 'sshd', L.sshd.pidFile, 'sshd'),
    daemon('nginx', 'nginx', L.nginx.pidFile, 'nginx'),
    c.dns.daemon === 'bind' ? daemon('named', 'dns', L.bind.pidFile, 'named') : daemon('nsd', 'dns', L.nsd.pidFile, 'nsd'),
  ];
  const answering = await apiAnswers(c.http.apiPort);
  const counts = await subdomainCounts(ctx.db);
  const routes = await activeRoutes(ctx.db);
  const sessions = readSessions(L.sessionsDir);
  const pods = {
    active: counts.active, expired: counts.expired,
    online: routes.filter((r) => sessions.get(r.name)?.alive).length,
    direct_ipv4: routes.filter((r) => r.route === 'direct').length,
    direct_ipv6: routes.filter((r) => r.route6 === 'direct').length,
  };
  const certificates = (await soonestExpiry(ctx.db))
    .map((x) => ({ issuer: x.issuer, kind: x.kind, fqdn: x.fqdn, not_after: isoSeconds(x.notAfter), days_left: Math.floor((x.notAfter * 1000 - nowMs) / 86400_000) }))
    .sort((a, b) => a.days_left - b.days_left);
  const lastApply = marks.get('apply_last_run');
  const o: Overview = {
    server: c.server.fqdn, at: new Date(nowMs).toISOString(), daemons,
    api: { answering, address: `127.0.0.1:${c.http.apiPort}` },
    pods, ports: { allocated: await allocatedPorts(ctx.db), range: c.ports.last - c.ports.first + 1 },
    certificates, acme_orders: await acmeOrderCounts(ctx.db),
    last_probe: iso(marks.get('probe_last_run')?.value),
    last_apply: lastApply ? { at: iso(lastApply.value)!, ok: marks.get('apply_last_failed')?.value !== 1 } : null,
    problems: [],
  };
  o.problems = problemsOf(o, nowMs);
  return o;
}

/** What needs the operator, pure. */
export function problemsOf(o: Omit<Overview, 'problems'>, nowMs: number): string[] {
  const out: string[] = [];
  for (const d of o.daemons) if (!d.running) out.push(`${d.name} is not running`);
  if (!o.api.answering) out.push(`the API does not answer on ${o.api.address}`);
  if (o.last_apply && !o.last_apply.ok) out.push(`the last apply (${o.last_apply.at}) failed: pipe2me-ctl apply says why`);
  if (o.pods.active > 0 && o.last_probe && nowMs - Date.parse(o.last_probe) > 5 * 60_000) out.push(`the probe last ran at ${o.last_probe}, more than 5 minutes ago`);
  if (o.pods.active > 0 && !o.last_probe) out.push('the probe has never run (pipe2me-ctl probe; systemd: pipe2me-probe.timer)');
  for (const cert of o.certificates) {
    if (cert.days_left < 0) out.push(`the ${cert.kind} certificate of ${cert.fqdn} (${cert.issuer}) expired ${-cert.days_left} day(s) ago and is still the newest one`);
    else if (cert.days_left < 14) out.push(`the ${cert.kind} certificate of ${cert.fqdn} (${cert.issuer}) expires in ${cert.days_left} days`);
  }
  if (o.ports.allocated / o.ports.range > 0.9) out.push(`${o.ports.allocated} of ${o.ports.range} public ports are in use`);
  return out;
}
