/**
 * Reading pipe2me.yml: YAML → JSON Schema validation (ajv, unknown keys are errors, defaults filled in)
 * → derived values → a fully-set Config. Every problem names the key, says what is wrong and how to fix it.
 */
import type { ErrorObject } from 'ajv';
import validate from './validate.generated.js';
import yaml from 'js-yaml';
import * as fs from 'node:fs';
import { isIPv6 } from 'node:net';
import * as path from 'node:path';
import { CONFIG_ASSETS_DIR } from '../package-root.js';
import { ConfigError } from '../util/errors.js';
import { canonicalIp } from '../net/address.js';
import { parseDuration } from './duration.js';
import type { Config, RelayConfig } from './types.js';

export const DEFAULT_CONFIG_FILE = '/etc/pipe2me/pipe2me.yml';

type Schema = Record<string, unknown>;
let cachedSchema: Schema | undefined;
export function loadSchema(): Schema {
  cachedSchema ??= JSON.parse(fs.readFileSync(path.join(CONFIG_ASSETS_DIR, 'pipe2me.schema.json'), 'utf8')) as Schema;
  return cachedSchema;
}

/** "/dns/ttl" → "dns.ttl"; "/dns/secondaries/0/ipv4" → "dns.secondaries[0].ipv4". */
export function keyPath(instancePath: string, extra?: string): string {
  const parts = instancePath.split('/').filter(Boolean);
  if (extra) parts.push(extra);
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out ? `.${p}` : p;
  return out || '(top level)';
}

function schemaAt(schemaPath: string): Schema | undefined {
  // "#/properties/dns/properties/ttl/maximum" → the node that owns the failing keyword
  let node: unknown = loadSchema();
  const parts = schemaPath.replace(/^#\//, '').split('/');
  parts.pop();
  for (const p of parts) {
    if (node && typeof node === 'object') node = (node as Record<string, unknown>)[p];
  }
  return node && typeof node === 'object' ? (node as Schema) : undefined;
}

function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}

function showValue(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + '…' : s;
}

function valueAt(doc: unknown, instancePath: string): unknown {
  let node = doc;
  for (const p of instancePath.split('/').filter(Boolean)) node = node && typeof node === 'object' ? (node as Record<string, unknown>)[p] : undefined;
  return node;
}

export function describeSchemaErrors(errors: ErrorObject[], doc: unknown): string[] {
  const lines: string[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    let line: string;
    if (e.keyword === 'additionalProperties') {
      const key = String((e.params as { additionalProperty: string }).additionalProperty);
      const owner = schemaAt(e.schemaPath);
      const known = Object.keys((owner?.properties as Record<string, unknown>) ?? {});
      const close = known.filter((k) => levenshtein(k, key) <= 2);
      line = `unknown key "${keyPath(e.instancePath, key)}"` +
        (close.length ? ` — did you mean "${keyPath(e.instancePath, close[0])}"?` : known.length ? ` — allowed here: ${known.join(', ')}` : '');
    } else if (e.keyword === 'required') {
      const key = String((e.params as { missingProperty: string }).missingProperty);
      const sub = (schemaAt(e.schemaPath)?.properties as Record<string, Schema> | undefined)?.[key];
      line = `missing key "${keyPath(e.instancePath, key)}"` + (sub?.['x-hint'] ? `. ${String(sub['x-hint'])}` : '');
    } else {
      const node = schemaAt(e.schemaPath);
      const hint = node?.['x-hint'] ? ` ${String(node['x-hint'])}` : '';
      let what = e.message ?? 'is invalid';
      if (e.keyword === 'enum') what = `must be one of ${((e.params as { allowedValues: unknown[] }).allowedValues).map((v) => JSON.stringify(v)).join(', ')}`;
      if (e.keyword === 'format') what = 'is not valid';
      const got = node?.['x-secret'] ? 'the value is not shown: it may hold a password' : `got ${showValue(valueAt(doc, e.instancePath))}`;
      line = `"${keyPath(e.instancePath)}" ${what} (${got}).${hint}`;
    }
    if (!seen.has(line)) {
      seen.add(line);
      lines.push(line);
    }
  }
  return lines;
}

