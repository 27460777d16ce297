/**
 * The IPv6 direct route in the test world (the pod's LAN has a routed prefix behind a router whose IPv6
 * filter opens only IGD2 pinholes):
 *   (a) pipe2me's IPv6 direct route: client → [pod]:public port, through the pod's pinhole and its own
 *       nft translation to the local port;
 *   (b) the same network path without pipe2me: client → [pod]:local port through a pinhole opened by hand;
 *   (c) pipe2me's tunnel over IPv6: client → [server]:public port (the fallback AAAA).
 * Each path n=3 times, in an order rotated between repetitions (throughput, ping-pong, new connections).
 * Then the time from the pod's pinhole opening to the AAAA answer changed (the pod restarted each round,
 * the API's prompt probe on, as shipped; dig every 50 ms at the primary).
 *
 *   npx vite-node bench/ipv6.ts
 */
import { ADDR6, connectionCost, dig, helperArgv, podAddress6, waitFor, type World } from '../test/world/index.js';
import { DOMAIN, Stack } from '../test/stack/stack.js';
import { loadAverage, QUICK, machine, mr, progress, ratio, standalone, stats, table, type BenchSection } from './lib/report.js';
import { epochNow, isoLines, sleep, waitListening } from './lib/kit.js';
import { IPERF_SECONDS, PINGPONG_COUNT, iperf, pingpong } from './lib/traffic.js';

const REPS = QUICK ? 1 : 3;
const ROUNDS = QUICK ? 1 : 4;
const IPERF_PORT = 5201;
const ECHO_PORT = 7007;
const NEW_CONNECTIONS = 50;
const POD6 = podAddress6(1);
const PROMPT_GAP_MS = 5500;

interface PathSpec { key: 'direct6' | 'plain6' | 'tunnel6'; label: string; address: string; iperfPort: number; echoPort: number }
interface Run { p1: number; p4: number; rev: number; rttUs: number; newConnMs: number }

async function measure(world: World, p: PathSpec): Promise<Run> {
  const p1 = await iperf(world, p.address, p.iperfPort, []);
  const p4 = await iperf(world, p.address, p.iperfPort, ['-P', '4']);
  const rev = await iperf(world, p.address, p.iperfPort, ['-R']);
  const rtt = await pingpong(world, p.address, p.echoPort);
  const cost = await connectionCost(world, { address: p.address, port: p.echoPort, count: NEW_CONNECTIONS });
  return { p1, p4, rev, rttUs: rtt.medianUs, newConnMs: cost.totalMs.median };
}

