/** Key material made on the pod, where it stays: the ssh key and the TLS key, both 0600. */
import * as fs from 'node:fs';
import { run } from '../util/exec.js';
import type { PodFiles } from './files.js';

export async function createSshKey(f: PodFiles, comment: string): Promise<string> {
  fs.rmSync(f.sshKey, { force: true });
  fs.rmSync(f.sshPub, { force: true });
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', f.sshKey], { timeout: 30_000 });
  fs.chmodSync(f.sshKey, 0o600);
  return fs.readFileSync(f.sshPub, 'utf8').trim();
}

/**
 * A fresh EC P-256 key and a CSR for exactly the fqdn. A renewal makes a new key too: the old one may
 * have been copied off with a backup, and a new key costs nothing.
 */
export async function createTlsKeyAndCsr(f: PodFiles, fqdn: string, keyFile = f.tlsKey): Promise<string> {
  await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyFile], { timeout: 30_000 });
  fs.chmodSync(keyFile, 0o600);
  await run('openssl', ['req', '-new', '-key', keyFile, '-subj', `/CN=${fqdn}`, '-addext', `subjectAltName=DNS:${fqdn}`, '-out', f.csr], { timeout: 30_000 });
  return fs.readFileSync(f.csr, 'utf8');
}
