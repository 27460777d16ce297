/**
 * Several relays: failover time (fault → every pod on another relay → every name changed on the surviving
 * relay's nameserver → every pod served by name again) for real pipe2me pods, with the relay holding them
 * killed (every process) in each round; and API create latency through each relay's API on the shared
 * PostgreSQL store, against the same through one relay alone in the same run.
 *
 * Then the same fault with a fleet of simulated pods (500 by default: BENCH_RELAYS_SIM=N), each run as
 * `pipe2me start` runs its tunnel (autossh with pipe2me's ssh wrapper walking the relays, from one pod
 * directory each, seeded straight into the store by bench/bin/seed-relay-pods.ts), with what a live pod
 * costs each relay in memory.
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
import { benchHelperArgv, epochNow, sleep } from './lib/kit.js';
import { readSessionsAsync } from '../src/daemons/sessions.js';
import { pidsInNetns } from '../test/world/procfs.js';
import { PACKAGE_ROOT } from '../src/package-root.js';
import { bindArgs, sourcesFromEnv, sourcesText, SpreadSources, SPREAD_CIDR, type Sources } from './lib/spread.js';
import { sshSaid } from './lib/ssh-said.js';
import * as path from 'node:path';

const PODS = Math.min(40, Number(process.env.BENCH_PODS ?? (QUICK ? 3 : 10)));
const ROUNDS = QUICK ? 1 : 3;
const CREATES = QUICK ? 5 : 20;
const ADDRESS: Record<string, string> = { 'relay-a': ADDR.server, 'relay-b': ADDR.srv2 };
const SIM = Number(process.env.BENCH_RELAYS_SIM ?? (QUICK ? 40 : 500));
/** Simulated pods starting at once at bring-up (below sshd's PerSourceMaxStartups, for the runs that share one NAT address). */
const SIM_BRINGUP = 32;
/** Where the simulated pods come from (bench/lib/spread.ts): BENCH_RELAYS_SOURCES=own or =one for only one of the two runs. */
const SOURCES = sourcesFromEnv('BENCH_RELAYS_SOURCES');

interface SimResult {
  sources: Sources;
  pods: number;
  perRelay: Record<string, { sessions: number; pssMiB: number; procs: number }>;
  killed: string;
  movedPods: number;
  podsMs: number;
  dns: { median: number; max: number; missing: number };
  served: { median: number; max: number; missing: number };
  attempts: { median: number; max: number };
  upMs: number;
  /** What the moved pods' wrappers and ssh printed after the kill, by kind. */
  said: Record<string, number>;
}


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
    const sims = SIM > 0 ? await simulatedFailovers(fleet) : [];
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

${sims.map(simReport).join('\n')}

Machine of this run:

