/**
 * Traffic for the data-path benchmarks, from the client namespace: iperf3 throughput and a 1-byte TCP
 * echo ping-pong. Addresses of either family (iperf3 and the ping-pong helper take IPv6 literals).
 */
import type { World } from '../../test/world/index.js';
import { QUICK } from './report.js';
import { benchHelperArgv } from './kit.js';

// With BENCH_QUICK=1: 1 s iperf3.
export const IPERF_SECONDS = QUICK ? 1 : 5;
export const PINGPONG_WARMUP = 200;
export const PINGPONG_COUNT = 1000;

export async function iperf(world: World, address: string, port: number, extra: readonly string[]): Promise<number> {
  let last = '';
  // iperf3 serves one test at a time and refuses ("the server is busy") while it still winds the last one down.
  for (let attempt = 0; attempt < 3; attempt++) {
    const r = await world.inNs('cli', ['iperf3', '-c', address, '-p', String(port), '-t', String(IPERF_SECONDS), '-J', ...extra], { timeout: (IPERF_SECONDS + 25) * 1000, allowFailure: true });
    try {
      const j = JSON.parse(r.stdout) as { error?: string; end?: { sum_received?: { bits_per_second: number } } };
      if (!j.error && j.end?.sum_received) return j.end.sum_received.bits_per_second / 1e9;
      last = j.error ?? 'no sum_received';
    } catch {
      last = r.output.slice(-300);
    }
    await new Promise((res) => setTimeout(res, 1000));
  }
  throw new Error(`iperf3 to ${address}:${port} ${extra.join(' ')} failed: ${last}`);
}

export async function pingpong(world: World, address: string, port: number): Promise<{ medianUs: number; p99Us: number }> {
  const r = await world.inNs('cli', benchHelperArgv('pingpong.mjs', [address, port, PINGPONG_WARMUP, PINGPONG_COUNT, 60_000]), { timeout: 70_000 });
  const j = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { ok: boolean; medianUs: number; p99Us: number; error?: string };
  if (!j.ok) throw new Error(`ping-pong to ${address}:${port} failed: ${j.error}`);
  return j;
}

