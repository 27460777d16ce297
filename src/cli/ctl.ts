/**
 * pipe2me-ctl: the operator's tool on the server. Every command that reports takes --json; errors
 * go through one handler (runMain) and leave with a documented exit code.
 */
import { Command, Option } from 'commander';
import chokidar from 'chokidar';
import { apply, planOnly } from '../apply/apply.js';
import { planDiff } from '../apply/plan.js';
import { configFileFrom, loadConfig } from '../config/load.js';
import { parseDuration } from '../config/duration.js';
import { closeServer, openServer, type ServerContext } from '../server/context.js';
import { initServer } from '../server/init.js';
import { addSubdomainRecord, expireSweep, removeSubdomain, viewSubdomain } from '../server/subdomains.js';
import { listSubdomains, requireSubdomain, setSshKey } from '../state/subdomains.js';
import { parsePublicKey } from '../ssh/pubkey.js';
import * as fs from 'node:fs';
import { readSessions } from '../daemons/sessions.js';
import { layout } from '../render/layout.js';
import { ConflictError, InputError, isPipe2meError } from '../util/errors.js';
import { createToken, listTokens, revokeToken } from '../state/tokens.js';
import type { TokenRecord } from '../state/types.js';
import { createApi } from '../api/server.js';
import { probeAll } from '../probe/run.js';
import { authority, hexFingerprint, initCa, publishTrust } from '../server/ca.js';
import { markRevoked } from '../state/certificates.js';
import { renderTemplate } from '../render/templates.js';
import { readIfExists } from '../util/fsx.js';
import { X509Certificate } from 'node:crypto';
import { formatDuration } from '../config/duration.js';
import { EXIT_CODES_HELP, Output, isoTime, runMain, table, type GlobalOptions } from './output.js';
import { applyJson, applySummary, subdomainDetails, subdomainTable } from './format.js';

interface Globals extends GlobalOptions {
  config?: string;
}

function globals(cmd: Command): Globals {
  return cmd.optsWithGlobals() as Globals;
}

async function withServer<T>(cmd: Command, fn: (ctx: ServerContext, out: Output) => Promise<T>): Promise<T> {
  const g = globals(cmd);
  const ctx = openServer(configFileFrom(g.config));
  try {
    return await fn(ctx, new Output(g));
  } finally {
    closeServer(ctx);
  }
}

function parseIntOption(name: string) {
  return (v: string) => {
    if (!/^\d+$/.test(v)) throw new InputError('bad_option', `${name} must be a whole number (got ${JSON.stringify(v)}).`);
    return Number(v);
  };
}

