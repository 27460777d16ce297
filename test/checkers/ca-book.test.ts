/**
 * The private CA's database in the state store, on both engines: two CA directories holding the same CA
 * key (two processes or machines) sign through one store, and every serial is handed out once, the
 * index each openssl reads holds every certificate the other signed, a revocation made through one is in
 * the CRL the other writes, and a signing that fails leaves the store as it was.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority, type CaBook } from '../../src/ca/index.js';
import { openStore } from '../../src/state/db.js';
import { loadCaFiles, saveCaFiles } from '../../src/state/ca-files.js';
import { LOCKS, withStoreLock, type Store } from '../../src/state/store.js';
import { run } from '../../src/util/exec.js';
import { parseCrl } from '../../src/ca/x509.js';
import { crlReplayRefusal } from '../../src/server/relays/ca.js';
import { makeCsr, makeKey, tempDir } from '../helpers/pki.js';
import { closeAllPostgres, startPostgres } from '../stack/postgres.js';

const DOMAIN = 'pipe.example.com';
const T = { timeout: 20_000 };

afterAll(async () => {
  await closeAllPostgres();
});

function bookOf(store: Store): CaBook {
  return { load: (n) => loadCaFiles(store, n), save: (f) => saveCaFiles(store, f), lock: (fn) => withStoreLock(store, LOCKS.ca, fn) };
}

describe.each(['sqlite', 'postgres'] as const)('the CA database in the %s store', (engine) => {
  let tmp: ReturnType<typeof tempDir>;
  let stores: Store[] = [];
  let a: CertificateAuthority;
  let b: CertificateAuthority;
  let podKey: string;

  beforeAll(async () => {
    tmp = tempDir(`ca-book-${engine}`);
    const target = engine === 'sqlite' ? { stateDir: path.join(tmp.dir, 'state') } : { stateDir: tmp.dir, url: (await startPostgres()).url };
    // Two handles, as two processes would have.
    stores = [await openStore(target, { create: true }), await openStore(target, { create: true })];
    const dirA = path.join(tmp.dir, 'ca-a');
    const dirB = path.join(tmp.dir, 'ca-b');
    a = new CertificateAuthority(dirA, { book: bookOf(stores[0]!) });
    await a.init({ commonName: 'book test CA', crlUrl: `http://server.${DOMAIN}/crl.pem`, defaultDays: 30, restrictToDomain: DOMAIN });
    // The second directory holds the same CA (its key and certificate), nothing of A's database.
    fs.mkdirSync(path.join(dirB, 'private'), { recursive: true, mode: 0o700 });
    for (const f of ['ca.json', 'ca.crt', 'root.crt', 'chain.pem', 'private/ca.key']) {
      if (fs.existsSync(path.join(dirA, f))) fs.copyFileSync(path.join(dirA, f), path.join(dirB, f));
    }
    b = new CertificateAuthority(dirB, { book: bookOf(stores[1]!) });
    await b.init({ commonName: 'book test CA', crlUrl: `http://server.${DOMAIN}/crl.pem`, defaultDays: 30, restrictToDomain: DOMAIN });
    podKey = await makeKey(tmp.dir, 'pod', 'p256');
  }, 60_000);

  afterAll(async () => {
    for (const s of stores) await s.close();
    tmp?.cleanup();
  });

  const csr = (name: string) => makeCsr(tmp.dir, `${name}-${Math.random().toString(36).slice(2, 8)}`, { key: podKey, subj: `/CN=${name}.${DOMAIN}` });

  it('serials are handed out once across both directories, and each index holds what the other signed', async () => {
    const serials: string[] = [];
    for (let i = 0; i < 3; i++) {
      serials.push((await a.signCsr(await csr(`a${i}`), `a${i}.${DOMAIN}`)).serial);
      serials.push((await b.signCsr(await csr(`b${i}`), `b${i}.${DOMAIN}`)).serial);
    }
    expect(new Set(serials).size).toBe(6);
    // In signing order: one serial after the other, whichever directory signed.
    const asNumbers = serials.map((s) => BigInt(`0x${s}`));
    for (let i = 1; i < asNumbers.length; i++) expect(asNumbers[i]! > asNumbers[i - 1]!).toBe(true);
    // B's index (loaded from the store before its last signing) lists A's certificates too.
    const listed = new Set((await b.list()).map((e) => e.serial));
    for (const s of serials.slice(0, 5)) expect(listed.has(s), s).toBe(true);
    const stored = await loadCaFiles(stores[0]!, ['index.txt', 'serial']);
    expect(stored.get('index.txt')!.trim().split('\n')).toHaveLength(6);
  }, 60_000);

  it('signings at once through both handles never share a serial', async () => {
    const signed = await Promise.all(Array.from({ length: 6 }, async (_, i) => (i % 2 ? a : b).signCsr(await csr(`p${i}`), `p${i}.${DOMAIN}`)));
    expect(new Set(signed.map((s) => s.serial)).size).toBe(6);
    expect((await loadCaFiles(stores[0]!, ['index.txt'])).get('index.txt')!.trim().split('\n')).toHaveLength(12);
  }, 60_000);

  it('a certificate revoked through one directory is in the CRL the other writes', async () => {
    const cert = await a.signCsr(await csr('revoked'), `revoked.${DOMAIN}`);
    await a.revoke(cert.serial, 'keyCompromise');
    const crlFile = path.join(tmp.dir, `crl-${engine}.pem`);
    await b.generateCrl(crlFile);
    const text = (await run('openssl', ['crl', '-in', crlFile, '-noout', '-text'], T)).stdout;
    expect(text.replace(/\s+/g, ' ').toUpperCase()).toContain(`SERIAL NUMBER: ${cert.serial.toUpperCase()}`);
  }, 60_000);

  it('every CRL carries the next number of the book\'s one counter, whichever directory wrote it, and an earlier one never passes for newer', async () => {
    const crls = [await a.generateCrl(), await b.generateCrl(), await a.generateCrl()];
    const infos = crls.map((c) => parseCrl(c.pem));
    for (let i = 1; i < infos.length; i++) expect(infos[i]!.crlNumber).toBe(infos[i - 1]!.crlNumber! + 1n);
    // What openssl reads as the number is what pipe2me reads.
    const printed = (await run('openssl', ['crl', '-noout', '-crlnumber'], { ...T, input: crls[2]!.pem })).stdout.trim();
    expect(printed).toBe(`crlNumber=0x${infos[2]!.crlNumber!.toString(16).toUpperCase()}`);
    // Written within a second or two, thisUpdate cannot order them; the number does.
    expect(crlReplayRefusal(infos[0]!, infos[2]!)).toMatch(/lower/);
    expect(crlReplayRefusal(infos[1]!, infos[2]!)).toMatch(/lower/);
    expect(crlReplayRefusal(infos[2]!, infos[1]!)).toBeUndefined();
  }, 60_000);

  it('a CRL counter set back in the store (an older backup restored): the next CRL is still numbered above every earlier one, and lists the revocation', async () => {
    const before = parseCrl((await b.generateCrl()).pem);
    await saveCaFiles(stores[0]!, new Map([['crlnumber', '1000\n']]));
    const cert = await b.signCsr(await csr('after-restore'), `after-restore.${DOMAIN}`);
    const { crl } = await b.revoke(cert.serial, 'keyCompromise');
    const after = parseCrl(crl.pem);
    expect(after.crlNumber! > before.crlNumber!, `${after.crlNumber} after ${before.crlNumber}`).toBe(true);
    expect(after.revokedSerials).toContain(cert.serial);
    expect(crlReplayRefusal(after, before)).toBeUndefined();
    // The counter moved on from there, in the store too.
    expect(BigInt(`0x${(await loadCaFiles(stores[0]!, ['crlnumber'])).get('crlnumber')!.trim()}`)).toBe(after.crlNumber! + 1n);
  }, 60_000);

  it('a signer puts back the CRL it last wrote only if the relays would take it: one older than the one served is replaced by a fresh one above it', async () => {
    const older = await b.generateCrl();
    const served = await b.generateCrl();
    // b's own file is the older one (as after a counter set back), while the newer one is served.
    fs.writeFileSync(path.join(b.dir, 'crl.pem'), older.pem);
    const put = await b.restoreCrl({ servedPem: served.pem });
    expect(put.pem).not.toBe(older.pem);
    expect(put.crlNumber! > served.crlNumber!).toBe(true);
    expect(crlReplayRefusal(parseCrl(put.pem), parseCrl(served.pem))).toBeUndefined();
    expect((await loadCaFiles(stores[0]!, ['crl/root'])).get('crl/root')).toBe(put.pem);
    // Its own file is the one served: that goes back as it is, no number spent.
    const number = (await loadCaFiles(stores[0]!, ['crlnumber'])).get('crlnumber');
    expect((await b.restoreCrl({ servedPem: put.pem })).pem).toBe(put.pem);
    expect((await loadCaFiles(stores[0]!, ['crlnumber'])).get('crlnumber')).toBe(number);
  }, 60_000);

  it('a signer puts back into the store the very CRL it last wrote (no new CRL number), and a fresh one when its own is unreadable', async () => {
    const written = await b.generateCrl();
    const record = async () => (await loadCaFiles(stores[0]!, ['crl/root', 'crlnumber']));
    expect((await record()).get('crl/root')).toBe(written.pem);
    const number = (await record()).get('crlnumber');
    await saveCaFiles(stores[0]!, new Map([['crl/root', 'not a CRL\n']]));
    const restored = await b.restoreCrl();
    expect(restored.pem).toBe(written.pem);
    expect((await record()).get('crl/root')).toBe(written.pem);
    expect((await record()).get('crlnumber'), 'no CRL number spent').toBe(number);
    fs.writeFileSync(path.join(b.dir, 'crl.pem'), 'unreadable\n');
    const fresh = await b.restoreCrl();
    expect(fresh.pem).toContain('BEGIN X509 CRL');
    expect(fresh.pem).not.toBe(written.pem);
    expect((await record()).get('crl/root')).toBe(fresh.pem);
    expect(fs.readFileSync(path.join(b.dir, 'crl.pem'), 'utf8')).toBe(fresh.pem);
  }, 60_000);

  // SQLite only: PostgreSQL's lock is an advisory lock and touches no directory.
  it.skipIf(engine !== 'sqlite')('the store\'s lock leaves the state directory\'s mode as it was (nginx passes through it to public/)', async () => {
    const stateDir = path.join(tmp.dir, 'state');
    fs.chmodSync(stateDir, 0o711);
    await a.signCsr(await csr('mode'), `mode.${DOMAIN}`);
    expect(fs.statSync(stateDir).mode & 0o777).toBe(0o711);
  }, 60_000);

  it('a refused signing leaves the store as it was', async () => {
    const before = await loadCaFiles(stores[0]!, ['index.txt', 'index.txt.attr', 'serial', 'crlnumber']);
    await expect(b.signCsr(await csr('elsewhere'), 'pod.other.example')).rejects.toThrow();
    expect(await loadCaFiles(stores[0]!, ['index.txt', 'index.txt.attr', 'serial', 'crlnumber'])).toEqual(before);
  }, 60_000);
});
