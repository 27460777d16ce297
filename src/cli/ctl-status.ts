/** pipe2me-ctl status: the whole server on one screen (exit 8 when something needs the operator). */
import type { Command } from 'commander';
import { overview, type Overview } from '../server/overview.js';
import { ExitCode } from '../util/errors.js';
import { withServer } from './ctl-common.js';

const ago = (iso: string | null, nowMs: number) => {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((nowMs - Date.parse(iso)) / 1000));
  return s < 120 ? `${s} s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
};
const pct = (n: number, of: number) => (of === 0 ? '–' : `${Math.round((100 * n) / of)} %`);

export function overviewText(o: Overview): string {
  const now = Date.parse(o.at);
  const lines = [`${o.server} at ${o.at}`];
  lines.push(`  daemons: ${o.daemons.map((d) => `${d.name} ${d.running ? `running (pid ${d.pid})` : 'NOT RUNNING'}`).join(', ')}; API ${o.api.answering ? `answering on ${o.api.address}` : `NOT ANSWERING on ${o.api.address}`}`);
  lines.push(`  last reloads: ${o.daemons.map((d) => `${d.name} ${d.last_reload ? ago(d.last_reload, now) : 'none'}${d.last_reload_failed && (!d.last_reload || d.last_reload_failed > d.last_reload) ? ` (FAILED ${ago(d.last_reload_failed, now)})` : ''}`).join(', ')}`);
  const p = o.pods;
  lines.push(`  pods: ${p.active} active${p.expired ? ` (${p.expired} expired)` : ''}, ${p.online} online (${pct(p.online, p.active)}); direct over IPv4 ${p.direct_ipv4} (${pct(p.direct_ipv4, p.active)}), over IPv6 ${p.direct_ipv6} (${pct(p.direct_ipv6, p.active)})`);
  lines.push(`  ports: ${o.ports.allocated} of ${o.ports.range} in use`);
  const soonest = o.certificates[0];
  lines.push(`  certificates: ${soonest ? o.certificates.map((x) => `${x.kind} (${x.issuer}) soonest ${x.fqdn} in ${x.days_left} d`).join('; ') : 'none valid'}`);
  const orders = Object.entries(o.acme_orders).filter(([, n]) => n > 0);
  if (orders.length) lines.push(`  ACME orders: ${orders.map(([s, n]) => `${n} ${s}`).join(', ')}`);
  lines.push(`  last probe: ${ago(o.last_probe, now)}; last apply: ${o.last_apply ? `${ago(o.last_apply.at, now)}, ${o.last_apply.ok ? 'ok' : 'FAILED'}` : 'never'}`);
  lines.push(o.problems.length ? `  needs attention:\n${o.problems.map((x) => `    - ${x}`).join('\n')}` : '  all well');
  return lines.join('\n');
}

export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description('The whole server on one screen: its daemons and their last reloads, pods online, the direct share per address family, ports, the soonest certificate expiry, the last probe and apply. Exit 8 when something needs attention.')
    .addHelpText('after', `
Examples:
  pipe2me-ctl status
  pipe2me-ctl status --json | jq .problems`)
    .action(async (_o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const o = await overview(ctx);
        out.result(o, () => overviewText(o));
        if (o.problems.length) process.exitCode = ExitCode.daemon;
      }));
}
