/** pipe2me-ctl relay: the relays of the fleet as the shared store sees them. */
import type { Command } from 'commander';
import { listRelays, relaySchemas, sessionsPerRelay, setRelayState } from '../state/relays.js';
import { schemaVersion } from '../state/db.js';
import { ConflictError, DaemonError, InputError, NotFoundError } from '../util/errors.js';
import { parseIntOption } from './ctl-common.js';
import type { ServerContext } from '../server/context.js';
import { now } from '../state/types.js';
import { table } from './output.js';
import { approveRelayCa } from '../server/relays/ca.js';
import { authority, hexFingerprint } from '../server/ca.js';
import { withServer } from './ctl-common.js';

export function registerRelayCommands(program: Command): void {
  const relay = program.command('relay')
    .description('The relays of the fleet (with relays: in the configuration): which are up, which one this machine is, how many pods each holds.')
    .addHelpText('after', `
Examples:
  pipe2me-ctl relay list
  pipe2me-ctl relay drain relay-b      # its pods move to the other relays; then stop it
  pipe2me-ctl relay undrain relay-b    # it takes pods again
  pipe2me-ctl relay approve relay-b --key-sha256 3f9c…   # on the relay that made the CA: relay-b signs with a key of its own`);

  relay.command('list')
    .description('Every configured relay: its addresses, its state in the store (up, down, draining, or never started), its lease and how many pods hold their session there.')
    .addHelpText('after', `
Examples:
  pipe2me-ctl relay list
  pipe2me-ctl relay list --json   # {"self", "store_schema", "relays": [{"name", "ipv4", "ipv6", "state", "lease_left_s", "sessions", "host_key", "schema", "behind"}]}`)
    .action(async (_o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const t = now();
        const rows = new Map((await listRelays(ctx.db)).map((r) => [r.name, r]));
        const sessions = await sessionsPerRelay(ctx.db, t);
        // Which pipe2me each relay runs (the schema version its code knows): during a rolling upgrade the
        // store is at the newest one's, and the relays still on an older release are behind.
        const schemas = await relaySchemas(ctx.db);
        const storeSchema = await schemaVersion(ctx.db);
        const relays = ctx.config.relays.list.map((r) => {
          const row = rows.get(r.name);
          const schema = schemas.get(r.name) ?? null;
          return {
            name: r.name, ipv4: r.ipv4, ipv6: r.ipv6,
            state: row?.state ?? 'never started',
            lease_left_s: row ? Math.max(0, row.leaseUntil - t) : null,
            sessions: sessions.get(r.name) ?? 0,
            host_key: row?.hostKey ?? null,
            schema,
            behind: schema !== null && schema < storeSchema,
          };
        });
        const behind = relays.filter((r) => r.behind && r.state !== 'down');
        out.result({ self: ctx.config.relays.self, relayed: ctx.config.relays.relayed, store_schema: storeSchema, relays }, () => [
          table(
            relays.map((r) => [r.name + (r.name === ctx.config.relays.self ? ' (this one)' : ''), r.ipv4, r.state, r.lease_left_s === null ? '-' : `${r.lease_left_s} s`, String(r.sessions), r.schema === null ? '-' : `${r.schema}${r.behind ? ' (behind)' : ''}`]),
            ['RELAY', 'IPV4', 'STATE', 'LEASE', 'PODS', 'SCHEMA'],
          ),
          behind.length ? `\nThe store is at schema version ${storeSchema}; ${behind.map((r) => r.name).join(', ')} still run${behind.length === 1 ? 's' : ''} an older pipe2me: upgrade ${behind.length === 1 ? 'it' : 'them'} (they keep serving meanwhile).` : '',
        ].filter(Boolean).join('\n'));
      }));

  relay.command('drain <name>')
    .description('Move every pod off a relay before it is stopped: it takes no new logins, its sessions are cut a few per second (each pod reconnects to another relay and its name follows), names of pods without a session and the server\'s own name stop pointing there. Waits until no pod holds a session there.')
    .option('--wait <seconds>', 'how long to wait for the last pod to leave (0: do not wait)', parseIntOption('--wait'), 120)
    .addHelpText('after', `
Examples:
  pipe2me-ctl relay drain relay-b && systemctl stop pipe2me-sshd   # on relay-b, for maintenance
  pipe2me-ctl relay drain relay-b --wait 0 --json                  # mark it and return at once
Exit 0 once the relay holds no session; 8 if pods were still there when --wait ran out (nothing is undone).`)
    .action(async (name: string, o: { wait: number }, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        requireRelay(ctx, name);
        // Its pods need somewhere to go: never the last relay that is up.
        const others = (await listRelays(ctx.db)).filter((r) => r.name !== name && r.state === 'up');
        if (others.length === 0) {
          throw new ConflictError('last_relay', `${name} is the only relay that is up: draining it would leave its pods nowhere to go.`, {
            hint: 'Start another relay first (pipe2me-ctl relay list shows which are up).',
          });
        }
        const changed = await setRelayState(ctx.db, name, 'draining', now());
        if (!changed && !(await listRelays(ctx.db)).some((r) => r.name === name)) {
          throw new NotFoundError('relay_not_started', `Relay ${name} has never started (it has no heartbeat in the store): there is nothing to drain.`);
        }
        out.progress(`relay ${name} is draining: its pods move to the other relays`);
        const deadline = Date.now() + o.wait * 1000;
        let left = (await sessionsPerRelay(ctx.db, now())).get(name) ?? 0;
        while (left > 0 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 1000));
          const next = (await sessionsPerRelay(ctx.db, now())).get(name) ?? 0;
          if (next !== left) out.progress(`${next} pod(s) still on ${name}`);
          left = next;
        }
        if (left > 0 && o.wait > 0) {
          throw new DaemonError('drain_incomplete', `${left} pod(s) still hold their session on ${name} after ${o.wait} s.`, {
            hint: `The relay stays draining (no new logins). Wait longer (pipe2me-ctl relay drain ${name} --wait 600), or look at its pods in pipe2me-ctl relay list.`,
          });
        }
        out.result({ relay: name, state: 'draining', sessions_left: left }, () => left === 0 ? `relay ${name} is drained: no pod holds a session there; it may be stopped` : `relay ${name} is draining (${left} pod(s) still there)`);
      }));

  relay.command('approve <name>')
    .description('On the relay that made the CA (it holds the root): sign the CA request relay NAME made at its init, so that it signs certificates with a key of its own — only if the request is for the key whose sha256 init printed there (--key-sha256). An intermediate approved earlier for NAME is revoked. Then run pipe2me-ctl init on NAME again.')
    .requiredOption('--key-sha256 <hex>', 'the sha256 of the key, as pipe2me-ctl init printed it on that relay')
    .addHelpText('after', `
Examples:
  pipe2me-ctl relay approve relay-b --key-sha256 3f9c…            # the sha256 init printed on relay-b
  pipe2me-ctl relay approve relay-b --key-sha256 3f9c… --json     # {"relay", "serial", "subject", "not_after", "sha256", "key_sha256", "revoked"}
Exit 4 if relay-b has made no request; 9 if the request is for another key, or this relay does not hold the root.`)
    .action(async (name: string, o: { keySha256: string }, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        requireRelay(ctx, name);
        if (name === ctx.config.relays.self) throw new InputError('relay_is_self', `${name} is this relay: it signs with the root already.`);
        if (!/^[0-9a-fA-F]{64}$/.test(o.keySha256)) throw new InputError('bad_option', '--key-sha256 must be the 64 hex digits init printed on that relay.');
        const r = await approveRelayCa(ctx, authority(ctx), name, o.keySha256);
        out.result({ relay: name, serial: r.serial, subject: r.subject, not_after: r.notAfter.toISOString(), sha256: hexFingerprint(r.sha256Fingerprint), key_sha256: r.keySha256, revoked: r.revoked }, () =>
          [`signed ${r.subject} (serial ${r.serial}, valid until ${r.notAfter.toISOString()})`, `  key sha256 ${r.keySha256}`,
            ...(r.revoked ? [`  revoked ${name}'s earlier intermediate ${r.revoked}`] : []), `now run pipe2me-ctl init on ${name}`].join('\n'));
      }));

  relay.command('undrain <name>')
    .description('A drained relay takes logins again (new pods and reconnecting ones may come to it); pods elsewhere are not moved back.')
    .addHelpText('after', `
Examples:
  pipe2me-ctl relay undrain relay-b`)
    .action(async (name: string, _o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        requireRelay(ctx, name);
        const changed = await setRelayState(ctx.db, name, 'up', now());
        out.result({ relay: name, state: 'up', changed }, () => changed ? `relay ${name} takes pods again` : `relay ${name} was not draining`);
      }));
}

function requireRelay(ctx: ServerContext, name: string): void {
  if (!ctx.config.relays.relayed) throw new InputError('no_relays', 'This server has no relays: in the configuration.', { hint: 'Drain is for a fleet of relays (relays: in pipe2me.yml).' });
  if (!ctx.config.relays.list.some((r) => r.name === name)) {
    throw new NotFoundError('relay_not_found', `No relay ${JSON.stringify(name.slice(0, 64))} in the configuration.`, { hint: `Relays: ${ctx.config.relays.list.map((r) => r.name).join(', ')}.` });
  }
}
