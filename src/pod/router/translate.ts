/**
 * Port translation on the pod itself, for the IPv6 direct route. Over IPv4 the router translates each
 * public port to the service's local port; over IPv6 nothing translates (a client reaches the pod's own
 * address), so the pod does what the router would: an nftables table of its own that DNATs
 * [its address]:public port to [its address]:local port, in the kernel — no relay in the data path, and
 * the service sees the client's own address. Loading it needs root or CAP_NET_ADMIN.
 */
import { createHash } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { run } from '../../util/exec.js';

export interface Translation {
  publicPort: number;
  localPort: number;
}

/** The table's name, stable per tunnel set, so that a run after a crash replaces what the last one left. */
export function translationTable(id: string): string {
  return `pipe2me_${createHash('sha256').update(id).digest('hex').slice(0, 12)}`;
}

/** The whole table as one nft script, pure: replacing it is atomic (add, delete, define). */
export function translationScript(table: string, address: string, rules: readonly Translation[]): string {
  if (!/^pipe2me_[0-9a-f]{12}$/.test(table)) throw new Error(`bad table name ${table}`);
  if (!isIPv6(address)) throw new Error(`${address} is not an IPv6 address`);
  const lines = rules
    .filter((r) => r.publicPort !== r.localPort)
    .map((r) => `    ip6 daddr ${address} tcp dport ${int(r.publicPort)} dnat to [${address}]:${int(r.localPort)}`);
  return [
    `add table ip6 ${table}`,
    `delete table ip6 ${table}`,
    `table ip6 ${table} {`,
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    ...lines,
    '  }',
    '}',
    '',
  ].join('\n');
}

function int(n: number): string {
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`bad port ${n}`);
  return String(n);
}

export async function loadTranslation(table: string, address: string, rules: readonly Translation[]): Promise<{ ok: true } | { ok: false; detail: string }> {
  if (rules.every((r) => r.publicPort === r.localPort)) {
    await removeTranslation(table);
    return { ok: true };
  }
  const r = await run('nft', ['-f', '-'], { input: translationScript(table, address, rules), allowFailure: true, timeout: 10_000 }).catch((e: Error) => ({ exitCode: -1, output: e.message }));
  if (r.exitCode === 0) return { ok: true };
  const why = /Operation not permitted|EPERM/i.test(r.output) ? 'not permitted' : r.output.trim().split('\n').pop()?.slice(0, 160) ?? `exit ${r.exitCode}`;
  return { ok: false, detail: `cannot translate public ports to local ones on this machine with nft (${why}): the IPv6 direct route needs root or CAP_NET_ADMIN here` };
}

export async function removeTranslation(table: string): Promise<void> {
  await run('nft', ['-f', '-'], { input: `add table ip6 ${table}\ndelete table ip6 ${table}\n`, allowFailure: true, timeout: 10_000 }).catch(() => undefined);
}
