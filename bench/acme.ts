/**
 * A certificate every browser trusts, and what it costs: from `pipe2me setup` on a fresh pod to the first
 * HTTPS byte a client verifies through the tunnel — with the server's issuer the public ACME CA (Debian's
 * Pebble in the `ca` namespace, dns-01 against the server's own BIND and an NSD secondary) against the
 * private CA, both measured in this one process on the same machine. The ACME order is broken down by the
 * API's own log line: record published, served by every nameserver, validated by the CA, issued.
 *
 *   npx vite-node bench/acme.ts
 */
import * as path from 'node:path';
import { ADDR, curl } from '../test/world/index.js';
import { DOMAIN, POD, POD_SERVICE, Stack } from '../test/stack/stack.js';
import { acmeConfig, startPebble } from '../test/stack/pebble.js';
import { loadAverage, QUICK, machine, mr, progress, ratio, standalone, stats, table, type BenchSection } from './lib/report.js';
import { epochNow, runTimed, sleep, type TimedRun } from './lib/kit.js';

const RUNS = QUICK ? 1 : 5;
const HTTPS_PORT = 8443;

interface Run {
  setupMs: number;
  /** setup's last phase: TLS key + CSR → the certificate installed. */
  certMs: number;
  /** setup's run time + start → the first verified answer: the pod's own https service, started in between, not counted. */
  totalMs: number;
  /** start spawned → that first verified answer. */
  startToVerifiedMs: number;
  issuerOnPod: string;
  /** From the API's "ACME: issued …" line (ACME runs only). */
  order?: { issuedMs: number; publishedMs: number; servedMs: number; validatedMs: number };
}

function phaseAt(run: TimedRun, re: RegExp): number {
  const l = run.lines.find((x) => x.stream === 'stderr' && re.test(x.text));
  if (!l) throw new Error(`setup printed no line matching ${re}:\n${run.lines.map((x) => x.text).join('\n').slice(-2000)}`);
  return l.at;
}

