/**
 * Time to first byte: from `pipe2me setup` on a fresh pod (a new tunnel-set directory, a fresh token)
 * through `pipe2me start` to the first client request served through the tunnel — broken down by the
 * timestamps of setup's progress lines and start's log, with the pieces (Node's start-up, the CLI's
 * module loading, key generation, the API's apply) measured on their own, and compared with a bare
 * `ssh -f -N -R` login measured in the same run.
 *
 *   npx vite-node bench/ttfb.ts
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ADDR, helperArgv } from '../test/world/index.js';
import { DOMAIN, POD, ROOT, Stack } from '../test/stack/stack.js';
import { loadAverage, QUICK, machine, mr, progress, ratio, standalone, stats, table, type BenchSection, type Stats } from './lib/report.js';
import { epochNow, isoLines, runTimed, startPlainSshd, startPoller, timeOnce, timeUntilExit, type PlainSsh, type TimedRun } from './lib/kit.js';

// With BENCH_QUICK=1: one run.
const RUNS = QUICK ? 1 : 6;
const ECHO_PORT = 7007;
const PLAIN_SSHD_PORT = 4422;
const TARGET_S = 2;

interface Run {
  setupMs: number;
  /** setup's phases, from its progress lines. */
  cliStartMs: number;
  caFetchMs: number;
  createMs: number;
  sshKeyMs: number;
  certMs: number;
  /** The API's applies during setup (from its log), ms each. */
  applies: { units: string; ms: number }[];
  /** start's phases: to its first log line, to the first byte, to its "tunnel up". */
  startCliMs: number;
  startToFirstByteMs: number;
  startToUpLogMs: number;
  totalMs: number;
  /** When the poller made its first request, from the spawn of start: it must be well before the first byte. */
  pollerFirstAttemptMs: number;
}

interface Pieces {
  nodeStart: number[];
  cliHelp: number[];
  sshKeygen: number[];
  tlsKeyCsr: number[];
  bareSsh: number[];
  importBundle: number[];
  /** The daemons' own share of the API's DNS apply: BIND's checkers and one rndc round trip. */
  namedCheckconf: number[];
  namedCheckzone: number[];
  rndc: number[];
}

function phase(run: TimedRun, re: RegExp): number {
  const l = run.lines.find((x) => x.stream === 'stderr' && re.test(x.text));
  if (!l) throw new Error(`setup printed no line matching ${re}:\n${run.lines.map((x) => x.text).join('\n').slice(-2000)}`);
  return l.at;
}

