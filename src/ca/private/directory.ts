/**
 * The private CA's directory: where its files are, its settings, its index, the lock every writing
 * operation holds, and running openssl on it. The operations (init, sign, revoke, intermediate, list)
 * share this plumbing; the decisions (is this CSR acceptable, what goes into openssl.cnf, what does
 * index.txt say) live in the pure modules in src/ca/.
 *
 * Directory layout (the directory is 0700 and owned by the user running pipe2me-ctl, root on a server):
 *   ca.json           settings (crlUrl, validity defaults, optional name constraint)
 *   openssl.cnf       rendered from templates/openssl/openssl.cnf.hbs, re-rendered on every operation
 *   ca.crt            the certificate that signs (the self-signed root, or an installed intermediate)
 *   private/ca.key    its key, 0600
 *   root.crt          what clients trust (the same as ca.crt with a self-signed root)
 *   chain.pem         what a server sends after its own certificate (empty with a self-signed root)
 *   index.txt, index.txt.attr, serial, crlnumber, newcerts/   openssl ca's database
 *   crl.pem, crl.der  the current CRL, rewritten on every change
 *   ca.lock           the cross-process lock every writing operation holds
 *   tmp/              per-operation files (requests, extension files), removed afterwards
 *   retired/          earlier ca.crt/ca.key pairs, kept when an intermediate replaces them
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DaemonError, InputError, NotFoundError, DeniedError, Pipe2meError } from '../../util/errors.js';
import { run } from '../../util/exec.js';
import { atomicWrite, ensureDir, readIfExists, writeFresh } from '../../util/fsx.js';
import { withLock } from '../../util/lock.js';
import { CaErrorCode } from '../codes.js';
import { DEFAULT_CRL_DAYS, DEFAULT_LEAF_DAYS, renderOpensslCnf, validateSettings, type CaSettings } from '../config.js';
import { isWithinDomain, preview } from '../fqdn.js';
import { IndexFormatError, parseIndex, type IndexEntry } from '../index-db.js';
import { normalizeSerial } from '../x509.js';

export type CaKeyAlgorithm = 'P-256' | 'P-384';

/**
 * Files openssl ca rewrites on a signing or revocation, snapshotted so a failure can put them back.
 * openssl writes X.new, then renames X to X.old and X.new to X; a failure half-way leaves .new files.
 */
export const DB_FILES = ['index.txt', 'index.txt.attr', 'serial'].flatMap((f) => [f, `${f}.new`, `${f}.old`]);
export const SETTINGS_VERSION = 1;
/** Tail of the queue of operations waiting for each CA lock in this process. */
const inProcessQueue = new Map<string, Promise<void>>();

/** What ca.json holds. */
export interface StoredSettings {
  version: number;
  crlUrl: string | null;
  crlDays: number;
  defaultDays: number;
  restrictToDomain: string | null;
  /**
   * Who signs with this directory's key, named in the store (its CRL is kept there under crl/<signer>):
   * "root" for the self-signed root, a relay's name for that relay's own intermediate. Absent in
   * directories made before relays had CAs of their own: the root.
   */
  signer?: string;
}

export interface CaDirectoryOptions {
  /** Timeout of each openssl call, ms. */
  opensslTimeoutMs: number;
  /** How long to wait for another signer to release the CA lock, ms. */
  lockTimeoutMs: number;
  /** Where openssl's database is shared (the state store): loaded before and saved after every writing operation. */
  book?: CaBook;
}

/** The CA's database files kept outside the directory (the store), so that every server sees one index and one serial. */
export interface CaBook {
  load(names: readonly string[]): Promise<Map<string, string>>;
  save(files: ReadonlyMap<string, string>): Promise<void>;
  /** Held around the whole operation, across machines (the directory's file lock covers only this one). */
  lock<T>(fn: () => Promise<T>): Promise<T>;
}

/** The book's record of an issued certificate: its PEM followed by the chain its signer sends with it. */
export const issuedRecord = (serial: string) => `issued/${serial}`;
/** The book's copy of a signer's current CRL, which every relay publishes. */
export const crlRecord = (signer: string) => `crl/${signer}`;

