/** pipe2me-ctl: setting up, subdomains, planning and applying. */
import { Command, Option } from 'commander';
import { apply, planOnly } from '../apply/apply.js';
import { applyAdded } from '../server/entry-handoff.js';
import { planDiff } from '../apply/plan.js';
import { configFileFrom, DEFAULT_CONFIG_FILE } from '../config/load.js';
import { parseDuration } from '../config/duration.js';
import { initServer } from '../server/init.js';
import { rootConfigFile } from '../server/trial-root.js';
import { addSubdomainRecord, expireSweep, removeSubdomain, summarizeSubdomain, viewSubdomain } from '../server/subdomains.js';
import { eachSubdomainPage, requireSubdomain } from '../state/subdomains.js';
import { registerPodKey } from '../server/keys.js';
import * as fs from 'node:fs';
import { readSessions } from '../daemons/sessions.js';
import { InputError } from '../util/errors.js';
import { Output } from './output.js';
import { applyJson, applySummary, NO_SUBDOMAINS, SUBDOMAIN_COLUMNS, subdomainDetails, subdomainRow } from './format.js';
import type { SubdomainSummary } from '../server/subdomains.js';
import { globals, withServer, parseIntOption, parseSubdomainName, caPin } from './ctl-common.js';

export function registerSubdomainCommands(program: Command): void {
  program
    .command('init')
    .description('Create the configuration (if missing), directories, the tunnel user, the sshd host key, the rndc key, the state store and the CA. Safe to run again.')
    .option('--domain <domain>', 'domain pipe2me is authoritative for (for a new configuration)')
    .option('--ipv4 <address>', "the server's public IPv4 address (for a new configuration)")
    .option('--ipv6 <address>', "the server's public IPv6 address")
    .addOption(new Option('--dns <daemon>', 'DNS server to drive').choices(['bind', 'nsd']))
    .option('--ssh-port <port>', 'control ssh port of the tunnel sshd (default 4444)', parseIntOption('--ssh-port'))
    .option('--ports <first-last>', 'public port range (default 20000-29999)')
    .option('--api-port <port>', 'loopback port of the API (default 8470)', parseIntOption('--api-port'))
    .option('--ttl <seconds>', 'DNS TTL (default 60)', parseIntOption('--ttl'))
    .option('--secondary <name=ipv4...>', 'a secondary nameserver (repeatable), e.g. ns2.example.net=192.0.2.53')
    .option('--root <dir>', 'put every file pipe2me writes under DIR (trials, tests)')
    .option('--state-url <url>', 'keep the state in PostgreSQL: postgres://USER@HOST:5432/DATABASE (for a new configuration; default: SQLite in paths.state)')
    .option('--state-password-file <file>', 'the 0600 file holding that database\'s password')
    .option('--ca-pin <sha256:hex>', 'the CA root this machine must end with: on a relay joining a fleet\'s CA, the root in the store must be this one (the ca_pin the root\'s holder prints)')
    .addHelpText('after', `
Examples:
  pipe2me-ctl init --domain pipe.example.com --ipv4 198.51.100.10 --secondary ns2.example.net=192.0.2.53
  pipe2me-ctl init --domain pipe.example.com --ipv4 198.51.100.10 --state-url postgres://pipe2me@db1.example.net:5432/pipe2me --state-password-file /etc/pipe2me/db.password
  pipe2me-ctl init --domain pipe.example.com --ipv4 198.51.100.10 --ipv6 2001:db8::10 --dns nsd --ports 30000-30999
  pipe2me-ctl init --config /tmp/p2m/pipe2me.yml --root /tmp/p2m --domain pipe.test --ipv4 192.0.2.10   # a trial under /tmp/p2m
  pipe2me-ctl init --ca-pin sha256:3f9c…   # a relay joining a fleet's CA: the root's pin, from \`pipe2me-ctl ca init\` on its holder
  pipe2me-ctl init                  # again, later: creates only what is missing
An existing configuration is never overwritten: the flags only fill a new one.`)
    .action(async (o, cmd: Command) => {
      const g = globals(cmd);
      const out = new Output(g);
      let first: number | undefined;
      let last: number | undefined;
      if (o.ports) {
        const m = /^(\d+)-(\d+)$/.exec(o.ports);
        if (!m) throw new InputError('bad_option', `--ports must look like 20000-29999 (got ${JSON.stringify(o.ports)}).`);
        first = Number(m[1]);
        last = Number(m[2]);
      }
      const secondaries = ((o.secondary as string[] | undefined) ?? []).map((s) => {
        const [name, ipv4] = s.split('=');
        if (!name || !ipv4) throw new InputError('bad_option', `--secondary must look like ns2.example.net=192.0.2.53 (got ${JSON.stringify(s)}).`);
        return { name, ipv4 };
      });
      const report = await initServer({
        // With --root and no --config, the configuration lives under the root too.
        configFile: o.root && !g.config && !process.env.PIPE2ME_CONFIG ? rootConfigFile(o.root) : configFileFrom(g.config),
        domain: o.domain, ipv4: o.ipv4, ipv6: o.ipv6, dnsDaemon: o.dns, sshPort: o.sshPort,
        portsFirst: first, portsLast: last, apiPort: o.apiPort, ttl: o.ttl, secondaries, root: o.root,
        stateUrl: o.stateUrl, statePasswordFile: o.statePasswordFile, caPin: o.caPin,
        progress: (m) => out.progress(m),
      });
      out.result(report, () => [
        `pipe2me server initialised from ${report.config}`,
        ...report.steps.map((s) => `  ${s.status.padEnd(7)} ${s.what}${s.path ? ` (${s.path})` : ''}`),
        '',
        ...(report.config === DEFAULT_CONFIG_FILE
          ? ['Next: pipe2me-ctl apply, then start the daemons (systemd/, or `pipe2me-ctl daemons` shows their command lines)']
          : [`Next (every command takes this configuration): pipe2me-ctl -c ${report.config} apply`,
            `  then run the daemons in the foreground: pipe2me-ctl -c ${report.config} daemons --run`]),
      ].join('\n'));
    });

  program
    .command('add-subdomain')
    .description('Create a subdomain: a readable unique name, one public port per service, and a claim token for its pod.')
    .requiredOption('--ports <list>', 'services to publish, comma-separated, in order: http, https, tcp (e.g. http,https,tcp)')
    .option('--name <name>', 'ask for this name (one DNS label) instead of a generated one')
    .option('--expires <duration>', 'lifespan, e.g. 30d, 12h, 2w (default: the config\'s subdomains.default_lifespan)')
    .option('--passthrough', 'pass TLS on port 443 straight through to the pod\'s first https service (the server never sees plaintext)')
    .option('--no-apply', 'only record it; apply later (or let `pipe2me-ctl watch` do it)')
    .addHelpText('after', `
Examples:
  pipe2me-ctl add-subdomain --ports http,https
  pipe2me-ctl add-subdomain --ports https --name home-lab --expires 30d --passthrough
The claim token printed works once: the pod uses it with \`pipe2me setup --claim TOKEN\`.`)
    .action(async (o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const lifespan = o.expires ? parseDuration(o.expires, '--expires') : ctx.config.subdomains.defaultLifespanSeconds;
        const created = await addSubdomainRecord(ctx, {
          name: o.name,
          protocols: String(o.ports).split(',').map((s: string) => s.trim()).filter(Boolean),
          lifespanSeconds: lifespan,
          passthrough: Boolean(o.passthrough),
          withClaim: true,
        });
        const added = o.apply ? await applyAdded(ctx, created.record, (m) => out.progress(m)) : null;
        const applied = added?.report ?? null;
        const view = await viewSubdomain(ctx, created.record);
        out.result({
          ...view, claim_token: created.claimToken, api: `https://${ctx.config.server.fqdn}/`, ca_pin: caPin(ctx), applied: applied ? applyJson(applied) : null,
          entry_served_by: added?.entryServedBy ?? null,
        }, () =>
          [
            subdomainDetails(view),
            `  claim token (works once; give it to the pod): ${created.claimToken}`,
            `  on the pod: pipe2me setup --server https://${ctx.config.server.fqdn} --claim ${created.claimToken}${caPin(ctx) ? ` --ca-pin ${caPin(ctx)}` : ''}`,
            applied ? '' : '\nNot applied yet: run `pipe2me-ctl apply` (or keep `pipe2me-ctl watch` running).',
            applied ? applySummary(applied) : '',
            added?.entryServedBy === 'api' ? 'Its http(s) entry is answered by the API until nginx\'s maps take it in with the next apply (the watcher\'s, or the API\'s own).' : '',
          ].filter(Boolean).join('\n'));
      }));

  program
    .command('list')
    .description('List subdomains with their ports, status, route and whether the pod is online.')
    .addHelpText('after', `
Examples:
  pipe2me-ctl list
  pipe2me-ctl list --json           # every field, for scripts`)
    .action(async (_o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const sessions = readSessions(ctx.layout.sessionsDir);
        // A page of records at a time: at 50,000 subdomains the whole list held at once cost ~430 MB.
        await out.resultPages<SubdomainSummary>(async (emit) => eachSubdomainPage(ctx.db, (page) => emit(page.map((s) => summarizeSubdomain(s, sessions.get(s.name))))),
          { json: (v) => v, row: subdomainRow, header: SUBDOMAIN_COLUMNS, empty: NO_SUBDOMAINS });
      }));

  program
    .command('show')
    .description('Show one subdomain: ports, URLs, route and why, key, online state, router mappings, recent probes.')
    .argument('<name>', 'name or fully qualified name', parseSubdomainName)
    .addHelpText('after', `
Examples:
  pipe2me-ctl show calm-red-otter
  pipe2me-ctl show calm-red-otter.pipe.example.com --json`)
    .action(async (name: string, _o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const view = await viewSubdomain(ctx, await requireSubdomain(ctx.db, name));
        out.result(view, () => subdomainDetails(view));
      }));

  program
    .command('remove')
    .description('Remove a subdomain: its key stops working at once, its live sessions are cut, its ports are freed, and it leaves every configuration.')
    .argument('<name>', 'name or fully qualified name', parseSubdomainName)
    .option('--no-apply', 'only update the key index and the state; apply nginx and DNS later')
    .addHelpText('after', `
Examples:
  pipe2me-ctl remove calm-red-otter
  pipe2me-ctl remove home-lab --no-apply     # several removals, then one pipe2me-ctl apply`)
    .action(async (name: string, o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const r = await removeSubdomain(ctx, name, { apply: Boolean(o.apply), progress: (m) => out.progress(m) });
        out.result({ removed: r.removed, cut_sessions: r.cutSessions.length, revoked: r.revoked, applied: r.applied ? applyJson(r.applied) : null }, () =>
          [`removed ${r.removed.fqdn} (ports ${r.removed.ports.map((p) => p.port).join(', ')} are free again)`,
            `  live sessions cut: ${r.cutSessions.length}`,
            r.revoked.length ? `  certificates revoked: ${r.revoked.join(', ')}` : '',
            r.applied ? applySummary(r.applied) : 'Not applied to nginx and DNS yet: run `pipe2me-ctl apply`.'].filter(Boolean).join('\n'));
      }));

  program
    .command('set-key')
    .description("Register a pod's ssh public key (ed25519, or RSA of 3072 bits or more) for a subdomain. It works within a second (the key index is written at once; sshd needs no reload); a key it replaces is refused from then on and its live connections are cut.")
    .argument('<name>', 'name or fully qualified name', parseSubdomainName)
    .argument('<pubkey-file>', 'the .pub file ("-" for stdin)')
    .addHelpText('after', `
Examples:
  pipe2me-ctl set-key calm-red-otter /tmp/calm-red-otter.pub
  pipe2me-ctl set-key home-lab - < id_ed25519.pub`)
    .action(async (name: string, file: string, _o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const text = file === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(file, 'utf8');
        const s = await requireSubdomain(ctx.db, name);
        const { key, replaced, cutSessions, applied: r } = await registerPodKey(ctx, s, text, (units) => apply(ctx, { units, progress: (m) => out.progress(m) }));
        out.result({ name: s.name, algorithm: key.algorithm, fingerprint: key.fingerprint, bits: key.bits, replaced, cut_sessions: cutSessions, applied: applyJson(r) },
          () => [`${s.fqdn}: ${key.algorithm} key ${key.fingerprint} registered; it may listen on ports ${s.ports.map((p) => p.port).join(', ')} only.`,
            ...(replaced ? [`  it replaces ${replaced}; that key's live connections were cut: ${cutSessions}`] : [])].join('\n'));
      }));

  program
    .command('plan')
    .description('Show what `apply` would change, as a unified diff, touching nothing.')
    .addHelpText('after', `
Examples:
  pipe2me-ctl plan
  pipe2me-ctl plan --json           # changed files, reloads and the diff as one document
  pipe2me-ctl plan --full           # every per-pod file rendered whole: after patches, nothing to change`)
    .option('--full', 'render every per-pod file whole instead of patching the pods that changed')
    .action(async (o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const p = await planOnly(ctx, undefined, { full: Boolean(o.full) });
        const diff = planDiff(p);
        out.result({
          changed_units: p.changedUnits,
          files: p.changes.map((c) => ({ path: c.file.path, unit: c.file.unit, change: c.change, mode_changed: c.modeChanged })),
          reloads: p.reloads,
          zone_serial: p.serial,
          rendered: p.render.how,
          diff,
        }, () => (diff ? diff + '\n' + p.reloads.map((r) => `would reload: ${r.action} (${r.why})`).join('\n') : 'Nothing to change: every rendered file is up to date.'));
      }));

  program
    .command('apply')
    .description('Render every daemon\'s files from the state, check them with the daemons\' own checkers, swap them in atomically, reload what changed.')
    .option('--dry-run', 'render and compare only; write nothing, reload nothing')
    .option('--full', 'render every per-pod file whole from the state instead of patching the pods that changed since the last apply')
    .addHelpText('after', `
An apply patches the per-pod files (the key index, nginx's maps, the zone) with the pods that changed
since the last apply, and renders a file whole when it cannot prove the patch equal to a whole render
(the file is missing or was edited, the configuration changed). --full renders everything whole.

Examples:
  pipe2me-ctl apply
  pipe2me-ctl apply --dry-run
  pipe2me-ctl apply --full --json`)
    .action(async (o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        if (!o.dryRun) await expireSweep(ctx, { apply: false, progress: (m) => out.progress(m) });
        const r = await apply(ctx, { dryRun: Boolean(o.dryRun), full: Boolean(o.full), progress: (m) => out.progress(m) });
        out.result(applyJson(r), () => applySummary(r));
      }));

}
