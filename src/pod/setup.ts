/**
 * `pipe2me setup`: from a token (or an operator's claim token) to a ready tunnel set — a subdomain on the
 * server, an ssh key registered for it, a certificate for its name, the server's host key and CA pinned.
 * Private keys are made here and never leave this machine.
 */
import * as fs from 'node:fs';
import { isHostname } from '../names/names.js';
import { DeniedError, InputError, UnreachableError } from '../util/errors.js';
import { sameCertificate, trustAnchor } from './trust.js';
import { atomicWrite } from '../util/fsx.js';
import { requirePrograms } from '../util/which.js';
import { ApiClient, fetchPinnedCa, normalizeServer } from './api-client.js';
import { PodFiles, type PodService, type PodState } from './files.js';
import { createSshKey } from './keys.js';
import { requestCertificate } from './certificate.js';
import { checkRelays, knownHostsText } from './relays.js';

export interface SetupOptions {
  dir: string;
  server: string;
  token?: string;
  claim?: string;
  protocols?: string[];
  /** Local targets in service order: "8080" or "host:8080". */
  ports?: string[];
  name?: string;
  passthrough?: boolean;
  caFile?: string;
  caPin?: string;
  force?: boolean;
  progress?: (m: string) => void;
}

export interface SetupAnswer {
  id: string;
  secret: string;
  name: string;
  fqdn: string;
  expires: string | null;
  ports: { port: number; protocol: 'http' | 'https' | 'tcp'; url: string }[];
  entry: { http: string | null; https: string | null };
  passthrough: boolean;
  ssh: { host: string; host6?: string | null; port: number; user: string; host_key: string; host_key_alias: string };
  /** With several relays: every relay, each with its own host key (see relays.ts). */
  relays?: unknown;
  /** With relays: the address slot the pod is published at (its listen addresses are in relays). */
  slot?: number;
  ca: string | null;
  api: string;
}

const DEFAULT_LOCAL: Record<string, number> = { http: 80, https: 443 };

export function parseLocalTargets(protocols: readonly string[], ports: readonly string[] | undefined): { host: string; port: number }[] {
  if (ports && ports.length !== protocols.length) {
    throw new InputError('bad_ports', `--ports names ${ports.length} local port(s) for ${protocols.length} service(s) (${protocols.join(',')}).`, {
      hint: 'Give one local port per service, in the same order, e.g. --protocols http,https --ports 8080,8443',
    });
  }
  return protocols.map((proto, i) => {
    const raw = ports?.[i];
    if (raw === undefined) {
      const d = DEFAULT_LOCAL[proto];
      if (!d) throw new InputError('bad_ports', `A ${proto} service needs its local port: pass --ports.`, { hint: 'e.g. --protocols http,tcp --ports 8080,22' });
      return { host: 'localhost', port: d };
    }
    const m = /^(?:(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):)?(\d{1,5})$/.exec(raw.trim());
    const port = m ? Number(m[2]) : NaN;
    if (!m || port < 1 || port > 65535) throw new InputError('bad_ports', `${JSON.stringify(raw.slice(0, 40))} is not a local port (1-65535) or host:port.`);
    return { host: m[1] ? m[1].replace(/^\[|\]$/g, '') : 'localhost', port };
  });
}

function checkAnswer(a: SetupAnswer): void {
  // The server's answer reaches ssh and openssl arguments: accept only what has the expected shape.
  const ok = typeof a.id === 'string' && /^[a-f0-9]{16,64}$/.test(a.id) && isHostname(a.fqdn) && Array.isArray(a.ports) &&
    a.ports.every((p) => Number.isInteger(p.port) && ['http', 'https', 'tcp'].includes(p.protocol)) &&
    /^[a-z_][a-z0-9_-]{0,30}$/.test(a.ssh?.user ?? '') && /^[0-9a-fA-F.:]+$|^[a-z0-9.-]+$/.test(a.ssh?.host ?? '') &&
    /^ssh-ed25519 [A-Za-z0-9+/]+=*$/.test(a.ssh?.host_key ?? '') && /^[a-z0-9.-]+$/.test(a.ssh?.host_key_alias ?? '') &&
    typeof a.secret === 'string' && a.secret.startsWith('p2ms_');
  if (!ok || (a.relays !== undefined && checkRelays(a.relays) === null)) throw new UnreachableError('bad_answer', 'The server\'s answer to setup is not what a pipe2me server sends.');
}