/** openssl ca's database: what the book keeps. */
export const BOOK_FILES = ['index.txt', 'index.txt.attr', 'serial', 'crlnumber'] as const;

export class CaDirectory {
  readonly dir: string;
  private readonly timeout: number;
  private readonly lockTimeoutMs: number;
  private readonly book: CaBook | undefined;
  /** Records an operation adds to the book besides openssl's files (issued/<serial>, crl/<signer>), written with them. */
  private deferred = new Map<string, string>();

  constructor(dir: string, opts: CaDirectoryOptions) {
    this.dir = path.resolve(dir);
    this.timeout = opts.opensslTimeoutMs;
    this.lockTimeoutMs = opts.lockTimeoutMs;
    this.book = opts.book;
  }

  /** A path inside the CA directory. */
  p(...parts: string[]): string {
    return path.join(this.dir, ...parts);
  }

  /** Every writing operation runs here: one at a time across processes, with openssl.cnf up to date. */
  async locked<T>(fn: () => Promise<T>): Promise<T> {
    // Callers in this process queue here first, so they wait for each other without polling the
    // cross-process lock (which polls every 25 ms); other processes are kept out by withLock.
    const key = this.p('ca.lock');
    const previous = inProcessQueue.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = previous.then(() => mine);
    inProcessQueue.set(key, tail);
    await previous;
    try {
      return await this.lockedAcrossProcesses(fn);
    } finally {
      release();
      if (inProcessQueue.get(key) === tail) inProcessQueue.delete(key);
    }
  }

  private async lockedAcrossProcesses<T>(fn: () => Promise<T>): Promise<T> {
    const book = this.book;
    const inside = () => withLock(
      this.p('ca.lock'),
      'CA',
      async () => {
        const stored = readIfExists(this.p('ca.json'));
        // Re-rendered every time so a moved directory or a hand edit cannot make openssl sign with
        // something other than what the template says.
        if (stored !== undefined) writeIfChanged(this.p('openssl.cnf'), renderOpensslCnf(this.settingsFrom(stored)), 0o600);
        if (!book) return fn();
        // The book is the truth: what another process (or server) wrote there replaces the local copy
        // before openssl reads it; what this operation wrote goes back only once it succeeded.
        const before = await book.load(BOOK_FILES);
        for (const [name, content] of before) writeIfChanged(this.p(name), content, 0o600);
        this.deferred = new Map();
        const out = await fn();
        const after = new Map<string, string>();
        for (const name of BOOK_FILES) {
          const content = readIfExists(this.p(name));
          if (content !== undefined && content !== before.get(name)) after.set(name, content);
        }
        for (const [name, content] of this.deferred) after.set(name, content);
        this.deferred = new Map();
        if (after.size) await book.save(after);
        return out;
      },
      { timeoutMs: this.lockTimeoutMs },
    );
    return book ? book.lock(inside) : inside();
  }

  /** Whether this directory shares its database through a book (the store). */
  get shared(): boolean {
    return this.book !== undefined;
  }

  /** Records from the book (nothing without one). */
  async bookLoad(names: readonly string[]): Promise<Map<string, string>> {
    return this.book ? this.book.load(names) : new Map();
  }

  /** A record the book gets when the running operation succeeds (inside locked(); ignored without a book). */
  bookRecord(name: string, content: string): void {
    if (this.book) this.deferred.set(name, content);
  }

  /** The signer named in ca.json: "root" unless this directory signs with a relay's intermediate. */
  signer(): string {
    const json = readIfExists(this.p('ca.json'));
    if (json === undefined) return 'root';
    try {
      const s = (JSON.parse(json) as Partial<StoredSettings>).signer;
      return typeof s === 'string' && /^[a-z0-9-]{1,63}$/.test(s) ? s : 'root';
    } catch {
      return 'root';
    }
  }

