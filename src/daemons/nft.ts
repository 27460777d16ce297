/** pipe2me's own nftables table: checking a staged ruleset and loading it (both atomic, in nft's own terms). */
import { CheckFailedError, DaemonError } from '../util/errors.js';
import { run } from '../util/exec.js';
import type { ReloadOutcome } from './process.js';

export const NFT = '/usr/sbin/nft';

export async function checkNft(staged: string): Promise<void> {
  const r = await run(NFT, ['-c', '-f', staged], { allowFailure: true, timeout: 20_000 });
  if (r.exitCode !== 0) throw new CheckFailedError('nftables (nft -c)', staged, r.output);
}

/** Loads the live file; it replaces the table as a whole, so a load is never half done. */
export async function loadNft(file: string): Promise<ReloadOutcome> {
  const r = await run(NFT, ['-f', file], { allowFailure: true, timeout: 20_000 });
  if (r.exitCode !== 0) {
    throw new DaemonError('reload_failed', `nft -f ${file} failed (exit ${r.exitCode}): ${r.output}`, {
      hint: 'The checked file is in place; load it by hand (nft -f FILE) to see why, then run `pipe2me-ctl apply` again.',
    });
  }
  return { status: 'reloaded', detail: `nft -f ${file}` };
}