export function buildProgram(): Command {
  const program = new Command('pipe2me-ctl');
  program
    .description('Operate a pipe2me server: subdomains for pods behind NAT, rendered into sshd, nginx and BIND/NSD configuration.')
    .option('-c, --config <file>', 'server configuration (default: $PIPE2ME_CONFIG or /etc/pipe2me/pipe2me.yml)')
    .option('--json', 'print results as JSON on stdout (errors too: {"error": {...}})')
    .option('-q, --quiet', 'no progress lines on stderr')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .addHelpText('after', `
Typical first steps:
  pipe2me-ctl init --domain pipe.example.com --ipv4 198.51.100.10   # config, directories, keys, state
  pipe2me-ctl add-subdomain --ports http,https                      # a name, two public ports, a claim token
  pipe2me-ctl list                                                  # what exists, who is online
  pipe2me-ctl plan                                                  # what apply would change, as a diff
  pipe2me-ctl apply                                                 # render, check, swap, reload
${EXIT_CODES_HELP}`);

  program
    .command('init')
    .description('Create the configuration (if missing), directories, the tunnel user, the sshd host key, the rndc key and the state store. Safe to run again.')
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
    .addHelpText('after', '\nAn existing configuration is never overwritten: the flags only fill a new one.')
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
        configFile: configFileFrom(g.config),
        domain: o.domain, ipv4: o.ipv4, ipv6: o.ipv6, dnsDaemon: o.dns, sshPort: o.sshPort,
        portsFirst: first, portsLast: last, apiPort: o.apiPort, ttl: o.ttl, secondaries, root: o.root,
        progress: (m) => out.progress(m),
      });
      out.result(report, () => [
        `pipe2me server initialised from ${report.config}`,
        ...report.steps.map((s) => `  ${s.status.padEnd(7)} ${s.what}${s.path ? ` (${s.path})` : ''}`),
        '',
        'Next: pipe2me-ctl add-subdomain --ports http,https   then   pipe2me-ctl apply',
      ].join('\n'));
    });

  program
    .command('check-config')
    .description('Validate the configuration file and exit: 0 if it is valid, 3 with every problem otherwise. Touches nothing (no state store needed), so tools can check a file before putting it in place.')
    .addHelpText('after', '\nExample:\n  pipe2me-ctl --config /tmp/new-pipe2me.yml check-config')
    .action(async (_o, cmd: Command) => {
      const g = globals(cmd);
      const file = configFileFrom(g.config);
      const c = loadConfig(file);
      new Output(g).result({ config: file, valid: true, domain: c.domain, dns_daemon: c.dns.daemon }, () => `${file} is valid (domain ${c.domain}, DNS by ${c.dns.daemon})`);
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
        const created = addSubdomainRecord(ctx, {
          name: o.name,
          protocols: String(o.ports).split(',').map((s: string) => s.trim()).filter(Boolean),
          lifespanSeconds: lifespan,
          passthrough: Boolean(o.passthrough),
          withClaim: true,
        });
        const applied = o.apply ? await apply(ctx, { progress: (m) => out.progress(m) }) : null;
        const view = viewSubdomain(ctx, created.record);
        out.result({ ...view, claim_token: created.claimToken, api: `https://${ctx.config.server.fqdn}/`, ca_pin: caPin(ctx), applied: applied ? applyJson(applied) : null }, () =>
          [
            subdomainDetails(view),
            `  claim token (works once; give it to the pod): ${created.claimToken}`,
            `  on the pod: pipe2me setup --server https://${ctx.config.server.fqdn} --claim ${created.claimToken}${caPin(ctx) ? ` --ca-pin ${caPin(ctx)}` : ''}`,
            applied ? '' : '\nNot applied yet: run `pipe2me-ctl apply` (or keep `pipe2me-ctl watch` running).',
            applied ? applySummary(applied) : '',
          ].filter(Boolean).join('\n'));
      }));

  program
    .command('list')
    .description('List subdomains with their ports, status, route and whether the pod is online.')
    .action(async (_o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const sessions = readSessions(ctx.layout.sessionsDir);
        const views = listSubdomains(ctx.db).map((s) => viewSubdomain(ctx, s, sessions));
        out.result(views, () => subdomainTable(views));
      }));

  program
    .command('show')
    .description('Show one subdomain: ports, URLs, route, key, online state.')
    .argument('<name>', 'name or fully qualified name')
    .action(async (name: string, _o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const view = viewSubdomain(ctx, requireSubdomain(ctx.db, name));
        out.result(view, () => subdomainDetails(view));
      }));

  program
    .command('remove')
    .description('Remove a subdomain: its key stops working at once, its live sessions are cut, its ports are freed, and it leaves every configuration.')
    .argument('<name>', 'name or fully qualified name')
    .option('--no-apply', 'only update authorized_keys and the state; apply nginx and DNS later')
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
    .description("Register a pod's ssh public key (ed25519, or RSA of 3072 bits or more) for a subdomain. It works within a second: authorized_keys is rewritten at once; sshd needs no reload.")
    .argument('<name>', 'subdomain name')
    .argument('<pubkey-file>', 'the .pub file ("-" for stdin)')
    .action(async (name: string, file: string, _o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const text = file === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(file, 'utf8');
        const s = requireSubdomain(ctx.db, name);
        const key = parsePublicKey(text);
        setSshKey(ctx.db, s.id, key);
        const r = await apply(ctx, { units: ['keys'], progress: (m) => out.progress(m) });
        out.result({ name: s.name, algorithm: key.algorithm, fingerprint: key.fingerprint, bits: key.bits, applied: applyJson(r) },
          () => `${s.fqdn}: ${key.algorithm} key ${key.fingerprint} registered; it may listen on ports ${s.ports.map((p) => p.port).join(', ')} only.`);
      }));

  program
    .command('plan')
    .description('Show what `apply` would change, as a unified diff, touching nothing.')
    .action(async (_o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const p = planOnly(ctx);
        const diff = planDiff(p);
        out.result({
          changed_units: p.changedUnits,
          files: p.changes.map((c) => ({ path: c.file.path, unit: c.file.unit, change: c.change, mode_changed: c.modeChanged })),
          reloads: p.reloads,
          zone_serial: p.serial,
          diff,
        }, () => (diff ? diff + '\n' + p.reloads.map((r) => `would reload: ${r.action} (${r.why})`).join('\n') : 'Nothing to change: every rendered file is up to date.'));
      }));

  program
    .command('apply')
    .description('Render every daemon\'s files from the state, check them with the daemons\' own checkers, swap them in atomically, reload what changed.')
    .option('--dry-run', 'render and compare only; write nothing, reload nothing')
    .action(async (o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        if (!o.dryRun) await expireSweep(ctx, { apply: false, progress: (m) => out.progress(m) });
        const r = await apply(ctx, { dryRun: Boolean(o.dryRun), progress: (m) => out.progress(m) });
        out.result(applyJson(r), () => applySummary(r));
      }));

  program
    .command('watch')
    .description('Keep running: re-apply when the configuration or the state changes (debounced), and expire subdomains on time.')
    .option('--debounce <ms>', 'wait this long after the last change', parseIntOption('--debounce'), 300)
    .option('--expiry-interval <seconds>', 'how often to look for expired subdomains', parseIntOption('--expiry-interval'), 5)
    .action(async (o, cmd: Command) => {
      const g = globals(cmd);
      const out = new Output(g);
      const file = configFileFrom(g.config);
      let ctx = openServer(file);
      const log = (m: string) => process.stderr.write(`${new Date().toISOString()} ${m}\n`);
      let timer: NodeJS.Timeout | undefined;
      let running: Promise<void> = Promise.resolve();
      let configChanged = false;
      const cycle = async () => {
        try {
          if (configChanged) {
            configChanged = false;
            try {
              const c = loadConfig(file);
              closeServer(ctx);
              ctx = openServer(file);
              log(`configuration reloaded (${c.domain})`);
            } catch (e) {
              log(`configuration not reloaded, keeping the last good one: ${(e as Error).message}`);
            }
          }
          await expireSweep(ctx, { apply: false, progress: log });
          const r = await apply(ctx, { progress: log });
          if (r.plan.changedUnits.length) log(applySummary(r));
        } catch (e) {
          log(`apply failed: ${(e as Error).message}${isPipe2meError(e) && e.hint ? ` (hint: ${e.hint})` : ''}`);
        }
      };
      const schedule = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          running = running.then(cycle);
        }, o.debounce);
      };
      const L = layout(ctx.config);
      const watcher = chokidar.watch([file, L.stateDb, L.stateDb + '-wal'], { ignoreInitial: true, awaitWriteFinish: false });
      watcher.on('all', (_event, p) => {
        if (p === file) configChanged = true;
        schedule();
      });
      const expiry = setInterval(() => {
        running = running.then(async () => {
          try {
            await expireSweep(ctx, { apply: true, progress: log });
          } catch (e) {
            log(`expiry sweep failed: ${(e as Error).message}`);
          }
        });
      }, o.expiryInterval * 1000);
      out.note(`watching ${file} and ${L.stateDb}; Ctrl-C to stop`);
      running = running.then(cycle);
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      clearInterval(expiry);
      clearTimeout(timer);
      await watcher.close();
      await running;
      closeServer(ctx);

    });

  program
    .command('probe')
    .description('Test every pod\'s direct route (its router mappings) and point its DNS name at the router when every port answers as that pod, at the server otherwise. Run every minute by a systemd timer or cron.')
    .option('--name <name...>', 'probe only these subdomains')
    .option('--no-apply', 'decide and record, but do not rewrite the zone')
    .action(async (o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const r = await probeAll(ctx, { names: o.name, progress: (m) => out.progress(m), applyDns: Boolean(o.apply) });
        out.result(r, () => {
          if (r.probed === 0) return 'Nothing to probe: no active subdomains.';
          const lines = [`probed ${r.probed} subdomain(s) in ${r.durationMs} ms: ${r.direct} direct, ${r.probed - r.direct} through the server${r.changed.length ? `; changed: ${r.changed.join(', ')}` : ''}`];
          for (const x of r.results) lines.push(`  ${x.name.padEnd(24)} ${x.route.padEnd(6)} ${x.changed ? '(changed) ' : ''}${x.reason}`);
          if (r.applied) lines.push(`  zone rewritten once (serial ${r.applied.zone_serial})`);
          return lines.join('\n');
        });
      }));

  program
    .command('secondary-config')
    .description('Print the configuration of a secondary nameserver (NSD or BIND) that follows this server\'s zone by NOTIFY and AXFR. Add the secondary to dns.secondaries first, so that the primary notifies it and allows its transfers.')
    .addOption(new Option('--daemon <daemon>', 'the secondary\'s DNS server').choices(['nsd', 'bind']).default('nsd'))
    .option('--dir <dir>', 'its working directory (zone copy, pid file)', '/var/lib/pipe2me-secondary')
    .option('--listen <ipv4>', 'its address (default: the first of dns.secondaries)')
    .action(async (o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const listen = o.listen ?? ctx.config.dns.secondaries[0]?.ipv4;
        if (!listen) throw new InputError('bad_option', 'No secondary configured.', { hint: 'Add one to dns.secondaries in pipe2me.yml (and apply), or pass --listen.' });
        const text = renderTemplate(o.daemon === 'nsd' ? 'secondary/nsd.conf.hbs' : 'secondary/named.conf.hbs', {
          domain: ctx.config.domain, primary: ctx.config.dns.primary.ipv4, listen, dir: o.dir,
        });
        out.result({ daemon: o.daemon, config: text }, () => text);
      }));

  const caCmd = program.command('ca').description('The certificate authority that signs pods\' certificates and the server\'s own.');
  caCmd
    .command('init')
    .description('Create the CA (a self-signed root restricted to the domain), publish its certificate and CRL. `init` does this too; safe to run again.')
    .action(async (_o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const r = await initCa(ctx);
        out.result({ created: r.created, root_sha256: r.sha256, ca_pin: `sha256:${r.sha256}` }, () =>
          `CA ${r.created ? 'created' : 'already there'}; pods pin it with --ca-pin sha256:${r.sha256}`);
      }));
  caCmd
    .command('install-intermediate')
    .description('Sign with an intermediate issued by a real CA instead of the self-signed root. Checks that key and certificate match, that it is a CA, valid now, and that its chain to ROOT verifies; then re-issues the server\'s certificates.')
    .requiredOption('--cert <pem>', 'the intermediate certificate')
    .requiredOption('--key <pem>', 'its private key (unencrypted PEM)')
    .requiredOption('--root <pem>', 'the real CA\'s root certificate (what clients trust)')
    .option('--chain <pem>', 'certificates between the intermediate and the root, if any')
    .action(async (o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const read = (f: string, what: string) => {
          try {
            return fs.readFileSync(f, 'utf8');
          } catch (e) {
            throw new InputError('bad_option', `Cannot read ${what} ${f}: ${(e as Error).message}`);
          }
        };
        const r = await authority(ctx).installIntermediate({ certPem: read(o.cert, '--cert'), keyPem: read(o.key, '--key'), rootPem: read(o.root, '--root'), ...(o.chain ? { chainPem: read(o.chain, '--chain') } : {}) });
        // Everything the old root signed must be re-issued: the server's certificates now, pods at their next renew.
        for (const f of [ctx.layout.serverCert, ctx.layout.wildcardCert]) fs.rmSync(f, { force: true });
        const applied = await apply(ctx, { progress: (m) => out.progress(m) });
        out.result({ subject: r.subject, issuer: r.issuer, not_after: r.notAfter.toISOString(), sha256: hexFingerprint(r.sha256Fingerprint), retired_to: r.retiredTo, applied: applyJson(applied) }, () =>
          [`intermediate ${r.subject} (issued by ${r.issuer}, valid until ${r.notAfter.toISOString()}) now signs`,
            `  the previous signing key was kept in ${r.retiredTo}`,
            '  server certificates re-issued; pods get chains to the new root at their next `pipe2me renew`'].join('\n'));
      }));
  caCmd
    .command('list')
    .description('Every certificate the CA issued, with its status (V valid, R revoked, E expired).')
    .action(async (_o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const list = authority(ctx).list();
        out.result(list.map((e) => ({ serial: e.serial, status: e.status, subject: e.subject, expires: e.expires.toISOString(), revoked: e.revokedAt?.toISOString() ?? null, reason: e.revocationReason ?? null })),
          () => list.length === 0 ? 'No certificates issued yet.' : table(list.map((e) => [e.serial, e.status, e.commonName ?? e.subject, e.expires.toISOString(), e.revokedAt ? `${e.revokedAt.toISOString()} ${e.revocationReason ?? ''}` : '']), ['SERIAL', 'S', 'NAME', 'EXPIRES', 'REVOKED']));
      }));
  caCmd
    .command('show')
    .description('One certificate: names, validity, fingerprint, status, PEM.')
    .argument('<serial>', 'serial (hex) from `ca list`')
    .action(async (serial: string, _o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const c = authority(ctx).show(serial);
        out.result({ serial: c.serial, status: c.status, subject: c.subject, issuer: c.issuer, names: c.dnsNames, not_before: c.notBefore.toISOString(), not_after: c.notAfter.toISOString(), sha256: hexFingerprint(c.sha256Fingerprint), key: c.key, revoked: c.revokedAt?.toISOString() ?? null, pem: c.certPem }, () =>
          [`serial ${c.serial} (${c.status})`, `  subject ${c.subject}`, `  issuer  ${c.issuer}`, `  names   ${c.dnsNames.join(', ')}`, `  valid   ${c.notBefore.toISOString()} .. ${c.notAfter.toISOString()}`,
            `  key     ${c.key}`, `  sha256  ${hexFingerprint(c.sha256Fingerprint)}`, c.revokedAt ? `  revoked ${c.revokedAt.toISOString()} ${c.revocationReason ?? ''}` : '', c.certPem].filter(Boolean).join('\n'));
      }));
  caCmd
    .command('revoke')
    .description('Revoke a certificate; the CRL nginx serves is regenerated at once.')
    .argument('<serial>', 'serial (hex) from `ca list`')
    .addOption(new Option('--reason <reason>', 'CRL reason').choices(['unspecified', 'keyCompromise', 'superseded', 'cessationOfOperation', 'affiliationChanged']).default('unspecified'))
    .action(async (serial: string, o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const r = await authority(ctx).revoke(serial, o.reason);
        markRevoked(ctx.db, r.serial, o.reason);
        await publishTrust(ctx);
        out.result({ serial: r.serial, reason: o.reason, crl_revoked: r.crl.revokedSerials.length }, () => `revoked ${r.serial} (${o.reason}); the CRL now lists ${r.crl.revokedSerials.length} certificate(s)`);
      }));

  const token = program.command('token').description('Tokens: quota classes that let pods create their own subdomains through the API.');
  token
    .command('create')
    .description('Create a token. The secret is shown once; the state keeps only its hash.')
    .option('--label <text>', 'what it is for (shown in `token list`)', '')
    .option('--max-ports <n>', 'how many services a subdomain made with it may have', parseIntOption('--max-ports'), 4)
    .option('--lifespan <duration>', 'how long those subdomains live, e.g. 30d (default: forever)')
    .option('--extendable', 'pods may extend their subdomain by another lifespan')
    .option('--single-use', 'the token works for one subdomain only')
    .action(async (o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        if (o.maxPorts < 1) throw new InputError('bad_option', '--max-ports must be at least 1.');
        if (/[\u0000-\u001f]/.test(o.label) || o.label.length > 200) throw new InputError('bad_option', '--label must be one line of at most 200 characters.');
        const { record, secret } = createToken(ctx.db, {
          label: o.label, maxPorts: Math.min(o.maxPorts, ctx.config.ports.maxPerSubdomain),
          lifespanSeconds: o.lifespan ? parseDuration(o.lifespan, '--lifespan') : null,
          extendable: Boolean(o.extendable), singleUse: Boolean(o.singleUse),
        });
        const pin = caPin(ctx);
        const setup = `pipe2me setup --server https://${ctx.config.server.fqdn} --token ${secret}${pin ? ` --ca-pin ${pin}` : ''} --protocols http,https`;
        out.result({ ...tokenJson(record), token: secret, ca_pin: pin, setup_command: setup }, () =>
          [`token ${record.id} created${record.label ? ` (${record.label})` : ''}: up to ${record.maxPorts} ports, ` +
            `${record.lifespanSeconds ? `lifespan ${formatDuration(record.lifespanSeconds)}${record.extendable ? ', extendable' : ''}` : 'no expiry'}` +
            `${record.singleUse ? ', single use' : ''}`,
          `  secret (shown once): ${secret}`,
          `  on a pod: ${setup}`].join('\n'));
      }));
  token
    .command('list')
    .description('List tokens (never their secrets).')
    .action(async (_o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const list = listTokens(ctx.db);
        out.result(list.map(tokenJson), () => list.length === 0 ? 'No tokens. Create one: pipe2me-ctl token create --max-ports 4 --lifespan 30d' : table(
          list.map((t) => [t.id, t.label || '-', String(t.maxPorts), t.lifespanSeconds ? formatDuration(t.lifespanSeconds) : 'forever', t.extendable ? 'yes' : 'no',
            t.singleUse ? 'yes' : 'no', String(t.uses), t.revokedAt ? `revoked ${isoTime(t.revokedAt)}` : 'active']),
          ['ID', 'LABEL', 'PORTS', 'LIFESPAN', 'EXTEND', 'ONCE', 'USES', 'STATE']));
      }));
  token
    .command('revoke')
    .description('Revoke a token: it creates nothing more. Subdomains already made with it stay.')
    .argument('<id>', 'the token id from `token list`')
    .action(async (id: string, _o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const t = revokeToken(ctx.db, id);
        out.result(tokenJson(t), () => `token ${t.id} revoked`);
      }));

  program
    .command('serve')
    .description("Run the API pods talk to (setup, keys, certificates, mappings, status), on loopback behind nginx's TLS.")
    .option('--listen <host:port>', 'where to listen (default 127.0.0.1:<http.api_port>)')
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
        const api = createApi(ctx, { host, port });
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

  return program;
}

function tokenJson(t: TokenRecord) {
  return {
    id: t.id, label: t.label, max_ports: t.maxPorts, lifespan_seconds: t.lifespanSeconds, extendable: t.extendable,
    single_use: t.singleUse, uses: t.uses, created: isoTime(t.createdAt), revoked: t.revokedAt ? isoTime(t.revokedAt) : null,
  };
}

/** sha256:<hex> of the CA certificate, for pods to pin on first contact. */
function caPin(ctx: ServerContext): string | null {
  const pem = readIfExists(ctx.layout.caCertFile);
  if (!pem) return null;
  return 'sha256:' + new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();
}

export async function main(argv = process.argv): Promise<void> {
  const program = buildProgram();
  await runMain(async () => {
    await program.parseAsync(argv);
  }, () => argv.includes('--json'));
}
