/**
 * A public ACME CA in the test world: Debian's Pebble, run as a child process in the world's `ca`
 * namespace (203.0.113.20), validating dns-01 against the world's primary nameserver, behind a small
 * fault injector (test/stack/bin/acme-proxy.mjs) that can rate-limit or drop it. Pebble makes a new root
 * at every start; tests read it from its management interface, and clients that trust only that root
 * stand for every browser.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ADDR, type World } from '../world/index.js';
import { run } from '../../src/util/exec.js';
import { ROOT } from './stack.js';

const PROXY = path.join(ROOT, 'test', 'stack', 'bin', 'acme-proxy.mjs');
const T = { timeout: 30_000 };

export interface Pebble {
  /** The directory pipe2me is given: through the fault injector. */
  directoryUrl: string;
  /** The CA that signed Pebble's (and the injector's) own TLS certificate: pipe2me's ca.acme.trust_roots_file. */
  listenerCaFile: string;
  /** Pebble's root (what a client that trusts only the public CA trusts), as a file the client can read. */
  rootFile: string;
  /** mode pass | reset | ratelimit: see acme-proxy.mjs. */
  fault(c: { mode: 'pass' } | { mode: 'reset' } | { mode: 'ratelimit'; count: number; retryAfter: number }): void;
  /** The CA's own view of a certificate: "Valid" or "Revoked" (with the reason code). */
  certStatus(serialHex: string): Promise<{ Status: string; Reason?: number }>;
}

export interface PebbleOptions {
  /** certificateValidityPeriod in seconds (Pebble's default is five years). */
  validitySeconds?: number;
  /** Where Pebble asks for dns-01 records (the world's primary nameserver). */
  dnsServer?: string;
}

export async function startPebble(world: World, opts: PebbleOptions = {}): Promise<Pebble> {
  const dir = world.mkdir('pebble', 0o755);
  const f = (n: string) => path.join(dir, n);
  // Debian's package ships no certificate for Pebble's own listener: a small CA and one certificate.
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('listener-ca.key'), '-out', f('listener-ca.pem'),
    '-days', '3', '-subj', '/CN=test listener CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'], T);
  await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('listener.key'), '-out', f('listener.csr'), '-subj', '/CN=pebble'], T);
  fs.writeFileSync(f('listener.ext'), `subjectAltName=IP:${ADDR.ca}\nextendedKeyUsage=serverAuth\n`);
  await run('openssl', ['x509', '-req', '-in', f('listener.csr'), '-CA', f('listener-ca.pem'), '-CAkey', f('listener-ca.key'), '-CAcreateserial', '-days', '3', '-extfile', f('listener.ext'), '-out', f('listener.pem')], T);
  fs.writeFileSync(f('config.json'), JSON.stringify({
    pebble: {
      listenAddress: `${ADDR.ca}:14000`, managementListenAddress: `${ADDR.ca}:15000`,
      certificate: f('listener.pem'), privateKey: f('listener.key'), httpPort: 5002, tlsPort: 5001, ocspResponderURL: '',
      externalAccountBindingRequired: false,
      ...(opts.validitySeconds ? { certificateValidityPeriod: opts.validitySeconds } : {}),
    },
  }));
  await world.start({
    name: 'pebble', host: 'ca',
    argv: ['/usr/bin/pebble', '-config', f('config.json'), '-dnsserver', `${opts.dnsServer ?? ADDR.server}:53`],
    // No random sleep before validations, no rejected nonces, no reused authorizations: deterministic runs.
    env: { PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' },
    ready: () => world.waitTcp('ca', ADDR.ca, 14000),
  });
  const control = f('fault.json');
  fs.writeFileSync(control, JSON.stringify({ mode: 'pass' }));
  await world.start({
    name: 'acme-proxy', host: 'ca',
    argv: [process.execPath, PROXY, ADDR.ca, '14443', '14000', f('listener.pem'), f('listener.key'), f('listener-ca.pem'), control],
    ready: (d, p) => p.waitLog(d.name, 'listening'),
  });
  const mgmt = async (p: string) => {
    const r = await world.inNs('ca', ['curl', '-sS', '--fail', '--cacert', f('listener-ca.pem'), `https://${ADDR.ca}:15000${p}`], { timeout: 15_000 });
    return r.stdout;
  };
  fs.writeFileSync(f('root.pem'), await mgmt('/roots/0'));
  return {
    directoryUrl: `https://${ADDR.ca}:14443/dir`,
    listenerCaFile: f('listener-ca.pem'),
    rootFile: f('root.pem'),
    fault: (c) => fs.writeFileSync(control, JSON.stringify(c)),
    certStatus: async (serial) => JSON.parse(await mgmt(`/cert-status-by-serial/${serial}`)) as { Status: string; Reason?: number },
  };
}

/** The configuration a server needs to use this Pebble (appended to pipe2me.yml). */
export function acmeConfig(p: Pebble, extra: { waitSeconds?: number; propagationTimeoutSeconds?: number; retryBaseSeconds?: number } = {}): string {
  return `
ca:
  issuer: acme
  acme:
    directory_url: ${p.directoryUrl}
    email: hostmaster@pipe.test
    trust_roots_file: ${p.listenerCaFile}
    wait_seconds: ${extra.waitSeconds ?? 8}
    propagation_timeout_seconds: ${extra.propagationTimeoutSeconds ?? 20}
    retry_base_seconds: ${extra.retryBaseSeconds ?? 2}
`;
}
