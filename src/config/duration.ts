import { InputError } from '../util/errors.js';

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** "90s", "15m", "12h", "30d", "2w" → seconds. */
export function parseDuration(text: string, what = 'duration'): number {
  const m = /^([0-9]{1,9})([smhdw])$/.exec(text.trim());
  if (!m) {
    throw new InputError('bad_duration', `${what} ${JSON.stringify(text.slice(0, 40))} is not a duration.`, {
      hint: 'Write a number and a unit: s, m, h, d or w — for example 30d or 12h.',
    });
  }
  const seconds = Number(m[1]) * UNIT_SECONDS[m[2]!]!;
  if (seconds <= 0) throw new InputError('bad_duration', `${what} must be longer than zero.`);
  return seconds;
}

export function formatDuration(seconds: number): string {
  if (seconds % 604800 === 0) return `${seconds / 604800}w`;
  if (seconds % 86400 === 0) return `${seconds / 86400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}