interface RawConfig {
  domain: string;
  server: { name: string; ipv4?: string; ipv6: string | null };
  relays?: { name: string; ipv4: string | string[]; ipv6: string | string[] | null }[];
  relay?: string;
  ssh: { port: number; tunnel_user: string; keys_user: string; max_sessions_per_pod: number; per_source_max_startups: number; login_grace_seconds: number; client_alive_interval: number; client_alive_count_max: number; ciphers: string[] };
  ports: { first: number; last: number; max_per_subdomain: number };
  http: { redirect_status: 301 | 302 | 307 | 308; api_port: number; stream_module: string | null; worker_processes: number | string; worker_user: string };
  dns: {
    daemon: 'bind' | 'nsd';
    ttl: number;
    primary: { name?: string; ipv4?: string };
    secondaries: { name: string; ipv4: string }[];
    hostmaster?: string;
    control_port: number;
    allow_non_global: boolean;
    responses_per_second: number;
  };
  firewall: { enabled: boolean; table: string; ssh_new_per_second: number; ssh_burst: number };
  metrics: { per_pod: boolean; tunnel_bytes: boolean };
  ca: {
    validity_days: number; renew_before_days: number; allowed_curves: string[]; min_rsa_bits: number; issuer: 'private' | 'acme';
    acme: { directory_url: string; email: string; eab_kid: string | null; eab_hmac_key_file: string | null; trust_roots_file: string | null; wait_seconds: number; propagation_timeout_seconds: number; retry_base_seconds: number } | null;
  };
  subdomains: { reserved_names: string[]; default_lifespan: string | null };
  probe: { timeout_ms: number; concurrency: number; recover_after: number; flap_window: string; prompt: boolean };
  api: { rate_per_minute: number; max_body_bytes: number };
  state: Config['state'];
  paths: Config['paths'];
}

