/**
 * pipe2me-ctl: the operator's tool on the server. Every command that reports takes --json; errors
 * go through one handler (runProgram) and leave with a documented exit code.
 */
import { Command } from 'commander';
import { EXIT_CODES_HELP, runProgram } from './output.js';
import { registerSubdomainCommands } from './ctl-subdomains.js';
import { registerWatchCommand } from './ctl-watch.js';
import { registerServiceCommands } from './ctl-service.js';
import { registerCaCommands } from './ctl-ca.js';
import { registerDaemonsCommand } from './ctl-daemons.js';
import { registerStatusCommand } from './ctl-status.js';
import { registerConfigCommands } from './ctl-config.js';
import { registerOperatorCommands } from './ctl-operator.js';
import { registerStateCommands } from './ctl-state.js';
import { registerRelayCommands } from './ctl-relays.js';
import { storeUnavailable } from '../state/errors.js';

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
  registerSubdomainCommands(program);
  registerConfigCommands(program);
  registerWatchCommand(program);
  registerServiceCommands(program);
  registerCaCommands(program);
  registerDaemonsCommand(program);
  registerStatusCommand(program);
  registerOperatorCommands(program);
  registerStateCommands(program);
  registerRelayCommands(program);
  return program;
}

export async function main(argv: readonly string[] = process.argv): Promise<void> {
  // A store that cannot be reached is said as such (exit 11), whichever driver noticed it.
  await runProgram(buildProgram(), argv, (e) => storeUnavailable(e) ?? e);
}
