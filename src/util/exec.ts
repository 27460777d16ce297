/**
 * The one way pipe2me runs a program: an argv array (never a shell string) with a timeout on every call.
 * Failures become typed errors that carry the command and what it printed.
 */
import { execa } from 'execa';
import { DaemonError, MissingProgramError } from './errors.js';
import { packageFor } from './programs.js';

export interface RunOptions {
  /** Milliseconds; every call has one. */
  timeout?: number;
  input?: string | Buffer;
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Return a non-zero exit as a result instead of throwing. */
  allowFailure?: boolean;
  /** Text to show in errors instead of the argv (when an argument would reveal something). */
  display?: string;
}

export interface RunResult {
  command: string;
  exitCode: number;
  stdout: string;
  stderr: string;
  /** stdout and stderr joined, for error reports. */
  output: string;
  timedOut: boolean;
}

export const DEFAULT_TIMEOUT_MS = 30_000;

export function describeCommand(file: string, args: readonly string[]): string {
  return [file, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

export async function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const command = opts.display ?? describeCommand(file, args);
  const timeout = opts.timeout ?? DEFAULT_TIMEOUT_MS;
  let r;
  try {
    r = await execa(file, [...args], {
      timeout,
      input: opts.input,
      env: opts.env,
      extendEnv: true,
      cwd: opts.cwd,
      reject: false,
      stripFinalNewline: false,
      killSignal: 'SIGTERM',
      forceKillAfterDelay: 2000,
      stdin: opts.input === undefined ? 'ignore' : 'pipe',
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (e) {
    throw new DaemonError('exec_failed', `could not run ${command}: ${(e as Error).message}`, { cause: e });
  }
  const err = r as typeof r & { code?: string; originalMessage?: string };
  if (err.failed && (err.code === 'ENOENT' || /ENOENT/.test(String(err.originalMessage ?? '')))) {
    throw new MissingProgramError(file, packageFor(file));
  }
  const stdout = String(r.stdout ?? '');
  const stderr = String(r.stderr ?? '');
  const result: RunResult = {
    command,
    exitCode: typeof r.exitCode === 'number' ? r.exitCode : -1,
    stdout,
    stderr,
    output: [stdout.trim(), stderr.trim()].filter(Boolean).join('\n'),
    timedOut: Boolean(r.timedOut),
  };
  if (result.timedOut) {
    throw new DaemonError('timeout', `${command} did not finish within ${timeout / 1000} s and was stopped.`, {
      data: { command, output: result.output.slice(-2000) },
    });
  }
  if (result.exitCode !== 0 && !opts.allowFailure) {
    throw new DaemonError('command_failed', `${command} failed (exit ${result.exitCode}):\n${result.output.trim().slice(-4000)}`, {
      data: { command, exit_code: result.exitCode },
    });
  }
  return result;
}
