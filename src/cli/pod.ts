/**
 * pipe2me: the pod's tool. `setup` once, then `start` (usually as a service). Every reporting command
 * takes --json; errors go through one handler and leave with a documented exit code.
 */
import { Command } from 'commander';
import * as fs from 'node:fs';
import { ExitCode, InputError, UnreachableError } from '../util/errors.js';
import { directRouteCompanion } from '../pod/router/index.js';
import { which } from '../util/which.js';
import { isIPv6 } from 'node:net';
import { createLog, type LogFormat } from '../util/log.js';
import { defaultPodDir, PodFiles, type PodState } from '../pod/files.js';
import { setup } from '../pod/setup.js';
import { installedIssuer, requestCertificate } from '../pod/certificate.js';
import { apiClientFor, certificateNotAfter, readStatus, routeInfo, start, stop, type RouteInfo } from '../pod/run.js';
import { installService, renderService } from '../pod/service.js';
import { EXIT_CODES_HELP, Output, runProgram, type GlobalOptions } from './output.js';
import { serviceUrl } from '../render/entries.js';
import { validateName } from '../names/names.js';

interface Globals extends GlobalOptions {
  dir?: string;
}

function g(cmd: Command): Globals & { dir: string } {
  const o = cmd.optsWithGlobals() as Globals;
  return { ...o, dir: o.dir ?? defaultPodDir() };
}

const list = (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean);

function urls(fqdn: string, services: { protocol: string; port: number }[]): string[] {
  return services.map((s) => serviceUrl(fqdn, s.protocol, s.port));
}

interface ServerCertificateView { issuer: string | null; order: { state: string; attempts: number; next_attempt: string | null; last_error: string | null } | null }

async function currentView(f: PodFiles, s: PodState, cached: RouteInfo | null): Promise<{ route: (RouteInfo & { source: 'server' | 'cached'; as_of: string | null; unreachable?: string }) | null; certificate: ServerCertificateView | null }> {
  try {
    const client = apiClientFor(f, s, 5000);
    const v = await client.call<RouteInfo & { route_reason?: string | null; certificate?: ServerCertificateView }>('GET', `/v1/subdomains/${s.id}`);
    return {
      route: { ...routeInfo(v), source: 'server', as_of: new Date().toISOString() },
      certificate: v.certificate ?? null,
    };
  } catch (e) {
    return { route: cached ? { ...cached, source: 'cached', as_of: cached.checked_at ?? null, unreachable: (e as Error).message } : null, certificate: null };
  }
}

