/**
 * The ACME issuer with NSD as the primary (and a BIND secondary): NSD has no dynamic update, and pipe2me
 * needs none — the dns-01 records are rendered into the zone like every other record, checked with
 * nsd-checkzone, and awaited on both nameservers before the CA is asked to look.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ADDR, curl, dig, sClient, waitFor } from '../world/index.js';
import { DOMAIN } from '../stack/stack.js';
import { useStack } from '../stack/hooks.js';
import { acmeConfig, startPebble, type Pebble } from '../stack/pebble.js';

let pebble: Pebble;
let pod: { fqdn: string; services: { port: number; url: string }[] };

const stack = useStack({ dns: 'nsd', secondary: true }, async (s) => {
  pebble = await startPebble(s.world);
  await s.startServer({ configExtra: acmeConfig(pebble) });
  const t = await s.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--max-ports', '2']);
  pod = (await s.pod<typeof pod>(['setup', '--server', `https://server.${DOMAIN}`, '--token', t.json.token, '--ca-pin', t.json.ca_pin, '--protocols', 'http,https', '--ports', '8080,8443'], { timeout: 120_000 })).json;
  await s.startPodService('pod');
  await s.startPod('pod', ['--no-upnp']);
}, 300_000);

describe('ACME with an NSD primary', () => {
  it('the pod\'s certificate is the public CA\'s, and a client trusting only its root reaches the pod', async () => {
    const s = stack();
    const cert = new X509Certificate(fs.readFileSync(path.join(s.podDir('pod'), 'tls.crt'), 'utf8'));
    expect(cert.issuer).toMatch(/Pebble Intermediate/);
    const u = new URL(pod.services[1]!.url);
    const r = await curl(s.world, u.href, { cacert: pebble.rootFile, resolve: [`${u.hostname}:${u.port}:${ADDR.server}`] });
    expect(r.sslVerifyResult, r.error).toBe(0);
  });

  it('the public wildcard serves the https entry; no dns-01 record is left on either nameserver', async () => {
    const s = stack();
    await waitFor('the public wildcard', async () => /Pebble Intermediate/.test((await sClient(s.world, { address: ADDR.server, port: 443, servername: pod.fqdn })).chain[0]?.issuer ?? ''), { timeoutMs: 30_000, intervalMs: 500 });
    for (const server of [ADDR.server, ADDR.ns2]) {
      for (const name of [`_acme-challenge.${pod.fqdn}`, `_acme-challenge.${DOMAIN}`]) {
        expect((await dig(s.world, { server, name, type: 'TXT' })).answers.filter((a) => a.type === 'TXT'), `${name} at ${server}`).toEqual([]);
      }
    }
  });
});
