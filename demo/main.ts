/**
 * The pipe2me demo: a whole pipe2me world on this machine — a server, a NAT router with UPnP, a pod behind
 * it, a client on the "internet" and a secondary nameserver, each in its own network namespace with the
 * real daemons — driven only through pipe2me-ctl and pipe2me, and checked with real clients. It reports
 * what a newcomer needs to see, and removes everything it created when it ends, also on Ctrl-C.
 *
 * Run as root: bash scripts/demo   (or: npx vite-node demo/main.ts)
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ADDR, curl, dig, removeMapping, waitFor, type CurlResult } from '../test/world/index.js';
import { DOMAIN, ROOT, Stack } from '../test/stack/stack.js';
import { acmeConfig, startPebble, type Pebble } from '../test/stack/pebble.js';
import { relaysChapter } from './relays.js';
import type { RelayFleet } from '../test/stack/relays.js';

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s);
const ok = (s: string) => `  ${process.stdout.isTTY ? '\x1b[32m✓\x1b[0m' : '✓'} ${s}`;
const T0 = performance.now();
const secs = (from = T0) => `${((performance.now() - from) / 1000).toFixed(1)} s`;
let step = 0;
const STEPS = 9;
function heading(text: string) {
  console.log(`\n${bold(`[${++step}/${STEPS}] ${text}`)}`);
}
function cmd(host: string, argv: string) {
  console.log(dim(`  ${host}$ ${argv}`));
}

let stack: Stack | undefined;
let fleet: RelayFleet | undefined;
let pebble: Pebble | undefined;
let interrupted = false;

async function teardown(): Promise<void> {
  if (fleet) {
    const f = fleet;
    fleet = undefined;
    const r = await f.world.destroy().catch((e: Error) => console.log(`\nTeardown problem: ${e.message}`));
    if (r) console.log(`\n${bold('Teardown')} of the relays' world: ${r.sweptPids} process(es) swept, namespaces and ${path.join('/run/pipe2me-worlds', f.world.prefix)} removed.`);
  }
  if (!stack) return;
  const s = stack;
  stack = undefined;
  const t = performance.now();
  const prefix = s.world.prefix;
  const user = s.tunnelUser;
  let report;
  try {
    report = await s.world.destroy();
  } catch (e) {
    console.log(`\nTeardown problem: ${(e as Error).message}`);
    return;
  }
  // Check, do not assume: nothing of this world may remain.
  const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 10_000 }).split('\n').filter((l) => l.startsWith(prefix));
  let userLeft = true;
  try {
    execFileSync('getent', ['passwd', user], { timeout: 10_000, stdio: 'ignore' });
  } catch {
    userLeft = false;
  }
  const dirLeft = fs.existsSync(path.join('/run/pipe2me-worlds', prefix));
  const clean = namespaces.length === 0 && !userLeft && !dirLeft;
  console.log(`\n${bold('Teardown')}: stopped every process (${report.sweptPids} swept from the namespaces), deleted the namespaces, the tunnel user ${user} and ${path.join('/run/pipe2me-worlds', prefix)} in ${secs(t)}.`);
  console.log(clean ? ok('checked: nothing is left behind.') : `  LEFT BEHIND: ${JSON.stringify({ namespaces, userLeft, dirLeft })}`);
}

async function resolve(name: string, server: string = ADDR.server): Promise<{ address: string; ttl: number }> {
  const d = await dig(stack!.world, { server, name });
  const a = d.answers.find((x) => x.type === 'A');
  if (!a) throw new Error(`${name} has no A record at ${server}`);
  return { address: a.data, ttl: a.ttl };
}

async function fetchAs(url: string): Promise<CurlResult & { via: string }> {
  const u = new URL(url);
  const { address } = await resolve(u.hostname);
  const port = u.port || (u.protocol === 'https:' ? '443' : '80');
  // The client trusts only the public CA's root, as every browser does: not the server's private CA.
  const r = await curl(stack!.world, url, { resolve: [`${u.hostname}:${port}:${address}`], cacert: pebble!.rootFile });
  return { ...r, via: address };
}

async function main(): Promise<void> {
  console.log(bold('pipe2me demo') + ' — publish a service that runs behind NAT, and watch a client reach it.');
  console.log(dim('Everything below runs in network namespaces made for this demo; the host\'s own network is not touched.'));

  heading('Building a small internet');
  stack = await Stack.create({ log: null, handleSignals: false, secondary: true, flapWindow: '10s' });
  console.log(ok(`server ${ADDR.server}, NAT router ${ADDR.routerWan} (LAN 192.168.77.1, miniupnpd), pod 192.168.77.10 behind it, client ${ADDR.client}, secondary nameserver ${ADDR.ns2}`));
  console.log(ok(`up in ${(stack.world.timings.upMs / 1000).toFixed(2)} s`));
  pebble = await startPebble(stack.world);
  console.log(ok(`a public ACME CA on ${ADDR.ca} (Pebble, standing in for Let's Encrypt); the client trusts only its root, as a browser does`));

  heading('The server: pipe2me-ctl init, apply, and its daemons');
  cmd('server', `pipe2me-ctl init --domain ${DOMAIN} --ipv4 ${ADDR.server} --secondary ns2.${DOMAIN}=${ADDR.ns2} && pipe2me-ctl apply`);
  cmd('server', `# pipe2me.yml: ca: { issuer: acme, acme: { directory_url: ${pebble.directoryUrl}, email: … } }`);
  const t1 = performance.now();
  await stack.startServer({ configExtra: acmeConfig(pebble) });
  console.log(ok(`configuration, private CA (for the API and the pods' pins), sshd host key and state store made; sshd, nginx and BIND run from the files pipe2me rendered, the API serves (${secs(t1)})`));
  console.log(ok(`an NSD secondary on ${ADDR.ns2} follows the zone by NOTIFY and AXFR (pipe2me-ctl secondary-config)`));
  const token = (await stack.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--label', 'demo', '--max-ports', '4', '--lifespan', '30d'])).json;
  cmd('server', 'pipe2me-ctl token create --label demo --max-ports 4 --lifespan 30d');
  console.log(ok(`a token for the pod, and the CA pin it checks on first contact: ${token.ca_pin.slice(0, 23)}…`));

  heading('The pod: pipe2me setup');
  cmd('pod', `pipe2me setup --server https://server.${DOMAIN} --token p2mt_… --ca-pin ${token.ca_pin.slice(0, 14)}… --protocols http,https --ports 8080,8443`);
  const setup = (await stack.pod<{ fqdn: string; services: { protocol: string; port: number; url: string }[] }>(
    ['setup', '--server', `https://server.${DOMAIN}`, '--token', token.token, '--ca-pin', token.ca_pin, '--protocols', 'http,https', '--ports', '8080,8443'], { timeout: 120_000 })).json;
  console.log(ok(`the pod is ${bold(setup.fqdn)}`));
  for (const s of setup.services) console.log(`      ${s.protocol.padEnd(5)} ${s.url}`);
  console.log(`      entry http://${setup.fqdn}/ and https://${setup.fqdn}/`);
  const issuer = fs.readFileSync(path.join(stack.podDir('pod'), 'tls.issuer'), 'utf8').trim();
  console.log(ok(`its ssh key and TLS key were made on the pod (0600) and never left it; the server had the public CA sign its certificate by dns-01 (issuer: ${issuer})`));
  await stack.startPodService('pod');
  console.log(ok('the pod runs a small web service on 8080 (http) and 8443 (https, with that certificate)'));

  heading('The tunnel: pipe2me start');
  cmd('pod', 'pipe2me start    # usually: pipe2me install-service');
  const t2 = performance.now();
  await stack.startPod('pod', ['--no-upnp']);
  console.log(ok(`tunnel up in ${secs(t2)}: autossh with a session (not -N), locked to the pod's own ports`));

  heading('A client on the internet reaches the pod through the server');
  const r1 = await resolve(setup.fqdn);
  cmd('client', `dig ${setup.fqdn}`);
  console.log(ok(`${setup.fqdn} → ${r1.address} (the server), TTL ${r1.ttl} s`));
  const h = await fetchAs(setup.services[0]!.url);
  cmd('client', `curl ${setup.services[0]!.url}`);
  console.log(ok(`${h.status}: "${h.body.trim()}"  ${dim('(the pod sees a loopback peer: the request came through the tunnel)')}`));
  const s1 = await fetchAs(setup.services[1]!.url);
  cmd('client', `curl ${setup.services[1]!.url}`);
  if (s1.sslVerifyResult !== 0) throw new Error(`the pod's certificate was not verified against the public root: ${s1.error}`);
  console.log(ok(`${s1.status}, certificate verified against the public CA's root alone (ssl_verify_result ${s1.sslVerifyResult}): "${s1.body.trim()}"`));
  const e = await fetchAs(`http://${setup.fqdn}/hello?x=1`);
  cmd('client', `curl http://${setup.fqdn}/hello?x=1`);
  console.log(ok(`${e.status} → ${e.location}  ${dim('(the entry redirect keeps path and query)')}`));

  heading('The direct route: UPnP on the router, verified by the server\'s probe');
  // Start the pod again without --no-upnp: now it asks its router for port mappings.
  await stack.world.stop('pod-pipe2me');
  await stack.world.start({ ...stack.world.procs.get('pod-pipe2me').spec, argv: stack.world.procs.get('pod-pipe2me').spec.argv.filter((a) => a !== '--no-upnp') });
  await waitFor('mappings reported', async () => (await stack!.ctl<{ mappings: unknown[] }>(['show', setup.fqdn])).json.mappings.length === 4, { timeoutMs: 30_000 });
  console.log(ok('pipe2me start mapped router ports (its two services, plus 80 and 443 for the entry) and told the server'));
  cmd('server', 'pipe2me-ctl probe    # every minute, from a systemd timer or cron');
  const p = (await stack.ctl<{ results: { name: string; reason: string; route: string }[] }>(['probe'])).json;
  const mine = p.results.find((x) => setup.fqdn.startsWith(x.name + '.'))!;
  console.log(ok(mine.reason));
  const r2 = await resolve(setup.fqdn);
  // The secondary learns the change by NOTIFY and a zone transfer, within a second or so.
  await waitFor('the secondary follows', async () => (await resolve(setup.fqdn, ADDR.ns2)).address === r2.address, { timeoutMs: 10_000, intervalMs: 100 });
  console.log(ok(`${setup.fqdn} → ${r2.address} (the router), TTL ${r2.ttl} s; the secondary nameserver answers the same`));
  const h2 = await fetchAs(setup.services[0]!.url);
  console.log(ok(`curl ${setup.services[0]!.url} → "${h2.body.trim()}"  ${dim('(the pod sees the client itself: no server in the path)')}`));
  const s2 = await fetchAs(setup.services[1]!.url);
  if (s2.sslVerifyResult !== 0) throw new Error(`at the router, the pod's certificate was not verified against the public root: ${s2.error}`);
  console.log(ok(`curl ${setup.services[1]!.url} → verified at the router with the public root alone: the pod's own key, end to end`));

  heading('The router loses a mapping: back to the server, without a client noticing more than a TTL');
  await removeMapping(stack.world, setup.services[0]!.port, 'TCP', 'pod');
  console.log(ok(`router port ${setup.services[0]!.port} forgotten (as after a router reboot)`));
  const p2 = (await stack.ctl<{ results: { name: string; reason: string; route: string }[] }>(['probe'])).json;
  const mine2 = p2.results.find((x) => setup.fqdn.startsWith(x.name + '.'))!;
  console.log(ok(`probe: ${mine2.reason}`));
  const h3 = await fetchAs(setup.services[0]!.url);
  console.log(ok(`${setup.fqdn} → ${h3.via} (the server) again; curl → "${h3.body.trim()}"  ${dim('(through the tunnel, which never went away)')}`));

  // The second world: the first one goes first (both use the same addresses, in their own namespaces).
  await teardown();
  await relaysChapter({ heading, ok: (t) => console.log(ok(t)), cmd }, (f) => (fleet = f));

  heading('Done');
  console.log(ok(`the whole story took ${secs()}`));
  console.log(dim(`  Try it yourself: README.md (Running a server, Setting up a pod). This demo lives in ${path.relative(process.cwd(), path.join(ROOT, 'demo', 'main.ts')) || 'demo/main.ts'}.`));
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    console.log(`\n${sig}: stopping the demo and removing everything it created…`);
    void teardown().finally(() => process.exit(130));
  });
}

try {
  await main();
  await teardown();
} catch (e) {
  console.error(`\nThe demo failed: ${(e as Error).message}`);
  if (stack) console.error(stack.world.dumpLogs(25));
  if (fleet) console.error(fleet.world.dumpLogs(25));
  await teardown();
  process.exitCode = 1;
}