${machine()}
`;
    return { title: 'Several relays: failover and API create', markdown };
  } finally {
    await fleet.destroy();
  }
}

/** Every process of a relay's sshd (listener, per-session monitor and child, session holder). */
function relaySshdPids(fleet: RelayFleet, relay: string): number[] {
  const inode = fleet.world.topology.inodes.get(fleet.world.ns(fleet.relay(relay).host));
  if (inode === undefined) return [];
  return pidsInNetns(new Set([inode])).filter((pid) => ['sshd', 'sh', 'cat'].includes(readProc(pid, 'comm')));
}

function readProc(pid: number, file: string): string {
  try {
    return fs.readFileSync(`/proc/${pid}/${file}`, 'utf8').trim();
  } catch {
    return '';
  }
}

function pssKiB(pid: number): number {
  return Number(/^Pss:\s+(\d+) kB/m.exec(readProc(pid, 'smaps_rollup'))?.[1] ?? 0);
}

async function liveSessions(fleet: RelayFleet, relay: string): Promise<number> {
  const dir = layout(loadConfig(fleet.relay(relay).configFile)).sessionsDir;
  return [...(await readSessionsAsync(dir)).values()].filter((r) => r.alive).length;
}

/**
 * SIM simulated pods over both relays; the relay holding more of them killed: until every pod has a session
 * on the other relay again, until each name answers that relay on its nameserver, until each is served by name.
 * Once for each of SOURCES (the same pods, started again at their home relays, the killed relay back up in between).
 */
async function simulatedFailovers(fleet: RelayFleet): Promise<SimResult[]> {
  const real = fleet.world.pods.length;
  const bothUp = () => waitFor('both relays up', async () => (await fleet.ctl<{ relays: { state: string }[] }>('relay-a', ['relay', 'list'])).json.relays.every((r) => r.state === 'up'), { timeoutMs: 60_000, intervalMs: 500 });
  await bothUp();
  progress(`relays: seeding ${SIM} simulated pods into the shared store`);
  const out = fleet.world.mkdir('sim', 0o700);
  const seeded = await fleet.world.inNs('srv', [process.execPath, path.join(PACKAGE_ROOT, 'node_modules', 'vite-node', 'vite-node.mjs'), path.join(PACKAGE_ROOT, 'bench', 'bin', 'seed-relay-pods.ts'),
    fleet.relay('relay-a').configFile, String(SIM), fleet.podDir('pod'), out, '8080'], { timeout: 600_000 });
  const { manifest, pods } = JSON.parse(seeded.stdout.trim().split('\n').pop()!) as { manifest: string; pods: { fqdn: string; port: number }[] };
  for (const r of ['relay-a', 'relay-b']) {
    const dir = layout(loadConfig(fleet.relay(r).configFile)).sshd.keysDir;
    await waitFor(`${r}'s key index holds the simulated pods' keys`, async () => fs.readdirSync(dir).filter((n) => !n.startsWith('.')).length >= real + SIM, { timeoutMs: 300_000, intervalMs: 500 });
  }
  const podsFile = path.join(out, 'follow.json');
  fs.writeFileSync(podsFile, JSON.stringify(pods));
  const spread = new SpreadSources(fleet.world, ['relay-a', 'relay-b'].map((r) => fleet.relay(r).host));
  const base = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { pods: { index: number; argv: string[] }[] };
  const results: SimResult[] = [];
  for (const [run, sources] of SOURCES.entries()) {
    if (run > 0) {
      await fleet.startRelay(results[run - 1]!.killed);
      await bothUp();
    }
    // The pods' argv with their own source address before the destination (autossh hands it to ssh).
    if (sources === 'own') await spread.add(base.pods.map((p) => p.index));
    const variant = path.join(out, `manifest-${sources}.json`);
    fs.writeFileSync(variant, JSON.stringify({ pods: base.pods.map((p) => (sources === 'own' ? { ...p, argv: [...p.argv.slice(0, -1), ...bindArgs(p.index), p.argv[p.argv.length - 1]!] } : p)) }));
    results.push(await simulatedFailover(fleet, variant, podsFile, sources, `sim-${sources}`, `follow-${sources}`));
  }
  return results;
}

async function simulatedFailover(fleet: RelayFleet, manifest: string, podsFile: string, sources: Sources, name: string, follower: string): Promise<SimResult> {
  const real = fleet.world.pods.length;
  progress(`relays: starting ${SIM} simulated pods (autossh + pipe2me's ssh wrapper, each at its home relay; ${sourcesText(sources)})`);
  const t0 = performance.now();
  await fleet.world.start({ name, host: 'pod', argv: benchHelperArgv('fleet-pods.mjs', [manifest, SIM_BRINGUP]), ready: (d, p) => p.waitLog(d.name, 'started') });
  await fleet.world.procs.waitLog(name, 'all-online', { timeoutMs: 600_000 });
  const upMs = performance.now() - t0;
  await sleep(5000);
  const perRelay: SimResult['perRelay'] = {};
  for (const r of ['relay-a', 'relay-b']) {
    const pids = relaySshdPids(fleet, r);
    perRelay[r] = { sessions: await liveSessions(fleet, r), pssMiB: pids.reduce((n, p) => n + pssKiB(p), 0) / 1024, procs: pids.length };
  }
  const killed = perRelay['relay-a']!.sessions >= perRelay['relay-b']!.sessions ? 'relay-a' : 'relay-b';
  const other = killed === 'relay-a' ? 'relay-b' : 'relay-a';
  const total = real + SIM;
  progress(`relays: ${perRelay[killed]!.sessions} of ${total} pods on ${killed}, killing it`);
  const tk = epochNow();
  fleet.killRelay(killed);
  await fleet.world.start({ name: follower, host: 'cli', argv: benchHelperArgv('follow-names.mjs', [podsFile, ADDRESS[other]!, ADDRESS[other]!, 180_000]), ready: (d, p) => p.waitLog(d.name, 'following') });
  let podsMs = 0;
  await waitFor(`every pod on ${other}`, async () => (await liveSessions(fleet, other)) >= total && ((podsMs = epochNow() - tk), true), { timeoutMs: 300_000, intervalMs: 100 });
  const line = await fleet.world.procs.waitLog(follower, /^result /m, { timeoutMs: 300_000 });
  const res = JSON.parse(/^result (.*)$/m.exec(line)![1]!) as { dnsAt: (number | null)[]; servedAt: (number | null)[] };
  const rel = (xs: (number | null)[]) => {
    const got = xs.filter((x): x is number => x !== null).map((x) => (x - tk) / 1000);
    const st = stats(got.length ? got : [NaN]);
    return { median: st.median, max: st.max, missing: xs.length - got.length };
  };
  // Attempts: what each pod's wrapper state held when its session came back after the kill.
  const attempts = fleet.world.procs.log(name).split('\n').flatMap((l) => {
    const m = /^online (\d+) (\d+) (\d+)$/.exec(l);
    return m && Number(m[2]) > tk ? [Number(m[3])] : [];
  });
  const a = stats(attempts.length ? attempts : [NaN]);
  const said = sshSaid(fleet.world.procs.log(name).split('\n').flatMap((l) => {
    const m = /^stderr (\d+) (\d+) (.*)$/.exec(l);
    return m && Number(m[2]) > tk ? [{ index: Number(m[1]), text: m[3]! }] : [];
  }), 'connection refused (no sshd listening: the killed relay)');
  await fleet.world.stop(name).catch(() => undefined);
  await fleet.world.stop(follower).catch(() => undefined);
  return { sources, pods: SIM, perRelay, killed, movedPods: perRelay[killed]!.sessions, podsMs, dns: rel(res.dnsAt), served: rel(res.servedAt), attempts: { median: a.median, max: a.max }, upMs, said };
}