async function oneRun(stack: Stack, i: number): Promise<Run> {
  const world = stack.world;
  const t = (await stack.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--label', `ttfb-${i}`, '--max-ports', '1'])).json;
  const dir = world.path('pods', `ttfb-${i}`);
  const apiFrom = world.procs.logSize('api');

  const setup = await runTimed(world, 'pod', [process.execPath, POD, '--dir', dir, '--json', 'setup', '--server', `https://server.${DOMAIN}`, '--token', t.token, '--ca-pin', t.ca_pin, '--protocols', 'tcp', '--ports', String(ECHO_PORT)], 120_000);
  if (setup.exitCode !== 0) throw new Error(`setup failed (exit ${setup.exitCode}):\n${setup.lines.map((l) => l.text).join('\n').slice(-2000)}`);
  const port = (JSON.parse(setup.stdout) as { services: { port: number }[] }).services[0]!.port;
  const tCa = phase(setup, /^… fetching the server's CA/);
  const tCreate = phase(setup, /^… creating the subdomain/);
  const tKey = phase(setup, /^… creating this pod's ssh key/);
  const tCert = phase(setup, /^… creating a TLS key/);

  // start, and at the same moment a poller that tries the new port every 20 ms.
  const name = `ttfb-${i}`;
  const tStart = epochNow();
  world.procs.spawn({ name, host: 'pod', argv: [process.execPath, POD, '--dir', dir, 'start', '--no-upnp', '--status-interval', '60'] });
  const poller = await startPoller(world, { address: ADDR.server, port, mode: 'first-success', intervalMs: 20, requestTimeoutMs: 500, maxMs: 30_000 });
  const r = await poller.result;
  if (!r.ok || r.successAt === undefined) throw new Error(`no byte through the tunnel within 30 s: ${r.error}\n${world.procs.tail(name, 20)}`);
  await world.procs.waitLog(name, 'tunnel up', { timeoutMs: 10_000 });
  const log = isoLines(world.procs.log(name));
  const starting = log.find((l) => l.text.startsWith('starting '))!.at;
  const up = log.find((l) => l.text.startsWith('tunnel up'))!.at;
  await world.stop(name);

  const applies = [...world.procs.log('api', apiFrom).matchAll(/applied (.+?) in (\d+) ms/g)].map((m) => ({ units: m[1]!, ms: Number(m[2]) }));
  return {
    setupMs: setup.endedAt - setup.startedAt,
    cliStartMs: tCa - setup.startedAt,
    caFetchMs: tCreate - tCa,
    createMs: tKey - tCreate,
    sshKeyMs: tCert - tKey,
    certMs: setup.endedAt - tCert,
    applies,
    startCliMs: starting - tStart,
    startToFirstByteMs: r.successAt - tStart,
    startToUpLogMs: up - tStart,
    totalMs: r.successAt - setup.startedAt,
    pollerFirstAttemptMs: (r.firstAttemptAt ?? NaN) - tStart,
  };
}

/** The pieces on their own, in the pod's namespace (each includes `ip netns exec`, a few ms). */
async function pieces(stack: Stack, plain: PlainSsh, i: number, p: Pieces): Promise<void> {
  const world = stack.world;
  const scratch = world.mkdir(`ttfb-pieces-${i}`, 0o700);
  p.nodeStart.push(await timeOnce(world, 'pod', [process.execPath, '-e', '0']));
  p.cliHelp.push(await timeOnce(world, 'pod', [process.execPath, POD, '--help']));
  p.sshKeygen.push(await timeOnce(world, 'pod', ['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'x', '-f', path.join(scratch, 'id')]));
  const t0 = performance.now();
  await world.inNs('pod', ['openssl', 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path.join(scratch, 'tls.key')], { timeout: 30_000 });
  await world.inNs('pod', ['openssl', 'req', '-new', '-key', path.join(scratch, 'tls.key'), '-subj', '/CN=x.pipe.test', '-addext', 'subjectAltName=DNS:x.pipe.test', '-out', path.join(scratch, 'csr')], { timeout: 30_000 });
  p.tlsKeyCsr.push(performance.now() - t0);

  // Where the CLI's own start-up goes: loading the bundled CLI (dist/pod.mjs and its chunk), timed inside one Node process.
  const probe = `const t0 = performance.now(); await import(${JSON.stringify(path.join(ROOT, 'dist/pod.mjs'))}); console.log(JSON.stringify(performance.now() - t0));`;
  const imp = await world.inNs('pod', [process.execPath, '--input-type=module', '-e', probe], { timeout: 30_000 });
  p.importBundle.push(Number(imp.stdout.trim()));

  // A bare ssh -R login, until its forward is confirmed: -f with ExitOnForwardFailure returns then.
  const cp = path.join(scratch, 'cm');
  const login = await timeUntilExit(world, 'pod', plain.argv(['-f', '-N', '-o', 'ControlMaster=yes', '-o', `ControlPath=${cp}`, '-o', 'LogLevel=ERROR', '-E', path.join(scratch, 'ssh.log'),
    '-R', `0.0.0.0:${33000 + i}:localhost:${ECHO_PORT}`]), 20_000);
  if (login.exitCode !== 0) throw new Error(`bare ssh -f -N -R failed (exit ${login.exitCode}): ${fs.readFileSync(path.join(scratch, 'ssh.log'), 'utf8')}`);
  p.bareSsh.push(login.ms);
  await world.inNs('pod', plain.argv(['-o', `ControlPath=${cp}`, '-O', 'exit']), { timeout: 10_000, allowFailure: true });

  // The floor under the API's DNS apply: the checks it runs on the zone and config (here on the live files,
  // read-only) and one rndc round trip (\`status\`, which changes nothing; apply's \`reload\` also makes BIND load the zone).
  const L = stack.layout;
  p.namedCheckconf.push(await timeOnce(world, 'srv', ['named-checkconf', L.bind.config]));
  p.namedCheckzone.push(await timeOnce(world, 'srv', ['named-checkzone', '-k', 'fail', '-n', 'fail', '-i', 'local', stack.config.domain, L.bind.zone]));
  p.rndc.push(await timeOnce(world, 'srv', ['rndc', '-k', L.bind.rndcKey, '-s', '127.0.0.1', '-p', String(stack.config.dns.controlPort), 'status']));
}

// ---------------------------------------------------------------------------------------- report

const ms = (s: Stats) => mr(s, 0);

function report(runs: Run[], p: Pieces, seconds: number, load: { before: string; after: string }): string {
  const S = (f: (r: Run) => number) => stats(runs.map(f));
  const applyTotal = (r: Run) => r.applies.reduce((a, x) => a + x.ms, 0);
  const total = S((r) => r.totalMs);
  const setupS = S((r) => r.setupMs);
  const startFb = S((r) => r.startToFirstByteMs);
  const bare = stats(p.bareSsh);
  const node = stats(p.nodeStart);
  const help = stats(p.cliHelp);
  const bundle = stats(p.importBundle);
  const tls = stats(p.tlsKeyCsr);
  const keygen = stats(p.sshKeygen);
  const certPhase = S((r) => r.certMs);
  const applyUnits = [...new Set(runs.flatMap((r) => r.applies.map((a) => a.units)))].join('; ');
  const startCli = S((r) => r.startCliMs);

  const breakdown = table(
    ['step', 'ms, median [min–max]', 'what it is'],
    [
      ['**setup** (its own run time)', `**${ms(setupS)}**`, '`pipe2me setup --token … --ca-pin …`, one tcp service'],
      ['  Node start + loading the CLI', ms(S((r) => r.cliStartMs)), 'to its first progress line'],
      ['  CA certificate fetched and pinned', ms(S((r) => r.caFetchMs)), 'http://server/ca.pem'],
      ['  subdomain created (`POST /v1/subdomains`)', ms(S((r) => r.createMs)), `includes the API's apply (it answers after it): ${ms(S((r) => r.applies[0]?.ms ?? NaN))} ms`],
      ['  ssh key made and registered (`PUT …/ssh-key`)', ms(S((r) => r.sshKeyMs)), `ssh-keygen alone ${ms(keygen)} ms; the API's apply of authorized_keys ${ms(S((r) => r.applies[1]?.ms ?? NaN))} ms`],
      ['  TLS key + CSR, signed (`POST …/certificate`), files written, exit', ms(certPhase), `openssl genpkey + req alone ${ms(tls)} ms; the rest is the API's signing (openssl ca) and HTTPS`],
      ['**start → first byte** through the tunnel', `**${ms(startFb)}**`, '`pipe2me start --no-upnp` spawned → the first echo request answered'],
      ['  Node start + loading the CLI', ms(startCli), 'to its first log line ("starting …")'],
      ['  autossh + ssh login + forward, until a client is served', ms(S((r) => r.startToFirstByteMs - r.startCliMs)), 'the poller tried every 20 ms'],
      ['  (start → pipe2me logs "tunnel up")', ms(S((r) => r.startToUpLogMs)), 'its "up" waits 300 ms after the session opened for a late forward refusal; clients are served before'],
      ['**total: setup start → first byte**', `**${ms(total)}**`, `target ≤ ${TARGET_S * 1000} ms`],
      ['bare `ssh -f -N -R` login (same run)', ms(bare), 'plain sshd, default options, until the forward is confirmed (ControlMaster, ExitOnForwardFailure)'],
    ],
  );
  const piecesTable = table(
    ['piece, measured on its own in the pod\'s namespace', 'ms, median [min–max]'],
    [
      ['`node -e 0` (Node\'s own start-up)', ms(node)],
      ['`node bin/pipe2me.js --help` (Node + pipe2me\'s CLI modules)', ms(help)],
      ['  of which loading the bundled CLI (`dist/pod.mjs` and its chunk)', ms(bundle)],
      ['`ssh-keygen -t ed25519`', ms(keygen)],
      ['`openssl genpkey` EC P-256 + `openssl req`', ms(tls)],
      ['server: `named-checkconf` (the API\'s DNS apply runs it)', ms(stats(p.namedCheckconf))],
      ['server: `named-checkzone` on the zone', ms(stats(p.namedCheckzone))],
      ['server: one `rndc` round trip (`status`)', ms(stats(p.rndc))],
    ],
  );
  const met = total.median <= TARGET_S * 1000;
  const cliCost = S((r) => r.cliStartMs).median + startCli.median;
  const applyMed = stats(runs.map(applyTotal)).median;
  const dnsApply = stats(runs.map((r) => r.applies.filter((a) => /dns/.test(a.units)).reduce((x, a) => x + a.ms, 0))).median;
  const over = runs.filter((r) => r.totalMs > TARGET_S * 1000).length;
  const dnsFloor = stats(p.namedCheckconf).median + stats(p.namedCheckzone).median + stats(p.rndc).median;
  const pollerOk = runs.every((r) => r.pollerFirstAttemptMs < r.startToFirstByteMs);

  return `${RUNS} runs, each a fresh token, a fresh tunnel-set directory and a new subdomain, one tcp service (an echo server on the pod). Times
come from setup's progress lines (timestamped as they arrive), start's log (ms timestamps) and a poller on the client that starts an echo
request through the server's public port every 20 ms from the moment start is spawned${pollerOk ? ' (its first request always went out before the first byte came back)' : ' (in some runs its first request went out only after the tunnel was up: those runs overstate start → first byte by up to its start-up)'}.
The API's applies during setup: ${applyUnits || 'none logged'}. Run time: ${seconds.toFixed(0)} s; 1-minute load average ${load.before} → ${load.after} (shared 2-core machine).

${breakdown}

${piecesTable}

**Target: first byte ≤ ${TARGET_S} s after setup starts — ${met ? (over ? `met by the median; ${over} of ${runs.length} runs took longer` : 'met') : 'missed'}** (${(total.median / 1000).toFixed(2)} s median, ${ratio(total.median, bare.median, 1)} a bare \`ssh -f -N -R\` login).

Where the time goes: two Node processes (setup, then start) each pay Node's start-up and pipe2me's module loading — ${cliCost.toFixed(0)} ms of the
${total.median.toFixed(0)} ms (${((cliCost / total.median) * 100).toFixed(0)} %). Of one CLI start-up (${help.median.toFixed(0)} ms for \`--help\`), Node itself is ${node.median.toFixed(0)} ms and loading the
bundled CLI ${bundle.median.toFixed(0)} ms (the CLIs are bundled into one file each because Node 20 spends most of an unbundled start resolving
module files). The API's applies during setup add ${applyMed.toFixed(0)} ms (${applyUnits}): it answers only after
the new name is in the zone and BIND reloaded it. The DNS apply (${dnsApply.toFixed(0)} ms) is close to BIND's own floor: named-checkconf
${stats(p.namedCheckconf).median.toFixed(0)}, named-checkzone ${stats(p.namedCheckzone).median.toFixed(0)} and an rndc round trip ${stats(p.rndc).median.toFixed(0)} ms, run one by one here, add up to ${dnsFloor.toFixed(0)} ms. Key generation is cheap (ssh-keygen ${keygen.median.toFixed(0)} ms, openssl ${tls.median.toFixed(0)} ms). The tunnel's own login is ${S((r) => r.startToFirstByteMs - r.startCliMs).median.toFixed(0)} ms
from start's first log line to the first byte, against ${bare.median.toFixed(0)} ms for the bare \`ssh -f -N -R\` (which also starts no Node and no autossh).
The 300 ms "up" grace delays only pipe2me's own "tunnel up" line, not the first byte. The floors: Node's start-up (${node.median.toFixed(0)} ms × 2), BIND's checks
and reload, and one ssh login.

Machine of this run:

${machine()}
`;
}

// ------------------------------------------------------------------------------------------- main


export async function main(): Promise<BenchSection> {
  const t0 = performance.now();
  const stack = await Stack.create({ log: (l) => progress(l) });
  try {
    const world = stack.world;
    progress('ttfb: pipe2me server, echo service on the pod, plain sshd');
    await stack.startServer();
    await world.start({ name: 'pod-echo', host: 'pod', argv: helperArgv('serve.mjs', ['echo', '0.0.0.0', ECHO_PORT]), ready: (d, p) => p.waitLog(d.name, 'listening') });
    const plain = await startPlainSshd(stack, PLAIN_SSHD_PORT);
    const load = { before: loadAverage(), after: '' };
    const runs: Run[] = [];
    const p: Pieces = { nodeStart: [], cliHelp: [], sshKeygen: [], tlsKeyCsr: [], bareSsh: [], importBundle: [], namedCheckconf: [], namedCheckzone: [], rndc: [] };
    for (let i = 1; i <= RUNS; i++) {
      progress(`ttfb: run ${i}/${RUNS}`);
      const r = await oneRun(stack, i);
      progress(`  setup ${r.setupMs.toFixed(0)} ms, start → first byte ${r.startToFirstByteMs.toFixed(0)} ms, total ${r.totalMs.toFixed(0)} ms (applies ${r.applies.map((a) => `${a.units} ${a.ms}`).join(', ')})`);
      runs.push(r);
      await pieces(stack, plain, i, p);
      progress(`  pieces: node ${p.nodeStart.at(-1)!.toFixed(0)}, --help ${p.cliHelp.at(-1)!.toFixed(0)}, bare ssh -f -N -R ${p.bareSsh.at(-1)!.toFixed(0)} ms`);
    }
    load.after = loadAverage();
    return { title: 'Time to first byte: setup → start → first client byte', markdown: report(runs, p, (performance.now() - t0) / 1000, load) };
  } finally {
    await stack.destroy();
  }
}

await standalone(import.meta, main);
