/**
 * Several relays: failover time (fault → every pod on another relay → every name changed on the surviving
 * relay's nameserver → every pod served by name again) for real pipe2me pods, with the relay holding them
 * killed (every process) in each round; and API create latency through each relay's API on the shared
 * PostgreSQL store, against the same through one relay alone in the same run.
 *
 *   npx vite-node bench/relays.ts          (BENCH_PODS=N for another fleet size, at most 40)
 */
import * as fs from 'node:fs';
import { ADDR, curl, dig, waitFor, type HostName } from '../test/world/index.js';
import { DOMAIN } from '../test/stack/stack.js';
import { RelayFleet } from '../test/stack/relays.js';
import { layout } from '../src/render/layout.js';
import { loadConfig } from '../src/config/load.js';
import { QUICK, loadAverage, machine, mr, progress, ratio, standalone, stats, table, type BenchSection } from './lib/report.js';
import { sleep } from './lib/kit.js';

const PODS = Math.min(40, Number(process.env.BENCH_PODS ?? (QUICK ? 3 : 10)));
const ROUNDS = QUICK ? 1 : 3;
const CREATES = QUICK ? 5 : 20;
const ADDRESS: Record<string, string> = { 'relay-a': ADDR.server, 'relay-b': ADDR.srv2 };

interface Round { killed: string; podsMs: number; dnsMs: number; servedMs: number }