export async function setup(o: SetupOptions): Promise<{ state: PodState; answer: SetupAnswer; certificate: boolean }> {
  const progress = o.progress ?? (() => {});
  requirePrograms(['ssh', 'autossh', 'ssh-keygen', 'openssl']);
  const f = new PodFiles(o.dir);
  f.refuseOverwrite(Boolean(o.force));
  if (!o.token === !o.claim) throw new InputError('bad_usage', 'Give exactly one of --token (a new subdomain) or --claim (one the operator made).');
  if (o.token && !o.protocols?.length) throw new InputError('bad_usage', 'With --token, say which services to publish: --protocols http,https[,tcp]');
  const server = normalizeServer(o.server).origin;

  if (o.caFile && o.caPin) throw new InputError('bad_usage', 'Give one of --ca-pin or --ca-file, not both.');
  let ca: string | undefined;
  if (o.caFile) {
    let text: string;
    try {
      text = fs.readFileSync(o.caFile, 'utf8');
    } catch (e) {
      throw new InputError('bad_ca_file', `Cannot read --ca-file ${o.caFile}: ${(e as Error).message}`);
    }
    ca = trustAnchor(text, { what: `--ca-file ${o.caFile}` });
  } else if (o.caPin) {
    progress('fetching the server\'s CA certificate and checking it against the pin');
    ca = await fetchPinnedCa(server, o.caPin);
  }
  // Validate local targets before anything is created on the server.
  if (o.protocols) parseLocalTargets(o.protocols, o.ports);

  const client = new ApiClient({ server, ...(ca ? { ca } : {}) });
  progress(o.token ? 'creating the subdomain' : 'claiming the subdomain');
  const answer = o.token
    ? await client.call<SetupAnswer>('POST', '/v1/subdomains', { token: o.token, protocols: o.protocols, ...(o.name ? { name: o.name } : {}), ...(o.passthrough ? { passthrough: true } : {}) })
    : await client.call<SetupAnswer>('POST', '/v1/claim', { claim_token: o.claim });
  checkAnswer(answer);
  const targets = parseLocalTargets(answer.ports.map((p) => p.protocol), o.ports);
  // The CA the answer names is trusted only under the same rule, and it may not differ from the one pinned.
  const offered = answer.ca ? trustAnchor(answer.ca, { what: 'the server\'s setup answer' }) : undefined;
  if (ca && offered && !sameCertificate(ca, offered)) {
    throw new DeniedError('ca_mismatch', 'The server\'s setup answer names another CA than the one this pod pinned.', {
      hint: 'Someone may be intercepting; check the pin (or --ca-file) with the operator. Nothing was set up on this pod.',
    });
  }

  f.ensure();
  // The secret first: whatever fails after this, `pipe2me destroy` can still free the name.
  atomicWrite(f.secret, answer.secret + '\n', { mode: 0o600 });
  const trust = ca ?? offered;
  if (trust) atomicWrite(f.ca, trust, { mode: 0o644 });
  const services: PodService[] = answer.ports.map((p, i) => ({ protocol: p.protocol, port: p.port, localHost: targets[i]!.host, localPort: targets[i]!.port }));
  const state: PodState = {
    version: 1,
    server,
    id: answer.id,
    name: answer.name,
    fqdn: answer.fqdn,
    domain: answer.fqdn.slice(answer.name.length + 1),
    services,
    passthrough: answer.passthrough,
    expires: answer.expires,
    ssh: { host: answer.ssh.host, host6: answer.ssh.host6 ?? null, port: answer.ssh.port, user: answer.ssh.user, hostKeyAlias: answer.ssh.host_key_alias },
    ...(answer.relays !== undefined ? { relays: checkRelays(answer.relays)! } : {}),
    ...(Number.isInteger(answer.slot) && answer.slot! > 0 && answer.slot! < 16 ? { slot: answer.slot! } : {}),
    createdAt: new Date().toISOString(),
  };
  f.write(state);
  // Exactly the keys the server named: its own, and every relay's under that relay's alias.
  atomicWrite(f.knownHosts, knownHostsText(state, { alias: answer.ssh.host_key_alias, key: answer.ssh.host_key }), { mode: 0o644 });

  const authed = new ApiClient({ server, secret: answer.secret, ...(trust ? { ca: trust } : {}) });
  progress('creating this pod\'s ssh key and registering it');
  const pub = await createSshKey(f, `pipe2me ${answer.fqdn}`);
  await authed.call('PUT', `/v1/subdomains/${answer.id}/ssh-key`, { public_key: pub });

  progress(`creating a TLS key and asking for a certificate for ${answer.fqdn}`);
  const certificate = await requestCertificate(authed, f, state);
  return { state, answer, certificate: certificate !== 'pending' };
}
