/** pipe2me-ctl state: the state store itself — where it is, its schema, and moving it to PostgreSQL. */
import type { Command } from 'commander';
import * as fs from 'node:fs';
import { checkTables, copyStore } from '../state/copy.js';
import { isPostgresUrl, openStore, schemaVersion } from '../state/db.js';
import { SCHEMA_VERSION } from '../state/migrations.js';
import { ConfigError, InputError } from '../util/errors.js';
import { storeTargetOf } from '../server/context.js';
import { table } from './output.js';
import { withServer } from './ctl-common.js';

function readPasswordFile(file: string): string {
  let mode: number;
  let text: string;
  try {
    mode = fs.statSync(file).mode & 0o777;
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`--password-file ${file} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if ((mode & 0o077) !== 0) throw new ConfigError(`--password-file ${file} is readable by others (mode ${mode.toString(8)}).`, { hint: `chmod 600 ${file}` });
  return text.replace(/\r?\n$/, '');
}

export function registerStateCommands(program: Command): void {
  const st = program.command('state')
    .description('The state store: which one is in use, its schema version, and copying it into PostgreSQL.')
    .addHelpText('after', `
Examples:
  pipe2me-ctl state info
  pipe2me-ctl state copy --to postgres://pipe2me@db1:5432/pipe2me --password-file /etc/pipe2me/db.password`);

  st.command('info')
    .description('Where the state store is, its engine and schema version, and each table\'s row count and digest.')
    .addHelpText('after', `
Examples:
  pipe2me-ctl state info
  pipe2me-ctl state info --json   # {"engine", "location", "schema_version", "tables": [{"table", "rows", "digest"}]}`)
    .action(async (_o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const tables = await checkTables(ctx.db);
        const version = await schemaVersion(ctx.db);
        out.result({ engine: ctx.db.engine, location: ctx.db.location, schema_version: version, tables }, () => [
          `${ctx.db.engine} store at ${ctx.db.location}, schema version ${version}`,
          table(tables.map((t) => [t.table, String(t.rows), t.digest.slice(0, 16)]), ['TABLE', 'ROWS', 'DIGEST']),
        ].join('\n'));
      }));

  st.command('copy')
    .description('Copy every table of the store in use into an empty PostgreSQL database (migrated first), then check both hold the same rows (counts and digests). The store in use is only read. Stop the API, the watcher and the probe timer first; afterwards set state.url (and state.password_file) in the configuration and start them again.')
    .requiredOption('--to <url>', 'the target: postgres://USER@HOST:PORT/DATABASE (several hosts and target_session_attrs as in libpq; no password in it)')
    .option('--password-file <file>', 'a 0600 file holding the target\'s password (else PGPASSWORD)')
    .addHelpText('after', `
Examples:
  pipe2me-ctl state copy --to postgres://pipe2me@db1.example.net:5432/pipe2me --password-file /etc/pipe2me/db.password
  PGPASSWORD=… pipe2me-ctl state copy --to 'postgres://pipe2me@db1:5432,db2:5432/pipe2me?target_session_attrs=read-write' --json
The switch, with the downtime it needs (seconds): docs/operations.md "Moving the state store to PostgreSQL".`)
    .action(async (o: { to: string; passwordFile?: string }, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        // Not echoed: a connection string given here by mistake may hold a password.
        if (!isPostgresUrl(o.to)) throw new InputError('bad_url', '--to must be a postgres:// URL.', { hint: 'e.g. --to postgres://pipe2me@db1:5432/pipe2me (the password in --password-file or PGPASSWORD)' });
        if (ctx.db.engine !== 'sqlite') throw new InputError('not_sqlite', `The store in use is already on PostgreSQL (${ctx.db.location}).`, { hint: 'Copy between PostgreSQL servers with their own tools (pg_dump, replication).' });
        const password = o.passwordFile ? readPasswordFile(o.passwordFile) : process.env.PGPASSWORD;
        const pool = storeTargetOf(ctx.config).pool;
        out.progress(`opening ${o.to.replace(/\/\/[^@/]*@/, '//…@')} and migrating it to schema version ${SCHEMA_VERSION}`);
        const target = await openStore({ stateDir: ctx.config.paths.state, url: o.to, password, pool });
        try {
          const r = await copyStore(ctx.db, target, (m) => out.progress(m));
          out.result({ from: ctx.db.location, to: target.location, rows: r.rows, seconds: Number(r.seconds.toFixed(2)), tables: r.tables }, () => [
            `copied ${r.rows} rows from ${ctx.db.location} to ${target.location} in ${r.seconds.toFixed(1)} s; every table's count and digest match`,
            table(r.tables.filter((t) => t.rows > 0).map((t) => [t.table, String(t.rows), t.digest.slice(0, 16)]), ['TABLE', 'ROWS', 'DIGEST']),
            'next: set state.url (and state.password_file) in the configuration, then start the API, the watcher and the probe timer again',
          ].join('\n'));
        } finally {
          await target.close();
        }
      }));
}
