/**
 * The server's own certificates, which nginx needs before `nginx -t` can pass: `*.<domain>` for the https
 * entry and `<server name>.<domain>` for the API. Until a CA exists they are self-signed placeholders.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ServerContext } from '../server/context.js';
import { run } from '../util/exec.js';
import { atomicWrite, ensureDir } from '../util/fsx.js';

async function selfSigned(names: string[], certFile: string, keyFile: string): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-cert-'));
  try {
    const key = path.join(tmp, 'key.pem');
    const crt = path.join(tmp, 'crt.pem');
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '30',
      '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
      '-keyout', key, '-out', crt,
    ], { timeout: 30_000 });
    atomicWrite(keyFile, fs.readFileSync(key), { mode: 0o600 });
    atomicWrite(certFile, fs.readFileSync(crt), { mode: 0o644 });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

export async function ensureServerCertificates(ctx: ServerContext, progress: (m: string) => void = () => {}): Promise<void> {
  const L = ctx.layout;
  ensureDir(L.certsDir, 0o700);
  ensureDir(L.publicDir, 0o755);
  const wanted: [string[], string, string][] = [
    [[`*.${ctx.config.domain}`, ctx.config.domain], L.wildcardCert, L.wildcardKey],
    [[ctx.config.server.fqdn], L.serverCert, L.serverKey],
  ];
  for (const [names, cert, key] of wanted) {
    if (fs.existsSync(cert) && fs.existsSync(key)) continue;
    progress(`creating a placeholder certificate for ${names[0]}`);
    await selfSigned(names, cert, key);
  }
}
