/**
 * A CA key of its own on every relay, with the real openssl: relay B makes its key and a request, the root's
 * directory A signs it as an intermediate, B installs it and signs leaves that verify to A's root through
 * B's intermediate. The two directories share one database (the store), never a key: A shows and revokes
 * what B signed, B's CRL lists what A revoked. Every refusal changes nothing.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority, CaErrorCode, parseCertificate, type CaBook } from '../../src/ca/index.js';
import { openStore } from '../../src/state/db.js';
import { loadCaFiles, saveCaFiles } from '../../src/state/ca-files.js';
import { LOCKS, withStoreLock, type Store } from '../../src/state/store.js';
import { run } from '../../src/util/exec.js';
import { makeCsr, makeKey, tempDir } from '../helpers/pki.js';

const DOMAIN = 'pipe.example.com';
const T = { timeout: 20_000 };
const CN_B = `pipe2me relay-b CA for ${DOMAIN}`;

const bookOf = (store: Store): CaBook => ({ load: (n) => loadCaFiles(store, n), save: (f) => saveCaFiles(store, f), lock: (fn) => withStoreLock(store, LOCKS.ca, fn) });
const codeOf = (p: Promise<unknown>) => p.then(() => 'resolved', (e: { code?: string }) => e.code ?? String(e));

describe('a relay\'s own CA key, signed by the root as an intermediate', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: Store;
  let a: CertificateAuthority;
  let b: CertificateAuthority;
  let dirA: string;
  let dirB: string;
  let podKey: string;
  let request: { csrPem: string; keySha256: string };

  const file = (name: string, content: string) => {
    const f = path.join(tmp.dir, name);
    fs.writeFileSync(f, content);
    return f;
  };
  const csr = (name: string) => makeCsr(tmp.dir, `${name}-${Math.random().toString(36).slice(2, 8)}`, { key: podKey, subj: `/CN=${name}.${DOMAIN}` });
  const verify = async (args: string[]) => {
    const r = await run('openssl', ['verify', ...args], { ...T, allowFailure: true });
    return { ok: r.exitCode === 0, output: r.output };
  };
  const listing = (dir: string) => fs.readdirSync(dir, { recursive: true }).map(String).sort();

  beforeAll(async () => {
    tmp = tempDir('relay-ca');
    store = await openStore({ stateDir: path.join(tmp.dir, 'state') }, { create: true });
    dirA = path.join(tmp.dir, 'ca-a');
    dirB = path.join(tmp.dir, 'ca-b');
    a = new CertificateAuthority(dirA, { book: bookOf(store) });
    await a.init({ commonName: `pipe2me CA for ${DOMAIN}`, crlUrl: `http://server.${DOMAIN}/crl.pem`, defaultDays: 30, restrictToDomain: DOMAIN });
    b = new CertificateAuthority(dirB, { book: bookOf(store) });
    podKey = await makeKey(tmp.dir, 'pod', 'p256');
  }, 60_000);

  afterAll(async () => {
    await store?.close();
    tmp?.cleanup();
  });

  it('the relay makes its key (0600) and a request; it cannot sign before the root approved it', async () => {
    request = await b.requestRelayIntermediate({ relay: 'relay-b', commonName: CN_B, crlUrl: `http://server.${DOMAIN}/crl/relay-b.pem`, restrictToDomain: DOMAIN });
    expect(request.csrPem).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----/);
    expect(request.csrPem).not.toMatch(/PRIVATE KEY/);
    expect(request.keySha256).toMatch(/^[0-9a-f]{64}$/);
    expect(fs.statSync(path.join(dirB, 'private', 'ca.key')).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(path.join(dirB, 'private', 'ca.key'))).not.toEqual(fs.readFileSync(path.join(dirA, 'private', 'ca.key')));
    expect(fs.existsSync(path.join(dirB, 'ca.crt'))).toBe(false);
    expect(await codeOf(b.signCsr(await csr('early'), `early.${DOMAIN}`))).toBe(CaErrorCode.notInitialized);
    // Again: the same key, a new request.
    const again = await b.requestRelayIntermediate({ relay: 'relay-b', commonName: CN_B, crlUrl: `http://server.${DOMAIN}/crl/relay-b.pem`, restrictToDomain: DOMAIN });
    expect(again.keySha256).toBe(request.keySha256);
    expect(b.signer()).toBe('relay-b');
    expect(a.signer()).toBe('root');
  }, 60_000);

  it('refuses a request for another name, and refuses to let a non-root sign; nothing changes', async () => {
    const before = await loadCaFiles(store, ['index.txt', 'serial']);
    expect(await codeOf(a.signRelayIntermediate(request.csrPem, { commonName: `pipe2me relay-c CA for ${DOMAIN}` }))).toBe(CaErrorCode.relayRequestInvalid);
    expect(await codeOf(a.signRelayIntermediate('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', { commonName: CN_B }))).toBe(CaErrorCode.relayRequestInvalid);
    // Not the key the operator read off the relay: refused before anything is signed.
    expect(await codeOf(a.signRelayIntermediate(request.csrPem, { commonName: CN_B, keySha256: 'f'.repeat(64) }))).toBe(CaErrorCode.relayRequestInvalid);
    expect(await loadCaFiles(store, ['index.txt', 'serial'])).toEqual(before);
  }, 60_000);

  it('the root signs it as an intermediate that signs leaves only, under the domain; the relay installs it', async () => {
    const signed = await a.signRelayIntermediate(request.csrPem, { commonName: CN_B, keySha256: request.keySha256 });
    expect(signed.keySha256).toBe(request.keySha256);
    const cert = parseCertificate(signed.certPem);
    expect(cert).toMatchObject({ isCa: true, pathLen: 0, commonName: CN_B });
    expect(cert.keyUsage).toEqual(expect.arrayContaining(['keyCertSign', 'cRLSign']));
    const text = (await run('openssl', ['x509', '-noout', '-text', '-in', file('inter.crt', signed.certPem)], T)).stdout;
    expect(text).toMatch(/Name Constraints: critical[\s\S]*Permitted:[\s\S]*DNS:pipe\.example\.com/);
    expect(text).toContain(`URI:http://server.${DOMAIN}/crl.pem`);
    expect((await verify(['-CAfile', path.join(dirA, 'root.crt'), file('inter.crt', signed.certPem)])).ok).toBe(true);

    // A certificate for another key (an older request) is refused, and the directory stays unable to sign.
    const other = new CertificateAuthority(path.join(tmp.dir, 'ca-other'), { book: bookOf(store) });
    await other.requestRelayIntermediate({ relay: 'relay-c', commonName: `pipe2me relay-c CA for ${DOMAIN}`, crlUrl: `http://server.${DOMAIN}/crl/relay-c.pem`, restrictToDomain: DOMAIN });
    const before = listing(path.join(tmp.dir, 'ca-other'));
    expect(await codeOf(other.installRelayIntermediate({ certPem: signed.certPem, rootPem: a.rootPem() }))).toBe(CaErrorCode.relayRequestInvalid);
    expect(listing(path.join(tmp.dir, 'ca-other'))).toEqual(before);
    // Nor under a root that did not sign it.
    expect(await codeOf(b.installRelayIntermediate({ certPem: signed.certPem, rootPem: signed.certPem }))).toBe(CaErrorCode.relayRequestInvalid);
    expect(fs.existsSync(path.join(dirB, 'ca.crt'))).toBe(false);

    await b.installRelayIntermediate({ certPem: signed.certPem, rootPem: a.rootPem() });
    expect(b.rootPem()).toBe(a.rootPem());
    expect(b.holdsRoot()).toBe(false);
    expect(a.holdsRoot()).toBe(true);
    // Only the root signs relays.
    expect(await codeOf(b.signRelayIntermediate(request.csrPem, { commonName: CN_B }))).toBe(CaErrorCode.notRoot);
  }, 60_000);

  it('the relay signs leaves that verify to the root through its intermediate, and only under the domain', async () => {
    const leaf = await b.signCsr(await csr('alpha'), `alpha.${DOMAIN}`);
    const inter = fs.readFileSync(path.join(dirB, 'ca.crt'), 'utf8');
    expect(leaf.chainPem).toBe(inter);
    expect(leaf.fullchainPem).toBe(leaf.certPem + inter);
    expect(parseCertificate(leaf.certPem).issuer).toContain(CN_B);
    const ok = await verify(['-CAfile', path.join(dirA, 'root.crt'), '-untrusted', file('chain.pem', leaf.chainPem), file('alpha.crt', leaf.certPem)]);
    expect(ok.ok, ok.output).toBe(true);
    // Without the intermediate it does not verify: the root alone never signed it.
    expect((await verify(['-CAfile', path.join(dirA, 'root.crt'), file('alpha.crt', leaf.certPem)])).ok).toBe(false);
    const text = (await run('openssl', ['x509', '-noout', '-text', '-in', file('alpha.crt', leaf.certPem)], T)).stdout;
    expect(text).toContain(`URI:http://server.${DOMAIN}/crl/relay-b.pem`);
    expect(await codeOf(b.signCsr(await csr('alpha'), 'alpha.other.example'))).not.toBe('resolved');
  }, 60_000);

  it('the root\'s directory shows and revokes what the relay signed; the relay\'s CRL, signed by its key, lists it', async () => {
    const leaf = await b.signCsr(await csr('beta'), `beta.${DOMAIN}`);
    // A never had it in newcerts/: it comes from the store, with the relay's chain.
    expect(fs.existsSync(path.join(dirA, 'newcerts', `${leaf.serial}.pem`))).toBe(false);
    const shown = await a.show(leaf.serial);
    expect(shown.certPem).toBe(leaf.certPem);
    expect(shown.chainPem).toBe(leaf.chainPem);
    await a.revoke(leaf.serial, 'keyCompromise');
    const crl = await b.generateCrl(path.join(tmp.dir, 'crl-b.pem'));
    expect(crl.revokedSerials).toContain(leaf.serial);
    const r = await verify(['-crl_check', '-CRLfile', path.join(tmp.dir, 'crl-b.pem'), '-CAfile', path.join(dirA, 'root.crt'), '-untrusted', file('chain2.pem', leaf.chainPem), file('beta.crt', leaf.certPem)]);
    expect(r.ok).toBe(false);
    expect(r.output).toMatch(/certificate revoked/);
    // Each signer's CRL is in the store for every relay to publish.
    const stored = await loadCaFiles(store, ['crl/root', 'crl/relay-b']);
    expect(stored.get('crl/relay-b')).toBe(crl.pem);
    expect(stored.get('crl/root')).toMatch(/BEGIN X509 CRL/);
  }, 60_000);
});
