/**
 * Names the CA puts into certificates. Pure.
 *
 * Every name that reaches openssl (as `-subj /CN=...` or inside an extension value) passes through here
 * first, so the strict character set is also what keeps those argv values and config lines safe: no
 * `/`, `=`, `,`, `$`, quotes or whitespace can ever get through.
 */
import { InputError } from '../util/errors.js';
import { CaErrorCode } from './codes.js';

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export interface FqdnOptions {
  /** Allow a leading `*.` label (only the server's own `*.<domain>` certificate needs it). */
  allowWildcard?: boolean;
}

/** Show untrusted text in a message: bounded length, control characters made visible. */
export function preview(text: string, max = 80): string {
  const cut = text.length > max ? text.slice(0, max) + '…' : text;
  return JSON.stringify(cut);
}

/**
 * Lower-case and validate a DNS name. Refuses anything that is not letters, digits and hyphens in
 * dot-separated labels of at most 63 characters, at least two labels, at most 253 characters in all.
 */
export function normalizeFqdn(name: string, opts: FqdnOptions = {}): string {
  const fail = (why: string): never => {
    throw new InputError(CaErrorCode.invalidName, `${preview(String(name))} is not a valid host name: ${why}.`, {
      hint: 'Use a name like calm-red-otter.pipe.example.com (letters, digits, hyphens; labels separated by dots).',
    });
  };
  if (typeof name !== 'string' || name.length === 0) return fail('it is empty');
  if (name.length > 253) return fail('it is longer than 253 characters');
  const lower = name.toLowerCase();
  const labels = lower.split('.');
  if (labels.length < 2) return fail('it needs at least two labels');
  labels.forEach((label, i) => {
    if (label === '*' && i === 0) {
      if (!opts.allowWildcard) fail('a wildcard is not allowed here');
      return;
    }
    if (!LABEL.test(label)) fail(`label ${preview(label, 70)} is not letters, digits and inner hyphens of 1–63 characters`);
  });
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? '')) fail('the last label is numeric (an IP address is not a host name)');
  return lower;
}

/** True when `name` is `domain` itself or a name under it (a wildcard `*.domain` counts as under it). */
export function isWithinDomain(name: string, domain: string): boolean {
  const n = name.toLowerCase();
  const d = domain.toLowerCase();
  return n === d || n.endsWith('.' + d);
}
