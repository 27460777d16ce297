/** The certificate authority library: pure checks and rendering, and the CA directory driven through openssl. */
export { CertificateAuthority } from './private/authority.js';
export type { CaBook } from './private/authority.js';
export type {
  CaKeyAlgorithm,
  CertificateAuthorityOptions,
  CrlResult,
  InitOptions,
  InitResult,
  InstallIntermediateInput,
  InstallIntermediateResult,
  RelayRequest,
  RelayRequestInput,
  SignedIntermediate,
  ServerCertificateInput,
  ShownCertificate,
  SignedCertificate,
} from './private/authority.js';
export { CaErrorCode, CsrErrorCode } from './codes.js';
export { checkCsr, parseCsr, DEFAULT_CSR_POLICY, MAX_CSR_BYTES } from './csr.js';
export type { CheckedCsr, CsrPolicy, ParsedCsr, SanEntry } from './csr.js';
export { renderOpensslCnf, renderLeafExtensions, DEFAULT_LEAF_DAYS, DEFAULT_CRL_DAYS, DEFAULT_ROOT_DAYS } from './config.js';
export type { CaSettings } from './config.js';
export { normalizeFqdn, isWithinDomain } from './fqdn.js';
export { parseIndex, REVOCATION_REASONS } from './index-db.js';
export type { CertStatus, IndexEntry, RevocationReason } from './index-db.js';
export { DEFAULT_KEY_POLICY } from './keys.js';
export type { CurveName, KeyDescription, KeyPolicy } from './keys.js';
export { parseCertificate, parseCrl, renewalDecision, normalizeSerial } from './x509.js';
export type { CertInfo, CrlInfo, RenewalDecision } from './x509.js';
