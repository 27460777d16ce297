/**
 * Test helpers that make keys, requests and small CAs with the real openssl binary, so the library is
 * tested against what pods and real CAs actually produce, not against hand-made structures.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { run } from '../../src/util/exec.js';

const T = { timeout: 20_000 };

export function tempDir(tag: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), `p2m-${tag}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Key specs as `openssl genpkey` arguments. */
export const KEY_ARGS = {
  p256: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
  p384: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384'],
  p521: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-521'],
  secp256k1: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:secp256k1'],
  rsa1024: ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024'],
  rsa2048: ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'],
  rsapss2048: ['-algorithm', 'RSA-PSS', '-pkeyopt', 'rsa_keygen_bits:2048'],
  ed25519: ['-algorithm', 'ED25519'],
} as const;
export type KeySpec = keyof typeof KEY_ARGS | 'dsa';

export async function makeKey(dir: string, name: string, spec: KeySpec): Promise<string> {
  const file = path.join(dir, `${name}.key`);
  if (spec === 'dsa') {
    const params = path.join(dir, `${name}.dsaparams`);
    await run('openssl', ['genpkey', '-genparam', '-algorithm', 'DSA', '-pkeyopt', 'dsa_paramgen_bits:1024', '-pkeyopt', 'dsa_paramgen_q_bits:160', '-out', params], T);
    await run('openssl', ['genpkey', '-paramfile', params, '-out', file], T);
  } else {
    await run('openssl', ['genpkey', ...KEY_ARGS[spec], '-out', file], T);
  }
  return file;
}

export interface CsrSpec {
  key: string;
  subj: string;
  /** -addext values, e.g. "subjectAltName=DNS:a.example" */
  addext?: string[];
  /** Digest option, e.g. "-sha1"; omitted for keys that take none (ed25519). */
  digest?: string;
}

export async function makeCsr(dir: string, name: string, spec: CsrSpec): Promise<string> {
  const out = path.join(dir, `${name}.csr`);
  const args = ['req', '-new', '-key', spec.key, '-subj', spec.subj, '-out', out];
  for (const e of spec.addext ?? []) args.push('-addext', e);
  if (spec.digest) args.push(spec.digest);
  // An empty config keeps the system openssl.cnf's defaults (and its extensions) out of the request.
  args.push('-config', '/dev/null');
  await run('openssl', args, T);
  return readFileSync(out, 'utf8');
}

/**
 * A certificate authority made the way a real one would be (its own `openssl ca` database), with no
 * code from the library under test.
 */
export interface ExternalCa {
  dir: string;
  cnf: string;
  rootCert: string;
  rootKey: string;
}

function extCnf(dir: string): string {
  return `
[ ca ]
default_ca = ext_ca
[ ext_ca ]
dir = ${dir}
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir/newcerts
default_md = sha256
policy = pol_any
unique_subject = no
copy_extensions = none
[ pol_any ]
commonName = supplied
[ req ]
distinguished_name = dn
[ dn ]
[ v3_root ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ v3_inter ]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ v3_inter_mid ]
basicConstraints = critical, CA:true, pathlen:1
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ v3_not_ca ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ v3_ca_no_certsign ]
basicConstraints = critical, CA:true
keyUsage = critical, digitalSignature, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
`;
}

export async function makeExternalRoot(dir: string, cn = 'Example Real Root'): Promise<ExternalCa> {
  mkdirSync(path.join(dir, 'newcerts'), { recursive: true });
  writeFileSync(path.join(dir, 'index.txt'), '');
  writeFileSync(path.join(dir, 'serial'), '5000\n');
  const cnf = path.join(dir, 'ext.cnf');
  writeFileSync(cnf, extCnf(dir));
  const rootKey = await makeKey(dir, 'ext-root', 'p256');
  const rootCert = path.join(dir, 'ext-root.crt');
  await run('openssl', ['req', '-x509', '-new', '-key', rootKey, '-subj', `/CN=${cn}`, '-days', '30', '-config', cnf, '-extensions', 'v3_root', '-out', rootCert], T);
  return { dir, cnf, rootCert, rootKey };
}

/**
 * Issue a certificate from `issuer` through the external CA's database. `ext` names a section of its
 * config; `expired` gives a validity that ended in the past.
 */
export async function issueFrom(
  ca: ExternalCa,
  issuer: { cert: string; key: string },
  name: string,
  opts: { ext: string; keySpec?: KeySpec; days?: number; expired?: boolean },
): Promise<{ cert: string; key: string }> {
  const key = await makeKey(ca.dir, name, opts.keySpec ?? 'p256');
  const csr = path.join(ca.dir, `${name}.csr`);
  await run('openssl', ['req', '-new', '-key', key, '-subj', `/CN=${name}`, '-config', '/dev/null', '-out', csr], T);
  const cert = path.join(ca.dir, `${name}.crt`);
  const args = ['ca', '-batch', '-notext', '-config', ca.cnf, '-cert', issuer.cert, '-keyfile', issuer.key, '-extensions', opts.ext, '-in', csr, '-out', cert];
  if (opts.expired) args.push('-startdate', '20200101000000Z', '-enddate', '20200201000000Z');
  else args.push('-days', String(opts.days ?? 30));
  await run('openssl', args, T);
  return { cert, key };
}

export function read(file: string): string {
  return readFileSync(file, 'utf8');
}
