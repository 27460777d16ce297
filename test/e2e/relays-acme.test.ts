/**
 * Certificates every browser trusts, with several relays: two relays on one PostgreSQL store take their
 * certificates from a public ACME CA (Pebble). Each relay has an ACME account of its own (its key a file
 * on that relay, the account's URL in the store) and a public wildcard whose key was made on it and never
 * left it; a pod's CSR is worked by whichever relay's API takes its order. Pebble asks only relay-b's
 * nameserver for the dns-01 records, so an order worked on relay-a validates only because relay-a waits
 * until every relay's nameserver serves its record.
 */
import { createPublicKey, X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ADDR, curl, sClient, waitFor } from '../world/index.js';
import { DOMAIN } from '../stack/stack.js';
import { RelayFleet } from '../stack/relays.js';
import { layout } from '../../src/render/layout.js';
import { loadConfig } from '../../src/config/load.js';

let fleet: RelayFleet | undefined;
let pod: { fqdn: string; https: number };
const RELAYS = [['relay-a', ADDR.server], ['relay-b', ADDR.srv2]] as const;

function f(): RelayFleet {
  if (!fleet) throw new Error('the fleet is not up (its set-up failed)');
  return fleet;
}

const spki = (pem: string) => createPublicKey(pem).export({ type: 'spki', format: 'der' }).toString('hex');

beforeAll(async () => {
  fleet = await RelayFleet.create({ relays: 2, pods: 1, acme: true });
  await fleet.start();
  const t = await fleet.ctl<{ token: string; ca_pin: string }>('relay-a', ['token', 'create', '--max-ports', '2']);
  const set = await fleet.pod<{ fqdn: string; services: { port: number; protocol: string }[] }>('pod', ['setup', '--server', `https://server.${DOMAIN}`, '--token', t.json.token, '--ca-pin', t.json.ca_pin, '--protocols', 'https', '--ports', '8443'], { timeout: 120_000 });
  pod = { fqdn: set.json.fqdn, https: set.json.services[0]!.port };
  await fleet.startPodService('pod');
  await fleet.startPod('pod');
}, 300_000);

afterAll(async () => {
  await fleet?.destroy();
});

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') console.log(fleet?.world.dumpLogs(60));
});

describe('two relays, one public CA', () => {
  it('each relay serves a public wildcard of its own key (made there, 0600, on no other relay), ordered and worked by that relay under its own account', async () => {
    const s = f();
    const keys: string[] = [];
    for (const [relay, address] of RELAYS) {
      await waitFor(`${relay}'s https entry serves the public wildcard`, async () => {
        const tls = await sClient(s.world, { address, port: 443, servername: pod.fqdn, cafile: s.pebble!.rootFile });
        return tls.verified && /Pebble Intermediate/.test(tls.chain[0]?.issuer ?? '');
      }, { timeoutMs: 60_000, intervalMs: 500 });
      const L = layout(loadConfig(s.relay(relay).configFile));
      expect(fs.statSync(L.wildcardKey).mode & 0o777).toBe(0o600);
      const served = (await sClient(s.world, { address, port: 443, servername: pod.fqdn, cafile: s.pebble!.rootFile })).chain[0]!.pem;
      // What the relay serves is the certificate of the key on that relay.
      expect(spki(new X509Certificate(served).publicKey.export({ type: 'spki', format: 'pem' }) as string)).toBe(spki(fs.readFileSync(L.wildcardKey, 'utf8')));
      keys.push(fs.readFileSync(L.wildcardKey, 'utf8'));
    }
    expect(keys[0]).not.toBe(keys[1]);
    // Neither relay's wildcard key is anywhere in the other's tree.
    for (const [i, [relay]] of RELAYS.entries()) {
      const other = RELAYS[1 - i]![0];
      const body = keys[i]!.split('\n').filter((l) => l && !l.startsWith('-----'))[1]!;
      expect(holding(s.relay(other).root, body), `${relay}'s key found under ${other}`).toEqual([]);
    }
    // Two wildcard orders, each bound to and worked by its own relay; two accounts, one per relay key.
    type Order = { names: string[]; purpose: string; state: string; relay: string | null; worked_by: string | null };
    const orders = (await s.ctl<Order[]>('relay-b', ['ca', 'orders'])).json.filter((o) => o.purpose === 'server' && o.state === 'valid');
    expect(orders.map((o) => [o.relay, o.worked_by]).sort()).toEqual([['relay-a', 'relay-a'], ['relay-b', 'relay-b']]);
    type Account = { relay: string; url: string; key_sha256: string; directory_url: string };
    const accounts = (await s.ctl<Account[]>('relay-a', ['ca', 'accounts'])).json;
    expect(accounts.map((a) => a.relay)).toEqual(['relay-a', 'relay-b']);
    expect(new Set(accounts.map((a) => a.url)).size).toBe(2);
    expect(new Set(accounts.map((a) => a.key_sha256)).size).toBe(2);
    for (const [relay] of RELAYS) {
      const keyFile = path.join(loadConfig(s.relay(relay).configFile).paths.ca, 'acme-account.key');
      expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600);
    }
  });

  it('the pod\'s certificate is the public CA\'s for the key the pod made: a client trusting only that CA reaches the pod by name through the https entry of either relay and through its tunnel', async () => {
    const s = f();
    await waitFor('the pod is up', async () => s.relayOf('pod') !== null, { timeoutMs: 30_000, intervalMs: 200 });
    const chain = fs.readFileSync(path.join(s.podDir('pod'), 'fullchain.pem'), 'utf8');
    expect(new X509Certificate(chain).issuer).toMatch(/Pebble Intermediate/);
    expect(spki(new X509Certificate(chain).publicKey.export({ type: 'spki', format: 'pem' }) as string)).toBe(spki(fs.readFileSync(path.join(s.podDir('pod'), 'tls.key'), 'utf8')));
    for (const [relay, address] of RELAYS) {
      const entry = await curl(s.world, `https://${pod.fqdn}/p?q=1`, { from: 'cli', cacert: s.pebble!.rootFile, resolve: [`${pod.fqdn}:443:${address}`] });
      expect(entry.status, `${relay}: ${entry.error}`).toBeGreaterThanOrEqual(301);
      expect(entry.location).toBe(`https://${pod.fqdn}:${pod.https}/p?q=1`);
    }
    // By name, as the relays' nameservers answer it: to the relay holding the tunnel.
    const r = await curl(s.world, `https://${pod.fqdn}:${pod.https}/`, { from: 'cli', cacert: s.pebble!.rootFile });
    expect(r.status, r.error).toBe(200);
    expect(r.body).toContain('pod');
  });
});

/** Files under `tree` whose bytes contain `needle`. */
function holding(tree: string, needle: string): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) walk(full);
      else if (e.isFile() && fs.readFileSync(full).includes(needle)) found.push(full);
    }
  };
  walk(tree);
  return found;
}
