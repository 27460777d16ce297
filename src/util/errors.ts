/**
 * Typed errors. Every failure a user can cause or meet carries a stable `code` (for --json and the API),
 * a message that says what was wrong, a hint that says what to do, and an exit code that scripts can rely on.
 * The CLIs have exactly one top-level handler that turns these into output (src/cli/output.ts).
 */

/** Exit codes, documented in the README. Never renumber: scripts depend on them. */
export const ExitCode = {
  ok: 0,
  internal: 1,
  usage: 2,
  config: 3,
  notFound: 4,
  conflict: 5,
  checkFailed: 6,
  missingProgram: 7,
  daemon: 8,
  denied: 9,
  quota: 10,
  unreachable: 11,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export interface ErrorDetails {
  hint?: string;
  /** Extra machine-readable fields for --json output and API bodies. Never put secrets here. */
  data?: Record<string, unknown>;
  cause?: unknown;
}

export class Pipe2meError extends Error {
  readonly code: string;
  readonly exitCode: ExitCodeValue;
  readonly hint: string | undefined;
  readonly data: Record<string, unknown> | undefined;
  /** HTTP status the API answers with for this error. */
  readonly httpStatus: number;

  constructor(code: string, message: string, exitCode: ExitCodeValue, httpStatus: number, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = code;
    this.exitCode = exitCode;
    this.httpStatus = httpStatus;
    this.hint = details.hint;
    this.data = details.data;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...(this.hint ? { hint: this.hint } : {}), ...(this.data ?? {}) };
  }
}

/** Bad input from a person or a client: a name, a flag, a request body. */
export class InputError extends Pipe2meError {
  constructor(code: string, message: string, details?: ErrorDetails) {
    super(code, message, ExitCode.usage, 400, details);
  }
}

export class ConfigError extends Pipe2meError {
  constructor(message: string, details?: ErrorDetails) {
    super('config_invalid', message, ExitCode.config, 500, details);
  }
}

export class NotFoundError extends Pipe2meError {
  constructor(code: string, message: string, details?: ErrorDetails) {
    super(code, message, ExitCode.notFound, 404, details);
  }
}

export class ConflictError extends Pipe2meError {
  constructor(code: string, message: string, details?: ErrorDetails) {
    super(code, message, ExitCode.conflict, 409, details);
  }
}

export class DeniedError extends Pipe2meError {
  constructor(code: string, message: string, details?: ErrorDetails & { httpStatus?: number }) {
    super(code, message, ExitCode.denied, details?.httpStatus ?? 403, details);
  }
}

export class QuotaError extends Pipe2meError {
  constructor(code: string, message: string, details?: ErrorDetails & { httpStatus?: number }) {
    super(code, message, ExitCode.quota, details?.httpStatus ?? 403, details);
  }
}

/** A daemon's own checker refused a rendered file. Nothing live was changed. */
export class CheckFailedError extends Pipe2meError {
  constructor(daemon: string, file: string, checkerOutput: string, details?: ErrorDetails) {
    super(
      'check_failed',
      `${daemon} refused the rendered file ${file}; nothing live was changed.\n${indent(checkerOutput.trim() || '(the checker printed nothing)')}`,
      ExitCode.checkFailed,
      500,
      { ...details, data: { daemon, file, checker_output: checkerOutput.trim(), ...(details?.data ?? {}) } },
    );
  }
}

/** A program pipe2me drives is not installed. */
export class MissingProgramError extends Pipe2meError {
  constructor(program: string, debianPackage: string, details?: ErrorDetails) {
    super('missing_program', `${program} is not installed (or not on PATH).`, ExitCode.missingProgram, 500, {
      hint: `Install it: apt-get install ${debianPackage}` + (process.platform === 'darwin' ? ` (on macOS: brew install ${debianPackage})` : ''),
      ...details,
      data: { program, package: debianPackage, ...(details?.data ?? {}) },
    });
  }
}

/** A daemon or command failed at run time (reload, signal, a non-zero exit we did not expect). */
export class DaemonError extends Pipe2meError {
  constructor(code: string, message: string, details?: ErrorDetails) {
    super(code, message, ExitCode.daemon, 502, details);
  }
}

/** A remote server could not be reached or answered nonsense. */
export class UnreachableError extends Pipe2meError {
  constructor(code: string, message: string, details?: ErrorDetails) {
    super(code, message, ExitCode.unreachable, 502, details);
  }
}

export function indent(text: string, prefix = '  '): string {
  return text
    .split('\n')
    .map((l) => prefix + l)
    .join('\n');
}

export function isPipe2meError(e: unknown): e is Pipe2meError {
  return e instanceof Pipe2meError;
}
