/**
 * Output for both CLIs: a result is printed for people or, with --json, as one JSON document on stdout;
 * progress goes to stderr (never into the JSON); errors are handled in one place, `runMain`, which maps
 * typed errors to their exit codes.
 */
import { ExitCode, isPipe2meError } from '../util/errors.js';
import { isoSeconds } from '../util/time.js';

/**
 * Text for a terminal: every control character but newline and tab shown as \xNN. What a command prints
 * can hold text from the network (a pod's note, a server's message); raw ESC or OSC sequences would
 * drive the operator's terminal.
 */
export function forTerminal(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

export interface GlobalOptions {
  json?: boolean;
  quiet?: boolean;
}

export class Output {
  constructor(readonly opts: GlobalOptions) {}

  get json(): boolean {
    return Boolean(this.opts.json);
  }

  /** Prints the result: `human()` for people, `data` as JSON with --json. */
  result(data: unknown, human: () => string): void {
    if (this.json) process.stdout.write(JSON.stringify(data, null, 2) + '\n');
    else {
      const text = forTerminal(human());
      if (text) process.stdout.write(text.endsWith('\n') ? text : text + '\n');
    }
  }

  /**
   * A list too long to hold whole (50,000 subdomains), printed a page at a time as `pages` hands them
   * over. With --json: one JSON array, the same text result() prints for the whole list, each page
   * written as it comes (and the next only once stdout has taken it: a slow reader does not make the
   * pages pile up in memory). For people: one table, laid out at the end (its columns' widths need every
   * row; rows of short strings are small beside the records they came from).
   */
  async resultPages<T>(pages: (emit: (items: T[]) => Promise<void>) => Promise<void>, view: { json: (item: T) => unknown; row: (item: T) => string[]; header: string[]; empty: string }): Promise<void> {
    if (!this.json) {
      const rows: string[][] = [];
      await pages(async (items) => {
        for (const item of items) rows.push(view.row(item));
      });
      this.result(null, () => (rows.length ? table(rows, view.header) : view.empty));
      return;
    }
    let first = true;
    await pages(async (items) => {
      if (items.length === 0) return;
      // Each item as JSON.stringify(list, null, 2) lays it out inside the array: its own layout, indented
      // one level (a JSON text has no raw newline inside a string, so every newline is layout).
      const text = items.map((item) => '  ' + JSON.stringify(view.json(item), null, 2).replace(/\n/g, '\n  ')).join(',\n');
      await writeOut((first ? '[\n' : ',\n') + text);
      first = false;
    });
    await writeOut(first ? '[]\n' : '\n]\n');
  }

  /** A progress line on stderr, for anything that takes more than a moment. */
  progress(message: string): void {
    if (this.opts.quiet) return;
    process.stderr.write(`… ${forTerminal(message)}\n`);
  }

  note(message: string): void {
    if (this.opts.quiet || this.json) return;
    process.stderr.write(`${forTerminal(message)}\n`);
  }
}

/** Writes to stdout, resolving once it has taken the text (at once, or when a full pipe has drained). */
function writeOut(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (process.stdout.write(text)) resolve();
    else {
      process.stdout.once('drain', resolve);
      process.stdout.once('error', reject);
    }
  });
}

export function table(rows: string[][], header?: string[]): string {
  const all = header ? [header, ...rows] : rows;
  if (all.length === 0) return '';
  const widths = all[0]!.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

export function isoTime(seconds: number | null | undefined): string {
  return seconds ? isoSeconds(seconds) : '-';
}

/**
 * Exits once stdout and stderr have been handed to the OS: on a pipe, Node writes asynchronously, and
 * process.exit() right after a large write (a probe report of 10,000 subdomains) would cut it short.
 */
async function exitFlushed(code: number): Promise<never> {
  await Promise.all([process.stdout, process.stderr].map((s) => new Promise<void>((r) => s.write('', () => r()))));
  process.exit(code);
}

/** Runs a CLI: parse argv with its commander program, under the one top-level error handler. */
/**
 * `classify` turns an error from below (a driver's) into the project's own before it is reported: the
 * server's CLI says a store that cannot be reached as such (exit 11); the pod has no store.
 */
export async function runProgram(program: { parseAsync(argv: readonly string[]): Promise<unknown> }, argv: readonly string[] = process.argv, classify?: (e: unknown) => unknown): Promise<never> {
  return runMain(async () => {
    await program.parseAsync(argv);
  }, () => argv.includes('--json'), classify);
}

/** The single top-level error handler of a CLI. */
export async function runMain(main: () => Promise<void>, wantsJson: () => boolean, classify?: (e: unknown) => unknown): Promise<never> {
  // A reader that stops early (`pipe2me-ctl --help | head`) closes the pipe: that is the end, not a crash.
  for (const s of [process.stdout, process.stderr]) {
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(Number(process.exitCode ?? 0));
      throw e;
    });
  }
  try {
    await main();
    return await exitFlushed(Number(process.exitCode ?? ExitCode.ok));
  } catch (thrown) {
    const e = classify ? classify(thrown) : thrown;
    if (isPipe2meError(e)) {
      if (wantsJson()) process.stdout.write(JSON.stringify({ error: e.toJSON() }, null, 2) + '\n');
      process.stderr.write(forTerminal(`error: ${e.message}\n` + (e.hint ? `hint: ${e.hint}\n` : '')));
      return await exitFlushed(e.exitCode);
    }
    const err = e as { code?: string; exitCode?: number; message?: string };
    if (err && err.code && String(err.code).startsWith('commander.')) {
      // commander has printed its own message (unknown option, missing argument, --help, --version).
      return await exitFlushed(err.exitCode === 0 ? 0 : ExitCode.usage);
    }
    if (wantsJson()) process.stdout.write(JSON.stringify({ error: { code: 'internal', message: String(err?.message ?? e) } }, null, 2) + '\n');
    process.stderr.write(`internal error: ${(e as Error)?.stack ?? String(e)}\nThis is a bug in pipe2me; please report it with the command you ran.\n`);
    return await exitFlushed(ExitCode.internal);
  }
}

export const EXIT_CODES_HELP = `
Exit codes:
  0  success
  1  internal error (a bug: please report it)
  2  bad usage or invalid input (a name, a flag, a value)
  3  configuration invalid or missing (pipe2me.yml, state store)
  4  not found (no such subdomain, token, certificate)
  5  conflict (name taken, port range exhausted, already set up)
  6  a daemon's checker refused a rendered file; nothing live was changed
  7  a required program is missing (the message names the Debian package)
  8  a daemon or command failed at run time (reload, signal, timeout)
  9  denied (bad, revoked or used token; wrong secret)
 10  quota exceeded
 11  a server could not be reached`;
