/**
 * The private certificate authority: an OpenSSL CA directory driven through `openssl`. This class is
 * its public face and only delegates, one module per job: init.ts (creating it), sign.ts (pods' CSRs,
 * the server's certificates, renewal), revoke.ts (revocation and the CRL), intermediate.ts (signing
 * with a real CA's intermediate), list.ts (reading what it issued); directory.ts is the plumbing they
 * share (the directory's files and settings, the lock, openssl). The decisions (is this CSR acceptable,
 * what goes into openssl.cnf, what does index.txt say) live in the pure modules in src/ca/.
 */
import { DEFAULT_CSR_POLICY, type CsrPolicy } from '../csr.js';
import type { IndexEntry, RevocationReason } from '../index-db.js';
import type { RenewalDecision } from '../x509.js';
import { CaDirectory, type CaBook } from './directory.js';
import { init, type InitOptions, type InitResult } from './init.js';
import { installIntermediate, type InstallIntermediateInput, type InstallIntermediateResult } from './intermediate.js';
import { list, rootPem, show, type ShownCertificate } from './list.js';
import { holdsRoot, installRelayIntermediate, requestRelayIntermediate, signRelayIntermediate, type RelayRequest, type RelayRequestInput, type SignedIntermediate } from './relay-ca.js';
import type { CertInfo } from '../x509.js';
import { generateCrl, restoreCrl, revoke, type CrlResult } from './revoke.js';
import { issueServerCertificate, needsRenewal, signCsr, type ServerCertificateInput, type SignedCertificate } from './sign.js';

export type { CaBook, CaKeyAlgorithm } from './directory.js';
export type { InitOptions, InitResult } from './init.js';
export type { InstallIntermediateInput, InstallIntermediateResult } from './intermediate.js';
export type { ShownCertificate } from './list.js';
export type { RelayRequest, RelayRequestInput, SignedIntermediate } from './relay-ca.js';
export type { CrlResult } from './revoke.js';
export type { ServerCertificateInput, SignedCertificate } from './sign.js';

export interface CertificateAuthorityOptions {
  /** What a pod's CSR must satisfy (key types and sizes, size limit). */
  csrPolicy?: CsrPolicy;
  /** Timeout of each openssl call, ms. */
  opensslTimeoutMs?: number;
  /** How long to wait for another signer to release the CA lock, ms. */
  lockTimeoutMs?: number;
  /** Where openssl's index, serial and CRL number are shared (the state store). */
  book?: CaBook;
}

export class CertificateAuthority {
  readonly dir: string;
  private readonly directory: CaDirectory;
  private readonly csrPolicy: CsrPolicy;

  constructor(dir: string, opts: CertificateAuthorityOptions = {}) {
    this.directory = new CaDirectory(dir, { opensslTimeoutMs: opts.opensslTimeoutMs ?? 20_000, lockTimeoutMs: opts.lockTimeoutMs ?? 120_000, ...(opts.book ? { book: opts.book } : {}) });
    this.dir = this.directory.dir;
    this.csrPolicy = opts.csrPolicy ?? DEFAULT_CSR_POLICY;
  }

  /** Create the CA, or bring an existing one up to date. Safe to run again and again. */
  init(opts: InitOptions): Promise<InitResult> {
    return init(this.directory, opts);
  }

  /** Check a pod's CSR, then sign it for `fqdn` alone. Nothing is written when the check refuses it. */
  signCsr(csrPem: string | Buffer, fqdn: string, opts: { days?: number } = {}): Promise<SignedCertificate> {
    return signCsr(this.directory, this.csrPolicy, csrPem, fqdn, opts);
  }

  /** A certificate for the server itself, with a key made here that never leaves this machine. */
  issueServerCertificate(input: ServerCertificateInput): Promise<SignedCertificate> {
    return issueServerCertificate(this.directory, input);
  }

  /** Whether the certificate in `certFile` should be replaced (missing, unreadable, expiring, or from an earlier CA certificate). */
  needsRenewal(certFile: string, opts: { beforeDays?: number; now?: Date } = {}): RenewalDecision {
    return needsRenewal(this.directory, certFile, opts);
  }

  revoke(serial: string, reason: RevocationReason = 'unspecified'): Promise<{ serial: string; crl: CrlResult }> {
    return revoke(this.directory, serial, reason);
  }

  /** Write a fresh CRL to crl.pem and crl.der in the CA directory, and to `outFile` (PEM) if given; numbered above `above` (the one served). */
  generateCrl(outFile?: string, above?: bigint): Promise<CrlResult> {
    return generateCrl(this.directory, outFile, above);
  }

  /**
   * This signer's CRL back into the shared store after the store's copy was replaced: as it was, if it is
   * the one served (or newer) and good for another day, else a fresh one numbered above the one served.
   */
  restoreCrl(opts: { servedPem?: string } = {}): Promise<CrlResult> {
    return restoreCrl(this.directory, opts);
  }

  list(): Promise<IndexEntry[]> {
    return list(this.directory);
  }

  show(serial: string): Promise<ShownCertificate> {
    return show(this.directory, serial);
  }

  /** The certificate clients trust (root.crt). */
  rootPem(): string {
    return rootPem(this.directory);
  }

  /** A relay's own key (made here, once) and a request for its intermediate, which the root's holder signs. */
  requestRelayIntermediate(input: RelayRequestInput): Promise<RelayRequest> {
    return requestRelayIntermediate(this.directory, input);
  }

  /** On the root's holder: sign a relay's request as an intermediate that signs leaves only. */
  signRelayIntermediate(csrPem: string, opts: { commonName: string; days?: number; keySha256?: string }): Promise<SignedIntermediate> {
    return signRelayIntermediate(this.directory, csrPem, opts);
  }

  /** Sign with the intermediate the root's holder signed for this relay's key. */
  installRelayIntermediate(input: { certPem: string; rootPem: string }): Promise<CertInfo> {
    return installRelayIntermediate(this.directory, input);
  }

  /** Whether this directory signs with the self-signed root. */
  holdsRoot(): boolean {
    return holdsRoot(this.directory);
  }

  /** What the store and the heartbeat name this directory's signer: "root" or the relay's name. */
  signer(): string {
    return this.directory.signer();
  }

  /** Sign with an intermediate issued by a real CA instead of the self-signed root; a refusal changes nothing. */
  installIntermediate(input: InstallIntermediateInput): Promise<InstallIntermediateResult> {
    return installIntermediate(this.directory, input);
  }
}
