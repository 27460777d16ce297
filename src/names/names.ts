/**
 * Names: validation of operator-chosen names and generation of readable random ones.
 * A name is one DNS label (RFC 1123): 1–63 of a-z, 0-9 and '-', not starting or ending with '-'.
 * Validation happens on input; the renderers refuse anything else again on output.
 */
import { randomInt } from 'node:crypto';
import { InputError } from '../util/errors.js';
import { ADJECTIVES, ANIMALS, COLORS } from './words.js';

export const LABEL_RE = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
export const HOSTNAME_RE = /^(?=.{1,253}$)((?!-)[a-z0-9-]{1,63}(?<!-)\.)*(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** Names that never go to a pod, whatever the configuration says. */
export const ALWAYS_RESERVED = [
  'www', 'ns', 'ns0', 'ns1', 'ns2', 'ns3', 'ns4', 'mail', 'smtp', 'imap', 'pop', 'mx', 'api', 'admin', 'root',
  'localhost', 'hostmaster', 'postmaster', 'webmaster', 'abuse', 'autoconfig', 'autodiscover', 'wpad', 'isatap',
  'pipe2me', 'server', 'crl', 'ca', 'status', 'ftp',
];

function describe(value: string): string {
  const shown = value.length > 70 ? value.slice(0, 67) + '…' : value;
  return JSON.stringify(shown);
}

const LABEL_HINT = 'A name is one DNS label: 1–63 characters from a-z, 0-9 and "-", not starting or ending with "-" (e.g. home-lab-1).';

/** What is wrong with one label (as the end of a sentence), or undefined if it is a valid label. */
function labelProblem(label: string): string | undefined {
  if (label.length === 0) return 'is empty';
  if (label.length > 63) return `is ${label.length} characters long; a DNS label holds at most 63`;
  // Say which character is wrong: newlines, quotes, braces and unicode each get named.
  const bad = [...label].find((c) => !/[a-zA-Z0-9-]/.test(c));
  if (bad !== undefined) {
    const what = bad === '\n' ? 'a newline' : bad === '\r' ? 'a carriage return' : bad === '\t' ? 'a tab' : bad === ' ' ? 'a space'
      : bad.codePointAt(0)! > 127 ? `the non-ASCII character ${JSON.stringify(bad)}` : `the character ${JSON.stringify(bad)}`;
    return `contains ${what}, which a DNS label cannot hold`;
  }
  if (label.startsWith('-') || label.endsWith('-')) return 'starts or ends with "-"';
  if (!LABEL_RE.test(label.toLowerCase())) return 'is not a valid DNS label';
  return undefined;
}

/** Checks a requested name; returns it lower-cased. Throws InputError saying exactly what is wrong. */
export function validateName(raw: unknown, reserved: Iterable<string> = []): string {
  if (typeof raw !== 'string' || raw.length === 0) {
    throw new InputError('bad_name', 'The name is empty.', { hint: 'Give one DNS label, e.g. my-lab, or leave --name out to get a generated one.' });
  }
  const problem = labelProblem(raw);
  if (problem) throw new InputError('bad_name', `The name ${describe(raw)} ${problem}.`, { hint: LABEL_HINT });
  const name = raw.toLowerCase();
  const reservedSet = new Set([...ALWAYS_RESERVED, ...reserved]);
  if (reservedSet.has(name)) {
    throw new InputError('reserved_name', `The name ${describe(name)} is reserved.`, { hint: 'Choose another name; reserved: ' + [...reservedSet].sort().join(', ') });
  }
  return name;
}

/**
 * Checks a name given to find an existing subdomain: its name (calm-red-otter) or its fully qualified
 * name (calm-red-otter.pipe.example.com, a trailing dot allowed). Returns it lower-cased, without the
 * trailing dot. Only the syntax is checked: a reserved name is refused when a subdomain is created, but
 * looking one up must simply find nothing — and a name reserved later must still be found.
 * A malformed name is bad input (exit 2), never "not found" (exit 4), so a typo in a script says what
 * is wrong instead of suggesting the subdomain is gone.
 */
export function validateLookupName(raw: unknown): string {
  const hint = 'Give a subdomain by its name, one DNS label (a-z, 0-9 and "-", e.g. calm-red-otter), or by its fully qualified name (calm-red-otter.pipe.example.com).';
  if (typeof raw !== 'string' || raw.length === 0) throw new InputError('bad_name', 'The name is empty.', { hint });
  const name = raw.endsWith('.') ? raw.slice(0, -1) : raw;
  if (!name.includes('.')) {
    const problem = labelProblem(name);
    if (problem) throw new InputError('bad_name', `The name ${describe(raw)} ${problem}.`, { hint });
    return name.toLowerCase();
  }
  if (name.length > 253) throw new InputError('bad_name', `The name ${describe(raw)} is ${name.length} characters long; a DNS name holds at most 253.`, { hint });
  for (const label of name.split('.')) {
    if (label.length === 0) throw new InputError('bad_name', `The name ${describe(raw)} has an empty label (a leading dot or two dots in a row).`, { hint });
    const problem = labelProblem(label);
    if (problem) throw new InputError('bad_name', `The name ${describe(raw)} is not a valid DNS name: its label ${describe(label)} ${problem}.`, { hint });
  }
  return name.toLowerCase();
}

function pick<T>(list: readonly T[]): T {
  return list[randomInt(list.length)]!;
}

/** A readable random name (crypto randomness), e.g. calm-red-otter. */
export function generateName(): string {
  return `${pick(ADJECTIVES)}-${pick(COLORS)}-${pick(ANIMALS)}`;
}

export function isHostname(s: string): boolean {
  return HOSTNAME_RE.test(s);
}
