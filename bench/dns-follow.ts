/**
 * DNS that follows the pod: a pod on the direct route, its router's public address changes (as after a
 * DSL reconnect), and the name must leave the dead address at once and come back to the router at its new
 * address after a probe. Measured from the change to the primary's first answer with the server's
 * address, and to its first answer with the new router address (dig every 50 ms, directly at BIND). The
 * tunnel's own recovery from the same change is in the recovery section.
 *
 *   npx vite-node bench/dns-follow.ts
 */
import { ADDR, changeRouterPublicAddress, dig, waitFor } from '../test/world/index.js';
import { DOMAIN, Stack } from '../test/stack/stack.js';
import { loadAverage, QUICK, machine, mr, progress, standalone, stats, table, type BenchSection } from './lib/report.js';
import { epochNow, isoLines, sleep } from './lib/kit.js';

const ROUNDS = QUICK ? 1 : 4;

interface Round { from: string; to: string; backMs: number; directMs: number; podUpMs: number | null }

export async function main(): Promise<BenchSection> {
  const t0 = performance.now();
  const stack = await Stack.create({ log: (l) => progress(l) });
  try {
    await stack.startServer();
    const t = (await stack.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--label', 'dns-follow', '--max-ports', '2'])).json;
    const web = (await stack.pod<{ fqdn: string }>(['setup', '--server', `https://server.${DOMAIN}`, '--token', t.token, '--ca-pin', t.ca_pin, '--protocols', 'http,https', '--ports', '8080,8443'], { timeout: 120_000 })).json;
    await stack.startPodService('pod');
    await stack.startPod('pod');
    const aRecord = async () => (await dig(stack.world, { server: ADDR.server, name: web.fqdn })).answers.find((x) => x.type === 'A')?.data;
    const load = { before: loadAverage(), after: '' };
    const rounds: Round[] = [];
    let at: string = ADDR.routerWan;
    await waitFor('the pod to go direct', async () => (await aRecord()) === at, { timeoutMs: 30_000, intervalMs: 200 });
    for (let i = 1; i <= ROUNDS; i++) {
      const to = at === ADDR.routerWan ? ADDR.routerWanAlt : ADDR.routerWan;
      // A settled pod: its tunnel has lived past autossh's restart accounting since the last change.
      await sleep(11_000);
      progress(`dns-follow: round ${i}/${ROUNDS}: router ${at} → ${to}`);
      const logFrom = stack.world.procs.logSize('pod-pipe2me');
      const tc = epochNow();
      await changeRouterPublicAddress(stack.world, to);
      let backAt = 0;
      await waitFor('the name back on the server', async () => ((await aRecord()) === ADDR.server ? (backAt = epochNow(), true) : false), { timeoutMs: 30_000, intervalMs: 50 });
      let directAt = 0;
      await waitFor('the name at the new router address', async () => ((await aRecord()) === to ? (directAt = epochNow(), true) : false), { timeoutMs: 60_000, intervalMs: 50 });
      const up = isoLines(stack.world.procs.log('pod-pipe2me', logFrom)).find((l) => l.text.startsWith('tunnel up'));
      const r = { from: at, to, backMs: backAt - tc, directMs: directAt - tc, podUpMs: up ? up.at - tc : null };
      progress(`  back on the server after ${r.backMs.toFixed(0)} ms, direct at ${to} after ${r.directMs.toFixed(0)} ms`);
      rounds.push(r);
      at = to;
    }
    load.after = loadAverage();
    const s = (f: (r: Round) => number) => mr(stats(rounds.map(f).map((x) => x / 1000)), 1);
    const up = rounds.filter((r) => r.podUpMs !== null);
    const markdown = `${ROUNDS} changes of the router's public address (203.0.113.2 ↔ .6), each after the pod had been direct and settled for 11 s.
The pod runs \`pipe2me start\` with UPnP; the server runs the API with \`probe.prompt\` on (the default). Run time: ${((performance.now() - t0) / 1000).toFixed(0)} s;
1-minute load average ${load.before} → ${load.after}.

${table(['from the address change to …', 's, median [min–max]', 'what decides it'], [
  ['the pod\'s tunnel up again from the new address', up.length ? mr(stats(up.map((r) => r.podUpMs! / 1000)), 1) : '-', 'ssh notices the old connection is dead (its next packet — a keep-alive at the latest — is answered with a RST), then the reconnect backoff: a random wait up to 2 s'],
  ['**the name back on the server**', `**${s((r) => r.backMs)}**`, 'the new session\'s address differs from the direct route\'s: one zone change when the pod logs in'],
  ['**the name at the new router address**', `**${s((r) => r.directMs)}**`, 'a prompt probe of the pod at its new session address, then one zone change'],
])}

Before this, a direct pod's name kept the dead address until the next probe run (up to a minute) plus the TTL. Clients now follow within the
TTL (30 s) of the name going back to the server: those that resolved during the seconds in between reach the dead address and retry.

Machine of this run:

${machine()}
`;
    return { title: 'DNS follows the pod: a new router address', markdown };
  } finally {
    await stack.destroy();
  }
}

await standalone(import.meta, main);