export async function main(): Promise<BenchSection> {
  const t0 = performance.now();
  const stack = await Stack.create({ lan6: true, ipv6: true, log: (l) => progress(l) });
  try {
    const world = stack.world;
    await stack.startServer();
    const t = (await stack.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--label', 'ipv6', '--max-ports', '2'])).json;
    const pod = (await stack.pod<{ name: string; fqdn: string; services: { port: number }[] }>(['setup', '--server', `https://server.${DOMAIN}`, '--token', t.token, '--ca-pin', t.ca_pin, '--protocols', 'tcp,tcp', '--ports', `${IPERF_PORT},${ECHO_PORT}`], { timeout: 120_000 })).json;
    // iperf3 serves one client at a time and resets a queued one, which the probe (tunnel, then direct)
    // would be: a silent stand-in answers on its port until the probe has passed (as in the data-path section).
    await world.start({ name: 'pod-standin', host: 'pod', argv: helperArgv('serve.mjs', ['echo', '::', IPERF_PORT]), ready: (d, p) => p.waitLog(d.name, 'listening') });
    await world.start({ name: 'pod-echo', host: 'pod', argv: helperArgv('serve.mjs', ['echo', '::', ECHO_PORT]), ready: (d, p) => p.waitLog(d.name, 'listening') });
    const aaaa = async () => (await dig(world, { server: ADDR6.server, name: pod.fqdn, type: 'AAAA' })).answers.find((x) => x.type === 'AAAA')?.data;

    // The time from a pinhole opened to the AAAA answer changed: the pod restarted each round.
    const rounds: { holeMs: number; startMs: number }[] = [];
    for (let i = 1; i <= ROUNDS; i++) {
      if (i > 1) {
        await world.stop('pod-pipe2me');
        await waitFor('AAAA back at the server', async () => (await aaaa()) === ADDR6.server, { timeoutMs: 30_000, intervalMs: 100 });
        // The API probes one pod at most once per 5 s (PromptProber): wait that out, so that a round
        // measures the route and not that limit.
        await sleep(PROMPT_GAP_MS);
      }
      const from = world.procs.logSize('pod-pipe2me');
      const started = epochNow();
      await stack.startPod('pod', ['--igd6', world.igd6Url, '--no-upnp']);
      let at = 0;
      await waitFor('AAAA at the pod', async () => ((await aaaa()) === POD6 ? (at = epochNow(), true) : false), { timeoutMs: 60_000, intervalMs: 50 });
      const lines = isoLines(world.procs.log('pod-pipe2me', from)).filter((l) => l.text.includes('opened a pinhole'));
      const last = lines[lines.length - 1];
      if (!last) throw new Error('the pod logged no pinhole');
      rounds.push({ holeMs: at - last.at, startMs: at - started });
      progress(`ipv6: round ${i}/${ROUNDS}: AAAA at the pod ${(at - last.at).toFixed(0)} ms after the last pinhole opened`);
    }

    await world.stop('pod-standin');
    await world.start({ name: 'pod-iperf3', host: 'pod', argv: ['iperf3', '-s', '-p', String(IPERF_PORT)], ready: () => waitListening(world, 'pod', IPERF_PORT) });
    // The plain path: pinholes for the local ports, opened by hand from the pod (no translation needed).
    for (const port of [IPERF_PORT, ECHO_PORT]) {
      const r = await world.inNs('pod', ['upnpc', '-6', '-u', world.igd6Url, '-A', '', '0', POD6, String(port), 'TCP', '3600'], { timeout: 15_000 });
      if (!/Pinhole ID = \d+/.test(r.stdout)) throw new Error(`could not open a plain pinhole for ${port}: ${r.output}`);
    }
    const paths: PathSpec[] = [
      { key: 'direct6', label: '(a) pipe2me IPv6 direct (pinhole + the pod\'s nft translation)', address: POD6, iperfPort: pod.services[0]!.port, echoPort: pod.services[1]!.port },
      { key: 'plain6', label: '(b) plain IPv6 path (a pinhole, no translation)', address: POD6, iperfPort: IPERF_PORT, echoPort: ECHO_PORT },
      { key: 'tunnel6', label: '(c) pipe2me tunnel, client over IPv6 to the server', address: ADDR6.server, iperfPort: pod.services[0]!.port, echoPort: pod.services[1]!.port },
    ];
    const load = { before: loadAverage(), after: '' };
    const runs: Record<PathSpec['key'], Run[]> = { direct6: [], plain6: [], tunnel6: [] };
    for (let rep = 0; rep < REPS; rep++) {
      const order = paths.map((_, i) => paths[(i + rep) % paths.length]!);
      for (const p of order) {
        progress(`ipv6: repetition ${rep + 1}/${REPS}: ${p.label}`);
        runs[p.key].push(await measure(world, p));
      }
    }
    load.after = loadAverage();

    const S = (k: PathSpec['key'], f: (r: Run) => number) => stats(runs[k].map(f));
    const med = (k: PathSpec['key'], f: (r: Run) => number) => S(k, f).median;
    const rows = paths.map((p) => [p.label, mr(S(p.key, (r) => r.p1), 2), mr(S(p.key, (r) => r.p4), 2), mr(S(p.key, (r) => r.rev), 2), mr(S(p.key, (r) => r.rttUs), 0), mr(S(p.key, (r) => r.newConnMs), 2)]);
    const markdown = `Client (cli, ${ADDR6.client}) → pod at ${POD6} behind the router's IPv6 filter (only miniupnpd's pinholes let connections in). iperf3 \`-t ${IPERF_SECONDS}\`
(receiver's figure), ${PINGPONG_COUNT} 1-byte echo round trips on one connection, ${NEW_CONNECTIONS} new connections (connect + first round trip). n=${REPS} per path, rotated.
Run time: ${((performance.now() - t0) / 1000).toFixed(0)} s; 1-minute load average ${load.before} → ${load.after}.

${table(['path', 'cli→pod 1 stream, Gbit/s', '`-P 4`', 'pod→cli (`-R`)', 'RTT median, µs', 'new connection, ms'], rows)}

${table(['ratio (of medians)', '1 stream', '`-P 4`', '`-R`', 'RTT', 'new connection'], [
  ['IPv6 direct (a) / plain IPv6 path (b)', ratio(med('direct6', (r) => r.p1), med('plain6', (r) => r.p1)), ratio(med('direct6', (r) => r.p4), med('plain6', (r) => r.p4)), ratio(med('direct6', (r) => r.rev), med('plain6', (r) => r.rev)), ratio(med('direct6', (r) => r.rttUs), med('plain6', (r) => r.rttUs)), ratio(med('direct6', (r) => r.newConnMs), med('plain6', (r) => r.newConnMs))],
  ['IPv6 direct (a) / tunnel over IPv6 (c)', ratio(med('direct6', (r) => r.p1), med('tunnel6', (r) => r.p1)), ratio(med('direct6', (r) => r.p4), med('tunnel6', (r) => r.p4)), ratio(med('direct6', (r) => r.rev), med('tunnel6', (r) => r.rev)), ratio(med('direct6', (r) => r.rttUs), med('tunnel6', (r) => r.rttUs)), ratio(med('direct6', (r) => r.newConnMs), med('tunnel6', (r) => r.newConnMs))],
])}

From the pod's pinhole opened to the primary's AAAA answer at the pod's own address (${ROUNDS} rounds, the pod restarted each time, 5.5 s
after the last prompt probe of it — the API probes one pod at most once per 5 s; the pod reports the address from it, the prompt probe
tests every port over IPv6, then one zone change):

${table(['measured', 's, median [min–max]'], [
  ['**last pinhole opened → AAAA at the pod**', `**${mr(stats(rounds.map((r) => r.holeMs / 1000)), 2)}**`],
  ['`pipe2me start` → AAAA at the pod', mr(stats(rounds.map((r) => r.startMs / 1000)), 2)],
])}

Machine of this run:

${machine()}
`;
    return { title: 'The IPv6 direct route', markdown };
  } finally {
    await stack.destroy();
  }
}

await standalone(import.meta, main);
