/**
 * The control plane of a fleet of relays at 100,000 subdomains: two relays with two address slots each
 * on one PostgreSQL (its own host in the world), the fleet seeded straight into the store (one https port
 * and a key per subdomain, half in each slot: 50,000 ports per slot, more than one address could hold).
 * Measured on relay-a with the CLI and the API as an operator and a pod meet them — a full apply (every
 * file rendered whole), a no-op apply, a create through each relay's API (answered after that relay's
 * apply) — first at 10,000 subdomains, then at 100,000, in the same run.
 *
 *   npx vite-node bench/relays-scale.ts      (BENCH_QUICK=1: 2,000 then 10,000)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ADDR, curl } from '../test/world/index.js';
import { DOMAIN } from '../test/stack/stack.js';
import { RelayFleet } from '../test/stack/relays.js';
import { layout } from '../src/render/layout.js';
import { loadConfig } from '../src/config/load.js';
import { PACKAGE_ROOT } from '../src/package-root.js';
import { QUICK, loadAverage, machine, mr, progress, ratio, standalone, stats, table, type BenchSection, type Stats } from './lib/report.js';

const SMALL = QUICK ? 2_000 : 10_000;
const LARGE = QUICK ? 10_000 : 100_000;
const REPS = QUICK ? 2 : 3;
const CREATES = QUICK ? 3 : 10;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

interface AtSize { full: Stats; firstFull: number; noop: Stats; createA: Stats; createB: Stats; createIdle: Stats }

export async function main(): Promise<BenchSection> {
  const t0 = performance.now();
  const fleet = await RelayFleet.create({ relays: 2, pods: 1, slots: 2, ports: { first: 10000, last: 65000 }, log: (l) => progress(l) });
  try {
    await fleet.start();
    // The watchers would apply every seeded step: the measurements below are the only applies.
    for (const r of ['relay-a', 'relay-b']) await fleet.world.stop(`${r}-watch`);
    const a = fleet.relay('relay-a');
    const ctl = (relay: string, args: string[]) => fleet.ctl(relay, args, { timeout: 600_000 });
    const t = (await ctl('relay-a', ['token', 'create', '--max-ports', '1', '--max-subdomains', String(CREATES * 6 + 10)])).json as { token: string };
    const ca = fleet.world.path('relays', 'ca-for-bench.pem');
    fs.copyFileSync(layout(loadConfig(a.configFile)).caCertFile, ca);
    const create = async (address: string) => timed(async () => {
      const r = await curl(fleet.world, `https://server.${DOMAIN}/v1/subdomains`, {
        from: 'cli', method: 'POST', headers: { 'content-type': 'application/json' }, data: JSON.stringify({ token: t.token, protocols: ['https'] }),
        resolve: [`server.${DOMAIN}:443:${address}`], cacert: ca, timeoutMs: 120_000,
      });
      if (r.status !== 201) throw new Error(`create through ${address}: ${r.status} ${r.error} ${r.body.slice(0, 200)}`);
    });
    const seed = async (count: number, start: number) => {
      progress(`relays-scale: seeding ${count} subdomains (from ${start}) into the shared store`);
      const r = await fleet.world.inNs('srv', [process.execPath, path.join(PACKAGE_ROOT, 'node_modules', 'vite-node', 'vite-node.mjs'), path.join(PACKAGE_ROOT, 'bench', 'bin', 'seed-slots.ts'), a.configFile, String(count), String(start)], { timeout: 1_800_000 });
      progress(`  ${r.stdout.trim().split('\n').pop()}`);
    };
    const measure = async (size: number): Promise<AtSize> => {
      progress(`relays-scale: at ${size} subdomains: full apply on relay-a (the first renders every file whole from scratch)`);
      const firstFull = await timed(() => ctl('relay-a', ['apply', '--full']));
      await ctl('relay-b', ['apply', '--full']);
      const fulls: number[] = [];
      for (let i = 0; i < REPS; i++) fulls.push(await timed(() => ctl('relay-a', ['apply', '--full'])));
      const noops: number[] = [];
      for (let i = 0; i < REPS; i++) noops.push(await timed(() => ctl('relay-a', ['apply'])));
      progress(`relays-scale: at ${size}: ${CREATES} creates through each relay's API`);
      const ca1: number[] = [];
      const cb: number[] = [];
      for (let i = 0; i < CREATES; i++) {
        ca1.push(await create(ADDR.server));
        cb.push(await create(ADDR.srv2));
      }
      // A create on a relay at rest: the nginx apply that follows the previous answer (seconds of CPU at
      // 100,000 names, on the same two cores as both relays here) has finished.
      const idle: number[] = [];
      for (let i = 0; i < CREATES; i++) {
        await new Promise((r) => setTimeout(r, QUICK ? 1500 : 3000));
        idle.push(await create(ADDR.server));
      }
      const out = { full: stats(fulls), firstFull, noop: stats(noops), createA: stats(ca1), createB: stats(cb), createIdle: stats(idle) };
      progress(`  full ${mr(out.full, 0)} ms (first ${out.firstFull.toFixed(0)}), no-op ${mr(out.noop, 0)} ms, create via relay-a ${mr(out.createA, 0)} ms, via relay-b ${mr(out.createB, 0)} ms, at rest ${mr(out.createIdle, 0)} ms`);
      return out;
    };
    const load = { before: loadAverage(), after: '' };
    await seed(SMALL, 0);
    const small = await measure(SMALL);
    await seed(LARGE - SMALL, SMALL);
    const large = await measure(LARGE);
    load.after = loadAverage();
    const row = (what: string, f: (x: AtSize) => Stats, target: string) => [what, mr(f(small), 0), mr(f(large), 0), ratio(f(large).median, f(small).median), target];
    const markdown = `Two relays with two address slots each (relay-a ${ADDR.server} and 203.0.113.21, relay-b ${ADDR.srv2} and 203.0.113.22), one PostgreSQL 15 on
its own host, ports 10000–65000 in each slot. The fleet is seeded straight into the store (one https port and a key per subdomain, half in
each slot: at ${LARGE.toLocaleString('en-US')}, ${(LARGE / 2).toLocaleString('en-US')} ports per slot — more than one address holds); the watchers are
stopped, so the applies measured are the only ones. ${REPS} full and ${REPS} no-op applies of relay-a through \`pipe2me-ctl\`. Creates go through
a relay's API (POST /v1/subdomains through nginx, TLS), answered once the name resolves on that relay's nameserver (the zone's apply; nginx's
entry maps follow in one apply once a burst of creates has settled — 1 s after the last, 5 s after the first at the latest —, see the README's
"The control plane at fleet size"): ${CREATES} back to back, alternating between the relays, then ${CREATES} through relay-a 3 s apart ("at rest": the
nginx apply that follows is done between two of them — both relays and PostgreSQL share this machine's two cores, and at 100,000 names that
apply's check and reload take over a second of CPU). Before the answer came ahead of nginx's apply, a create took 450–580 ms at 30,000
subdomains (profiled, the same world); before the nginx apply waited for a burst to settle, 427–474 ms back to back at 100,000 (2026-12-02).
A full apply at 100,000 took 4.2 s before a render read a page of subdomains in one query with PostgreSQL planning through the indexes
(random_page_cost 1.1 in pipe2me's sessions; see the README's "The state store"). Run time ${((performance.now() - t0) / 1000).toFixed(0)} s;
1-minute load average ${load.before} → ${load.after}.

${table(['ms, median [min–max]', `${SMALL.toLocaleString('en-US')} subdomains`, `${LARGE.toLocaleString('en-US')} subdomains`, 'ratio', 'target at 100,000'], [
  row('**API create through relay-a, at rest**', (x) => x.createIdle, '≤ 300'),
  row('API create through relay-a, back to back (alternating)', (x) => x.createA, '≤ 300'),
  row('API create through relay-b, back to back (alternating)', (x) => x.createB, '≤ 300'),
  row('**full apply of relay-a** (\`apply --full\`)', (x) => x.full, '≤ 4,000'),
  row('no-op apply of relay-a', (x) => x.noop, '–'),
])}

The first full apply after a seed (every key file of the index written): ${small.firstFull.toFixed(0)} ms at ${SMALL.toLocaleString('en-US')}, ${large.firstFull.toFixed(0)} ms at ${LARGE.toLocaleString('en-US')}.

Machine of this run:

${machine()}
`;
    return { title: 'Several relays: the control plane at 100,000 subdomains', markdown };
  } finally {
    await fleet.destroy();
  }
}

await standalone(import.meta, main);
