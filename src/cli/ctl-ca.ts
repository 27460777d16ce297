/** pipe2me-ctl: the CA and secondary nameservers. */
import { Command, Option } from 'commander';
import { apply } from '../apply/apply.js';
import * as fs from 'node:fs';
import { InputError } from '../util/errors.js';
import { authority, hexFingerprint, initCa, publishTrust } from '../server/ca.js';
import { markRevoked } from '../state/certificates.js';
import { listAccounts, listOrders } from '../state/acme.js';
import { renderTemplate } from '../render/templates.js';
import { table } from './output.js';
import { applyJson } from './format.js';
import { parseIntOption, withServer } from './ctl-common.js';
import { isoSeconds } from '../util/time.js';

export function registerCaCommands(program: Command): void {
  program
    .command('secondary-config')
    .description('Print the configuration of a secondary nameserver (NSD or BIND) that follows this server\'s zone by NOTIFY and AXFR. Add the secondary to dns.secondaries first, so that the primary notifies it and allows its transfers.')
    .addOption(new Option('--daemon <daemon>', 'the secondary\'s DNS server').choices(['nsd', 'bind']).default('nsd'))
    .option('--dir <dir>', 'its working directory (zone copy, pid file)', '/var/lib/pipe2me-secondary')
    .option('--listen <ipv4>', 'its address (default: the first of dns.secondaries)')
    .addHelpText('after', `
Examples:
  pipe2me-ctl secondary-config > nsd.conf
  pipe2me-ctl secondary-config --daemon bind --dir /var/cache/pipe2me-secondary --listen 192.0.2.53 > named.conf
Copy the file to the secondary machine and start its NSD or BIND with it.`)
    .action(async (o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const listen = o.listen ?? ctx.config.dns.secondaries[0]?.ipv4;
        if (!listen) throw new InputError('bad_option', 'No secondary configured.', { hint: 'Add one to dns.secondaries in pipe2me.yml (and apply), or pass --listen.' });
        const text = renderTemplate(o.daemon === 'nsd' ? 'secondary/nsd.conf.hbs' : 'secondary/named.conf.hbs', {
          domain: ctx.config.domain, primary: ctx.config.dns.primary.ipv4, listen, dir: o.dir, responsesPerSecond: ctx.config.dns.responsesPerSecond,
        });
        out.result({ daemon: o.daemon, config: text }, () => text);
      }));

  const caCmd = program.command('ca').description('The certificate authority that signs pods\' certificates and the server\'s own.')
    .addHelpText('after', `
Examples:
  pipe2me-ctl ca list
  pipe2me-ctl ca show 5C1F3A9B2E7D4086
  pipe2me-ctl ca revoke 5C1F3A9B2E7D4086 --reason keyCompromise`);
  caCmd
    .command('init')
    .description('Create the CA (a self-signed root restricted to the domain), publish its certificate and CRL. `init` does this too; safe to run again.')
    .addHelpText('after', `
Example:
  pipe2me-ctl ca init               # prints the --ca-pin pods use on first contact`)
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
    .addHelpText('after', `
Examples:
  pipe2me-ctl ca install-intermediate --cert inter.pem --key inter.key --root root.pem
  pipe2me-ctl ca install-intermediate --cert inter.pem --key inter.key --root root.pem --chain more.pem`)
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
    .addHelpText('after', `
Examples:
  pipe2me-ctl ca list
  pipe2me-ctl ca list --json`)
    .action(async (_o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const list = await authority(ctx).list();
        out.result(list.map((e) => ({ serial: e.serial, status: e.status, subject: e.subject, expires: e.expires.toISOString(), revoked: e.revokedAt?.toISOString() ?? null, reason: e.revocationReason ?? null })),
          () => list.length === 0 ? 'No certificates issued yet.' : table(list.map((e) => [e.serial, e.status, e.commonName ?? e.subject, e.expires.toISOString(), e.revokedAt ? `${e.revokedAt.toISOString()} ${e.revocationReason ?? ''}` : '']), ['SERIAL', 'S', 'NAME', 'EXPIRES', 'REVOKED']));
      }));
  caCmd
    .command('orders')
    .description('Orders at the ACME CA (ca.issuer: acme): for which names, their state, attempts, the next attempt and the last error — newest first.')
    .option('--limit <n>', 'how many', parseIntOption('--limit'), 50)
    .addHelpText('after', `
Examples:
  pipe2me-ctl ca orders
  pipe2me-ctl ca orders --limit 10 --json`)
    .action(async (o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const list = await listOrders(ctx.db, o.limit);
        const iso = isoSeconds;
        out.result(list.map((x) => ({ id: x.id, names: x.names, purpose: x.purpose, state: x.state, attempts: x.attempts, next_attempt: x.state === 'queued' ? iso(x.nextAttemptAt) : null, last_error: x.lastError, certificate: x.certSerial, created: iso(x.createdAt), relay: x.relay, worked_by: x.workedBy })),
          () => list.length === 0 ? (ctx.config.ca.issuer === 'acme' ? 'No ACME orders yet.' : 'No ACME orders: ca.issuer is private.') : table(
            list.map((x) => [x.id, x.names.join(','), x.state, String(x.attempts), x.state === 'queued' ? iso(x.nextAttemptAt) : '-', x.workedBy ?? x.relay ?? '-', (x.lastError ?? '').slice(0, 80)]),
            ['ORDER', 'NAMES', 'STATE', 'TRIES', 'NEXT', 'RELAY', 'LAST ERROR']));
      }));
  caCmd
    .command('accounts')
    .description('The ACME accounts in the state store: one per relay key and CA (each key is a file on its relay, 0600, and never leaves it).')
    .addHelpText('after', `
Examples:
  pipe2me-ctl ca accounts
  pipe2me-ctl ca accounts --json`)
    .action(async (_o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const list = await listAccounts(ctx.db);
        out.result(list.map((a) => ({ relay: a.relay, directory_url: a.directoryUrl, url: a.url, email: a.email, key_sha256: a.keySha256, created: isoSeconds(a.createdAt) })),
          () => list.length === 0 ? 'No ACME account yet (one is registered at the first order).' : table(
            list.map((a) => [a.relay, a.directoryUrl, a.url, a.keySha256.slice(0, 16)]), ['RELAY', 'DIRECTORY', 'ACCOUNT', 'KEY SHA256']));
      }));
  caCmd
    .command('show')
    .description('One certificate: names, validity, fingerprint, status, PEM.')
    .argument('<serial>', 'serial (hex) from `ca list`')
    .addHelpText('after', `
Example:
  pipe2me-ctl ca show 5C1F3A9B2E7D4086`)
    .action(async (serial: string, _o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const c = await authority(ctx).show(serial);
        out.result({ serial: c.serial, status: c.status, subject: c.subject, issuer: c.issuer, names: c.dnsNames, not_before: c.notBefore.toISOString(), not_after: c.notAfter.toISOString(), sha256: hexFingerprint(c.sha256Fingerprint), key: c.key, revoked: c.revokedAt?.toISOString() ?? null, pem: c.certPem }, () =>
          [`serial ${c.serial} (${c.status})`, `  subject ${c.subject}`, `  issuer  ${c.issuer}`, `  names   ${c.dnsNames.join(', ')}`, `  valid   ${c.notBefore.toISOString()} .. ${c.notAfter.toISOString()}`,
            `  key     ${c.key}`, `  sha256  ${hexFingerprint(c.sha256Fingerprint)}`, c.revokedAt ? `  revoked ${c.revokedAt.toISOString()} ${c.revocationReason ?? ''}` : '', c.certPem].filter(Boolean).join('\n'));
      }));
  caCmd
    .command('revoke')
    .description('Revoke a certificate; the CRL nginx serves is regenerated at once.')
    .argument('<serial>', 'serial (hex) from `ca list`')
    .addOption(new Option('--reason <reason>', 'CRL reason').choices(['unspecified', 'keyCompromise', 'superseded', 'cessationOfOperation', 'affiliationChanged']).default('unspecified'))
    .addHelpText('after', `
Examples:
  pipe2me-ctl ca revoke 5C1F3A9B2E7D4086
  pipe2me-ctl ca revoke 5C1F3A9B2E7D4086 --reason keyCompromise`)
    .action(async (serial: string, o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const r = await authority(ctx).revoke(serial, o.reason);
        await markRevoked(ctx.db, r.serial, o.reason);
        await publishTrust(ctx);
        out.result({ serial: r.serial, reason: o.reason, crl_revoked: r.crl.revokedSerials.length }, () => `revoked ${r.serial} (${o.reason}); the CRL now lists ${r.crl.revokedSerials.length} certificate(s)`);
      }));

}
