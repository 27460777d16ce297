/**
 * Which of a signer's CRLs is newer, as a relay judges a CRL from the store against the one it serves:
 * by CRL number (the book's one counter), not by the clock of whoever wrote it.
 */
import { describe, expect, it } from 'vitest';
import { crlReplayRefusal } from '../../src/server/relays/ca.js';
import type { CrlInfo } from '../../src/ca/x509.js';

const at = (iso: string, crlNumber: bigint | undefined): CrlInfo => ({ thisUpdate: new Date(iso), nextUpdate: undefined, revokedSerials: [], crlNumber });

describe('a CRL replacing the one served', () => {
  const served = at('2026-12-01T10:00:00Z', 0x1005n);

  it('a higher number is newer, even from a signer whose clock is behind', () => {
    expect(crlReplayRefusal(at('2026-12-01T10:00:07Z', 0x1006n), served)).toBeUndefined();
    expect(crlReplayRefusal(at('2026-12-01T09:58:00Z', 0x1006n), served)).toBeUndefined();
  });

  it('a lower number is an earlier CRL, even in the same second or with a later thisUpdate', () => {
    expect(crlReplayRefusal(at('2026-12-01T10:00:00Z', 0x1004n), served)).toMatch(/CRL number 4100 is lower than the served one's \(4101\)/);
    expect(crlReplayRefusal(at('2026-12-01T11:00:00Z', 0x1000n), served)).toMatch(/lower/);
  });

  it('the same number with other contents, or none, never replaces a numbered one', () => {
    expect(crlReplayRefusal(at('2026-12-01T10:00:01Z', 0x1005n), served)).toMatch(/one CRL per number/);
    expect(crlReplayRefusal(at('2026-12-01T10:00:01Z', undefined), served)).toMatch(/no CRL number/);
  });

  it('against a served CRL without a number, thisUpdate decides', () => {
    const old = at('2026-12-01T10:00:00Z', undefined);
    expect(crlReplayRefusal(at('2026-12-01T09:59:59Z', 0x1n), old)).toMatch(/older/);
    expect(crlReplayRefusal(at('2026-12-01T10:00:00Z', undefined), old)).toBeUndefined();
    expect(crlReplayRefusal(at('2026-12-01T10:00:01Z', 0x1n), old)).toBeUndefined();
  });
});
