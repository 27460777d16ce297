/**
 * Readiness is always a poll with a deadline, never a fixed sleep: the world comes up as fast as its
 * daemons do, and a daemon that never gets ready fails with a message that says what was awaited.
 */

export class WaitTimeoutError extends Error {
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
    readonly lastError: unknown,
  ) {
    const last = lastError instanceof Error ? `: last attempt: ${lastError.message}` : '';
    super(`timed out after ${timeoutMs} ms waiting for ${what}${last}`);
    this.name = 'WaitTimeoutError';
  }
}

export interface WaitOptions {
  timeoutMs?: number;
  /** Pause between attempts. Short: attempts are cheap and every ms counts in bring-up time. */
  intervalMs?: number;
  /** Checked before every attempt; a thrown error ends the wait at once (e.g. "the daemon exited"). */
  abortIf?: () => void;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Call `probe` until it returns something other than false/undefined/null, and return that. A probe
 * that throws counts as "not yet" (the error is kept for the timeout message).
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | false | undefined | null> | T | false | undefined | null,
  opts: WaitOptions = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = opts.intervalMs ?? 25;
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    opts.abortIf?.();
    try {
      const value = await probe();
      if (value !== false && value !== undefined && value !== null) return value;
    } catch (e) {
      lastError = e;
    }
    if (performance.now() >= deadline) throw new WaitTimeoutError(what, timeoutMs, lastError);
    await sleep(Math.min(intervalMs, Math.max(1, deadline - performance.now())));
  }
}
