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

/** Checks a requested name; returns it lower-cased. Throws InputError saying exactly what is wrong. */
export function validateName(raw: unknown, reserved: Iterable<string> = []): string {
  if (typeof raw !== 'string' || raw.length === 0) {
    throw new InputError('bad_name', 'The name is empty.', { hint: 'Give one DNS label, e.g. my-lab, or leave --name out to get a generated one.' });
  }
  const hint = 'A name is one DNS label: 1–63 characters from a-z, 0-9 and "-", not starting or ending with "-" (e.g. home-lab-1).';
  if (raw.length > 63) throw new InputError('bad_name', `The name ${describe(raw)} is ${raw.length} characters long; a DNS label holds at most 63.`, { hint });
  // Say which character is wrong: newlines, quotes, braces and unicode each get named.
  const bad = [...raw].find((c) => !/[a-zA-Z0-9-]/.test(c));
  if (bad !== undefined) {
    const what = bad === '\n' ? 'a newline' : bad === '\r' ? 'a carriage return' : bad === '\t' ? 'a tab' : bad === ' ' ? 'a space'
      : bad.codePointAt(0)! > 127 ? `the non-ASCII character ${JSON.stringify(bad)}` : `the character ${JSON.stringify(bad)}`;
    throw new InputError('bad_name', `The name ${describe(raw)} contains ${what}, which a DNS label cannot hold.`, { hint });
  }
  const name = raw.toLowerCase();
  if (name.startsWith('-') || name.endsWith('-')) throw new InputError('bad_name', `The name ${describe(raw)} starts or ends with "-".`, { hint });
  if (!LABEL_RE.test(name)) throw new InputError('bad_name', `The name ${describe(raw)} is not a valid DNS label.`, { hint });
  const reservedSet = new Set([...ALWAYS_RESERVED, ...reserved]);
  if (reservedSet.has(name)) {
    throw new InputError('reserved_name', `The name ${describe(name)} is reserved.`, { hint: 'Choose another name; reserved: ' + [...reservedSet].sort().join(', ') });
  }
  return name;
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
