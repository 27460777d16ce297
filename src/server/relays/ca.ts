/**
 * Every relay signs with a key of its own. The relay that made the CA holds the root; each other relay
 * makes its key at `init`, puts a request in the store, and signs once the root's holder approved it
 * (`pipe2me-ctl relay approve NAME`), with the intermediate that came back. No private key ever leaves
 * the machine that made it: the store carries requests, certificates and CRLs only.
 *
 * Certificates name their signer's CRL (http://<server>/crl/<relay>.pem; the root's stays /crl.pem);
 * each signer rewrites its own when a revocation anywhere changed the shared index, and every relay
 * publishes every signer's from the store, so that any relay answers for any certificate.
 */
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseCrl, type CrlInfo } from '../../ca/x509.js';
import { run } from '../../util/exec.js';
import { PROGRAMS } from '../../util/programs.js';
import { caFileStamps, loadCaFiles, saveCaFiles } from '../../state/ca-files.js';
import { DeniedError, NotFoundError } from '../../util/errors.js';
import { atomicWrite, ensureDir, readIfExists } from '../../util/fsx.js';
import type { CertificateAuthority, SignedIntermediate } from '../../ca/index.js';
import type { ServerContext } from '../context.js';
import { hexFingerprint } from '../ca.js';

/** The store's copy of the root certificate (public), which joining relays install under their intermediate. */
export const ROOT_RECORD = 'root.crt';
const requestRecord = (relay: string) => `relay-ca/${relay}.csr`;
const approvedRecord = (relay: string) => `relay-ca/${relay}.crt`;

export const relayCaName = (ctx: ServerContext, relay: string) => `pipe2me ${relay} CA for ${ctx.config.domain}`;
export const relayCrlUrl = (ctx: ServerContext, relay: string) => `http://${ctx.config.server.fqdn}/crl/${relay}.pem`;
/** Where nginx serves a signer's CRL from (public/crl/<relay>.pem; the root's is public/crl.pem). */
export const publishedCrlFile = (ctx: ServerContext, signer: string) =>
  signer === 'root' ? ctx.layout.crlFile : path.join(ctx.layout.crlDir, `${signer}.pem`);

/** Whether this relay joins a CA another relay made (rather than making or keeping the root here). */
export async function joinsSharedCa(ctx: ServerContext, ca: CertificateAuthority): Promise<boolean> {
  if (!ctx.config.relays.relayed) return false;
  if (fs.existsSync(path.join(ca.dir, 'ca.json'))) return ca.signer() !== 'root';
  return (await loadCaFiles(ctx.db, ['serial'])).size > 0;
}

/**
 * This relay's own CA: installed when the root's holder approved its request, else a request (with a
 * key made here) waiting in the store — then a DeniedError says what to run where.
 */
export async function joinRelayCa(ctx: ServerContext, ca: CertificateAuthority, rootPin?: string): Promise<{ created: boolean; rootSha256Hex: string }> {
  const self = ctx.config.relays.self!;
  const rootPemOf = async () => {
    const root = (await loadCaFiles(ctx.db, [ROOT_RECORD])).get(ROOT_RECORD);
    if (!root) {
      throw new NotFoundError('relay_ca_root_unknown', 'The state store has a CA but not its root certificate.', {
        hint: 'Run pipe2me-ctl init (or pipe2me-ctl ca init) once on the relay that made the CA: it puts the root in the store. Then run init here again.',
      });
    }
    // The store is where the root comes from, not what vouches for it: with a pin, it must be the pinned one.
    if (rootPin !== undefined && sha256Hex(root) !== rootPin) throw rootPinMismatch(sha256Hex(root), rootPin, 'the state store\'s CA');
    return root;
  };
  if (fs.existsSync(path.join(ca.dir, 'ca.crt'))) {
    const have = sha256Hex(ca.rootPem());
    if (rootPin !== undefined && have !== rootPin) throw rootPinMismatch(have, rootPin, 'this relay\'s CA');
    return { created: false, rootSha256Hex: have };
  }
  const stored = await loadCaFiles(ctx.db, [approvedRecord(self)]);
  const approved = stored.get(approvedRecord(self));
  if (approved && fs.existsSync(path.join(ca.dir, 'private', 'ca.key'))) {
    try {
      await ca.installRelayIntermediate({ certPem: approved, rootPem: await rootPemOf() });
      return { created: true, rootSha256Hex: sha256Hex(ca.rootPem()) };
    } catch (e) {
      // Approved for an earlier key (the directory was lost and re-made): a new request follows.
      if ((e as { code?: string }).code !== 'ca_relay_request_invalid') throw e;
    }
  }
  const rootSha = sha256Hex(await rootPemOf());
  const req = await ca.requestRelayIntermediate({
    relay: self, commonName: relayCaName(ctx, self), crlUrl: relayCrlUrl(ctx, self),
    defaultDays: ctx.config.ca.validityDays, restrictToDomain: ctx.config.domain,
  });
  // An approval of an earlier request is void: it names another key.
  await saveCaFiles(ctx.db, new Map([[requestRecord(self), req.csrPem], [approvedRecord(self), '']]));
  throw new DeniedError('relay_ca_not_approved', `This relay's CA key is made here (EC P-256, key sha256 ${req.keySha256}); the relay that holds the root has not signed it yet. The root in the state store is sha256:${rootSha}${rootPin === undefined ? ' (not pinned: compare it with the ca_pin the root\'s holder prints, or give --ca-pin)' : ', as pinned'}.`, {
    hint: `On the relay that made the CA, check that key and run: pipe2me-ctl relay approve ${self} — then run pipe2me-ctl init here again.`,
    data: { relay: self, key_sha256: req.keySha256, root_ca_pin: `sha256:${rootSha}` },
  });
}

