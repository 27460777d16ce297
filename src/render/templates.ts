/**
 * Handlebars, compiled with noEscape (these are config files, not HTML) and strict (a missing value is
 * an error, not an empty string), with one helper per value format. A helper refuses what its format
 * cannot hold — a newline, a quote, a brace — instead of trying to escape it: names are validated on
 * input, and this is the second line of defence on output.
 */
import Handlebars from 'handlebars';
import * as fs from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import * as path from 'node:path';
import { TEMPLATES_DIR } from '../package-root.js';
import PRECOMPILED from './precompiled.js';
import { Pipe2meError, ExitCode } from '../util/errors.js';
import { HOSTNAME_RE, LABEL_RE } from '../names/names.js';

export class RenderRefusedError extends Pipe2meError {
  constructor(template: string, helper: string, value: unknown, why: string) {
    const shown = JSON.stringify(value)?.slice(0, 80) ?? String(value);
    super('render_refused', `Refused to render ${template}: ${helper} value ${shown} ${why}. Nothing was written.`, ExitCode.internal, 500, {
      hint: 'This value should have been refused when it was entered; please report it. The live configuration is unchanged.',
      data: { template, helper },
    });
  }
}

type Check = (v: unknown) => string | undefined; // returns why it is refused

const str = (v: unknown): v is string => typeof v === 'string';
const noControl = (s: string) => !/[\u0000-\u001f\u007f]/.test(s);

