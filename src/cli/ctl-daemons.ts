/**
 * pipe2me-ctl daemons: the command lines of a server's daemons — pipe2me's own sshd, nginx and BIND/NSD
 * instances, the API and the watcher — with this configuration's paths, exactly as the systemd units run
 * them for the default paths. For a trial (`init --root`), `--run` runs them all in the foreground until
 * Ctrl-C, and the probe every minute.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import type { Command } from 'commander';
import { configFileFrom } from '../config/load.js';
import type { Config } from '../config/types.js';
import { namedArgv } from '../daemons/bind.js';
import { nginxArgv } from '../daemons/nginx.js';
import { nsdArgv } from '../daemons/nsd.js';
import { sshdArgv } from '../daemons/sshd.js';
import type { Layout } from '../render/layout.js';
import { DaemonError } from '../util/errors.js';
import { globals, withServer } from './ctl-common.js';
import { Output } from './output.js';

export interface DaemonLine {
  name: string;
  argv: string[];
}

/** In start order: sshd, the nameserver, the API, nginx (which proxies to the API), the watcher. */
export function daemonLines(c: Config, L: Layout, configFile: string, ctl: string[]): DaemonLine[] {
  const self = (...args: string[]) => [...ctl, '-c', configFile, ...args];
  return [
    { name: 'sshd', argv: sshdArgv(L) },
    c.dns.daemon === 'bind' ? { name: 'named', argv: namedArgv(L) } : { name: 'nsd', argv: nsdArgv(L) },
    { name: 'api', argv: self('serve') },
    { name: 'nginx', argv: nginxArgv(L) },
    { name: 'watch', argv: self('watch') },
  ];
}

const quote = (a: string) => (/^[A-Za-z0-9_./:=@%+,-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);

export function registerDaemonsCommand(program: Command): void {
  program
    .command('daemons')
    .description('Show the command lines of this server\'s daemons (its sshd, nginx, BIND or NSD, the API, the watcher) with this configuration\'s paths; with --run, run them all in the foreground until Ctrl-C (a trial made with `init --root`).')
    .option('--run', 'run them in the foreground, in order, and the probe every minute; Ctrl-C stops them all')
    .addHelpText('after', `
Examples:
  pipe2me-ctl daemons --config /srv/p2m/etc/pipe2me/pipe2me.yml          # the command lines, one per line
  pipe2me-ctl daemons --config /srv/p2m/etc/pipe2me/pipe2me.yml --run    # a trial server in the foreground
With the default paths, systemd/ has a unit per daemon with exactly these command lines.`)
    .action(async (o, cmd: Command) =>
      withServer(cmd, async (ctx, out) => {
        const file = path.resolve(configFileFrom(globals(cmd).config));
        const ctl = [process.execPath, path.resolve(process.argv[1] ?? 'pipe2me-ctl')];
        const lines = daemonLines(ctx.config, ctx.layout, file, ctl);
        if (!o.run) {
          out.result(lines, () => lines.map((l) => `${l.name.padEnd(6)} ${l.argv.map(quote).join(' ')}`).join('\n'));
          return;
        }
        await runAll(lines, [...ctl, '-c', file, '--quiet', 'probe'], new Output(globals(cmd)));
      }));
}

/** Runs every daemon as a child; one that dies stops the rest (exit 8); SIGINT/SIGTERM stop them all. */
async function runAll(lines: DaemonLine[], probe: string[], out: Output): Promise<void> {
  const children = new Map<string, ChildProcess>();
  let stopping = false;
  let failed: string | null = null;
  const prefix = (name: string, stream: NodeJS.ReadableStream | null) => {
    stream?.on('data', (d: Buffer) => {
      for (const line of d.toString('utf8').split('\n')) if (line) process.stderr.write(`${name}: ${line}\n`);
    });
  };
  let finish: () => void = () => {};
  const done = new Promise<void>((r) => (finish = r));
  for (const l of lines) {
    out.progress(`starting ${l.name}: ${l.argv.map(quote).join(' ')}`);
    const child = spawn(l.argv[0]!, l.argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    children.set(l.name, child);
    prefix(l.name, child.stdout);
    prefix(l.name, child.stderr);
    child.on('exit', (code, signal) => {
      children.delete(l.name);
      if (stopping) {
        if (children.size === 0) finish();
        return;
      }
      failed = `${l.name} ended (${signal ?? `exit ${code}`})`;
      stopAll();
    });
    // Each daemon gets a moment to come up before the next, which may need it (nginx proxies to the API).
    await new Promise((r) => setTimeout(r, 300));
  }
  const probeTimer = setInterval(() => {
    const p = spawn(probe[0]!, probe.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    prefix('probe', p.stderr);
    setTimeout(() => p.kill('SIGKILL'), 120_000).unref();
  }, 60_000);
  function stopAll() {
    if (stopping) return;
    stopping = true;
    clearInterval(probeTimer);
    if (children.size === 0) finish();
    for (const c of children.values()) c.kill('SIGTERM');
    setTimeout(() => {
      for (const c of children.values()) c.kill('SIGKILL');
    }, 5000).unref();
  }
  process.once('SIGINT', stopAll);
  process.once('SIGTERM', stopAll);
  out.note('all daemons started; Ctrl-C stops them');
  await done;
  if (failed) throw new DaemonError('daemon_ended', `${failed}; the others were stopped.`, { hint: 'Its lines above say why.' });
}
