/**
 * The CA against the real openssl: every certificate it issues is checked with `openssl verify`
 * (directly, through an installed intermediate, and against the CRL), refusals are shown to leave the
 * CA directory byte for byte as it was, and parallel signings (in one process and across processes)
 * are shown not to corrupt the database.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../src/ca/index.js';
import { CaErrorCode, CsrErrorCode } from '../../src/ca/codes.js';
import { parseCertificate } from '../../src/ca/x509.js';
import { isPipe2meError } from '../../src/util/errors.js';
import { run } from '../../src/util/exec.js';
import { issueFrom, makeCsr, makeExternalRoot, makeKey, read, tempDir, type ExternalCa } from '../helpers/pki.js';

const DOMAIN = 'pipe.example.com';
const CRL_URL = 'http://ca.pipe.example.com/crl.pem';
const T = { timeout: 20_000 };

let tmp: ReturnType<typeof tempDir>;
let ca: CertificateAuthority;
let caDir: string;
let podKey: string;
let rsaKey: string;

async function podCsr(name: string, extra: Partial<Parameters<typeof makeCsr>[2]> = {}): Promise<string> {
  return makeCsr(tmp.dir, `${name}-${Math.random().toString(36).slice(2, 8)}`, { key: podKey, subj: `/CN=${name}`, ...extra });
}

function fqdn(label: string): string {
  return `${label}.${DOMAIN}`;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (!isPipe2meError(e)) throw e;
    return e.code;
  }
  throw new Error('expected a refusal, but it succeeded');
}

async function messageOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected a refusal');
}

/** Every file under `dir` with its mode and content hash, and every directory with its mode. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, e.name);
      const rel = path.relative(dir, full);
      if (rel.startsWith('ca.lock')) continue; // the lock's own file is not CA state
      const st = fs.statSync(full);
      if (e.isDirectory()) {
        out[rel + '/'] = (st.mode & 0o7777).toString(8);
        walk(full);
      } else {
        out[rel] = (st.mode & 0o7777).toString(8) + ' ' + createHash('sha256').update(fs.readFileSync(full)).digest('hex');
      }
    }
  };
  walk(dir);
  return out;
}

function writeTmp(name: string, content: string): string {
  const f = path.join(tmp.dir, name);
  fs.writeFileSync(f, content);
  return f;
}

async function verify(args: string[]): Promise<{ ok: boolean; output: string }> {
  const r = await run('openssl', ['verify', ...args], { ...T, allowFailure: true });
  return { ok: r.exitCode === 0 && /: OK$/m.test(r.stdout), output: r.output };
}

function mode(file: string): string {
  return (fs.statSync(file).mode & 0o777).toString(8);
}

beforeAll(async () => {
  tmp = tempDir('ca');
  caDir = path.join(tmp.dir, 'ca');
  [podKey, rsaKey] = await Promise.all([makeKey(tmp.dir, 'pod', 'p256'), makeKey(tmp.dir, 'pod-rsa', 'rsa2048')]);
  ca = new CertificateAuthority(caDir);
  await ca.init({ commonName: 'pipe2me CA for pipe.example.com', crlUrl: CRL_URL, restrictToDomain: DOMAIN });
});

afterAll(() => tmp?.cleanup());

describe('init', () => {
  it('creates a 0700 directory, a 0600 root key and a CA root certificate', () => {
    expect(mode(caDir)).toBe('700');
    expect(mode(path.join(caDir, 'private'))).toBe('700');
    expect(mode(path.join(caDir, 'private', 'ca.key'))).toBe('600');
    for (const f of ['index.txt', 'serial', 'crlnumber', 'openssl.cnf', 'crl.pem', 'crl.der', 'root.crt', 'ca.crt']) {
      expect(fs.existsSync(path.join(caDir, f)), f).toBe(true);
    }
    const root = parseCertificate(read(path.join(caDir, 'root.crt')));
    expect(root.isCa).toBe(true);
    expect(root.selfIssued).toBe(true);
    expect(root.keyUsage).toEqual(['keyCertSign', 'cRLSign']);
    expect(root.keyUsageCritical).toBe(true);
    expect(root.key.label).toBe('EC P-256');
  });

  it('the root is accepted by openssl as a trust anchor and carries the name constraint', async () => {
    const root = path.join(caDir, 'root.crt');
    expect((await verify(['-CAfile', root, root])).ok).toBe(true);
    const text = (await run('openssl', ['x509', '-in', root, '-noout', '-text'], T)).stdout;
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(text).toMatch(/X509v3 Name Constraints: critical\s+Permitted:\s+DNS:pipe\.example\.com\s+email:pipe\.example\.com\s+email:\.pipe\.example\.com\s+URI:pipe\.example\.com\s+URI:\.pipe\.example\.com\s+Excluded:\s+IP:0\.0\.0\.0\/0\.0\.0\.0\s+IP:0:0:0:0:0:0:0:0\/0:0:0:0:0:0:0:0/);
  });

  it('even with the CA key, a certificate for any name outside the domain does not verify: DNS, IP, mail, URI', async () => {
    const root = path.join(caDir, 'root.crt');
    const key = path.join(caDir, 'private', 'ca.key');
    const dir = path.join(tmp.dir, 'outside');
    fs.mkdirSync(dir, { recursive: true });
    const cases: [string, boolean][] = [
      [`DNS:a.${DOMAIN}`, true], [`email:ops@${DOMAIN}`, true], [`URI:https://a.${DOMAIN}/`, true],
      ['DNS:evil.example', false], ['IP:198.51.100.7', false], ['IP:2001:db8::7', false], ['IP:127.0.0.1', false],
      ['email:ceo@evil.example', false], ['URI:https://evil.example/', false],
    ];
    for (const [san, ok] of cases) {
      const leafKey = await makeKey(dir, 'leaf', 'p256');
      const csr = path.join(dir, 'leaf.csr');
      await run('openssl', ['req', '-new', '-key', leafKey, '-subj', `/CN=a.${DOMAIN}`, '-config', '/dev/null', '-out', csr], T);
      const ext = path.join(dir, 'ext.cnf');
      fs.writeFileSync(ext, `subjectAltName=${san}\n`);
      const crt = path.join(dir, 'leaf.crt');
      await run('openssl', ['x509', '-req', '-in', csr, '-CA', root, '-CAkey', key, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', crt], T);
      expect((await verify(['-CAfile', root, crt])).ok, san).toBe(ok);
    }
  });

  it('is idempotent: a second init keeps the root, the key and the database', async () => {
    const before = snapshot(caDir);
    const again = await ca.init({ commonName: 'pipe2me CA for pipe.example.com', crlUrl: CRL_URL, restrictToDomain: DOMAIN });
    expect(again.created).toBe(false);
    expect(again.rootPem).toBe(read(path.join(caDir, 'root.crt')));
    expect(snapshot(caDir)).toEqual(before);
  });

  it('refuses a directory that holds other files, and changes nothing in it', async () => {
    const other = path.join(tmp.dir, 'not-a-ca');
    fs.mkdirSync(other, { mode: 0o755 });
    fs.writeFileSync(path.join(other, 'notes.txt'), 'hello');
    fs.chmodSync(other, 0o755);
    const before = snapshot(other);
    expect(await codeOf(new CertificateAuthority(other).init({ commonName: 'x CA' }))).toBe(CaErrorCode.dirUnsafe);
    expect(snapshot(other)).toEqual(before);
    expect(mode(other)).toBe('755');
  });

  it('refuses a directory that belongs to another user, or is a symbolic link', async () => {
    // Another user could swap files under the CA (as root here, we can hand a directory to nobody).
    const foreign = path.join(tmp.dir, 'foreign');
    fs.mkdirSync(foreign, { mode: 0o700 });
    fs.chownSync(foreign, 65534, 65534);
    expect(await codeOf(new CertificateAuthority(foreign).init({ commonName: 'x CA' }))).toBe(CaErrorCode.dirUnsafe);
    expect(fs.readdirSync(foreign)).toEqual([]);
    const link = path.join(tmp.dir, 'link-to-ca');
    fs.symlinkSync(caDir, link);
    expect(await codeOf(new CertificateAuthority(link).signCsr('x', fqdn('a')))).toBe(CaErrorCode.dirUnsafe);
  });

  it('refuses to work on a directory without a CA', async () => {
    const none = new CertificateAuthority(path.join(tmp.dir, 'nothing-here'));
    expect(await codeOf(none.signCsr('x', fqdn('a')))).toBe(CaErrorCode.notInitialized);
    await expect(none.list()).rejects.toThrow(/There is no CA/);
    expect(fs.existsSync(path.join(tmp.dir, 'nothing-here'))).toBe(false);
  });

  it('refuses values that could break openssl.cnf or -subj before touching anything', async () => {
    const d = path.join(tmp.dir, 'bad-settings');
    expect(await codeOf(new CertificateAuthority(d).init({ commonName: 'x CA', crlUrl: 'http://x/a\ncopy_extensions = copy' }))).toBe(
      CaErrorCode.configValueInvalid,
    );
    expect(await codeOf(new CertificateAuthority(d).init({ commonName: 'x/CN=evil' }))).toBe(CaErrorCode.commonNameInvalid);
    expect(await codeOf(new CertificateAuthority(d).init({ commonName: 'x CA', crlUrl: 'http://x/$ENV::HOME' }))).toBe(CaErrorCode.configValueInvalid);
    expect(fs.existsSync(d)).toBe(false);
  });
});

describe('signCsr', () => {
  it('issues an EC certificate that openssl verify accepts against the root, with exactly our extensions', async () => {
    const name = fqdn('calm-red-otter');
    const t0 = performance.now();
    const r = await ca.signCsr(await podCsr(name, { addext: [`subjectAltName=DNS:${name}`] }), name);
    const ms = performance.now() - t0;
    const leaf = writeTmp('ec-leaf.crt', r.certPem);
    const v = await verify(['-CAfile', path.join(caDir, 'root.crt'), '-purpose', 'sslserver', leaf]);
    expect(v.ok, v.output).toBe(true);

    const text = (await run('openssl', ['x509', '-in', leaf, '-noout', '-text', '-serial', '-fingerprint', '-sha256'], T)).stdout;
    expect(text).toMatch(new RegExp(`Subject: CN ?= ?${name.replace(/\./g, '\\.')}\\n`));
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature\n/);
    expect(text).toMatch(/X509v3 Extended Key Usage:\s*\n\s+TLS Web Server Authentication\n/);
    expect(text).toMatch(new RegExp(`X509v3 Subject Alternative Name:\\s*\\n\\s+DNS:${name.replace(/\./g, '\\.')}\\n`));
    expect(text).toContain(`URI:${CRL_URL}`);
    expect(text).toMatch(/X509v3 Authority Key Identifier/);
    expect(text).toMatch(/X509v3 Subject Key Identifier/);
    expect(text).toContain(`serial=${r.serial}`);
    expect(text).toContain(`sha256 Fingerprint=${r.sha256Fingerprint}`);

    // Defaults: 90 days, backdated an hour for pods whose clocks are a little behind.
    expect(r.notAfter.getTime() - Date.now()).toBeGreaterThan(89.9 * 86_400_000);
    expect(r.notAfter.getTime() - Date.now()).toBeLessThan(90.1 * 86_400_000);
    expect(Date.now() - r.notBefore.getTime()).toBeGreaterThan(3_500_000);
    expect(r.chainPem).toBe(''); // self-signed root: nothing between leaf and trust anchor
    expect(r.fullchainPem).toBe(r.certPem);
    expect(r.rootPem).toBe(read(path.join(caDir, 'root.crt')));
    expect(fs.existsSync(path.join(caDir, 'newcerts', `${r.serial}.pem`))).toBe(true);
    console.info(`first signing through signCsr: ${ms.toFixed(1)} ms`);
  });

  it('issues an RSA-2048 certificate (with keyEncipherment) and honours days', async () => {
    const name = fqdn('rsa-pod');
    const r = await ca.signCsr(await makeCsr(tmp.dir, 'rsa-pod', { key: rsaKey, subj: `/CN=${name}` }), name, { days: 10 });
    const leaf = writeTmp('rsa-leaf.crt', r.certPem);
    expect((await verify(['-CAfile', path.join(caDir, 'root.crt'), '-purpose', 'sslserver', leaf])).ok).toBe(true);
    const text = (await run('openssl', ['x509', '-in', leaf, '-noout', '-text'], T)).stdout;
    expect(text).toMatch(/Digital Signature, Key Encipherment/);
    expect(Math.round((r.notAfter.getTime() - Date.now()) / 86_400_000)).toBe(10);
  });

  it('takes nothing from the request but the key: no CA:true, no other subject fields, SAN set by us', async () => {
    const name = fqdn('greedy');
    // tlsfeature (OCSP must-staple) is one we never set: copied, it would break the pod's TLS.
    const csr = await podCsr(name, {
      subj: `/O=Evil Corp/CN=${name}/emailAddress=x@example.org`,
      addext: ['basicConstraints=critical,CA:true', 'keyUsage=critical,keyCertSign', 'tlsfeature=status_request', 'nameConstraints=permitted;DNS:evil.example'],
    });
    const r = await ca.signCsr(csr, name);
    const leaf = parseCertificate(r.certPem);
    expect(leaf.extensionOids.sort()).toEqual(
      [
        '2.5.29.19', // basicConstraints
        '2.5.29.15', // keyUsage
        '2.5.29.37', // extendedKeyUsage
        '2.5.29.14', // subjectKeyIdentifier
        '2.5.29.35', // authorityKeyIdentifier
        '2.5.29.17', // subjectAltName
        '2.5.29.31', // crlDistributionPoints
      ].sort(),
    );
    expect(leaf.subject).toBe(`CN=${name}`);
    expect(leaf.isCa).toBe(false);
    expect(leaf.keyUsage).toEqual(['digitalSignature']);
    expect(leaf.subjectAltNames).toEqual([`DNS:${name}`]);
  });

  it('gives the certificate SAN DNS:<fqdn> when the request has no SAN at all', async () => {
    const name = fqdn('no-san');
    const r = await ca.signCsr(await podCsr(name), name);
    expect(parseCertificate(r.certPem).subjectAltNames).toEqual([`DNS:${name}`]);
  });

  describe('refuses bad requests and signs nothing', () => {
    const cases: [string, () => Promise<{ csr: string; name: string }>, string][] = [
      ['CN of another name', async () => ({ csr: await podCsr('www.bank.example'), name: fqdn('victim') }), CsrErrorCode.cnMismatch],
      ['SAN with a second name', async () => ({ csr: await podCsr(fqdn('a'), { addext: [`subjectAltName=DNS:${fqdn('a')},DNS:${fqdn('b')}`] }), name: fqdn('a') }), CsrErrorCode.sanNameMismatch],
      ['SAN with an IP address', async () => ({ csr: await podCsr(fqdn('a'), { addext: ['subjectAltName=IP:192.0.2.1'] }), name: fqdn('a') }), CsrErrorCode.sanTypeNotAllowed],
      ['RSA 1024', async () => ({ csr: await makeCsr(tmp.dir, 'r1024', { key: await makeKey(tmp.dir, 'r1024', 'rsa1024'), subj: `/CN=${fqdn('a')}` }), name: fqdn('a') }), CsrErrorCode.rsaKeyTooSmall],
      ['Ed25519', async () => ({ csr: await makeCsr(tmp.dir, 'ed', { key: await makeKey(tmp.dir, 'ed', 'ed25519'), subj: `/CN=${fqdn('a')}` }), name: fqdn('a') }), CsrErrorCode.keyTypeNotAllowed],
      ['EC P-521', async () => ({ csr: await makeCsr(tmp.dir, 'p521', { key: await makeKey(tmp.dir, 'p521', 'p521'), subj: `/CN=${fqdn('a')}` }), name: fqdn('a') }), CsrErrorCode.curveNotAllowed],
      [
        'a request changed after signing',
        async () => {
          const pem = await podCsr(fqdn('abc'));
          return { csr: pem.replace(/^(-----BEGIN CERTIFICATE REQUEST-----\n.{30})(.)/, (_, a: string, c: string) => a + (c === 'A' ? 'B' : 'A')), name: fqdn('abc') };
        },
        CsrErrorCode.signatureInvalid,
      ],
      ['garbage', async () => ({ csr: 'please sign', name: fqdn('a') }), CsrErrorCode.notPem],
      ['a private key', async () => ({ csr: read(podKey), name: fqdn('a') }), CsrErrorCode.containsPrivateKey],
      ['a name outside the domain', async () => ({ csr: await podCsr('pod.other.example'), name: 'pod.other.example' }), CaErrorCode.nameOutsideDomain],
    ];
    for (const [label, make, code] of cases) {
      it(`${label} → ${code}`, async () => {
        const { csr, name } = await make();
        const index = fs.readFileSync(path.join(caDir, 'index.txt'));
        const serial = fs.readFileSync(path.join(caDir, 'serial'));
        const before = snapshot(caDir);
        expect(await codeOf(ca.signCsr(csr, name))).toBe(code);
        expect(fs.readFileSync(path.join(caDir, 'index.txt')).equals(index)).toBe(true);
        expect(fs.readFileSync(path.join(caDir, 'serial')).equals(serial)).toBe(true);
        expect(snapshot(caDir)).toEqual(before);
      });
    }
  });

  it('when openssl itself fails, index.txt, serial and newcerts/ are left as they were', async () => {
    const name = fqdn('blocked');
    const csr = await podCsr(name);
    const next = read(path.join(caDir, 'serial')).trim();
    // A directory where openssl wants to write the new certificate makes `openssl ca` fail mid-way.
    const blocker = path.join(caDir, 'newcerts', `${next}.pem`);
    fs.mkdirSync(blocker);
    try {
      const before = snapshot(caDir);
      const e = await codeOf(ca.signCsr(csr, name));
      expect(e).toBe(CaErrorCode.opensslFailed);
      expect(snapshot(caDir)).toEqual(before);
    } finally {
      fs.rmdirSync(blocker);
    }
    // And the CA signs normally afterwards, with the serial it would have used.
    expect((await ca.signCsr(csr, name)).serial).toBe(next);
  });

  it('a killed openssl (timeout) leaves the database as it was', async () => {
    const impatient = new CertificateAuthority(caDir, { opensslTimeoutMs: 1 });
    const name = fqdn('impatient');
    const csr = await podCsr(name);
    const before = snapshot(caDir);
    expect(await codeOf(impatient.signCsr(csr, name))).toMatch(/^(timeout|ca_openssl_failed)$/);
    expect(snapshot(caDir)).toEqual(before);
  });
});

describe('revocation and the CRL', () => {
  it('a revoked certificate is in the CRL and openssl verify -crl_check refuses it; others still pass', async () => {
    const keep = await ca.signCsr(await podCsr(fqdn('keeper')), fqdn('keeper'));
    const gone = await ca.signCsr(await podCsr(fqdn('leaver')), fqdn('leaver'));
    const r = await ca.revoke(gone.serial, 'keyCompromise');
    expect(r.crl.revokedSerials).toContain(gone.serial);
    const crlFile = path.join(caDir, 'crl.pem');
    const crlText = (await run('openssl', ['crl', '-in', crlFile, '-noout', '-text'], T)).stdout;
    expect(crlText).toContain(`Serial Number: ${gone.serial}`);
    expect(crlText).toContain('Key Compromise');
    expect(crlText).not.toContain(`Serial Number: ${keep.serial}`);
    const root = path.join(caDir, 'root.crt');
    const bad = await verify(['-crl_check', '-CRLfile', crlFile, '-CAfile', root, writeTmp('gone.crt', gone.certPem)]);
    expect(bad.ok).toBe(false);
    expect(bad.output).toMatch(/certificate revoked/);
    const good = await verify(['-crl_check', '-CRLfile', crlFile, '-CAfile', root, writeTmp('keep.crt', keep.certPem)]);
    expect(good.ok, good.output).toBe(true);
    // The DER copy is the same CRL.
    const der = (await run('openssl', ['crl', '-inform', 'DER', '-in', path.join(caDir, 'crl.der'), '-noout', '-text'], T)).stdout;
    expect(der).toContain(`Serial Number: ${gone.serial}`);

    const listed = (await ca.list()).find((e) => e.serial === gone.serial);
    expect(listed).toMatchObject({ status: 'R', revocationReason: 'keyCompromise', commonName: fqdn('leaver') });
    expect(await ca.show(gone.serial)).toMatchObject({ status: 'R', dnsNames: [fqdn('leaver')], certPem: gone.certPem });
    expect((await ca.show(keep.serial)).status).toBe('V');
  });

  it('refuses a second revocation, an unknown serial, a bad serial and a bad reason, changing nothing', async () => {
    const s = await ca.signCsr(await podCsr(fqdn('twice')), fqdn('twice'));
    await ca.revoke(s.serial);
    const before = snapshot(caDir);
    expect(await codeOf(ca.revoke(s.serial))).toBe(CaErrorCode.alreadyRevoked);
    expect(await codeOf(ca.revoke('DEADBEEF'))).toBe(CaErrorCode.serialNotFound);
    expect(await codeOf(ca.revoke('12; rm -rf /'))).toBe(CaErrorCode.serialInvalid);
    expect(await codeOf(ca.revoke(s.serial, 'becauseIsaidSo' as never))).toBe(CaErrorCode.revokeReasonInvalid);
    expect(snapshot(caDir)).toEqual(before);
    await expect(ca.show('DEADBEEF')).rejects.toThrow(/has not issued/);
  });

  it('generateCrl writes the CRL atomically to a path the caller gives, valid for crlDays', async () => {
    const out = path.join(tmp.dir, 'public', 'crl.pem');
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const r = await ca.generateCrl(out);
    expect(r.files).toContain(out);
    expect(read(out)).toBe(r.pem);
    expect(mode(out)).toBe('644');
    expect(Math.round((r.nextUpdate!.getTime() - r.thisUpdate.getTime()) / 86_400_000)).toBe(30);
    const text = (await run('openssl', ['crl', '-in', out, '-noout', '-text', '-CAfile', path.join(caDir, 'root.crt')], T)).output;
    expect(text).toMatch(/verify OK/);
    expect(fs.readdirSync(path.dirname(out))).toEqual(['crl.pem']); // no temporary left behind
  });
});

describe('parallel signing', () => {
  it('20 signings at once in one process: distinct serials, all in index.txt, all verify', async () => {
    const names = Array.from({ length: 20 }, (_, i) => fqdn(`par-${i}`));
    const csrs = await Promise.all(names.map((n) => podCsr(n)));
    const countBefore = (await ca.list()).length;
    const t0 = performance.now();
    const results = await Promise.all(names.map((n, i) => ca.signCsr(csrs[i]!, n)));
    const ms = performance.now() - t0;
    const serials = results.map((r) => r.serial);
    expect(new Set(serials).size).toBe(20);
    const index = (await ca.list());
    expect(index.length).toBe(countBefore + 20);
    for (const s of serials) expect(index.filter((e) => e.serial === s)).toHaveLength(1);
    // openssl verify checks only the first certificate of a file; check each one.
    const oks = await Promise.all(results.map((r, i) => verify(['-CAfile', path.join(caDir, 'root.crt'), writeTmp(`par-${i}.crt`, r.certPem)])));
    expect(oks.every((o) => o.ok)).toBe(true);
    console.info(`20 parallel signings in one process: ${ms.toFixed(0)} ms (${(ms / 20).toFixed(1)} ms each)`);
  });

  it('21 signings from 3 processes at once: distinct serials, complete index, and openssl ca still works', async () => {
    const workers = 3;
    const per = 7;
    const goFile = path.join(tmp.dir, 'go');
    const readyFiles = Array.from({ length: workers }, (_, w) => path.join(tmp.dir, `ready-${w}`));
    const jobs = await Promise.all(
      Array.from({ length: workers }, async (_, w) => {
        const requests = await Promise.all(
          Array.from({ length: per }, async (_, i) => {
            const name = fqdn(`proc-${w}-${i}`);
            return { csr: writeTmp(`proc-${w}-${i}.csr`, await podCsr(name)), fqdn: name };
          }),
        );
        return writeTmp(`job-${w}.json`, JSON.stringify({ dir: caDir, readyFile: readyFiles[w], goFile, requests }));
      }),
    );
    const countBefore = (await ca.list()).length;
    const worker = fileURLToPath(new URL('./fixtures/ca-sign-worker.ts', import.meta.url));
    const viteNode = fileURLToPath(new URL('../../node_modules/.bin/vite-node', import.meta.url));
    const running = jobs.map((job) => run(viteNode, [worker, job], { timeout: 60_000 }));
    // Start them together once all are loaded, so they really compete for the lock.
    const deadline = Date.now() + 45_000;
    while (!readyFiles.every((f) => fs.existsSync(f)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    fs.writeFileSync(goFile, 'go');
    const outs = await Promise.all(running);
    const reports = outs.map((o) => JSON.parse(o.stdout.trim().split('\n').pop()!) as { pid: number; results: { serial: string; t0: number; t1: number }[] });
    const all = reports.flatMap((r) => r.results.map((x) => ({ ...x, pid: r.pid })));
    expect(all).toHaveLength(workers * per);
    expect(new Set(all.map((x) => x.serial)).size).toBe(workers * per);

    // The processes really did contend: some signing in one process overlapped one in another.
    const overlapping = all.some((a) => all.some((b) => a.pid !== b.pid && a.t0 < b.t1 && b.t0 < a.t1));
    expect(overlapping).toBe(true);

    const index = (await ca.list());
    expect(index.length).toBe(countBefore + workers * per);
    for (const x of all) expect(index.filter((e) => e.serial === x.serial)).toHaveLength(1);
    // The serial file points past the highest serial issued.
    const max = [...index.map((e) => BigInt('0x' + e.serial))].reduce((a, b) => (a > b ? a : b));
    expect(BigInt('0x' + read(path.join(caDir, 'serial')).trim())).toBe(max + 1n);

    // openssl's own tools still read the database, and signing goes on.
    const status = await run('openssl', ['ca', '-config', path.join(caDir, 'openssl.cnf'), '-status', all[0]!.serial], { ...T, allowFailure: true });
    expect(status.output).toMatch(/=Valid \(V\)/);
    const after = await ca.signCsr(await podCsr(fqdn('after')), fqdn('after'));
    expect(BigInt('0x' + after.serial)).toBe(max + 1n);
  });
});

describe('server certificate', () => {
  it('makes a 0600 key on the server and a certificate for its name and *.<domain>', async () => {
    const keyFile = path.join(tmp.dir, 'server', 'tls', 'server.key');
    const certFile = path.join(tmp.dir, 'server', 'tls', 'server.crt');
    const r = await ca.issueServerCertificate({ names: [`api.${DOMAIN}`, `*.${DOMAIN}`], keyFile, certFile });
    expect(mode(keyFile)).toBe('600');
    expect(r.names).toEqual([`api.${DOMAIN}`, `*.${DOMAIN}`]);
    const leaf = parseCertificate(read(certFile));
    expect(leaf.subjectAltNames).toEqual([`DNS:api.${DOMAIN}`, `DNS:*.${DOMAIN}`]);
    expect(leaf.commonName).toBe(`api.${DOMAIN}`);
    const v = await verify(['-CAfile', path.join(caDir, 'root.crt'), '-purpose', 'sslserver', certFile]);
    expect(v.ok, v.output).toBe(true);
    // The key in keyFile is the certificate's key.
    const mod = await run('openssl', ['pkey', '-in', keyFile, '-pubout'], T);
    const certPub = await run('openssl', ['x509', '-in', certFile, '-noout', '-pubkey'], T);
    expect(mod.stdout).toBe(certPub.stdout);

    const keyBytes = fs.readFileSync(keyFile);
    await ca.issueServerCertificate({ names: [`api.${DOMAIN}`, `*.${DOMAIN}`], keyFile, certFile });
    expect(fs.readFileSync(keyFile).equals(keyBytes)).toBe(true); // renewal keeps the key
    await ca.issueServerCertificate({ names: [`api.${DOMAIN}`], keyFile, certFile, rotateKey: true });
    expect(fs.readFileSync(keyFile).equals(keyBytes)).toBe(false);
    expect(mode(keyFile)).toBe('600');
    expect(fs.readdirSync(path.dirname(keyFile)).sort()).toEqual(['server.crt', 'server.key']);

    expect(await codeOf(ca.issueServerCertificate({ names: ['evil.example.org'], keyFile, certFile }))).toBe(CaErrorCode.nameOutsideDomain);
    expect(await codeOf(ca.issueServerCertificate({ names: ['a b'], keyFile, certFile }))).toBe(CaErrorCode.invalidName);
  });

  it('needsRenewal says when', async () => {
    const certFile = path.join(tmp.dir, 'server', 'tls', 'server.crt');
    expect(ca.needsRenewal(certFile)).toMatchObject({ renew: false, reason: 'valid' });
    expect(ca.needsRenewal(certFile, { beforeDays: 100 })).toMatchObject({ renew: true, reason: 'expires_soon' });
    expect(ca.needsRenewal(certFile, { now: new Date(Date.now() + 91 * 86_400_000) })).toMatchObject({ renew: true, reason: 'expired' });
    expect(ca.needsRenewal(path.join(tmp.dir, 'nope.crt'))).toMatchObject({ renew: true, reason: 'missing' });
    expect(ca.needsRenewal(writeTmp('junk.crt', 'junk'))).toMatchObject({ renew: true, reason: 'unreadable' });
  });
});

describe('installIntermediate', () => {
  let ext: ExternalCa;
  let inter: { cert: string; key: string };
  let ica: CertificateAuthority;
  let icaDir: string;
  let oldLeaf: string;

  beforeAll(async () => {
    const extDir = path.join(tmp.dir, 'real-ca');
    fs.mkdirSync(extDir);
    ext = await makeExternalRoot(extDir);
    inter = await issueFrom(ext, { cert: ext.rootCert, key: ext.rootKey }, 'pipe2me-intermediate', { ext: 'v3_inter' });
    icaDir = path.join(tmp.dir, 'ica');
    ica = new CertificateAuthority(icaDir);
    await ica.init({ commonName: 'pipe2me CA to be replaced', crlUrl: CRL_URL });
    oldLeaf = writeTmp('old-root-leaf.crt', (await ica.signCsr(await podCsr(fqdn('early')), fqdn('early'))).fullchainPem);
  });

  const refusals: [string, () => Promise<{ certPem: string; keyPem: string; rootPem: string; chainPem?: string }>, string, RegExp][] = [
    [
      'a certificate that is not a CA',
      async () => {
        const leaf = await issueFrom(ext, { cert: ext.rootCert, key: ext.rootKey }, 'not-a-ca', { ext: 'v3_not_ca' });
        return { certPem: read(leaf.cert), keyPem: read(leaf.key), rootPem: read(ext.rootCert) };
      },
      CaErrorCode.intermediateNotCa,
      /is not a CA certificate/,
    ],
    [
      'a CA certificate without keyCertSign',
      async () => {
        const c = await issueFrom(ext, { cert: ext.rootCert, key: ext.rootKey }, 'no-certsign', { ext: 'v3_ca_no_certsign' });
        return { certPem: read(c.cert), keyPem: read(c.key), rootPem: read(ext.rootCert) };
      },
      CaErrorCode.intermediateNotCa,
      /keyCertSign is required/,
    ],
    [
      'a key that does not belong to the certificate',
      async () => ({ certPem: read(inter.cert), keyPem: read(podKey), rootPem: read(ext.rootCert) }),
      CaErrorCode.intermediateKeyMismatch,
      /does not belong/,
    ],
    [
      'an expired intermediate',
      async () => {
        const c = await issueFrom(ext, { cert: ext.rootCert, key: ext.rootKey }, 'expired-inter', { ext: 'v3_inter', expired: true });
        return { certPem: read(c.cert), keyPem: read(c.key), rootPem: read(ext.rootCert) };
      },
      CaErrorCode.intermediateNotValidNow,
      /expired on 2020-02-01/,
    ],
    [
      'a chain that does not verify (another root)',
      async () => {
        const otherDir = path.join(tmp.dir, 'other-real-ca');
        fs.mkdirSync(otherDir, { recursive: true });
        // Same name as the real root, different key: only the signature check can tell them apart.
        const other = await makeExternalRoot(otherDir, 'Example Real Root');
        return { certPem: read(inter.cert), keyPem: read(inter.key), rootPem: read(other.rootCert) };
      },
      CaErrorCode.intermediateChainInvalid,
      /does not verify against the root/,
    ],
    [
      'an intermediate given as the root',
      async () => ({ certPem: read(inter.cert), keyPem: read(inter.key), rootPem: read(inter.cert) }),
      CaErrorCode.intermediateChainInvalid,
      /not a self-signed CA/,
    ],
    [
      'something that is not a certificate',
      async () => ({ certPem: 'not a certificate', keyPem: read(inter.key), rootPem: read(ext.rootCert) }),
      CaErrorCode.intermediateCertInvalid,
      /not a single readable PEM certificate/,
    ],
    [
      'an encrypted key',
      async () => {
        const enc = path.join(tmp.dir, 'enc.key');
        await run('openssl', ['pkey', '-in', inter.key, '-aes256', '-passout', 'pass:secret-pass', '-out', enc], T);
        return { certPem: read(inter.cert), keyPem: read(enc), rootPem: read(ext.rootCert) };
      },
      CaErrorCode.intermediateKeyInvalid,
      /encrypted/,
    ],
  ];
  for (const [label, make, code, message] of refusals) {
    it(`refuses ${label} (${code}) and changes nothing`, async () => {
      const input = await make();
      const before = snapshot(icaDir);
      let err: unknown;
      try {
        await ica.installIntermediate(input);
      } catch (e) {
        err = e;
      }
      expect(isPipe2meError(err), String(err)).toBe(true);
      expect((err as { code: string }).code).toBe(code);
      expect((err as Error).message).toMatch(message);
      // No key material in what is shown to a person.
      expect(JSON.stringify({ m: (err as Error).message, d: (err as { data?: unknown }).data })).not.toMatch(/PRIVATE KEY|secret-pass/);
      expect(snapshot(icaDir)).toEqual(before);
    });
  }

  it('installs a real intermediate: leaves verify against the real root through it, and the CRL is signed by it', async () => {
    const r = await ica.installIntermediate({ certPem: read(inter.cert), keyPem: read(inter.key), rootPem: read(ext.rootCert) });
    expect(r.subject).toBe('CN=pipe2me-intermediate');
    expect(mode(path.join(icaDir, 'private', 'ca.key'))).toBe('600');
    expect(mode(path.join(r.retiredTo, 'ca.key'))).toBe('600');

    const name = fqdn('through-inter');
    const s = await ica.signCsr(await podCsr(name), name);
    expect(s.chainPem).toBe(parseCertificate(read(inter.cert)).pem);
    expect(s.fullchainPem).toBe(s.certPem + s.chainPem);
    expect(s.rootPem).toBe(parseCertificate(read(ext.rootCert)).pem);
    const leaf = writeTmp('inter-leaf.crt', s.certPem);
    const chain = writeTmp('inter-chain.pem', s.chainPem);
    const ok = await verify(['-CAfile', ext.rootCert, '-untrusted', chain, '-purpose', 'sslserver', leaf]);
    expect(ok.ok, ok.output).toBe(true);
    expect((await verify(['-CAfile', ext.rootCert, leaf])).ok).toBe(false); // the intermediate is needed
    expect((await verify(['-CAfile', path.join(r.retiredTo, 'root.crt'), leaf])).ok).toBe(false); // the old root no longer signs

    await ica.revoke(s.serial, 'superseded');
    const crl = path.join(icaDir, 'crl.pem');
    const revoked = await verify(['-crl_check', '-CRLfile', crl, '-CAfile', ext.rootCert, '-untrusted', chain, leaf]);
    expect(revoked.output).toMatch(/certificate revoked/);
    expect(revoked.ok).toBe(false);
    const other = await ica.signCsr(await podCsr(fqdn('still-good')), fqdn('still-good'));
    const good = await verify(['-crl_check', '-CRLfile', crl, '-CAfile', ext.rootCert, '-untrusted', chain, writeTmp('still-good.crt', other.certPem)]);
    expect(good.ok, good.output).toBe(true);

    // A certificate from the replaced root is due for renewal.
    expect(ica.needsRenewal(oldLeaf)).toMatchObject({ renew: true, reason: 'other_issuer' });
  });

  it('installs an intermediate two levels below the root when given the one between', async () => {
    const mid = await issueFrom(ext, { cert: ext.rootCert, key: ext.rootKey }, 'real-mid', { ext: 'v3_inter_mid' });
    const low = await issueFrom(ext, mid, 'pipe2me-low', { ext: 'v3_inter' });
    const dir = path.join(tmp.dir, 'ica3');
    const ca3 = new CertificateAuthority(dir);
    await ca3.init({ commonName: 'three levels' });
    const base = { certPem: read(low.cert), keyPem: read(low.key), rootPem: read(ext.rootCert) };
    const before = snapshot(dir);
    expect(await codeOf(ca3.installIntermediate(base))).toBe(CaErrorCode.intermediateChainInvalid);
    expect(snapshot(dir)).toEqual(before);
    await ca3.installIntermediate({ ...base, chainPem: read(mid.cert) });
    const s = await ca3.signCsr(await podCsr(fqdn('deep')), fqdn('deep'));
    expect(parseCertificate(s.chainPem.split(/(?<=-----END CERTIFICATE-----\n)/)[1]!).subject).toBe('CN=real-mid');
    const ok = await verify(['-CAfile', ext.rootCert, '-untrusted', writeTmp('deep-chain.pem', s.chainPem), writeTmp('deep.crt', s.certPem)]);
    expect(ok.ok, ok.output).toBe(true);
  });

  it('error messages name what is wrong', async () => {
    const m = await messageOf(ica.installIntermediate({ certPem: read(inter.cert), keyPem: read(rsaKey), rootPem: read(ext.rootCert) }));
    expect(m).toContain('CN=pipe2me-intermediate');
  });
});