/** The CA found is not the one the operator pinned (init --ca-pin): nothing was made or installed. */
export function rootPinMismatch(found: string, pinned: string, where: string): DeniedError {
  return new DeniedError('ca_root_mismatch', `The root of ${where} is sha256:${found}, not the pinned sha256:${pinned}: nothing was made or installed.`, {
    hint: 'Check the pin: it is ca_pin of `pipe2me-ctl --json ca init` on the relay that holds the root. A store whose root is another one is not the fleet you meant to join.',
    data: { found: `sha256:${found}`, pinned: `sha256:${pinned}` },
  });
}

/**
 * On the root's holder: sign relay `name`'s waiting request, if it is for the key the operator read off
 * that relay (`keySha256`). An intermediate approved earlier for that relay (another key) is revoked.
 */
export async function approveRelayCa(ctx: ServerContext, ca: CertificateAuthority, name: string, keySha256: string): Promise<SignedIntermediate & { revoked: string | null }> {
  const stored = await loadCaFiles(ctx.db, [requestRecord(name), approvedRecord(name)]);
  const csr = stored.get(requestRecord(name));
  if (!csr) {
    throw new NotFoundError('relay_ca_no_request', `Relay ${name} has not asked for a CA certificate.`, {
      hint: `Run pipe2me-ctl init on ${name} first (with relay: ${name} in its configuration).`,
    });
  }
  const signed = await ca.signRelayIntermediate(csr, { commonName: relayCaName(ctx, name), keySha256 });
  await saveCaFiles(ctx.db, new Map([[approvedRecord(name), signed.certPem]]));
  // The relay's earlier intermediate (a lost directory, a new key) must not sign any more.
  let revoked: string | null = null;
  const earlier = stored.get(approvedRecord(name));
  if (earlier) {
    const serial = new X509Certificate(earlier).serialNumber.toUpperCase();
    if (serial !== signed.serial) {
      try {
        await ca.revoke(serial, 'superseded');
        revoked = serial;
      } catch (e) {
        if ((e as { code?: string }).code !== 'ca_already_revoked') throw e;
      }
    }
  }
  return { ...signed, revoked };
}

export interface PublishedCrls {
  /** The files written. */
  changed: string[];
  /** CRLs in the store that were not published, and why (the file served stays as it was); transient: the answer may change without the CRL changing. */
  refused: { signer: string; why: string; transient?: boolean; ofCrl?: boolean }[];
  /** Records not judged for good (this relay's CA not installed yet, a signer not approved yet, openssl not run): to be looked at again. */
  retry: string[];
}

/**
 * Writes every signer's CRL the store holds where nginx serves it. The store carries CRLs; it does not
 * vouch for them: each is published only if its signer signed it — the root (this relay's own copy, the
 * one pinned at join) or a relay's intermediate that the root issued — and only if it is not older than
 * the one served by CRL number (no revocation can be taken back by replaying an earlier CRL).
 */
