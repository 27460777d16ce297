/** pipe2me-ctl: the long-running parts and what pods use — the probe, tokens, the API. */
import { Command } from 'commander';
import { parseDuration } from '../config/duration.js';
import { ConflictError, InputError } from '../util/errors.js';
import { createToken, listTokens, revokeToken } from '../state/tokens.js';
import { requireSubdomain } from '../state/subdomains.js';
import { probeAll } from '../probe/run.js';
import { asSingleton } from '../server/relays/singletons.js';
import { formatDuration } from '../config/duration.js';
import { isoTime, table } from './output.js';
import { createLog, type LogFormat } from '../util/log.js';
import { withServer, parseIntOption, parseLogFormatOption, collectSubdomainNames, tokenJson, caPin } from './ctl-common.js';

const bound = (n: number | null) => (n === null ? 'unbounded' : String(n));

function parseBound(name: string) {
  return (v: string): number | null => {
    if (v === 'unbounded') return null;
    if (!/^\d+$/.test(v) || Number(v) < 1) throw new InputError('bad_option', `${name} must be a whole number of at least 1, or "unbounded" (got ${JSON.stringify(v)}).`);
    return Number(v);
  };
}

export function registerServiceCommands(program: Command): void {
  program
    .command('probe')
    .description('Test every pod\'s direct route (its router mappings) and point its DNS name at the router when every port answers as that pod, at the server otherwise. Run every minute by a systemd timer or cron.')
    .option('--name <name...>', 'probe only these subdomains (names or fully qualified names)', collectSubdomainNames)
    .option('--no-apply', 'decide and record, but do not rewrite the zone')
    .option('--log-format <format>', 'one line per route change and one per run on stderr: text, or json', parseLogFormatOption, 'text')
    .option('--wait-for-store <seconds>', 'while the state store cannot be reached at the start (a database restart or failover), try again with backoff for this long, then exit 11 (a run the store fails under is not repeated: the next timer run probes again)', parseIntOption('--wait-for-store'), 45)
    .addHelpText('after', `
Examples:
  pipe2me-ctl probe                 # what systemd/pipe2me-probe.timer runs every minute
  pipe2me-ctl probe --name calm-red-otter home-lab --no-apply
  pipe2me-ctl probe --log-format json 2>>/var/log/pipe2me-probe.json`)
    .action(async (o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        // Resolve the names first: an unknown one is exit 4 like everywhere else, not a silent "nothing to probe".
        const names = o.name ? await Promise.all((o.name as string[]).map(async (n) => (await requireSubdomain(ctx.db, n)).name)) : undefined;
        const log = createLog('probe', o.logFormat as LogFormat);
        // With relays the run over the whole fleet goes on one relay at a time (a lease in the store): the
        // timer fires on every relay, and two runs at once would count each pod's results twice.
        const job = names ? { ran: true as const, value: await probeAll(ctx, { names, progress: (m) => out.progress(m), applyDns: Boolean(o.apply) }) }
          : await asSingleton(ctx, 'probe', () => probeAll(ctx, { progress: (m) => out.progress(m), applyDns: Boolean(o.apply) }));
        if (!job.ran) {
          log(`the probe runs on relay ${job.holder.holder} now (its lease until ${new Date(job.holder.until * 1000).toISOString()}): nothing to do on this relay`, { event: 'probe_run', outcome: 'skipped', relay: job.holder.holder });
          out.result({ skipped: true, relay: job.holder.holder, lease_until: new Date(job.holder.until * 1000).toISOString() }, () => `skipped: the probe runs on relay ${job.holder.holder} now`);
          return;
        }
        const r = job.value;
        for (const x of r.results.filter((y) => y.changed)) {
          log(`${x.fqdn}: IPv${x.family} ${x.route} (${x.reason})`, { event: 'route_changed', subdomain: x.name, family: `ipv${x.family}`, outcome: x.route, reason: x.reason });
        }
        log(`probed ${r.probed} subdomain(s) in ${r.durationMs} ms: ${r.direct} direct over IPv4, ${r.direct6} over IPv6, ${r.changed.length} changed`,
          { event: 'probe_run', outcome: 'ok', probed: r.probed, direct_ipv4: r.direct, direct_ipv6: r.direct6, changed: r.changed.length, duration_ms: r.durationMs });
        out.result(r, () => {
          if (r.probed === 0) return 'Nothing to probe: no active subdomains.';
          const lines = [`probed ${r.probed} subdomain(s) in ${r.durationMs} ms: IPv4 ${r.direct} direct, ${r.probed - r.direct} through the server${r.direct6 ? `; IPv6 ${r.direct6} direct` : ''}${r.changed.length ? `; changed: ${r.changed.join(', ')}` : ''}`];
          for (const x of r.results) lines.push(`  ${x.name.padEnd(24)} IPv${x.family} ${x.route.padEnd(6)} ${x.changed ? '(changed) ' : ''}${x.reason}`);
          if (r.applied) lines.push(`  zone rewritten once (serial ${r.applied.zone_serial})`);
          return lines.join('\n');
        });
      }, { waitForStore: { seconds: o.waitForStore as number, say: (m) => createLog('probe', o.logFormat as LogFormat)(m, { event: 'state_unreachable', outcome: 'waiting' }) } }));

  const token = program.command('token').description('Tokens: quota classes that let pods create their own subdomains through the API.')
    .addHelpText('after', `
Examples:
  pipe2me-ctl token create --label lab --max-ports 4 --lifespan 30d
  pipe2me-ctl token list
  pipe2me-ctl token revoke 3f9c2a71b0d84e65`);
  token
    .command('create')
    .description('Create a token. The secret is shown once; the state keeps only its hash.')
    .option('--label <text>', 'what it is for (shown in `token list`)', '')
    .option('--max-ports <n>', 'how many services a subdomain made with it may have', parseIntOption('--max-ports'), 4)
    .option('--max-subdomains <n>', 'how many live subdomains it may have made at once (default 10; "unbounded" for none)', parseBound('--max-subdomains'), 10)
    .option('--max-total-ports <n>', 'how many public ports those subdomains may hold together (default: max-subdomains × max-ports)', parseBound('--max-total-ports'))
    .option('--lifespan <duration>', 'how long those subdomains live, e.g. 30d (default: forever)')
    .option('--extendable', 'pods may extend their subdomain by another lifespan')
    .option('--single-use', 'the token works for one subdomain only')
    .addHelpText('after', `
Examples:
  pipe2me-ctl token create --label lab --max-ports 4 --lifespan 30d --extendable
  pipe2me-ctl token create --label kiosk-17 --max-ports 1 --single-use
  pipe2me-ctl token create --label fleet --max-ports 2 --max-subdomains 5000
It prints the secret once, and the \`pipe2me setup\` command line to give to the pod.`)
    .action(async (o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        if (o.maxPorts < 1) throw new InputError('bad_option', '--max-ports must be at least 1.');
        if (/[\u0000-\u001f]/.test(o.label) || o.label.length > 200) throw new InputError('bad_option', '--label must be one line of at most 200 characters.');
        const maxPorts = Math.min(o.maxPorts, ctx.config.ports.maxPerSubdomain);
        const maxSubdomains = o.singleUse ? 1 : (o.maxSubdomains as number | null);
        const maxTotalPorts = (o.maxTotalPorts as number | null | undefined) !== undefined ? (o.maxTotalPorts as number | null) : maxSubdomains === null ? null : maxSubdomains * maxPorts;
        const { record, secret } = await createToken(ctx.db, {
          label: o.label, maxPorts,
          lifespanSeconds: o.lifespan ? parseDuration(o.lifespan, '--lifespan') : null,
          extendable: Boolean(o.extendable), singleUse: Boolean(o.singleUse), maxSubdomains, maxTotalPorts,
        });
        const pin = caPin(ctx);
        const setup = `pipe2me setup --server https://${ctx.config.server.fqdn} --token ${secret}${pin ? ` --ca-pin ${pin}` : ''} --protocols http,https`;
        out.result({ ...tokenJson(record), token: secret, ca_pin: pin, setup_command: setup }, () =>
          [`token ${record.id} created${record.label ? ` (${record.label})` : ''}: up to ${record.maxPorts} ports per subdomain, ${bound(record.maxSubdomains)} subdomain(s) and ${bound(record.maxTotalPorts)} ports in all, ` +
            `${record.lifespanSeconds ? `lifespan ${formatDuration(record.lifespanSeconds)}${record.extendable ? ', extendable' : ''}` : 'no expiry'}` +
            `${record.singleUse ? ', single use' : ''}`,
          `  secret (shown once): ${secret}`,
          `  on a pod: ${setup}`].join('\n'));
      }));
  token
    .command('list')
    .description('List tokens (never their secrets).')
    .addHelpText('after', `
Examples:
  pipe2me-ctl token list
  pipe2me-ctl token list --json`)
    .action(async (_o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const list = await listTokens(ctx.db);
        out.result(list.map(tokenJson), () => list.length === 0 ? 'No tokens. Create one: pipe2me-ctl token create --max-ports 4 --lifespan 30d' : table(
          list.map((t) => [t.id, t.label || '-', String(t.maxPorts), `${t.liveSubdomains}/${bound(t.maxSubdomains)}`, `${t.livePorts}/${bound(t.maxTotalPorts)}`,
            t.lifespanSeconds ? formatDuration(t.lifespanSeconds) : 'forever', t.extendable ? 'yes' : 'no',
            t.singleUse ? 'yes' : 'no', String(t.uses), t.revokedAt ? `revoked ${isoTime(t.revokedAt)}` : 'active']),
          ['ID', 'LABEL', 'PORTS', 'SUBDOMAINS', 'PORTS IN USE', 'LIFESPAN', 'EXTEND', 'ONCE', 'USES', 'STATE'])
          + (list.some((t) => t.maxSubdomains === null && t.revokedAt === null) ? '\nTokens marked "unbounded" were made before tokens had bounds: revoke them and create bounded ones.' : ''));
      }));
  token
    .command('revoke')
    .description('Revoke a token: it creates nothing more. Subdomains already made with it stay.')
    .argument('<id>', 'the token id from `token list`')
    .addHelpText('after', `
Example:
  pipe2me-ctl token revoke 3f9c2a71b0d84e65`)
    .action(async (id: string, _o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const t = await revokeToken(ctx.db, id);
        out.result(tokenJson(t), () => `token ${t.id} revoked`);
      }));

  program
    .command('serve')
    .description("Run the API pods talk to (setup, keys, certificates, mappings, status), on loopback behind nginx's TLS.")
    .option('--listen <host:port>', 'where to listen (default 127.0.0.1:<http.api_port>)')
    .option('--log-format <format>', 'one line per event: text, or json (for journald and Loki)', parseLogFormatOption, 'text')
    .addHelpText('after', `
Examples:
  pipe2me-ctl serve                 # usually run by systemd (systemd/pipe2me-api.service)
  pipe2me-ctl serve --listen 127.0.0.1:8471 --log-format json

It also serves GET /metrics (Prometheus) on the loopback listener, never through nginx.`)
    .action(async (o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        let host: string | undefined;
        let port: number | undefined;
        if (o.listen) {
          const m = /^(.+):(\d+)$/.exec(o.listen);
          if (!m) throw new InputError('bad_option', `--listen must look like 127.0.0.1:8470 (got ${JSON.stringify(o.listen)}).`);
          host = m[1];
          port = Number(m[2]);
        }
        // Loaded here, not at the top: the API (its schemas, prom-client) is a quarter of the CLI's code,
        // which every other command would parse at start-up for nothing.
        const { createApi } = await import('../api/server.js');
        const api = createApi(ctx, { host, port, log: createLog('api', o.logFormat as LogFormat) });
        let addr;
        try {
          addr = await api.listen();
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE') {
            throw new ConflictError('port_in_use', `${host ?? '127.0.0.1'}:${port ?? ctx.config.http.apiPort} is already in use.`, {
              hint: 'Another `pipe2me-ctl serve` may be running; stop it, or choose another http.api_port.',
            });
          }
          throw e;
        }
        out.note(`pipe2me API listening on http://${addr.host}:${addr.port}/ (behind nginx at https://${ctx.config.server.fqdn}/); Ctrl-C to stop`);
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
        await api.close();
      }));

}
