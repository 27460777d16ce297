/**
 * Stable error codes of the CA library. They appear in --json output and API bodies, so scripts and the
 * pod's client match on them: never rename one, only add.
 */
export const CsrErrorCode = {
  tooLarge: 'csr_too_large',
  notPem: 'csr_not_pem',
  containsPrivateKey: 'csr_contains_private_key',
  malformed: 'csr_malformed',
  keyTypeNotAllowed: 'csr_key_type_not_allowed',
  rsaKeyTooSmall: 'csr_rsa_key_too_small',
  curveNotAllowed: 'csr_ec_curve_not_allowed',
  signatureAlgorithmNotAllowed: 'csr_signature_algorithm_not_allowed',
  signatureInvalid: 'csr_signature_invalid',
  cnMismatch: 'csr_cn_mismatch',
  sanNameMismatch: 'csr_san_name_mismatch',
  sanTypeNotAllowed: 'csr_san_type_not_allowed',
} as const;

export const CaErrorCode = {
  invalidName: 'invalid_fqdn',
  nameOutsideDomain: 'ca_name_outside_domain',
  configValueInvalid: 'ca_config_value_invalid',
  daysInvalid: 'ca_days_invalid',
  commonNameInvalid: 'ca_common_name_invalid',
  notInitialized: 'ca_not_initialized',
  dirUnsafe: 'ca_dir_unsafe',
  keyMissing: 'ca_key_missing',
  stateCorrupt: 'ca_state_corrupt',
  opensslFailed: 'ca_openssl_failed',
  issuedCertUnexpected: 'ca_issued_cert_unexpected',
  serialInvalid: 'ca_serial_invalid',
  serialNotFound: 'ca_serial_not_found',
  alreadyRevoked: 'ca_already_revoked',
  revokeReasonInvalid: 'ca_revoke_reason_invalid',
  keyFileInvalid: 'ca_key_file_invalid',
  intermediateCertInvalid: 'ca_intermediate_cert_invalid',
  intermediateKeyInvalid: 'ca_intermediate_key_invalid',
  intermediateKeyMismatch: 'ca_intermediate_key_mismatch',
  intermediateKeyTypeNotAllowed: 'ca_intermediate_key_type_not_allowed',
  intermediateNotCa: 'ca_intermediate_not_ca',
  intermediateNotValidNow: 'ca_intermediate_not_valid_now',
  intermediateChainInvalid: 'ca_intermediate_chain_invalid',
  /** A relay's request for its own intermediate, or its installation, refused. */
  relayRequestInvalid: 'ca_relay_request_invalid',
  /** `relay approve` on a relay whose CA is an intermediate: only the root signs relays. */
  notRoot: 'ca_not_root',
} as const;