export async function publishCrls(ctx: ServerContext, only?: ReadonlySet<string>): Promise<PublishedCrls> {
  // The follower already knows which records are due: the store is listed only when nobody said.
  const names = only ? [...only] : [...(await caFileStamps(ctx.db, { prefix: 'crl/' })).keys()];
  const out: PublishedCrls = { changed: [], refused: [], retry: [] };
  const root = readIfExists(path.join(ctx.config.paths.ca, 'root.crt'));
  if (root === undefined) return { ...out, retry: names };
  const crls = await loadCaFiles(ctx.db, names);
  const signers = [...crls.keys()].map((n) => n.slice('crl/'.length)).filter((n) => n !== 'root' && SIGNER.test(n));
  const intermediates = await loadCaFiles(ctx.db, signers.map(approvedRecord));
  for (const [name, pem] of crls) {
    const signer = name.slice('crl/'.length);
    if (!SIGNER.test(signer) || !pem.includes('-----BEGIN X509 CRL-----')) continue;
    const file = publishedCrlFile(ctx, signer);
    const live = readIfExists(file);
    if (live === pem) continue;
    const refusal = await crlRefusal(pem, signer === 'root' ? root : intermediates.get(approvedRecord(signer)), root, live, signer === 'root' ? null : relayCaName(ctx, signer));
    if (refusal) {
      out.refused.push({ signer, why: refusal.why, ...(refusal.transient ? { transient: true } : {}), ...(refusal.ofCrl ? { ofCrl: true } : {}) });
      if (refusal.transient) out.retry.push(name);
      continue;
    }
    ensureDir(path.dirname(file), 0o755);
    atomicWrite(file, pem, { mode: 0o644 });
    out.changed.push(file);
  }
  return out;
}

const SIGNER = /^[a-z0-9-]{1,63}$/;

/**
 * Why a CRL from the store must not be served (undefined: it may); transient: the answer may change
 * without the CRL changing; ofCrl: the CRL itself is at fault (not its signer's certificate in the store),
 * which a signer answers by putting its own CRL back.
 */
