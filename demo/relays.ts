/**
 * The demo's second world: two relays sharing one PostgreSQL store, a pod behind NAT, a client that finds
 * the pod by its name. The relay holding the pod's tunnel dies (every process of it killed); the pod moves
 * to the other relay, the name follows, and the client keeps reaching the pod by its name.
 */
import { ADDR, curl, dig, waitFor } from '../test/world/index.js';
import { DOMAIN } from '../test/stack/stack.js';
import { RelayFleet } from '../test/stack/relays.js';

export interface Say {
  heading(text: string): void;
  ok(text: string): void;
  cmd(host: string, argv: string): void;
}

const ADDRESS: Record<string, string> = { 'relay-a': ADDR.server, 'relay-b': ADDR.srv2 };

export async function relaysChapter(say: Say, onFleet: (f: RelayFleet | undefined) => void): Promise<void> {
  say.heading('Two relays, one store: a relay dies, the pod stays reachable by its name');
  const t0 = performance.now();
  const fleet = await RelayFleet.create({ relays: 2, pods: 1, log: null, handleSignals: false });
  onFleet(fleet);
  await fleet.start();
  say.cmd('relay-a', 'pipe2me.yml: relays: [{name: relay-a, ipv4: 203.0.113.1}, {name: relay-b, ipv4: 203.0.113.11}], state: {url: postgres://…@203.0.113.30/…}');
  say.ok(`relay-a ${ADDR.server} and relay-b ${ADDR.srv2}, each with its sshd, nginx, BIND, API and watcher, sharing PostgreSQL on ${ADDR.db} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  say.cmd('relay-b', 'pipe2me-ctl init   # exit 9: relay-b made its own CA key and asks the root to sign it');
  say.cmd('relay-a', 'pipe2me-ctl relay approve relay-b --key-sha256 <what relay-b printed> && (on relay-b) pipe2me-ctl init');
  say.ok('relay-b signs with its own intermediate (its key never left it); pods trust the one root they pinned');
  const t = (await fleet.ctl<{ token: string; ca_pin: string }>('relay-a', ['token', 'create', '--max-ports', '1'])).json;
  const set = (await fleet.pod<{ fqdn: string; services: { port: number }[] }>('pod', ['setup', '--server', `https://server.${DOMAIN}`, '--token', t.token, '--ca-pin', t.ca_pin, '--protocols', 'http', '--ports', '8080'], { timeout: 120_000 })).json;
  await fleet.startPodService('pod');
  await fleet.startPod('pod');
  const relayOf = () => fleet.relayOf('pod');
  const url = `http://${set.fqdn}:${set.services[0]!.port}/`;
  const name = async (server: string) => (await dig(fleet.world, { from: 'cli', server, name: set.fqdn, tcp: true })).answers.find((a) => a.type === 'A')?.data;
  await waitFor('the pod\'s tunnel up on a relay', async () => relayOf() !== null, { timeoutMs: 15_000, intervalMs: 100 });
  const first = relayOf()!;
  const other = first === 'relay-a' ? 'relay-b' : 'relay-a';
  for (let i = 0; i < 50 && (await name(ADDRESS[other]!)) !== ADDRESS[first]; i++) await new Promise((r) => setTimeout(r, 200));
  say.ok(`the pod ${set.fqdn} holds its tunnel to ${first}; both relays' nameservers answer ${ADDRESS[first]}`);
  say.cmd('client', `curl ${url}`);
  const r1 = await curl(fleet.world, url, { from: 'cli' });
  say.ok(`${r1.status}: "${r1.body.trim()}" (the client resolves the name through the relays' nameservers)`);

  say.cmd('demo', `kill -9 every process of ${first}`);
  const tk = performance.now();
  fleet.killRelay(first);
  let podsBack = 0;
  let served = 0;
  let failures = 0;
  while (performance.now() - tk < 30_000) {
    if (!podsBack && relayOf() === other) podsBack = performance.now() - tk;
    const r = await curl(fleet.world, url, { from: 'cli', timeoutMs: 2000 });
    if (r.status === 200 && (await name(ADDRESS[other]!)) === ADDRESS[other]) {
      served = performance.now() - tk;
      break;
    }
    failures++;
    await new Promise((res) => setTimeout(res, 250));
  }
  if (!served) throw new Error(`the pod was not reachable by its name through ${other} within 30 s of ${first} dying`);
  say.ok(`the pod was on ${other} ${(podsBack / 1000).toFixed(1)} s after ${first} died, and its name answered ${ADDRESS[other]}`);
  say.ok(`the client reached the pod by its name again ${(served / 1000).toFixed(1)} s after the fault (${failures} request(s) failed meanwhile; the zone's TTL is 5 s)`);
}