  /**
   * Run `fn` (an openssl call that rewrites the database). If it fails, put `files` back exactly as
   * they were and remove `created` files that did not exist before, then rethrow.
   */
  async withRestore<T>(files: string[], fn: () => Promise<T>, created: string[] = []): Promise<T> {
    const before = new Map(files.map((f) => [f, fileState(this.p(f))]));
    const existed = new Map(created.map((f) => [f, fs.existsSync(f)]));
    try {
      return await fn();
    } catch (e) {
      for (const [f, state] of before) {
        const now = fileState(this.p(f));
        if (state === undefined) {
          if (now !== undefined) fs.rmSync(this.p(f), { force: true });
        } else if (now === undefined || !now.content.equals(state.content) || now.mode !== state.mode) {
          atomicWrite(this.p(f), state.content, { mode: state.mode });
        }
      }
      for (const [f, was] of existed) if (!was) fs.rmSync(f, { force: true });
      if (e instanceof Pipe2meError && e.code === CaErrorCode.opensslFailed) {
        e.message += ' The CA database was left as it was before.';
      }
      throw e;
    }
  }

  async openssl(args: string[], what: string, opts: { allowFailure?: boolean } = {}) {
    try {
      return await run('openssl', args, { timeout: this.timeout, allowFailure: opts.allowFailure ?? false });
    } catch (e) {
      if (e instanceof Pipe2meError && e.code === 'command_failed') {
        // openssl's own output names paths and reasons, never key material.
        throw new DaemonError(CaErrorCode.opensslFailed, `openssl failed while ${what}: ${String(e.message).split('\n').slice(1).join(' ').slice(0, 1500)}`, {
          data: e.data ?? {},
          cause: e,
        });
      }
      throw e;
    }
  }

  /** A private directory under tmp/ for one operation, removed afterwards whatever happens. */
  async inTmp<T>(fn: (tmp: string) => Promise<T>): Promise<T> {
    ensureDir(this.p('tmp'), 0o700);
    const tmp = fs.mkdtempSync(this.p('tmp', 'op-'));
    fs.chmodSync(tmp, 0o700);
    try {
      return await fn(tmp);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }

  /** Make a private key with openssl into a file that is 0600 before the first byte is written. */
  async generateKey(file: string, alg: CaKeyAlgorithm): Promise<void> {
    fs.rmSync(file, { force: true });
    writeFresh(file, '', { mode: 0o600 });
    try {
      await this.openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', `ec_paramgen_curve:${alg}`, '-out', file], 'making a key');
      fs.chmodSync(file, 0o600);
    } catch (e) {
      fs.rmSync(file, { force: true });
      throw e;
    }
  }

  checkCaPair(): void {
    const cert = new X509Certificate(fs.readFileSync(this.p('ca.crt')));
    if (!cert.checkPrivateKey(loadPrivateKeyFile(this.p('private', 'ca.key')))) {
      throw new DaemonError(CaErrorCode.stateCorrupt, `${this.p('private', 'ca.key')} does not belong to ${this.p('ca.crt')}.`, {
        hint: 'Restore both from the same backup (retired/ keeps earlier pairs).',
      });
    }
  }

  /**
   * Refuse a directory another user controls (they could swap files under us) and, for init, a
   * non-empty directory that is not a CA (init would chmod it 0700 and fill it).
   */
  checkDirSafe(forInit: boolean): void {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(this.dir);
    } catch {
      if (forInit) return;
      throw this.notInitialized();
    }
    const uid = process.geteuid?.();
    if (!st.isDirectory()) throw new DeniedError(CaErrorCode.dirUnsafe, `${this.dir} is not a directory (or is a symbolic link).`);
    if (uid !== undefined && st.uid !== uid) throw new DeniedError(CaErrorCode.dirUnsafe, `${this.dir} belongs to uid ${st.uid}, not to the user running pipe2me (uid ${uid}).`);
    if (forInit && !fs.existsSync(this.p('ca.json')) && fs.readdirSync(this.dir).length > 0) {
      throw new DeniedError(CaErrorCode.dirUnsafe, `${this.dir} already holds files that are not a pipe2me CA; refusing to turn it into one.`, {
        hint: 'Give an empty or new directory.',
      });
    }
  }

  private notInitialized(): NotFoundError {
    return new NotFoundError(CaErrorCode.notInitialized, `There is no CA in ${this.dir}.`, { hint: 'Create it first: pipe2me-ctl ca init' });
  }