const CHECKS: Record<string, Check> = {
  // A DNS label (pod names, the server's name).
  label: (v) => (str(v) && LABEL_RE.test(v) ? undefined : 'is not a DNS label'),
  // A host name, no trailing dot.
  hostname: (v) => (str(v) && HOSTNAME_RE.test(v) ? undefined : 'is not a host name'),
  ipv4: (v) => (str(v) && isIPv4(v) ? undefined : 'is not an IPv4 address'),
  ipv6: (v) => (str(v) && isIPv6(v) && !v.includes('%') ? undefined : 'is not an IPv6 address (without a zone index)'),
  port: (v) => (Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535 ? undefined : 'is not a port number'),
  int: (v) => (Number.isInteger(v) && (v as number) >= 0 ? undefined : 'is not a non-negative integer'),
  // An absolute path in sshd_config, nginx.conf, named.conf, nsd.conf, a shell script: no whitespace,
  // quotes, braces, semicolons, '#', '$', backslash or control characters in any of those formats.
  path: (v) => (str(v) && v.startsWith('/') && /^[A-Za-z0-9_./@+:,=-]+$/.test(v) ? undefined : 'is not a plain absolute path'),
  // A POSIX user name.
  user: (v) => (str(v) && /^[a-z_][a-z0-9_-]{0,30}$/.test(v) ? undefined : 'is not a user name'),
  // An OpenSSH public key blob: type and base64, nothing else (the comment is ours).
  sshkey: (v) => (str(v) && /^(ssh-ed25519|ssh-rsa) [A-Za-z0-9+/]+={0,3}$/.test(v) ? undefined : 'is not an ssh public key'),
  // A token for sshd_config / nginx: one word of safe characters.
  word: (v) => (str(v) && /^[A-Za-z0-9_.@+:,=/-]+$/.test(v) && noControl(v) ? undefined : 'is not a plain word'),
  // An http(s) URL prefix produced by pipe2me (scheme, host, port).
  url: (v) => (str(v) && /^https?:\/\/[a-z0-9.-]+(:[0-9]{1,5})?$/.test(v) ? undefined : 'is not a plain http(s) URL'),
  // A quoted string in named.conf / nsd.conf: no quote, backslash or control character.
  qstring: (v) => (str(v) && !/["\\]/.test(v) && noControl(v) ? undefined : 'cannot be held by a quoted string'),
  // A dns-01 record's owner: _acme-challenge. and a host name (the CA's own rule for where the record goes).
  acmeowner: (v) => (str(v) && v.startsWith('_acme-challenge.') && HOSTNAME_RE.test(v.slice('_acme-challenge.'.length)) ? undefined : 'is not an _acme-challenge name'),
  // A dns-01 record's value: base64url of a SHA-256 digest, 43 characters, nothing a zone file would quote.
  acmevalue: (v) => (str(v) && /^[A-Za-z0-9_-]{43}$/.test(v) ? undefined : 'is not a dns-01 key authorization digest'),
  // base64 (TSIG secrets, key material the format needs inline).
  base64: (v) => (str(v) && /^[A-Za-z0-9+/]+={0,2}$/.test(v) ? undefined : 'is not base64'),
};

/**
 * One value checked by its format's helper outside a template: for the per-pod lines that render.ts and
 * fragments.ts build in code (tens of thousands per file, patched one pod at a time), with exactly the
 * refusals a template would give.
 */
export function checked(where: string, helper: 'label' | 'hostname' | 'ipv4' | 'ipv6' | 'port' | 'int' | 'path' | 'word' | 'url' | 'sshkey' | 'acmeowner' | 'acmevalue', value: unknown): string {
  const why = CHECKS[helper]!(value);
  if (why !== undefined) throw new RenderRefusedError(where, helper, value, why);
  return String(value);
}

/**
 * What identifies the templates: their sources as installed (templates/ ships with the package, the build
 * precompiles the same files). The same in the bundled CLIs, the API and a run from the sources, so that
 * any of them may patch what another rendered.
 */
export function templatesDigestSource(names: readonly string[]): string {
  return names.map((n) => `${n}\n${fs.readFileSync(path.join(TEMPLATES_DIR, n), 'utf8')}`).join('\n');
}

export function createEnvironment(): typeof Handlebars {
  const hb = Handlebars.create();
  for (const [name, check] of Object.entries(CHECKS)) {
    hb.registerHelper(name, function (this: unknown, value: unknown, options: Handlebars.HelperOptions) {
      const why = check(value);
      if (why !== undefined) {
        const template = (options?.data?.root as { __template?: string } | undefined)?.__template ?? 'a template';
        throw new RenderRefusedError(template, name, value, why);
      }
      return String(value);
    });
  }
  // Join a list with a separator, each element checked by a named helper first.
  hb.registerHelper('join', function (list: unknown, sep: unknown, helper: unknown, options: Handlebars.HelperOptions) {
    if (!Array.isArray(list) || typeof sep !== 'string' || typeof helper !== 'string' || !CHECKS[helper]) {
      throw new RenderRefusedError('a template', 'join', list, 'is not a list with a separator and a format');
    }
    return list.map((v) => {
      const why = CHECKS[helper]!(v);
      if (why !== undefined) throw new RenderRefusedError((options?.data?.root as { __template?: string })?.__template ?? 'a template', helper, v, why);
      return String(v);
    }).join(sep);
  });
  // authorized_keys: permitlisten="P" for each of a pod's ports, comma-separated; never empty (a key line
  // without them would let the key listen anywhere sshd_config allows).
  hb.registerHelper('permitlisten', function (ports: unknown, options: Handlebars.HelperOptions) {
    if (!Array.isArray(ports) || ports.length === 0 || ports.some((p) => CHECKS.port!(p) !== undefined)) {
      throw new RenderRefusedError((options?.data?.root as { __template?: string })?.__template ?? 'a template', 'permitlisten', ports, 'is not a non-empty list of ports');
    }
    return ports.map((p) => `permitlisten="${p}"`).join(',');
  });
  hb.registerHelper('eq', (a: unknown, b: unknown) => a === b);
  return hb;
}

const env = createEnvironment();

/**
 * knownHelpersOnly: helper calls compile to direct calls instead of runtime lookups (the maps and the zone
 * have tens of thousands of lines at scale), and an unknown helper is a compile error. The build
 * precompiles with the same options (scripts/bundle.mjs).
 */
export const COMPILE_OPTIONS = {
  noEscape: true,
  strict: true,
  knownHelpers: Object.fromEntries([...Object.keys(CHECKS), 'join', 'eq', 'permitlisten'].map((h) => [h, true])),
  knownHelpersOnly: true,
} as const;
const cache = new Map<string, Handlebars.TemplateDelegate>();

/** Renders templates/<name> (e.g. "sshd/sshd_config.hbs") with `data`. */
export function renderTemplate(name: string, data: Record<string, unknown>): string {
  let t = cache.get(name);
  if (!t) {
    const spec = PRECOMPILED[name];
    t = spec
      ? env.template(spec as Parameters<typeof env.template>[0])
      : env.compile(fs.readFileSync(path.join(TEMPLATES_DIR, name), 'utf8'), COMPILE_OPTIONS);
    cache.set(name, t);
  }
  return t({ ...data, __template: name });
}

/**
 * Every template this renderer uses, as precompiled JavaScript source (for the build, which bundles them
 * into the CLIs). templates/openssl/ belongs to the CA, which has its own helpers.
 */
export function precompileAll(): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(path.join(TEMPLATES_DIR, dir), { withFileTypes: true })) {
      const rel = dir ? `${dir}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (rel !== 'openssl') walk(rel);
      }
      else if (e.name.endsWith('.hbs')) out[rel] = Handlebars.precompile(fs.readFileSync(path.join(TEMPLATES_DIR, rel), 'utf8'), COMPILE_OPTIONS) as string;
    }
  };
  walk('');
  return out;
}