export function buildProgram(): Command {
  const program = new Command('pipe2me');
  program
    .description('Publish services running on this machine, behind NAT, under a name of their own, with their own TLS certificate.')
    .option('-d, --dir <dir>', 'the tunnel set\'s directory (default: $PIPE2ME_DIR, /var/lib/pipe2me-pod/default as root, else ~/.pipe2me/default)')
    .option('--json', 'print results as JSON on stdout')
    .option('-q, --quiet', 'no progress lines on stderr')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', `
Getting started (the operator gives you the server and a token):
  pipe2me setup --server https://server.pipe.example.com --token p2mt_... --ca-pin sha256:... \\
                --protocols http,https --ports 8080,8443
  pipe2me start                     # foreground; or: pipe2me install-service
  pipe2me status                    # tunnel up? which route do clients take? certificate expiry
${EXIT_CODES_HELP}`);

  program
    .command('setup')
    .description('Create (or claim) a subdomain, make this pod\'s ssh and TLS keys (they never leave it), register them, pin the server.')
    .requiredOption('--server <url>', 'the pipe2me server, e.g. https://server.pipe.example.com')
    .option('--token <token>', 'a token from the operator: creates a new subdomain')
    .option('--claim <token>', 'a claim token from the operator for a subdomain they made')
    .option('--protocols <list>', 'services to publish, in order: http, https, tcp (with --token)', list)
    .option('--ports <list>', 'local ports (or host:port) of those services, same order (default: http 80, https 443)', list)
    // Checked here too, so a malformed name is exit 2 before anything is sent (the server checks it again).
    .option('--name <name>', 'ask for this name instead of a generated one (with --token)', (v: string) => validateName(v))
    .option('--passthrough', 'TLS to https://NAME/ passes through the server untouched to your first https service')
    .option('--ca-pin <sha256:hex>', 'the server CA\'s fingerprint, checked on first contact (the operator prints it)')
    .option('--ca-file <pem>', 'the server\'s CA certificate, if you have it as a file')
    .option('--force', 'replace an existing setup in this directory')
    .addHelpText('after', `
Examples:
  pipe2me setup --server https://server.pipe.example.com --token p2mt_... --ca-pin sha256:... --protocols http,https --ports 8080,8443
  pipe2me setup --server https://server.pipe.example.com --claim p2mc_... --ca-pin sha256:... --ports 3000
  pipe2me setup --server https://server.pipe.example.com --token p2mt_... --ca-pin sha256:... --protocols http,tcp --ports 8080,192.168.1.20:22
  pipe2me setup --dir /var/lib/pipe2me-pod/lab --server https://server.pipe.example.com --token p2mt_... --ca-pin sha256:... --protocols https --name lab
The third publishes another LAN host's ssh (192.168.1.20:22) as its tcp service; the fourth makes a second
tunnel set on the same pod, with a name of its choosing. The operator's \`pipe2me-ctl token create\` or
\`add-subdomain\` prints the token (or claim) and the pin to use.`)
    .action(async (o, cmd: Command) => {
      const gl = g(cmd);
      const out = new Output(gl);
      const r = await setup({
        dir: gl.dir, server: o.server, token: o.token, claim: o.claim, protocols: o.protocols, ports: o.ports, name: o.name,
        passthrough: o.passthrough, caPin: o.caPin, caFile: o.caFile, force: o.force, progress: (m) => out.progress(m),
      });
      const f = new PodFiles(gl.dir);
      out.result({
        dir: gl.dir, name: r.state.name, fqdn: r.state.fqdn, expires: r.state.expires, ...(r.state.relays ? { slot: r.state.slot ?? 0 } : {}),
        services: r.state.services.map((s) => ({ ...s, url: serviceUrl(r.state.fqdn, s.protocol, s.port) })),
        entry: r.answer.entry, certificate: { file: f.cert, key: f.tlsKey, fullchain: f.fullchain, not_after: certificateNotAfter(f)?.toISOString() ?? null },
      }, () => [
        `${r.state.fqdn} is set up in ${gl.dir}`,
        ...r.state.services.map((s) => `  ${s.protocol.padEnd(5)} ${serviceUrl(r.state.fqdn, s.protocol, s.port)}  ->  ${s.localHost}:${s.localPort} here`),
        ...(r.answer.entry.http ? [`  entry ${r.answer.entry.http}`] : []),
        ...(r.answer.entry.https ? [`  entry ${r.answer.entry.https}`] : []),
        `  expires: ${r.state.expires ?? 'never'}`,
        `  TLS certificate for your https services: ${f.fullchain} with key ${f.tlsKey} (valid until ${certificateNotAfter(f)?.toISOString()})`,
        '',
        'Next: pipe2me start    (or pipe2me install-service to run it at boot)',
      ].join('\n'));
    });

  program
    .command('start')
    .description('Run the tunnel in the foreground (for systemd/launchd): reconnects on its own, logs each state change, renews the certificate, and opens the direct route: router port mappings by UPnP IGD or NAT-PMP (IPv4), pinholes at this machine\'s own IPv6 address.')
    .option('--no-upnp', 'no router port mappings at all, neither UPnP nor NAT-PMP (IPv4 clients then always go through the server)')
    .option('--map-with <protocols>', 'router protocols to try for IPv4 mappings, in order: upnp, natpmp (comma-separated)', 'upnp,natpmp')
    .option('--igd <url>', 'the router\'s UPnP description URL (skips discovery), e.g. http://192.168.1.1:5000/rootDesc.xml')
    .option('--natpmp-gateway <address>', 'the router\'s LAN address for NAT-PMP (default: the default route\'s gateway)')
    .option('--upnp-lease <seconds>', 'lease of each router mapping and IPv6 pinhole; renewed at half of it (pinholes: at most 86400)', (v) => Number(v), 3600)
    .option('--ipv6 <address>', 'the IPv6 direct route: "auto" (this machine\'s global address), an address of this machine, or "off"', 'auto')
    .option('--igd6 <url>', 'the router\'s UPnP description URL at its IPv6 address, for pinholes, e.g. http://[2001:db8:1::1]:5000/rootDesc.xml')
    .option('--status-interval <seconds>', 'how often to ask the server which route clients take', (v) => Number(v), 60)
    .option('--relay <name>', 'with several relays: hold the tunnel to this one first (the others stay the fallback), e.g. relay-b')
    .option('--log-format <format>', 'one line per event on stderr: text, or json (for journald and Loki)', 'text')
    .option('--on-renew <command...>', 'after each new certificate, run COMMAND with its arguments (no shell), e.g. to reload a web server; everything after it is the command', (v: string) => {
      try {
        const a = JSON.parse(v) as unknown;
        if (Array.isArray(a) && a.length && a.every((x) => typeof x === 'string')) return a as string[];
      } catch {
        /* a plain word: the command alone */
      }
      return [v];
    })
    .addHelpText('after', `
Examples:
  pipe2me start                     # usually run by the service: pipe2me install-service
  pipe2me start --no-upnp --ipv6 off   # always through the server
  pipe2me start --igd http://192.168.1.1:5000/rootDesc.xml --upnp-lease 7200
  pipe2me start --map-with natpmp --natpmp-gateway 192.168.1.1
  pipe2me start --ipv6 2001:db8:1::10 --igd6 'http://[2001:db8:1::1]:5000/rootDesc.xml'
  pipe2me start --on-renew systemctl reload nginx
  pipe2me start --relay relay-b        # with several relays: this one first
  pipe2me start --on-renew caddy reload --config /etc/caddy/Caddyfile

The IPv6 direct route translates public ports to local ones with nftables on this machine, which needs
root or CAP_NET_ADMIN; without it the IPv6 route stays on the server and the pod says why.`)
    .action(async (o, cmd: Command) => {
      const gl = g(cmd);
      if (o.logFormat !== 'text' && o.logFormat !== 'json') throw new InputError('bad_option', `--log-format takes text or json (got ${JSON.stringify(String(o.logFormat).slice(0, 40))}).`);
      const base = createLog('', o.logFormat as LogFormat);
      // The event is what the line is about: its first word (tunnel, route, router, ipv6, certificate, …).
      const log = (m: string) => base(m, { event: /^([a-z0-9-]+)[: ]/i.exec(m)?.[1]?.toLowerCase() ?? 'message' });
      if (!Number.isInteger(o.upnpLease) || o.upnpLease < 0) throw new InputError('bad_option', '--upnp-lease must be a whole number of seconds (0: permanent).');
      if (!Number.isInteger(o.statusInterval) || o.statusInterval < 1) throw new InputError('bad_option', '--status-interval must be a whole number of seconds.');
      const protocols = String(o.mapWith).split(',').map((x) => x.trim()).filter(Boolean);
      const unknown = protocols.filter((p) => p !== 'upnp' && p !== 'natpmp');
      if (unknown.length || protocols.length === 0) throw new InputError('bad_option', `--map-with takes upnp and/or natpmp, comma-separated (got ${JSON.stringify(o.mapWith)}).`);
      if (o.ipv6 !== 'auto' && o.ipv6 !== 'off' && !isIPv6(o.ipv6)) throw new InputError('bad_option', `--ipv6 must be auto, off or an IPv6 address of this machine (got ${JSON.stringify(String(o.ipv6).slice(0, 60))}).`);
      // A protocol whose client is not installed is skipped with a word, not a refusal to start.
      const program = { upnp: 'upnpc', natpmp: 'natpmpc' } as const;
      const usable = (protocols as ('upnp' | 'natpmp')[]).filter((p) => {
        if (which(program[p])) return true;
        log(`router: ${program[p]} is not installed, so ${p === 'upnp' ? 'UPnP' : 'NAT-PMP'} is not tried`);
        return false;
      });
      const ipv4 = o.upnp && usable.length ? { protocols: usable, leaseSeconds: o.upnpLease, ...(o.igd ? { igdUrl: o.igd } : {}), ...(o.natpmpGateway ? { natpmpGateway: o.natpmpGateway } : {}) } : null;
      const ipv6 = o.ipv6 === 'off' ? null : { address: o.ipv6 as string, leaseSeconds: o.upnpLease, ...(o.igd6 ? { igdUrl: o.igd6 } : {}) };
      const companions = ipv4 || ipv6 ? [directRouteCompanion({ ipv4, ipv6 })] : [];
      if (o.relay !== undefined && !/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(o.relay)) throw new InputError('bad_option', `--relay takes a relay's name, one DNS label (got ${JSON.stringify(String(o.relay).slice(0, 64))}).`);
      const code = await start({ dir: gl.dir, log, companions, statusIntervalMs: o.statusInterval * 1000, ...(o.onRenew ? { onRenew: o.onRenew as string[] } : {}), ...(o.relay ? { relay: o.relay as string } : {}) });
      process.exitCode = code;
    });

  program
    .command('stop')
    .description('Stop a running `pipe2me start` for this tunnel set and wait until it has cleaned up.')
    .addHelpText('after', `
Examples:
  pipe2me stop
  pipe2me stop --dir /var/lib/pipe2me-pod/lab`)
    .action(async (_o, cmd: Command) => {
      const gl = g(cmd);
      const out = new Output(gl);
      const r = await stop(gl.dir);
      out.result({ was_running: r.wasRunning, pid: r.pid }, () => (r.wasRunning ? `stopped (pid ${r.pid})` : 'it was not running'));
    });

  program
    .command('status')
    .description('Is the tunnel up, which way do clients reach this pod (direct or through the server) and why, when does the certificate expire.')
    .addHelpText('after', `
Examples:
  pipe2me status
  pipe2me status --dir /var/lib/pipe2me-pod/lab --json`)
    .action(async (_o, cmd: Command) => {
      const gl = g(cmd);
      const out = new Output(gl);
      const f = new PodFiles(gl.dir);
      const s = f.read();
      const { status, running } = readStatus(f);
      const notAfter = certificateNotAfter(f);
      // The route as the server says it now: `start` asks only every --status-interval, and a route the
      // server switched since must not be shown as current. Without an answer, the last known one, with its age.
      const { route, certificate: serverCertificate } = await currentView(f, s, running ? status?.route ?? null : null);
      const data = {
        fqdn: s.fqdn, dir: gl.dir, running,
        tunnel: running ? status?.tunnel ?? null : { state: 'stopped' },
        route,
        certificate: {
          not_after: notAfter?.toISOString() ?? null, days_left: notAfter ? Math.floor((notAfter.getTime() - Date.now()) / 86400_000) : null,
          issuer: installedIssuer(f), order: serverCertificate?.order ?? null,
        },
        services: s.services.map((x) => ({ ...x, url: serviceUrl(s.fqdn, x.protocol, x.port) })),
        mappings: running ? status?.mappings ?? [] : [],
        router: running ? status?.extra?.router ?? null : null,
        ipv6: running ? status?.extra?.ipv6 ?? null : null,
        expires: s.expires,
      };
      out.result(data, () => {
        const lines = [`${s.fqdn} (${gl.dir})`];
        if (!running) lines.push('  tunnel: not running (pipe2me start)');
        else lines.push(`  tunnel: ${status?.tunnel.state ?? 'unknown'} since ${status?.tunnel.since ?? '?'}${status?.tunnel.detail ? ` — ${status.tunnel.detail}` : ''}`);
        if (route) {
          const age = route.as_of ? Math.max(0, Math.round((Date.now() - Date.parse(route.as_of)) / 1000)) : null;
          lines.push(`  route IPv4: ${route.route === 'direct' ? `clients go straight to your router ${route.direct_ipv4}` : 'clients go through the server (tunnel)'}${route.reason ? ` — ${route.reason}` : ''}` +
            (route.source === 'server' ? '' : ` (as last known${age !== null ? `, ${age} s ago` : ''}: the server could not be asked now — ${route.unreachable})`));
          lines.push(`  route IPv6: ${route.route6 === 'direct' ? `clients go straight to this machine at ${route.direct_ipv6}` : 'clients go through the server (tunnel)'}${route.route6_reason ? ` — ${route.route6_reason}` : ''}`);
        }
        const r4 = data.router as { protocol: string | null; problem: string | null; mappings: { external_port: number; ok: boolean; detail: string }[] } | null;
        if (r4) lines.push(`  router (IPv4): ${r4.protocol ? `${r4.protocol === 'natpmp' ? 'NAT-PMP' : 'UPnP IGD'}, mapped ${r4.mappings.filter((m) => m.ok).map((m) => m.external_port).join(', ') || 'nothing'}` : 'no mapping protocol answers'}${r4.problem ? ` — ${r4.problem}` : ''}` +
          r4.mappings.filter((m) => !m.ok).map((m) => `; ${m.external_port}: ${m.detail}`).join(''));
        const r6 = data.ipv6 as { address: string | null; problem: string | null; openings: { port: number; ok: boolean; via: string | null; detail: string }[] } | null;
        if (r6) lines.push(`  IPv6: ${r6.address ?? 'no global address'}${r6.openings.length ? `, open ${r6.openings.filter((o) => o.ok).map((o) => `${o.port} (${o.via === 'pinhole' ? 'pinhole' : 'no filter to open'})`).join(', ') || 'nothing'}` : ''}${r6.problem ? ` — ${r6.problem}` : ''}` +
          r6.openings.filter((o) => !o.ok).map((o) => `; ${o.port}: ${o.detail}`).join(''));
        lines.push(...urls(s.fqdn, s.services).map((u) => `  ${u}`));
        const ord = data.certificate.order;
        lines.push(`  certificate: ${notAfter ? `valid until ${notAfter.toISOString()} (${data.certificate.days_left} days), ${data.certificate.issuer === 'acme' ? 'from the public ACME CA' : 'from the server\'s CA'}` : 'none yet (pipe2me renew)'}` +
          (ord ? `; a public certificate is being ordered (${ord.state}, attempt ${ord.attempts}${ord.next_attempt ? `, next at ${ord.next_attempt}` : ''}${ord.last_error ? `: ${ord.last_error}` : ''})` : ''));
        lines.push(`  subdomain expires: ${s.expires ?? 'never'}`);
        return lines.join('\n');
      });
    });

  program
    .command('verify')
    .description('Ask the server whether it sees this pod online, and from which address. Exit 0 if online, 11 if not.')
    .addHelpText('after', `
Examples:
  pipe2me verify
  pipe2me verify --json             # online since when, from which address, the route`)
    .action(async (_o, cmd: Command) => {
      const gl = g(cmd);
      const out = new Output(gl);
      const f = new PodFiles(gl.dir);
      const s = f.read();
      const v = await apiClientFor(f, s).call<{ online: { since: string; from: string } | null; route: string; route_reason: string | null; direct_ipv4: string | null }>('GET', `/v1/subdomains/${s.id}`);
      out.result({ fqdn: s.fqdn, online: v.online, route: v.route, route_reason: v.route_reason, direct_ipv4: v.direct_ipv4 }, () =>
        v.online ? `${s.fqdn}: the server sees this pod online since ${v.online.since}, connecting from ${v.online.from}; route ${v.route}` : `${s.fqdn}: the server does not see this pod online`);
      if (!v.online) process.exitCode = ExitCode.unreachable;
    });

  program
    .command('renew')
    .description('Make a new TLS key and CSR and get a new certificate now (start does this by itself before expiry).')
    .addHelpText('after', `
Examples:
  pipe2me renew
  pipe2me renew && systemctl reload nginx     # and reload what serves the certificate`)
    .action(async (_o, cmd: Command) => {
      const gl = g(cmd);
      const out = new Output(gl);
      const f = new PodFiles(gl.dir);
      const s = f.read();
      const r = await requestCertificate(apiClientFor(f, s), f, s);
      const na = certificateNotAfter(f);
      out.result({ fqdn: s.fqdn, outcome: r, issuer: installedIssuer(f), not_after: na?.toISOString() ?? null, certificate: f.cert, fullchain: f.fullchain, key: f.tlsKey },
        () => r === 'pending'
          ? `${s.fqdn}: a new certificate is being ordered; the current one serves until \`pipe2me start\` installs it`
          : `${s.fqdn}: new certificate valid until ${na?.toISOString()} (${f.fullchain}, key ${f.tlsKey}); reload the services that use it` +
            (r === 'installed-pending' ? '\n  it is from the server\'s CA; the public one is being ordered and `pipe2me start` installs it when it is issued' : ''));
    });

  program
    .command('destroy')
    .description('Give the subdomain up: stop the tunnel, remove it on the server (its name and ports are freed, its certificate revoked), delete this directory.')
    .option('--keep-files', 'keep the tunnel set\'s directory')
    .addHelpText('after', `
Examples:
  pipe2me destroy
  pipe2me destroy --dir /var/lib/pipe2me-pod/lab --keep-files`)
    .action(async (o, cmd: Command) => {
      const gl = g(cmd);
      const out = new Output(gl);
      const f = new PodFiles(gl.dir);
      const s = f.read();
      await stop(gl.dir);
      let server: unknown = null;
      try {
        server = await apiClientFor(f, s).call('DELETE', `/v1/subdomains/${s.id}`);
      } catch (e) {
        if (e instanceof UnreachableError) throw e;
        // Already gone on the server (removed, expired): still clean up here.
        out.note(`the server says: ${(e as Error).message}`);
      }
      if (!o.keepFiles) fs.rmSync(gl.dir, { recursive: true, force: true });
      out.result({ destroyed: s.fqdn, server, files_removed: !o.keepFiles }, () => `${s.fqdn} destroyed${o.keepFiles ? '' : `; ${gl.dir} removed`}`);
    });

  program
    .command('install-service')
    .description('Install a systemd unit (Linux) or launchd job (macOS) that runs `pipe2me start` for this tunnel set at boot.')
    .option('--print', 'only print the unit/plist')
    .option('--no-enable', 'install but do not enable/start it')
    .addHelpText('after', `
Examples:
  pipe2me install-service
  pipe2me install-service --print   # print the unit (or plist), install nothing
  pipe2me install-service --dir /var/lib/pipe2me-pod/lab --no-enable`)
    .action(async (o, cmd: Command) => {
      const gl = g(cmd);
      const out = new Output(gl);
      if (o.print) {
        const svc = renderService(gl.dir);
        out.result(svc, () => svc.content);
        return;
      }
      const r = await installService(gl.dir, { enable: Boolean(o.enable), log: (m) => out.note(m) });
      out.result(r, () => `${r.kind} ${r.name} installed at ${r.path}${r.enabled ? ' and started' : ''}`);
    });

  return program;
}

/**
 * `--on-renew` takes the rest of the command line as the command to run, options and all (`--on-renew
 * caddy reload --config /etc/caddy/Caddyfile`): it is handed to the parser as one argument.
 */
export function foldOnRenew(argv: readonly string[]): string[] {
  const i = argv.indexOf('--on-renew');
  if (i < 0 || i === argv.length - 1) return [...argv];
  return [...argv.slice(0, i), '--on-renew', JSON.stringify(argv.slice(i + 1))];
}

export async function main(argv: readonly string[] = process.argv): Promise<void> {
  await runProgram(buildProgram(), foldOnRenew(argv));
}