/** Validates a parsed document; pure apart from reading the schema. */
export function configFromDocument(doc: unknown, file: string): Config {
  if (doc === null || doc === undefined) throw new ConfigError(`${file} is empty.`, { hint: 'Start from config/pipe2me.example.yml, or run `pipe2me-ctl init --domain ... --ipv4 ...`.' });
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`${file} must be a YAML mapping of keys (domain:, server:, ...), not ${Array.isArray(doc) ? 'a list' : typeof doc}.`);
  const copy = structuredClone(doc);
  if (!validate(copy)) {
    const lines = describeSchemaErrors(validate.errors ?? [], doc);
    throw new ConfigError(`${file} is not valid:\n${lines.map((l) => '  - ' + l).join('\n')}`, {
      hint: 'Fix the keys above; the full schema with every key is config/pipe2me.schema.json (example: config/pipe2me.example.yml).',
      data: { file, problems: lines },
    });
  }
  const raw = copy as unknown as RawConfig;
  const problems: string[] = [];
  if (raw.server.ipv6 !== null && raw.server.ipv6 !== undefined && !isIPv6(raw.server.ipv6)) problems.push(`"server.ipv6" is not valid (got ${showValue(raw.server.ipv6)}). The server's public IPv6 address, or leave it out.`);
  if (raw.ports.last < raw.ports.first) problems.push(`"ports.last" (${raw.ports.last}) is below "ports.first" (${raw.ports.first}). Make last >= first.`);
  if (raw.ssh.port >= raw.ports.first && raw.ssh.port <= raw.ports.last) problems.push(`"ssh.port" ${raw.ssh.port} lies inside the public port range ${raw.ports.first}-${raw.ports.last}. Move one of them.`);
  if (raw.http.api_port >= raw.ports.first && raw.http.api_port <= raw.ports.last) problems.push(`"http.api_port" ${raw.http.api_port} lies inside the public port range. Move one of them.`);
  if (raw.ca.issuer === 'acme' && raw.ca.acme === null) problems.push('"ca.issuer" is acme, but "ca.acme" is not set. Give at least ca.acme.directory_url and ca.acme.email (see config/pipe2me.example.yml).');
  if (raw.ca.acme && (raw.ca.acme.eab_kid === null) !== (raw.ca.acme.eab_hmac_key_file === null)) problems.push('"ca.acme.eab_kid" and "ca.acme.eab_hmac_key_file" go together: set both (external account binding) or neither.');
  if (raw.ssh.keys_user === raw.ssh.tunnel_user) problems.push(`"ssh.keys_user" must differ from "ssh.tunnel_user" (both ${showValue(raw.ssh.keys_user)}): the key lookup must not run as the user pods log in as.`);
  if (typeof raw.http.worker_processes === 'string' && raw.http.worker_processes !== 'auto') problems.push(`"http.worker_processes" must be a number or "auto" (got ${showValue(raw.http.worker_processes)}).`);
  let defaultLifespanSeconds: number | null = null;
  let flapWindowSeconds = 900;
  try {
    if (raw.subdomains.default_lifespan) defaultLifespanSeconds = parseDuration(raw.subdomains.default_lifespan);
    flapWindowSeconds = parseDuration(raw.probe.flap_window);
  } catch (e) {
    problems.push((e as Error).message);
  }
  const domain = raw.domain.toLowerCase();
  const strip = (s: string) => s.toLowerCase().replace(/\.$/, '');
  const secondaries = raw.dns.secondaries.map((s) => ({ name: strip(s.name), ipv4: s.ipv4 }));
  const names = new Set<string>();
  for (const s of secondaries) {
    if (names.has(s.name)) problems.push(`"dns.secondaries" lists ${s.name} twice.`);
    names.add(s.name);
  }
  const relays = relaysOf(raw, domain, process.env.PIPE2ME_RELAY, problems);
  if (problems.length) {
    throw new ConfigError(`${file} is not valid:\n${problems.map((l) => '  - ' + l).join('\n')}`, { data: { file, problems } });
  }
  return {
    file,
    domain,
    server: { name: raw.server.name, fqdn: `${raw.server.name}.${domain}`, ipv4: relays.here.ipv4, ipv6: relays.here.ipv6 },
    relays: { list: relays.list, self: relays.here.name, relayed: relays.relayed, slots: relays.list[0]!.slots.length },
    ssh: {
      port: raw.ssh.port,
      tunnelUser: raw.ssh.tunnel_user,
      keysUser: raw.ssh.keys_user,
      maxSessionsPerPod: raw.ssh.max_sessions_per_pod,
      perSourceMaxStartups: raw.ssh.per_source_max_startups,
      loginGraceSeconds: raw.ssh.login_grace_seconds,
      clientAliveInterval: raw.ssh.client_alive_interval,
      clientAliveCountMax: raw.ssh.client_alive_count_max,
      ciphers: raw.ssh.ciphers,
    },
    ports: { first: raw.ports.first, last: raw.ports.last, maxPerSubdomain: raw.ports.max_per_subdomain },
    http: {
      redirectStatus: raw.http.redirect_status,
      apiPort: raw.http.api_port,
      streamModule: raw.http.stream_module,
      workerProcesses: raw.http.worker_processes === 'auto' ? 'auto' : Number(raw.http.worker_processes),
      workerUser: raw.http.worker_user,
    },
    dns: {
      daemon: raw.dns.daemon,
      ttl: raw.dns.ttl,
      // With relays every relay is a nameserver of the zone (<relay>.<domain>); the SOA names the first.
      primary: relays.relayed && !raw.dns.primary.name
        ? { name: relays.list[0]!.fqdn, ipv4: raw.dns.primary.ipv4 ?? relays.list[0]!.ipv4 }
        : { name: strip(raw.dns.primary.name ?? `ns1.${domain}`), ipv4: raw.dns.primary.ipv4 ?? relays.here.ipv4 },
      secondaries,
      hostmaster: strip(raw.dns.hostmaster ?? `hostmaster.${domain}`),
      controlPort: raw.dns.control_port,
      allowNonGlobal: raw.dns.allow_non_global,
      responsesPerSecond: raw.dns.responses_per_second,
    },
    firewall: { enabled: raw.firewall.enabled, table: raw.firewall.table, sshNewPerSecond: raw.firewall.ssh_new_per_second, sshBurst: raw.firewall.ssh_burst },
    metrics: { perPod: raw.metrics.per_pod, tunnelBytes: raw.metrics.tunnel_bytes },
    ca: {
      validityDays: raw.ca.validity_days,
      renewBeforeDays: raw.ca.renew_before_days,
      allowedCurves: raw.ca.allowed_curves,
      minRsaBits: raw.ca.min_rsa_bits,
      issuer: raw.ca.issuer,
      acme: raw.ca.acme === null ? null : {
        directoryUrl: raw.ca.acme.directory_url, email: raw.ca.acme.email, eabKid: raw.ca.acme.eab_kid, eabHmacKeyFile: raw.ca.acme.eab_hmac_key_file,
        trustRootsFile: raw.ca.acme.trust_roots_file, waitSeconds: raw.ca.acme.wait_seconds, propagationTimeoutSeconds: raw.ca.acme.propagation_timeout_seconds, retryBaseSeconds: raw.ca.acme.retry_base_seconds,
      },
    },
    subdomains: { reservedNames: raw.subdomains.reserved_names, defaultLifespanSeconds },
    probe: { timeoutMs: raw.probe.timeout_ms, concurrency: raw.probe.concurrency, recoverAfter: raw.probe.recover_after, flapWindowSeconds, prompt: raw.probe.prompt },
    api: { ratePerMinute: raw.api.rate_per_minute, maxBodyBytes: raw.api.max_body_bytes },
    state: raw.state,
    paths: raw.paths,
  };
}

