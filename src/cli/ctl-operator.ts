/** pipe2me-ctl: operators, who may see the status page (https://server.<domain>/status). */
import type { Command } from 'commander';
import { addOperator, listOperators, removeOperator } from '../state/operators.js';
import { validateOperatorName } from '../status/auth.js';
import { table } from './output.js';
import { withServer } from './ctl-common.js';
import { isoSeconds } from '../util/time.js';

export function registerOperatorCommands(program: Command): void {
  const op = program.command('operator')
    .description('Operators: who may sign in to the status page at https://server.<domain>/status (HTTP Basic with the operator\'s name and secret).')
    .addHelpText('after', `
Examples:
  pipe2me-ctl operator add alice
  pipe2me-ctl operator list
  pipe2me-ctl operator remove alice`);

  op.command('add')
    .description('Add an operator and print its secret, once: only a hash of it is kept. Sign in to the status page with the name and this secret.')
    .argument('<name>', 'the operator\'s name: 1-32 lower-case letters, digits and hyphens, starting with a letter', validateOperatorName)
    .addHelpText('after', `
Examples:
  pipe2me-ctl operator add alice
  pipe2me-ctl operator add night-shift --json   # {"name", "secret", "created", "url"}
To give an operator a new secret, remove it and add it again.`)
    .action(async (name: string, _o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const { record, secret } = await addOperator(ctx.db, name);
        const url = `https://${ctx.config.server.fqdn}/status`;
        out.result({ name: record.name, secret, created: isoSeconds(record.createdAt), url }, () => [
          `operator ${record.name} added`,
          `  secret (shown once; only its hash is kept): ${secret}`,
          `  status page: ${url} — sign in as ${record.name} with the secret`,
          `  for scripts, keep it in a file only you can read (not on a command line):`,
          `    printf 'user = "${record.name}:%s"\\n' "$SECRET" > ~/.pipe2me-status.curlrc; chmod 600 ~/.pipe2me-status.curlrc`,
          `    curl -K ~/.pipe2me-status.curlrc ${url}`,
        ].join('\n'));
      }));

  op.command('list')
    .description('List the operators, when each was added and last signed in (secrets are never shown again).')
    .addHelpText('after', `
Examples:
  pipe2me-ctl operator list
  pipe2me-ctl operator list --json`)
    .action(async (_o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const list = await listOperators(ctx.db);
        out.result(list.map((o) => ({ name: o.name, created: isoSeconds(o.createdAt), last_used: o.lastUsed ? isoSeconds(o.lastUsed) : null })),
          () => list.length === 0 ? 'No operators yet. Add one: pipe2me-ctl operator add NAME'
            : table(list.map((o) => [o.name, isoSeconds(o.createdAt), o.lastUsed ? isoSeconds(o.lastUsed) : 'never']), ['NAME', 'ADDED', 'LAST SIGNED IN']));
      }));

  op.command('remove')
    .description('Remove an operator: its secret stops working at once.')
    .argument('<name>', 'the operator\'s name', validateOperatorName)
    .addHelpText('after', `
Example:
  pipe2me-ctl operator remove alice`)
    .action(async (name: string, _o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        await removeOperator(ctx.db, name);
        out.result({ removed: name }, () => `operator ${name} removed; its secret no longer signs in`);
      }));
}