  private settingsFrom(json: string): CaSettings {
    let s: Partial<StoredSettings>;
    try {
      s = JSON.parse(json) as Partial<StoredSettings>;
    } catch {
      throw new DaemonError(CaErrorCode.stateCorrupt, `${this.p('ca.json')} is not valid JSON.`);
    }
    return validateSettings({
      dir: this.dir,
      crlUrl: s.crlUrl ?? null,
      crlDays: s.crlDays ?? DEFAULT_CRL_DAYS,
      defaultDays: s.defaultDays ?? DEFAULT_LEAF_DAYS,
      restrictToDomain: s.restrictToDomain ?? null,
    });
  }

  /** The settings of an existing CA; every operation but init starts here. */
  loadSettings(): CaSettings {
    this.checkDirSafe(false);
    const json = readIfExists(this.p('ca.json'));
    if (json === undefined || !fs.existsSync(this.p('ca.crt'))) throw this.notInitialized();
    return this.settingsFrom(json);
  }

  /**
   * The certificate `serial` as issued, with the chain its signer sends: from newcerts/ when this machine
   * signed it, else from the book (another relay did).
   */
  async issued(serial: string): Promise<{ certPem: string; chainPem: string } | undefined> {
    const local = readIfExists(this.p('newcerts', `${serial}.pem`));
    const stored = (await this.bookLoad([issuedRecord(serial)])).get(issuedRecord(serial));
    if (stored !== undefined) {
      const end = stored.indexOf('-----END CERTIFICATE-----');
      if (end >= 0) {
        const cut = end + '-----END CERTIFICATE-----'.length;
        const certPem = stored.slice(0, cut).trim() + '\n';
        return { certPem, chainPem: stored.slice(cut).replace(/^\s+/, '') };
      }
    }
    if (local === undefined) return undefined;
    // Signed here before the book kept certificates: the chain is this directory's.
    return { certPem: local, chainPem: readIfExists(this.p('chain.pem')) ?? '' };
  }

  /** The index as the book holds it now (another relay may have signed since this directory's last operation). */
  async currentIndex(): Promise<IndexEntry[]> {
    const stored = (await this.bookLoad(['index.txt'])).get('index.txt');
    if (stored === undefined) return this.readIndex();
    try {
      return parseIndex(stored);
    } catch (e) {
      if (e instanceof IndexFormatError) throw new DaemonError(CaErrorCode.stateCorrupt, `The store's CA index is damaged: ${e.message}.`);
      throw e;
    }
  }

  readIndex(): IndexEntry[] {
    try {
      return parseIndex(fs.readFileSync(this.p('index.txt'), 'utf8'));
    } catch (e) {
      if (e instanceof IndexFormatError) throw new DaemonError(CaErrorCode.stateCorrupt, `${this.p('index.txt')} is damaged: ${e.message}.`);
      throw e;
    }
  }
}

export function checkDomain(settings: CaSettings, names: string[]): void {
  const d = settings.restrictToDomain;
  if (!d) return;
  for (const n of names) {
    if (!isWithinDomain(n, d)) throw new InputError(CaErrorCode.nameOutsideDomain, `${n} is not under ${d}, the only domain this CA issues for.`);
  }
}

export function checkSerial(serial: unknown): string {
  if (typeof serial !== 'string' || !/^(0x)?[0-9A-Fa-f:]{1,64}$/.test(serial.trim())) {
    throw new InputError(CaErrorCode.serialInvalid, `${preview(String(serial))} is not a certificate serial (hexadecimal).`);
  }
  return normalizeSerial(serial);
}

export function loadPrivateKeyFile(file: string): KeyObject {
  try {
    return createPrivateKey(fs.readFileSync(file));
  } catch {
    throw new InputError(CaErrorCode.keyFileInvalid, `${file} is not a readable, unencrypted private key.`);
  }
}

export function writeIfChanged(file: string, content: string, mode: number): void {
  if (readIfExists(file) !== content) atomicWrite(file, content, { mode });
  else fs.chmodSync(file, mode);
}

/** A file that lives for one operation inside tmp/: private, never there before, no fsync needed. */
export function writeTemp(file: string, content: string): void {
  fs.writeFileSync(file, content, { mode: 0o600, flag: 'wx' });
}

function fileState(file: string): { content: Buffer; mode: number } | undefined {
  try {
    return { content: fs.readFileSync(file), mode: fs.statSync(file).mode & 0o7777 };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}
