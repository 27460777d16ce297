/**
 * The CA's settings and the openssl config rendered from them. Pure: settings in, text out.
 *
 * openssl's config syntax has no quoting that would make arbitrary text safe (`$` expands variables,
 * `#` starts a comment, `,` separates list items, a newline starts a new key), so every value that
 * reaches the file goes through a helper that accepts only a strict character set and refuses the
 * rest, instead of trying to escape it.
 */
import Handlebars from 'handlebars';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { InputError } from '../util/errors.js';
import { TEMPLATES_DIR } from '../package-root.js';
import { CaErrorCode } from './codes.js';
import { normalizeFqdn, preview } from './fqdn.js';

export interface CaSettings {
  /** Absolute path of the CA directory. */
  dir: string;
  /** URL written into every leaf's crlDistributionPoints; null leaves the extension out. */
  crlUrl: string | null;
  /** nextUpdate of each CRL, in days from its generation. */
  crlDays: number;
  /** Validity of a pod certificate when the caller gives none. */
  defaultDays: number;
  /** When set, the self-signed root carries a critical nameConstraints for this domain. */
  restrictToDomain: string | null;
}

export const DEFAULT_LEAF_DAYS = 90;
export const DEFAULT_CRL_DAYS = 30;
export const DEFAULT_ROOT_DAYS = 3650;
/** Upper bound for any validity we are asked for: beyond this it is a typo, not a wish. */
export const MAX_DAYS = 36_500;

const TEMPLATE_DIR = path.join(TEMPLATES_DIR, 'openssl');

function configValueError(what: string, value: unknown, why: string): never {
  throw new InputError(CaErrorCode.configValueInvalid, `The CA setting ${what} = ${preview(String(value))} cannot go into openssl.cnf: ${why}.`, {
    hint: 'Use plain characters: letters, digits and . _ ~ : / @ % + - (no spaces, quotes, $, #, commas or newlines).',
  });
}

const SAFE_VALUE = /^[A-Za-z0-9._~:/@%+-]{1,1024}$/;
const SAFE_PATH = /^\/[A-Za-z0-9._/+-]{0,1023}$/;
const SAFE_URL = /^https?:\/\/[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?(?:\/[A-Za-z0-9._~%/+-]*)?$/;

export function checkDays(what: string, days: unknown): number {
  if (typeof days !== 'number' || !Number.isInteger(days) || days < 1 || days > MAX_DAYS) {
    throw new InputError(CaErrorCode.daysInvalid, `${what} must be a whole number of days between 1 and ${MAX_DAYS}, not ${preview(String(days))}.`);
  }
  return days;
}

/** Validate settings once, where they enter; the template helpers check again where they leave. */
export function validateSettings(s: CaSettings): CaSettings {
  if (!SAFE_PATH.test(s.dir) || s.dir.split('/').includes('..')) configValueError('dir', s.dir, 'it must be an absolute path of plain characters');
  if (s.crlUrl !== null && !SAFE_URL.test(s.crlUrl)) configValueError('crlUrl', s.crlUrl, 'it must be a plain http:// or https:// URL');
  checkDays('crlDays', s.crlDays);
  checkDays('defaultDays', s.defaultDays);
  return {
    dir: path.normalize(s.dir),
    crlUrl: s.crlUrl,
    crlDays: s.crlDays,
    defaultDays: s.defaultDays,
    restrictToDomain: s.restrictToDomain === null ? null : normalizeFqdn(s.restrictToDomain),
  };
}

function makeEngine(): typeof Handlebars {
  const hb = Handlebars.create();
  hb.registerHelper('cnf', (value: unknown) => {
    if (typeof value !== 'string' || !SAFE_VALUE.test(value)) configValueError('(template value)', value, 'it contains characters openssl.cnf cannot hold safely');
    return value;
  });
  hb.registerHelper('int', (value: unknown) => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) configValueError('(number)', value, 'it is not a whole number');
    return String(value);
  });
  hb.registerHelper('fqdn', (value: unknown) => normalizeFqdn(String(value)));
  hb.registerHelper('san', (names: unknown) => {
    if (!Array.isArray(names) || names.length === 0) configValueError('subjectAltName', names, 'it needs at least one name');
    return (names as unknown[]).map((n) => 'DNS:' + normalizeFqdn(String(n), { allowWildcard: true })).join(', ');
  });
  hb.registerPartial('leafExtensions', readTemplate('leaf-extensions.cnf.hbs'));
  return hb;
}

function readTemplate(name: string): string {
  return readFileSync(path.join(TEMPLATE_DIR, name), 'utf8');
}

let engine: typeof Handlebars | undefined;
let cnfTemplate: HandlebarsTemplateDelegate | undefined;
let leafTemplate: HandlebarsTemplateDelegate | undefined;

function templates(): { cnf: HandlebarsTemplateDelegate; leaf: HandlebarsTemplateDelegate } {
  engine ??= makeEngine();
  cnfTemplate ??= engine.compile(readTemplate('openssl.cnf.hbs'), { noEscape: true, strict: true });
  leafTemplate ??= engine.compile(readTemplate('leaf-extensions.cnf.hbs'), { noEscape: true, strict: true });
  return { cnf: cnfTemplate, leaf: leafTemplate };
}

/** The CA's openssl.cnf. Its leaf section has no subjectAltName: each signing gets its own copy with one. */
export function renderOpensslCnf(settings: CaSettings): string {
  const s = validateSettings(settings);
  return templates().cnf({ ...s, names: null, rsa: false });
}

export interface LeafExtensionInput {
  /** DNS names for the subjectAltName, validated again here. */
  names: string[];
  /** The certificate's key is RSA (adds keyEncipherment). */
  rsa: boolean;
}

/** The per-signing extension file: the pipe2me_leaf section with this certificate's SAN. */
export function renderLeafExtensions(settings: CaSettings, leaf: LeafExtensionInput): string {
  const s = validateSettings(settings);
  // Checked here, not only in the helper: the template's {{#if names}} would quietly drop an empty SAN.
  if (!Array.isArray(leaf.names) || leaf.names.length === 0) configValueError('subjectAltName', '', 'a certificate needs at least one name');
  return templates().leaf({ crlUrl: s.crlUrl, names: leaf.names, rsa: leaf.rsa });
}