async function crlRefusal(pem: string, issuerPem: string | undefined, rootPem: string, livePem: string | undefined, relayCa: string | null): Promise<{ why: string; transient?: boolean; ofCrl?: boolean } | undefined> {
  const no = (why: string, transient = false) => ({ why, transient });
  const bad = (why: string) => ({ why, ofCrl: true });
  if (!issuerPem) return no('its signer has no intermediate from the root in the store (not approved yet?)', true);
  let issuer: X509Certificate;
  try {
    issuer = new X509Certificate(issuerPem);
    const root = new X509Certificate(rootPem);
    if (issuerPem !== rootPem && !(issuer.checkIssued(root) && issuer.verify(root.publicKey) && issuer.ca)) return no('its signer\'s certificate is not a CA certificate issued by this fleet\'s root');
    // The root names each relay's intermediate after that relay (approveRelayCa): another relay's, put in
    // this relay's record, does not pass for it.
    if (relayCa !== null && !issuer.subject.split('\n').includes(`CN=${relayCa}`)) return no(`its signer's certificate is not the one the root issued to that relay (${issuer.subject.replace(/\n/g, ', ')})`);
  } catch (e) {
    return no(`its signer's certificate cannot be read (${(e as Error).message})`);
  }
  let info;
  try {
    info = parseCrl(pem);
  } catch (e) {
    return bad(`it cannot be read (${(e as Error).message})`);
  }
  // An expired CRL tells a client nothing it may rely on, and would pass for current where none is served yet.
  if (info.nextUpdate && info.nextUpdate.getTime() <= Date.now()) return bad(`it expired on ${info.nextUpdate.toISOString()}`);
  // openssl checks the signature against exactly this one certificate (the CRL's issuer must be its subject).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2m-crl-'));
  try {
    const issuerFile = path.join(dir, 'issuer.pem');
    fs.writeFileSync(issuerFile, issuer.toString());
    // Exactly this certificate: none of the system's trust store (a public CA's own CRL must not pass).
    const r = await run(PROGRAMS.openssl, ['crl', '-noout', '-no-CApath', '-no-CAstore', '-CAfile', issuerFile], { input: pem, timeout: 10_000, allowFailure: true });
    if (r.exitCode < 0 || r.timedOut) return no(`openssl could not check it (${(r.stderr || r.stdout).trim().split('\n')[0]?.slice(0, 200)})`, true);
    if (r.exitCode !== 0 || !/verify OK/.test(r.stderr + r.stdout)) return bad(`its signature is not its signer's (openssl: ${(r.stderr || r.stdout).trim().split('\n')[0]?.slice(0, 200)})`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (livePem !== undefined) {
    let served: CrlInfo | undefined;
    try {
      served = parseCrl(livePem);
    } catch {
      // What is served cannot be read: the new one (verified) replaces it.
    }
    const older = served && crlReplayRefusal(info, served);
    if (older) return bad(older);
  }
  return undefined;
}

/**
 * Why a CRL verified as its signer's must still not replace the one served (undefined: it may): it is
 * not newer. Newer is by CRL number, which the relays draw from the book's one counter, so that an
 * earlier CRL replayed within the same second (thisUpdate has seconds only), or a signer whose clock is
 * behind another's, is judged right. thisUpdate decides only where the one served has no number.
 */
export function crlReplayRefusal(candidate: CrlInfo, served: CrlInfo): string | undefined {
  if (served.crlNumber !== undefined) {
    if (candidate.crlNumber === undefined) return `it has no CRL number, and the one served has ${served.crlNumber}`;
    if (candidate.crlNumber < served.crlNumber) return `its CRL number ${candidate.crlNumber} is lower than the served one's (${served.crlNumber}): an earlier CRL`;
    if (candidate.crlNumber === served.crlNumber) return `it has the CRL number of the one served (${served.crlNumber}) with other contents: a signer issues one CRL per number`;
    return undefined;
  }
  if (candidate.thisUpdate.getTime() < served.thisUpdate.getTime()) return `it is older (${candidate.thisUpdate.toISOString()}) than the one served (${served.thisUpdate.toISOString()})`;
  return undefined;
}

/**
 * Run by the heartbeat: this relay's CRL rewritten when revocations made elsewhere changed the shared
 * index, and the CRLs the other signers rewrote published here.
 */
export class CrlFollower {
  private indexStamp = -1;
  /** Whether the last look came after the index's stamp second ended (no later change can share that stamp). */
  private indexSettled = false;
  private crlStamps = new Map<string, number>();

  constructor(private readonly ctx: ServerContext, private readonly ca: () => CertificateAuthority) {}

  /** Returns the CRLs of the store it refused to publish (each once, until the store's copy changes). */
  async follow(): Promise<PublishedCrls['refused']> {
    const stamps = await caFileStamps(this.ctx.db, { prefix: 'crl/', names: ['index.txt'] });
    const ca = this.ca();
    const index = stamps.get('index.txt') ?? 0;
    // Stamps are seconds: a look within the stamp's own second is repeated once the second is over, and
    // the index (large in a big fleet) is read only then, not every time.
    if ((index > this.indexStamp || !this.indexSettled) && fs.existsSync(path.join(ca.dir, 'ca.crt'))) {
      const lookedAt = Math.floor(Date.now() / 1000);
      const text = (await loadCaFiles(this.ctx.db, ['index.txt'])).get('index.txt') ?? '';
      const revoked = (text.match(/^R\t/gm) ?? []).length;
      const own = readIfExists(path.join(ca.dir, 'crl.pem'));
      if (own === undefined || revoked !== this.revokedIn(own)) await ca.generateCrl(undefined, servedNumber(this.ctx, ca.signer()));
      this.indexStamp = index;
      this.indexSettled = lookedAt > index;
    }
    // The same for each signer's CRL: published when its stamp moved, or was still the current second.
    const second = Math.floor(Date.now() / 1000);
    const due = new Set([...stamps].filter(([n, t]) => n.startsWith('crl/') && (t > (this.crlStamps.get(n) ?? -1) || t >= second - 1)).map(([n]) => n));
    const published: Pick<PublishedCrls, 'refused' | 'retry'> = due.size ? await publishCrls(this.ctx, due) : { refused: [], retry: [] };
    const refused = published.refused;
    // A record refused for a reason that may pass (no approval yet, openssl not run) is looked at again.
    for (const n of due) if (!published.retry.includes(n)) this.crlStamps.set(n, stamps.get(n)!);
    // The store's copy of this relay's own CRL was replaced by one it refuses: its own goes back there,
    // the same one it serves (a fresh one would make every relay publish a new CRL for nothing).
    // Only when the CRL itself was refused: not for a refusal that may pass by itself (openssl not run),
    // nor for its signer's certificate in the store (its own CRL would be refused the same way).
    if (published.refused.some((r) => r.signer === ca.signer() && r.ofCrl) && fs.existsSync(path.join(ca.dir, 'ca.crt'))) {
      await ca.restoreCrl({ servedPem: readIfExists(publishedCrlFile(this.ctx, ca.signer())) });
    }
    return refused.map(({ signer, why }) => ({ signer, why }));
  }

  private lastCrl: { pem: string; count: number } | undefined;
  private revokedIn(pem: string): number {
    if (this.lastCrl?.pem === pem) return this.lastCrl.count;
    const count = crlRevokedCount(pem);
    this.lastCrl = { pem, count };
    return count;
  }
}

/** The CRL number of what this relay serves for `signer`, if it serves a readable one. */
function servedNumber(ctx: ServerContext, signer: string): bigint | undefined {
  const pem = readIfExists(publishedCrlFile(ctx, signer));
  if (pem === undefined) return undefined;
  try {
    return parseCrl(pem).crlNumber;
  } catch {
    return undefined;
  }
}

function crlRevokedCount(pem: string): number {
  try {
    return parseCrl(pem).revokedSerials.length;
  } catch {
    return -1; // unreadable: rewritten
  }
}

const sha256Hex = (pem: string) => hexFingerprint(new X509Certificate(pem).fingerprint256);
