/**
 * Simulated pods from addresses of their own. By default every simulated pod sits in the world's one pod
 * namespace behind the NAT router, so to the server it is one source address — as a fleet behind one
 * carrier-grade NAT address would be, and the worst case for sshd's PerSourceMaxStartups and pipe2me's
 * per-source SYN limit. A fleet spread over the internet comes from as many addresses as it has pods: here
 * each pod's ssh binds (`BindAddress`) a /32 of RFC 2544's benchmarking range on the pod namespace's eth0,
 * which the router routes to the pod without NAT (its masquerade takes only the LAN's addresses; its forward
 * chain lets the LAN out whatever the source) and the servers route back to the router. Everything goes with
 * the namespaces.
 */
import { ADDR, type HostName, type World } from '../../test/world/index.js';
import { run } from '../../src/util/exec.js';

/** Where the simulated pods come from: each from an address of its own, or all behind the NAT router's one. */
export type Sources = 'own' | 'one';

export const SPREAD_CIDR = '198.18.0.0/15';

export function sourcesText(s: Sources): string {
  return s === 'own' ? 'each pod from an address of its own' : "all pods behind the NAT router's one address";
}

/** BENCH_…_SOURCES=own,one (the default: both, in this order) → the runs to make. */
export function sourcesFromEnv(name: string): Sources[] {
  const v = (process.env[name] ?? 'own,one').split(',').filter((x): x is Sources => x === 'own' || x === 'one');
  if (!v.length) throw new Error(`${name} must list own and/or one`);
  return v;
}

/** The address of simulated pod I (198.18.0.1 onwards, never .0 or .255). */
export function spreadAddress(i: number): string {
  const n = i + 1;
  const third = Math.floor(n / 254);
  return `198.${18 + Math.floor(third / 256)}.${third % 256}.${(n % 254) + 1}`;
}

/** The ssh options that make pod I leave from its own address. */
export function bindArgs(i: number): string[] {
  return ['-o', `BindAddress=${spreadAddress(i)}`];
}

async function batch(world: World, host: HostName, commands: readonly string[]): Promise<void> {
  if (commands.length) await run('ip', ['-n', world.ns(host), '-batch', '-'], { input: commands.join('\n') + '\n', timeout: 60_000 });
}

/** Gives pods of the world's `pod` namespace their own addresses; `servers` route them back through the router. */
export class SpreadSources {
  private readonly have = new Set<number>();
  private routed = false;

  constructor(private readonly world: World, private readonly servers: readonly HostName[]) {}

  async add(indices: readonly number[]): Promise<void> {
    const add = indices.filter((i) => !this.have.has(i));
    if (!add.length) return;
    if (!this.routed) {
      await batch(this.world, 'rtr', [`route add ${SPREAD_CIDR} via ${this.world.address('pod')}`]);
      for (const s of this.servers) await batch(this.world, s, [`route add ${SPREAD_CIDR} via ${ADDR.routerWan}`]);
      this.routed = true;
    }
    await batch(this.world, 'pod', add.map((i) => `address add ${spreadAddress(i)}/32 dev eth0`));
    for (const i of add) this.have.add(i);
  }
}
