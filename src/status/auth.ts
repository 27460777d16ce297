/** Operator names and the status page's credential: HTTP Basic with the operator's name and secret (p2mo_…). */
import { InputError } from '../util/errors.js';
import { looksLikeSecret } from '../util/secrets.js';

export const OPERATOR_NAME = /^[a-z][a-z0-9-]{0,31}$/;

/** An operator name as the CLI takes it: refused with what a good one looks like (exit 2). */
export function validateOperatorName(v: string): string {
  if (!OPERATOR_NAME.test(v)) {
    throw new InputError('bad_operator_name', `${JSON.stringify(v.slice(0, 40))} is not a valid operator name.`, {
      hint: 'Use 1 to 32 lower-case letters, digits and hyphens, starting with a letter, e.g. alice or night-shift.',
    });
  }
  return v;
}

/**
 * The name and secret of an `Authorization: Basic …` header, if it holds a well-formed pair (a name as
 * above, a p2mo_ secret); anything else is undefined — and never reaches the store.
 */
export function parseBasicAuth(header: string | undefined): { name: string; secret: string } | undefined {
  if (!header || header.length > 512) return undefined;
  const m = /^Basic[ ]+([A-Za-z0-9+/]+={0,2})[ ]*$/i.exec(header);
  if (!m) return undefined;
  const pair = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = pair.indexOf(':');
  if (colon < 0) return undefined;
  const name = pair.slice(0, colon);
  const secret = pair.slice(colon + 1);
  if (!OPERATOR_NAME.test(name) || !looksLikeSecret(secret, 'p2mo')) return undefined;
  return { name, secret };
}
