/**
 * pipe2me-ctl check-config: validates the configuration and shows the relay's capacity on this machine
 * (src/server/capacity.ts). Warnings are printed, never an exit code: a valid file exits 0 whatever the
 * machine allows.
 */
import type { Command } from 'commander';
import { configFileFrom, loadConfig } from '../config/load.js';
import { capacityJson, podsText, relayCapacity, type Capacity } from '../server/capacity.js';
import { readHostFacts } from '../server/host-facts.js';
import { globals } from './ctl-common.js';
import { Output, table } from './output.js';

/** The capacity as text: one line, the table of limits, what was assumed, the warnings. */
export function capacityText(cap: Capacity): string {
  const unit = cap.unit.source === 'installed' ? `as installed: ${cap.unit.files.join(', ')}` : `as shipped (${cap.unit.files[0]}): not installed on this machine`;
  return [
    `Capacity of this relay: ${podsText(cap.pods)} pods, first limit ${cap.firstLimitLabel}`,
    `  ${cap.assumption}`,
    `  sshd unit ${unit}`,
    table(cap.limits.map((l) => [`  ${l.name}`, podsText(l.pods), l.basis]), ['  limit', 'pods', 'from']),
    ...cap.warnings.map((w) => `warning: ${w}`),
  ].join('\n');
}

function checkConfig(cmd: Command): void {
  const g = globals(cmd);
  const file = configFileFrom(g.config);
  const c = loadConfig(file);
  const cap = relayCapacity(c, readHostFacts());
  new Output(g).result(
    { config: file, valid: true, domain: c.domain, dns_daemon: c.dns.daemon, capacity: capacityJson(cap) },
    () => `${file} is valid (domain ${c.domain}, DNS by ${c.dns.daemon})\n\n${capacityText(cap)}`,
  );
}

export function registerConfigCommands(program: Command): void {
  program
    .command('check-config')
    .description('Validate the configuration file and exit: 0 if it is valid, 3 with every problem otherwise. Touches nothing (no state store needed), so tools can check a file before putting it in place.')
    .addHelpText('after', `
It also prints how many pods this relay can hold and which limit comes first (the port range, the sshd
unit's TasksMax, kernel.pid_max, memory, fs.file-max, one IPv4 address), with a warning and the fix for a
limit far below the others; warnings do not change the exit code.

Examples:
  pipe2me-ctl check-config
  pipe2me-ctl check-config --config /tmp/new-pipe2me.yml     # a file before it replaces the live one
  pipe2me-ctl check-config --json | jq .capacity.pods`)
    .action(async (_o, c: Command) => checkConfig(c));
}
