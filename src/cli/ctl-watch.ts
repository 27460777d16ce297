/**
 * pipe2me-ctl watch: keep running, re-apply when the configuration or the state changes (debounced), and
 * expire subdomains on time.
 *
 * The configuration file is watched with chokidar. The state store is watched through SQLite's own change
 * counter (PRAGMA data_version, which moves whenever another connection commits): file events on SQLite's
 * write-ahead log proved unreliable — a commit right after the watcher started was missed — while the
 * counter costs one cheap query per poll and never misses a commit.
 */
import chokidar from 'chokidar';
import type { Command } from 'commander';
import { apply } from '../apply/apply.js';
import { configFileFrom } from '../config/load.js';
import { closeServer, openServer } from '../server/context.js';
import { changeStamp } from '../state/db.js';
import { storeUnavailable } from '../state/errors.js';
import { expireSweep } from '../server/subdomains.js';
import { isPipe2meError } from '../util/errors.js';
import { globals, parseIntOption, parseLogFormatOption } from './ctl-common.js';
import { applySummary } from './format.js';
import { Output } from './output.js';
import { createLog, type LogFormat } from '../util/log.js';
import { Debouncer } from '../util/debounce.js';

export function registerWatchCommand(program: Command): void {
  program
    .command('watch')
    .description('Keep running: re-apply when the configuration or the state changes (debounced), and expire subdomains on time.')
    .option('--debounce <ms>', 'wait this long after the last change', parseIntOption('--debounce'), 300)
    .option('--max-wait <ms>', 'but apply at the latest this long after the first change not yet applied, however often the state changes', parseIntOption('--max-wait'), 1000)
    .option('--poll <ms>', 'how often to look at what the rendered files depend on in the state store (its render journal, ACME\'s dns-01 records)', parseIntOption('--poll'), 250)
    .option('--expiry-interval <seconds>', 'how often to look for expired subdomains', parseIntOption('--expiry-interval'), 5)
    .option('--verbose', 'log every change it notices')
    .option('--log-format <format>', 'one line per event: text, or json (for journald and Loki)', parseLogFormatOption, 'text')
    .addHelpText('after', `
Examples:
  pipe2me-ctl watch                 # usually run by systemd (systemd/pipe2me-watch.service)
  pipe2me-ctl watch --debounce 1000 --verbose --log-format json`)
    .action(async (o, cmd: Command) => {
      const g = globals(cmd);
      const out = new Output(g);
      const file = configFileFrom(g.config);
      const log = createLog('watch', o.logFormat as LogFormat);
      // Live: every apply renders from the file as it is now (a file that does not validate is reported
      // once and the last good configuration kept).
      const ctx = await openServer(file, log);
      const dataVersion = () => changeStamp(ctx.db);
      let running: Promise<void> = Promise.resolve();

      // A cycle that failed (the store away, a daemon refusing) is owed: the next time the store answers,
      // one runs again whatever the poll sees — a change seen or a configuration loaded before the failure
      // would otherwise wait for the next unrelated change.
      let owed = false;
      const cycle = async () => {
        try {
          owed = true;
          if (ctx.refresh()) seen = await dataVersion();
          await expireSweep(ctx, { apply: false, progress: log });
          const r = await apply(ctx, { progress: log });
          owed = false;
          if (r.plan.changedUnits.length) log(applySummary(r), { event: 'apply', outcome: 'ok', units: r.plan.changedUnits, duration_ms: Math.round(r.durationMs) });
        } catch (e) {
          // The store went away under the apply: said once, as the poll says it, and the poll takes it from
          // here (backoff doubling to 30 s; the owed cycle once the store answers).
          if (storeUnavailable(e)) storeFailed(e);
          log(`apply failed: ${(e as Error).message}${isPipe2meError(e) && e.hint ? ` (hint: ${e.hint})` : ''}`, { event: 'apply', outcome: 'failed', daemon: (isPipe2meError(e) ? (e.data?.['daemon'] as string | undefined) : undefined) ?? null });
        }
      };
      // Debounced, with a ceiling: under changes that never pause (a relay taking over hundreds of pods, one
      // session mirrored after another) a plain debounce would put the apply off until they stop.
      // At most one cycle waits behind the running one: it reads the state as it is when it starts.
      let queued = false;
      const debounced = new Debouncer(o.debounce as number, o.maxWait as number, () => {
        if (queued) return;
        queued = true;
        running = running.then(() => {
          queued = false;
          return cycle();
        });
      });
      const schedule = (why: string) => {
        if (o.verbose) log(why, { event: 'change_seen' });
        debounced.touch();
      };

      const watcher = chokidar.watch(file, { ignoreInitial: true });
      // Listened for at once: the store is read (asynchronously) before it is awaited, and 'ready' comes only once.
      const ready = new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
      watcher.on('all', (event) => schedule(`${event} ${file}`));
      let seen = await dataVersion();
      // While the store cannot be read (PostgreSQL down, failing over), the poll says so once and backs off
      // (doubling up to 30 s), then carries on: the tunnels and the daemons' files are not affected.
      let failing = false;
      let skipUntil = 0;
      let inFlight = false;
      let sweeping = false;
      function storeFailed(e: unknown): void {
        if (!failing) log(`cannot read the state store, retrying with backoff: ${(e as Error).message}`, { event: 'state_unreadable', outcome: 'failed' });
        failing = true;
        // With relays at most 2 s: a relay that saw the store come back after an outage must follow the
        // fleet within a failover's seconds, not half a minute later.
        backoff = Math.min(backoff * 2, ctx.config.relays.relayed ? 2000 : 30_000);
        skipUntil = Date.now() + backoff;
      }
      let backoff = o.poll as number;
      const poll = setInterval(() => {
        if (inFlight || Date.now() < skipUntil) return;
        inFlight = true;
        dataVersion().finally(() => { inFlight = false; }).then((v) => {
          const recovered = failing;
          if (failing) log('the state store answers again', { event: 'state_readable', outcome: 'ok' });
          failing = false;
          backoff = o.poll as number;
          if (v !== seen) {
            seen = v;
            schedule('the state store changed');
          } else if (recovered && owed) {
            schedule('the state store answers again: the apply that failed runs now');
          }
        }, storeFailed);
      }, o.poll);
      const expiry = setInterval(() => {
        // Not while the store cannot be read (the poll says so once): sweeps would only pile up behind each other.
        if (failing || sweeping) return;
        sweeping = true;
        running = running.then(async () => {
          try {
            await expireSweep(ctx, { apply: true, progress: log });
          } catch (e) {
            log(`expiry sweep failed: ${(e as Error).message}`, { event: 'expiry_sweep', outcome: 'failed' });
          } finally {
            sweeping = false;
          }
        });
      }, o.expiryInterval * 1000);

      await ready;
      out.note(`watching ${file} and the state store ${ctx.db.location}; Ctrl-C to stop`);
      // Once at start: covers whatever changed while nothing was watching.
      running = running.then(cycle);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
      clearInterval(poll);
      clearInterval(expiry);
      debounced.cancel();
      await watcher.close();
      await running;
      await closeServer(ctx);
    });
}
