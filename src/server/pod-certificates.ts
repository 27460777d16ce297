/**
 * Signing pods' CSRs and revoking their certificates, through the CA (src/ca). Kept behind this small
 * interface so the API, `remove` and expiry need not know how the CA works.
 */
import type { ServerContext } from './context.js';
import type { SubdomainRecord } from '../state/types.js';
import { DaemonError } from '../util/errors.js';

export interface IssuedPodCertificate {
  serial: string;
  certificate: string;
  chain: string;
  fullchain: string;
  notAfter: string;
  sha256: string;
}

export async function issuePodCertificate(_ctx: ServerContext, _s: SubdomainRecord, _csrPem: string): Promise<IssuedPodCertificate> {
  throw new DaemonError('ca_missing', 'This server has no CA yet.', { hint: 'The operator runs `pipe2me-ctl ca init`.' });
}