/**
 * The relays and this machine's one. Without `relays:`, one relay: the server itself. With them, every
 * relay's addresses, and `relay:` (or PIPE2ME_RELAY) must name one of them; `server.ipv4`, if given too,
 * must be that relay's (the file differs from relay to relay only in which relay it is).
 */
function relaysOf(raw: RawConfig, domain: string, fromEnv: string | undefined, problems: string[]) {
  if (!raw.relays) {
    if (raw.relay !== undefined) problems.push(`"relay" names ${showValue(raw.relay)}, but there is no "relays" list. Add relays: (every relay's name and addresses), or leave relay: out.`);
    if (!raw.server.ipv4) problems.push('"server.ipv4" is missing. The server\'s public IPv4 address, e.g. 198.51.100.10.');
    const ipv4 = raw.server.ipv4 ?? '0.0.0.0';
    const ipv6 = raw.server.ipv6 ?? null;
    const one: RelayConfig = { name: raw.server.name, fqdn: `${raw.server.name}.${domain}`, ipv4, ipv6, slots: [{ ipv4, ipv6 }] };
    return { list: [one], here: one, relayed: false };
  }
  const list: RelayConfig[] = raw.relays.map((r) => {
    const v4 = Array.isArray(r.ipv4) ? r.ipv4 : [r.ipv4];
    const v6 = r.ipv6 === null || r.ipv6 === undefined ? [] : Array.isArray(r.ipv6) ? r.ipv6 : [r.ipv6];
    const name = r.name.toLowerCase();
    if (v6.length > 0 && v6.length !== v4.length) {
      problems.push(`"relays" ${name}: ipv6 has ${v6.length} address(es) and ipv4 ${v4.length}. Give one IPv6 address per slot (per IPv4 address), or none.`);
    }
    // One spelling per address (sshd matches a key's permitlisten host against the pod's as text).
    const slots = v4.map((ipv4, i) => ({ ipv4, ipv6: v6[i] === undefined ? null : isIPv6(v6[i]!) ? canonicalIp(v6[i]!) : v6[i]! }));
    for (const a of slots.flatMap((x) => [x.ipv4, x.ipv6])) {
      if (a !== null && /^(0\.0\.0\.0|127\.|::$|::1$)/.test(a)) problems.push(`"relays" ${name}: ${a} is not a public address (unspecified or loopback). Give the relay's own public addresses.`);
    }
    return { name, fqdn: `${name}.${domain}`, ipv4: slots[0]!.ipv4, ipv6: slots[0]!.ipv6, slots };
  });
  const seen = new Set<string>();
  for (const r of list) {
    if (seen.has(r.name)) problems.push(`"relays" lists ${r.name} twice. Give every relay its own name.`);
    seen.add(r.name);
    for (const slot of r.slots) if (slot.ipv6 !== null && !isIPv6(slot.ipv6)) problems.push(`"relays" ${r.name}: ipv6 ${showValue(slot.ipv6)} is not a valid IPv6 address.`);
    if (r.name === raw.server.name) problems.push(`"relays" ${r.name}: a relay may not be named like the server's own name (server.name ${raw.server.name}), which answers on every relay.`);
  }
  // A pod keeps its slot on every relay: every relay needs an address for each slot.
  const slotCounts = new Set(list.map((r) => r.slots.length));
  if (slotCounts.size > 1) {
    problems.push(`"relays" give different numbers of IPv4 addresses (${list.map((r) => `${r.name}: ${r.slots.length}`).join(', ')}). Every relay has one address per slot: give each the same number.`);
  }
  const addresses = new Map<string, string>();
  for (const r of list) {
    for (const a of r.slots.flatMap((x) => [x.ipv4, x.ipv6])) {
      if (a === null) continue;
      const other = addresses.get(a);
      if (other) problems.push(other === r.name ? `"relays" ${r.name} lists the address ${a} twice. Every slot has its own.` : `"relays" ${other} and ${r.name} both have the address ${a}. Every relay has its own.`);
      addresses.set(a, r.name);
    }
  }
  const name = (fromEnv || raw.relay)?.toLowerCase();
  const here = list.find((r) => r.name === name);
  if (!name) problems.push(`"relay" is missing: say which of the relays (${list.map((r) => r.name).join(', ')}) this machine is, e.g. relay: ${list[0]!.name} (or set PIPE2ME_RELAY).`);
  else if (!here) problems.push(`${fromEnv ? 'PIPE2ME_RELAY' : '"relay"'} names ${showValue(name)}, which is not in "relays" (${list.map((r) => r.name).join(', ')}).`);
  else if (raw.server.ipv4 && raw.server.ipv4 !== here.ipv4) problems.push(`"server.ipv4" ${raw.server.ipv4} is not this relay's (${here.name}: ${here.ipv4}). Leave server.ipv4 out with relays.`);
  const self = here ?? list[0]!;
  return { list, here: self, relayed: true };
}

export function parseConfigText(text: string, file: string): Config {
  let doc: unknown;
  try {
    doc = yaml.load(text, { filename: file, schema: yaml.CORE_SCHEMA });
  } catch (e) {
    const err = e as { reason?: string; mark?: { line: number; column: number } };
    const where = err.mark ? ` at line ${err.mark.line + 1}, column ${err.mark.column + 1}` : '';
    throw new ConfigError(`${file} is not valid YAML${where}: ${err.reason ?? (e as Error).message}`, {
      hint: 'Check indentation (spaces, not tabs) and quoting near that line.',
    });
  }
  return configFromDocument(doc, file);
}

export function configFileFrom(option?: string): string {
  return option ?? process.env.PIPE2ME_CONFIG ?? DEFAULT_CONFIG_FILE;
}

export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new ConfigError(`No configuration at ${file}.`, {
        hint: 'Create one with `pipe2me-ctl init --domain pipe.example.com --ipv4 198.51.100.10`, or pass --config FILE (or set PIPE2ME_CONFIG).',
      });
    }
    throw new ConfigError(`Cannot read ${file}: ${(e as Error).message}`);
  }
  return parseConfigText(text, file);
}