async function oneRun(stack: Stack, rootFile: string, i: number, kind: string): Promise<Run> {
  const world = stack.world;
  const t = (await stack.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--label', `acme-bench-${kind}-${i}`, '--max-ports', '1'])).json;
  const dir = world.path('pods', `acme-${kind}-${i}`);
  const apiFrom = world.procs.logSize('api');
  const setup = await runTimed(world, 'pod', [process.execPath, POD, '--dir', dir, '--json', 'setup', '--server', `https://server.${DOMAIN}`, '--token', t.token, '--ca-pin', t.ca_pin, '--protocols', 'https', '--ports', String(HTTPS_PORT)], 120_000);
  if (setup.exitCode !== 0) throw new Error(`setup failed (exit ${setup.exitCode}):\n${setup.lines.map((l) => l.text).join('\n').slice(-2000)}`);
  const answer = JSON.parse(setup.stdout) as { fqdn: string; services: { port: number; url: string }[] };
  const tCert = phaseAt(setup, /^… creating a TLS key/);

  // The pod's service with the certificate setup installed, then the tunnel; the client polls until it verifies.
  const svc = `acme-svc-${kind}-${i}`;
  await world.start({
    name: svc, host: 'pod',
    argv: [process.execPath, POD_SERVICE, svc, '18080', String(HTTPS_PORT), path.join(dir, 'tls.key'), path.join(dir, 'fullchain.pem')],
    ready: () => world.waitTcp('pod', '127.0.0.1', HTTPS_PORT),
  });
  const name = `acme-start-${kind}-${i}`;
  const tStart = epochNow();
  world.procs.spawn({ name, host: 'pod', argv: [process.execPath, POD, '--dir', dir, 'start', '--no-upnp', '--status-interval', '60'] });
  const url = answer.services[0]!.url;
  const port = new URL(url).port;
  let verifiedAt: number | undefined;
  let last = '';
  while (epochNow() - tStart < 30_000) {
    const r = await curl(world, url, { cacert: rootFile, resolve: [`${answer.fqdn}:${port}:${ADDR.server}`], timeoutMs: 2000 });
    if (r.ok && r.sslVerifyResult === 0 && /^hello from/.test(r.body)) {
      verifiedAt = epochNow();
      break;
    }
    last = r.error || `status ${r.status}`;
    await sleep(20);
  }
  await world.stop(name);
  await world.stop(svc);
  if (verifiedAt === undefined) throw new Error(`no verified HTTPS answer through the tunnel within 30 s (${kind}): ${last}`);

  const m = /ACME: issued .* in (\d+) ms \(record published (\d+), served by every nameserver (\d+), validated (\d+)\)/.exec(world.procs.log('api', apiFrom));
  const issuerOnPod = (await world.inNs('pod', ['cat', path.join(dir, 'tls.issuer')], { timeout: 5000 })).stdout.trim();
  return {
    setupMs: setup.endedAt - setup.startedAt,
    certMs: setup.endedAt - tCert,
    totalMs: setup.endedAt - setup.startedAt + (verifiedAt - tStart),
    startToVerifiedMs: verifiedAt - tStart,
    issuerOnPod,
    ...(m ? { order: { issuedMs: Number(m[1]), publishedMs: Number(m[2]), servedMs: Number(m[3]), validatedMs: Number(m[4]) } } : {}),
  };
}

async function series(kind: 'private' | 'acme'): Promise<Run[]> {
  const stack = await Stack.create({ log: (l) => progress(l), secondary: true });
  try {
    let rootFile: string;
    if (kind === 'acme') {
      const pebble = await startPebble(stack.world);
      await stack.startServer({ configExtra: acmeConfig(pebble) });
      rootFile = pebble.rootFile;
    } else {
      await stack.startServer();
      rootFile = stack.caFile();
    }
    const runs: Run[] = [];
    for (let i = 1; i <= RUNS; i++) {
      progress(`acme: ${kind} run ${i}/${RUNS}`);
      const r = await oneRun(stack, rootFile, i, kind);
      if (r.issuerOnPod !== kind) throw new Error(`run ${i}: the pod's certificate came from ${r.issuerOnPod}, not ${kind}`);
      progress(`  setup ${r.setupMs.toFixed(0)} ms (certificate ${r.certMs.toFixed(0)}), first verified byte ${r.totalMs.toFixed(0)} ms${r.order ? `; order ${r.order.issuedMs} ms` : ''}`);
      runs.push(r);
    }
    return runs;
  } finally {
    await stack.destroy();
  }
}

function report(priv: Run[], pub: Run[], seconds: number, load: { before: string; after: string }): string {
  const ms = (v: number[]) => mr(stats(v), 0);
  const col = (runs: Run[], f: (r: Run) => number) => ms(runs.map(f));
  const orders = pub.flatMap((r) => (r.order ? [r.order] : []));
  const o = (f: (x: NonNullable<Run['order']>) => number) => ms(orders.map(f));
  const main = table(
    ['step', 'private CA, ms median [min–max]', 'public ACME CA, ms', 'what it is'],
    [
      ['**setup** (its own run time)', `**${col(priv, (r) => r.setupMs)}**`, `**${col(pub, (r) => r.setupMs)}**`, '`pipe2me setup`, one https service'],
      ['  TLS key + CSR → certificate installed', col(priv, (r) => r.certMs), col(pub, (r) => r.certMs), 'the private CA signs at once; ACME: the API orders, and answers when the order is valid'],
      ['start → first verified HTTPS answer', col(priv, (r) => r.startToVerifiedMs), col(pub, (r) => r.startToVerifiedMs), 'the client polls every 20 ms with curl, trusting only the issuer\'s root'],
      ['**total: setup start → first verified byte**', `**${col(priv, (r) => r.totalMs)}**`, `**${col(pub, (r) => r.totalMs)}**`, 'setup + start → first verified answer; starting the pod\'s own https service in between is not counted'],
    ],
  );
  const orderTable = orders.length === 0 ? '_(no ACME order timing was logged)_' : table(
    ['the ACME order, from the API\'s log', 'ms since the order began, median [min–max]'],
    [
      ['`_acme-challenge` TXT in the zone, BIND reloaded', o((x) => x.publishedMs)],
      ['served by every nameserver (BIND and the NSD secondary, asked directly)', o((x) => x.servedMs)],
      ['the CA validated the challenge', o((x) => x.validatedMs)],
      ['issued: order finalized, certificate downloaded', o((x) => x.issuedMs)],
    ],
  );
  const p = stats(priv.map((r) => r.totalMs)).median;
  const a = stats(pub.map((r) => r.totalMs)).median;
  return `${RUNS} runs per issuer, each a fresh token, a fresh tunnel-set directory and a new subdomain with one https service. The private runs and the
ACME runs each build their own world (with an NSD secondary, which the ACME order waits for) in this one process. The CA is Debian's Pebble 2.4
in the world's \`ca\` namespace with no validation sleep (\`PEBBLE_VA_NOSLEEP=1\`): a real CA adds its own queueing and validation from
several vantage points. Run time: ${seconds.toFixed(0)} s; 1-minute load average ${load.before} → ${load.after}.

${main}

${orderTable}

**Target: first verified byte ≤ 3 s after setup starts, with Pebble — ${a <= 3000 ? 'met' : 'missed'}** (${(a / 1000).toFixed(2)} s median; ${pub.filter((r) => r.totalMs > 3000).length} of ${pub.length} runs over).

**The public certificate costs ${(a - p).toFixed(0)} ms over the private one** (first verified byte ${(a / 1000).toFixed(2)} s against ${(p / 1000).toFixed(2)} s, ${ratio(a, p, 2)}).
The order itself takes ${stats(orders.map((x) => x.issuedMs)).median.toFixed(0)} ms of it (median): the challenge record has to be in the zone and served by every nameserver before the CA is asked to
validate, since a CA that asks a secondary which has not yet transferred the zone fails the order. The pod's key never leaves the pod
in either case: the API sends the pod's CSR to the CA.

Machine of this run:

${machine()}
`;
}

export async function main(): Promise<BenchSection> {
  const t0 = performance.now();
  const load = { before: loadAverage(), after: '' };
  const priv = await series('private');
  const pub = await series('acme');
  load.after = loadAverage();
  return { title: 'A public certificate: setup → first verified HTTPS byte, ACME against the private CA', markdown: report(priv, pub, (performance.now() - t0) / 1000, load) };
}

await standalone(import.meta, main);
