/** The store's own errors: a store newer than this pipe2me, and a store that cannot be reached now. */
import { ExitCode, Pipe2meError, type ErrorDetails } from '../util/errors.js';

export class DowngradeError extends Pipe2meError {
  constructor(where: string, found: number, known: number) {
    super('state_too_new', `The state store ${where} has schema version ${found}, but this pipe2me knows only up to version ${known}. It was written by a newer pipe2me.`,
      ExitCode.config, 500, { hint: 'Install that newer pipe2me again (downgrades are refused so that no data is lost), or restore a backup made before the upgrade.' });
  }
}

/** SQLSTATE classes and codes that mean "the server is not there (now)", not "this query is wrong". */
const UNAVAILABLE_SQLSTATE = /^(08...|57P01|57P02|57P03|53300|25006)$/;
const UNAVAILABLE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * The store cannot be used right now: no PostgreSQL server reachable or read-write (or SQLite locked
 * past its busy timeout). Temporary by nature: the API answers 503 with this code, CLIs exit 11.
 */
export function storeUnavailable(e: unknown): Pipe2meError | undefined {
  if (!e || typeof e !== 'object') return undefined;
  const err = e as { code?: unknown; message?: unknown; name?: unknown };
  if (err instanceof Pipe2meError) return err.code === 'store_unavailable' ? err : undefined;
  const code = typeof err.code === 'string' ? err.code : '';
  const message = typeof err.message === 'string' ? err.message : '';
  const lost = UNAVAILABLE_SQLSTATE.test(code) || UNAVAILABLE_ERRNO.has(code) || code === 'SQLITE_BUSY'
    || /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(message);
  if (!lost) return undefined;
  return new StoreUnavailableError(`The state store cannot be used right now (${code || message.slice(0, 80)}).`, { cause: e });
}

/** No server of the state store can be used right now (none reachable, or none read-write). Temporary. */
export class StoreUnavailableError extends Pipe2meError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('store_unavailable', message, ExitCode.unreachable, 503, {
      hint:
        'This is temporary: pipe2me uses the store again as soon as a server answers (a promoted standby too) — retry. ' +
        'The command exits with 11 (a server could not be reached). Check the servers (pg_isready -h HOST -p PORT) and state.url.',
      ...details,
    });
  }
}

