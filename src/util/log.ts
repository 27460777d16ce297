/**
 * One line per event for the long-running processes (serve, watch, probe, the pod's start): text for a
 * terminal and the journal, or JSON (`--log-format json`, one object per line, for journald's and Loki's
 * parsers) with the event's name, the subdomain and the outcome as fields of their own. Whatever the
 * caller passes, nothing shaped like a pipe2me secret is ever written.
 */

export type LogFormat = 'text' | 'json';
export const LOG_FORMATS: readonly LogFormat[] = ['text', 'json'];

export interface EventFields {
  /** What happened, one word (snake_case): the event's name in docs/operations.md. */
  event?: string;
  subdomain?: string;
  outcome?: string;
  [key: string]: unknown;
}

/** A log call: a sentence for people, and fields for machines. */
export type Log = (message: string, fields?: EventFields) => void;

// Tokens, claims, pod and operator secrets: a prefix and 43 base64url characters.
const SECRET = /p2m[tcso]_[A-Za-z0-9_-]{20,}/g;

export function redact(text: string): string {
  return text.replace(SECRET, (m) => `${m.slice(0, 5)}…(redacted)`);
}

function clean(v: unknown): unknown {
  if (typeof v === 'string') return redact(v);
  if (Array.isArray(v)) return v.map(clean);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, clean(x)]));
  return v;
}

/** The line for one event, pure. */
export function formatEvent(format: LogFormat, processName: string, at: Date, message: string, fields: EventFields = {}): string {
  // Text goes to a terminal: control characters (from a pod's headers, a router's answers) are escaped.
  // eslint-disable-next-line no-control-regex
  if (format === 'text') return `${at.toISOString()} ${processName ? `${processName}: ` : ''}${redact(message).replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}\n`;
  const { event, ...rest } = fields;
  return `${JSON.stringify({ ts: at.toISOString(), process: processName, event: event ?? 'message', message: redact(message), ...(clean(rest) as object) })}\n`;
}

export function createLog(processName: string, format: LogFormat = 'text', write: (line: string) => void = (l) => process.stderr.write(l)): Log {
  return (message, fields) => write(formatEvent(format, processName, new Date(), message, fields));
}

/** Validates --log-format. */
export function parseLogFormat(v: string): LogFormat {
  if ((LOG_FORMATS as readonly string[]).includes(v)) return v as LogFormat;
  throw new Error(`--log-format takes text or json (got ${JSON.stringify(v.slice(0, 40))})`);
}