function simReport(r: SimResult): string {
  const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '–');
  const per = Object.entries(r.perRelay);
  const perPod = per.map(([, v]) => v.pssMiB / Math.max(1, v.sessions));
  const mibPerPod = perPod.reduce((n, x) => n + x, 0) / perPod.length;
  const from = r.sources === 'own'
    ? `each from an address of its own, as a fleet spread over the internet (its ssh binds an address of ${SPREAD_CIDR} on the pod namespace's eth0, routed without NAT: bench/lib/spread.ts)`
    : 'all behind the NAT router\'s one address, as behind one carrier-grade NAT address (one source to sshd\'s PerSourceMaxStartups, 64, and to pipe2me\'s per-source SYN limit)';
  return `**${r.pods} simulated pods, ${sourcesText(r.sources)}** (seeded into the store, each run as \`pipe2me start\` runs its tunnel: autossh with pipe2me's ssh wrapper walking
the relays from the pod's home relay, its own key and pinned host keys; ${from}; at most ${SIM_BRINGUP} starting at once at
bring-up; up in ${(r.upMs / 1000).toFixed(0)} s), plus the real pods above. Then ${r.killed}, holding ${r.movedPods} of them, killed:

${table(['from the kill to …', 's', 'what decides it'], [
  [`every pod's session on the other relay (its session records)`, f1(r.podsMs / 1000), `${r.movedPods} logins at once on one relay (sshd MaxStartups 100:30:200${r.sources === 'one' ? ', PerSourceMaxStartups 64 for the one NAT address' : ''}): refused logins retry with the wrapper's jitter`],
  ['each name answering the other relay on its nameserver, median / last', `${f1(r.dns.median)} / **${f1(r.dns.max)}**${r.dns.missing ? ` (${r.dns.missing} never)` : ''}`, 'the session mirror (every second) and the watchers\' zone patches'],
  ['each pod served by name (HTTP to the address its name answers), median / last', `${f1(r.served.median)} / ${f1(r.served.max)}${r.served.missing ? ` (${r.served.missing} never)` : ''}`, 'bench/bin/follow-names.mjs: 64 checks in flight, the pods taking turns, each asked again ≥ 200 ms after its last answer'],
  ['wrapper attempts per moved pod until its session was back, median / max', `${r.attempts.median} / ${r.attempts.max}`, ''],
])}

What the pods' wrappers and ssh printed after the kill (every pod, the real ones' aside; one line per attempt or failure):

${table(['said', 'lines'], Object.entries(r.said).sort((x, y) => y[1] - x[1]).map(([k, v]) => [k, String(v)]))}

What a live pod costs a relay (PSS of the relay's sshd processes — listener, per-pod monitor and child, session holder — over its live sessions, before the kill):

${table(['relay', 'live sessions', 'sshd processes', 'PSS MiB', 'MiB per pod'], per.map(([name, v]) => [name, String(v.sessions), String(v.procs), v.pssMiB.toFixed(0), (v.pssMiB / Math.max(1, v.sessions)).toFixed(2)]))}

So a relay holds about **${Math.floor(1024 / mibPerPod).toLocaleString('en-US')} pods per GiB** of memory for sshd (${mibPerPod.toFixed(2)} MiB per pod); the API, nginx, the nameserver and the
watcher are a fixed cost of the relay, not of its pods. The other limits per relay are those of the fleet section (processes, ports per address slot).
`;
}

await standalone(import.meta, main);