export async function main(): Promise<BenchSection> {
  const t0 = performance.now();
  const fleet = await RelayFleet.create({ relays: 2, pods: PODS, log: (l) => progress(l) });
  try {
    await fleet.start();
    const hosts = fleet.world.pods as HostName[];
    const t = (await fleet.ctl<{ token: string; ca_pin: string }>('relay-a', ['token', 'create', '--max-ports', '1', '--max-subdomains', String(PODS + CREATES * 4 + 10)])).json;
    const pods: { host: HostName; fqdn: string; port: number }[] = [];
    for (const host of hosts) {
      const set = (await fleet.pod<{ fqdn: string; services: { port: number }[] }>(host, ['setup', '--server', `https://server.${DOMAIN}`, '--token', t.token, '--ca-pin', t.ca_pin, '--protocols', 'http', '--ports', '8080'], { timeout: 120_000 })).json;
      pods.push({ host, fqdn: set.fqdn, port: set.services[0]!.port });
      await fleet.startPodService(host);
      await fleet.startPod(host);
    }
    const relayOf = (h: HostName) => fleet.relayOf(h);
    const nameAt = async (ns: string, fqdn: string) => (await dig(fleet.world, { from: 'cli', server: ns, name: fqdn, tcp: true })).answers.find((a) => a.type === 'A')?.data;
    const load = { before: loadAverage(), after: '' };
    const rounds: Round[] = [];
    for (let i = 1; i <= ROUNDS; i++) {
      await waitFor('every pod up', async () => pods.every((p) => relayOf(p.host) !== null), { timeoutMs: 60_000, intervalMs: 200 });
      await sleep(3000);
      // The relay holding most pods is killed; every pod ends on the other one.
      const on = pods.map((p) => relayOf(p.host)!);
      const killed = on.filter((r) => r === 'relay-a').length >= on.length / 2 ? 'relay-a' : 'relay-b';
      const other = killed === 'relay-a' ? 'relay-b' : 'relay-a';
      progress(`relays: round ${i}/${ROUNDS}: ${on.filter((r) => r === killed).length} of ${PODS} pods on ${killed}, killing it`);
      const tk = performance.now();
      fleet.killRelay(killed);
      let podsMs = 0;
      let dnsMs = 0;
      await waitFor('every pod on the other relay', async () => pods.every((p) => relayOf(p.host) === other) && ((podsMs = performance.now() - tk), true), { timeoutMs: 60_000, intervalMs: 50 });
      await waitFor('every name on the other relay', async () => {
        for (const p of pods) if ((await nameAt(ADDRESS[other]!, p.fqdn)) !== ADDRESS[other]) return false;
        dnsMs = performance.now() - tk;
        return true;
      }, { timeoutMs: 60_000, intervalMs: 50 });
      const served = await Promise.all(pods.map(async (p) => {
        await waitFor(`${p.fqdn} served by name`, async () => (await curl(fleet.world, `http://${p.fqdn}:${p.port}/`, { from: 'cli', timeoutMs: 2000 })).status === 200, { timeoutMs: 60_000, intervalMs: 100 });
        return performance.now() - tk;
      }));
      const r = { killed, podsMs, dnsMs, servedMs: Math.max(...served) };
      progress(`  pods on ${other} after ${r.podsMs.toFixed(0)} ms, names after ${r.dnsMs.toFixed(0)} ms, every pod served by name after ${r.servedMs.toFixed(0)} ms`);
      rounds.push(r);
      for (const n of ['sshd', 'nginx', 'named', 'api', 'watch']) await fleet.world.stop(`${killed}-${n}`).catch(() => undefined);
      await fleet.startRelay(killed);
    }
    load.after = loadAverage();

    // API create latency: through each relay's API (TLS via nginx, the shared store), sequential requests.
    const ca = fleet.world.path('relays', 'ca-for-bench.pem');
    fs.copyFileSync(layout(loadConfig(fleet.relay('relay-a').configFile)).caCertFile, ca);
    const create = async (address: string) => {
      const t1 = performance.now();
      const r = await curl(fleet.world, `https://server.${DOMAIN}/v1/subdomains`, {
        from: 'cli', method: 'POST', headers: { 'content-type': 'application/json' }, data: JSON.stringify({ token: t.token, protocols: ['http'] }),
        resolve: [`server.${DOMAIN}:443:${address}`], cacert: ca, timeoutMs: 30_000,
      });
      if (r.status !== 201) throw new Error(`create through ${address}: ${r.status} ${r.error} ${r.body.slice(0, 200)}`);
      return performance.now() - t1;
    };
    const lat: Record<string, number[]> = { 'relay-a': [], 'relay-b': [], 'both at once': [] };
    for (let i = 0; i < CREATES; i++) {
      lat['relay-a']!.push(await create(ADDR.server));
      lat['relay-b']!.push(await create(ADDR.srv2));
      const [x, y] = await Promise.all([create(ADDR.server), create(ADDR.srv2)]);
      lat['both at once']!.push(x, y);
    }
    const s = (f: (r: Round) => number) => mr(stats(rounds.map(f).map((x) => x / 1000)), 1);
    const ms = (k: string) => stats(lat[k]!);
    const markdown = `${PODS} real pipe2me pods behind the NAT router, two relays (relay-a ${ADDR.server}, relay-b ${ADDR.srv2}) on one PostgreSQL on its own host,
zone TTL 5 s. ${ROUNDS} round(s): the relay holding most pods killed (every process of it: SIGKILL), then started again. Run time:
${((performance.now() - t0) / 1000).toFixed(0)} s; 1-minute load average ${load.before} → ${load.after}.

${table(['from the kill to …', 's, median [min–max]', 'what decides it'], [
  ['every pod\'s tunnel up on the other relay', s((r) => r.podsMs), 'the kernel closes the dead relay\'s connections at once (a killed sshd); each pod\'s wrapper waits 0–2 s (jitter), then logs in to the next relay'],
  ['**every name answering the other relay** (its nameserver)', `**${s((r) => r.dnsMs)}**`, 'the new relay mirrors its sessions every second and points each pod at itself; every relay\'s watcher (250 ms poll) patches its zone'],
  ['every pod served by name (curl through DNS)', s((r) => r.servedMs), 'a client that asks the relays\' nameservers again: here TTL is no wait, the client resolves every time'],
])}

API create (POST /v1/subdomains through nginx and the API, TLS, sequential, ${CREATES} each; "both at once": one request at each relay's API at the same time):

${table(['through', 'ms, median [min–max]', 'vs. relay-a alone'], [
  ['relay-a alone', mr(ms('relay-a'), 0), '1.00'],
  ['relay-b alone', mr(ms('relay-b'), 0), ratio(ms('relay-b').median, ms('relay-a').median)],
  ['both at once', mr(ms('both at once'), 0), ratio(ms('both at once').median, ms('relay-a').median)],
])}

Not measured here: 500 pods (the fleet of simulated pods in the fleet section is one relay's); pods per relay at a given memory
(the fleet section's per-pod figures hold per relay: 1.9 MiB PSS and 3 processes per live pod).

Machine of this run:

${machine()}
`;
    return { title: 'Several relays: failover and API create', markdown };
  } finally {
    await fleet.destroy();
  }
}

await standalone(import.meta, main);
