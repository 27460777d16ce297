/** pipe2me-ctl relay: the relays of the fleet as the shared store sees them. */
import type { Command } from 'commander';
import { listRelays, sessionsPerRelay } from '../state/relays.js';
import { now } from '../state/types.js';
import { table } from './output.js';
import { withServer } from './ctl-common.js';

export function registerRelayCommands(program: Command): void {
  const relay = program.command('relay')
    .description('The relays of the fleet (with relays: in the configuration): which are up, which one this machine is, how many pods each holds.')
    .addHelpText('after', `
Examples:
  pipe2me-ctl relay list
  pipe2me-ctl relay list --json`);

  relay.command('list')
    .description('Every configured relay: its addresses, its state in the store (up, down, draining, or never started), its lease and how many pods hold their session there.')
    .addHelpText('after', `
Examples:
  pipe2me-ctl relay list
  pipe2me-ctl relay list --json   # {"self", "relays": [{"name", "ipv4", "ipv6", "state", "lease_left_s", "sessions", "host_key"}]}`)
    .action(async (_o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const t = now();
        const rows = new Map((await listRelays(ctx.db)).map((r) => [r.name, r]));
        const sessions = await sessionsPerRelay(ctx.db, t);
        const relays = ctx.config.relays.list.map((r) => {
          const row = rows.get(r.name);
          return {
            name: r.name, ipv4: r.ipv4, ipv6: r.ipv6,
            state: row?.state ?? 'never started',
            lease_left_s: row ? Math.max(0, row.leaseUntil - t) : null,
            sessions: sessions.get(r.name) ?? 0,
            host_key: row?.hostKey ?? null,
          };
        });
        out.result({ self: ctx.config.relays.self, relayed: ctx.config.relays.relayed, relays }, () => table(
          relays.map((r) => [r.name + (r.name === ctx.config.relays.self ? ' (this one)' : ''), r.ipv4, r.state, r.lease_left_s === null ? '-' : `${r.lease_left_s} s`, String(r.sessions)]),
          ['RELAY', 'IPV4', 'STATE', 'LEASE', 'PODS'],
        ));
      }));
}
