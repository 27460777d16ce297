/**
 * The shortest way (issue: UPnP, probe, DNS that follows, secondary): pods map their ports on the router
 * with upnpc, the server's probe tests them at the address it sees the pods connect from, and DNS points
 * each name at the router only while every port answers as that pod; a secondary follows every change.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ADDR, curl, dig, helperArgv, removeMapping, waitFor } from '../world/index.js';
import { DOMAIN, POD_SERVICE, ROOT } from '../stack/stack.js';
import { useStack } from '../stack/hooks.js';
import { run } from '../../src/util/exec.js';

const PROBE_INTERVAL_S = 5;
let web: { fqdn: string; services: { protocol: string; port: number; url: string }[] };
let raw: { fqdn: string; services: { protocol: string; port: number }[] };

async function answer(server: string, name: string): Promise<{ data: string | undefined; ttl: number | undefined }> {
  const d = await dig(stack().world, { server, name });
  const a = d.answers.find((x) => x.type === 'A');
  return { data: a?.data, ttl: a?.ttl };
}

async function waitAnswer(name: string, want: string, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  await waitFor(`${name} -> ${want}`, async () => (await answer(ADDR.server, name)).data === want, { timeoutMs, intervalMs: 100 });
  return performance.now() - t0;
}

/** The secondary answers like the primary (it learns by NOTIFY + AXFR within seconds). */
async function soaSerial(): Promise<number> {
  const d = await dig(stack().world, { server: ADDR.server, name: DOMAIN, type: 'SOA' });
  return Number(d.answers[0]!.data.split(/\s+/)[2]);
}

async function secondaryAgrees(name: string): Promise<void> {
  await waitFor(`secondary agrees on ${name}`, async () => {
    const [p, s] = await Promise.all([answer(ADDR.server, name), answer(ADDR.ns2, name)]);
    return p.data !== undefined && p.data === s.data && p.ttl === s.ttl;
  }, { timeoutMs: 10_000, intervalMs: 200 });
}

async function get(url: string, address: string) {
  const u = new URL(url);
  const port = u.port || (u.protocol === 'https:' ? '443' : '80');
  return curl(stack().world, url, { resolve: [`${u.hostname}:${port}:${address}`], cacert: stack().caFile() });
}

function lastLogTime(daemon: string, pattern: RegExp): number {
  const lines = stack().world.procs.log(daemon).split('\n').filter((l) => pattern.test(l));
  const last = lines[lines.length - 1];
  if (!last) throw new Error(`no line matching ${pattern} in ${daemon}'s log`);
  return new Date(last.slice(0, 24)).getTime();
}

async function mappingsReported(name: string, count: number): Promise<void> {
  await waitFor(`${name} reports ${count} mappings`, async () => (await stack().ctl<{ mappings: unknown[] }>(['show', name])).json.mappings.length === count, { timeoutMs: 30_000, intervalMs: 300 });
}

// A short flap window: these tests send the same pod back and forth on purpose (hysteresis has its own tests).
// The API's prompt probes are off here: these tests follow the route through explicit probe runs and the timer.
const stack = useStack({ pods: 2, secondary: true, flapWindow: '3s', promptProbe: false }, async (stack) => {
  await stack.startServer();
  const t = (await stack.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--max-ports', '4'])).json;
  const setup = ['setup', '--server', `https://server.${DOMAIN}`, '--token', t.token, '--ca-pin', t.ca_pin];
  web = (await stack.pod<typeof web>([...setup, '--protocols', 'http,https', '--ports', '8080,8443'])).json;
  raw = (await stack.pod<typeof raw>([...setup, '--protocols', 'tcp', '--ports', '9000'], { host: 'pod2' })).json;
  await stack.startPodService('pod');
  await stack.world.start({ name: 'pod2-echo', host: 'pod2', argv: helperArgv('serve.mjs', ['echo', '0.0.0.0', 9000]), ready: (d, p) => p.waitLog(d.name, 'listening').then(() => undefined) });
  await stack.startPod('pod');
  await stack.startPod('pod2');
});

describe('the direct route', () => {
  it('pods map their ports by UPnP and report them; before a probe, DNS still points at the server', async () => {
    await mappingsReported(web.fqdn, 4); // http, https, and the entry ports 80 and 443
    await mappingsReported(raw.fqdn, 1);
    expect((await answer(ADDR.server, web.fqdn)).data).toBe(ADDR.server);
    const st = await stack().pod<{ router: { protocol: string; external_ip: string; mappings: { ok: boolean; via: string }[] } }>(['status']);
    expect(st.json.router.protocol).toBe('upnp');
    expect(st.json.router.external_ip).toBe(ADDR.routerWan);
    expect(st.json.router.mappings.every((m) => m.ok && m.via === 'upnp')).toBe(true);
  });

  it('one probe run sends both pods direct and changes the zone once', async () => {
    const r = await stack().ctl<{ changed: string[]; applied: { zone_serial: number; reloads: { action: string; detail: string }[] } | null; results: { name: string; reason: string }[] }>(['probe']);
    expect(r.json.changed.sort(), JSON.stringify(r.json.results)).toEqual([web.fqdn.split('.')[0], raw.fqdn.split('.')[0]].sort());
    expect(r.json.applied?.zone_serial).toBeGreaterThan(0);
    // Both names in one change of the zone: for BIND one dynamic update of their records (and nothing else).
    const dns = r.json.applied!.reloads.filter((x) => x.action.startsWith('dns-'));
    expect(dns).toEqual([{ action: 'dns-update', detail: 'dynamic update of 4 record(s)' }]);
    expect(await soaSerial()).toBe(r.json.applied!.zone_serial);
    const a = await answer(ADDR.server, web.fqdn);
    expect(a).toEqual({ data: ADDR.routerWan, ttl: 30 });
    expect((await answer(ADDR.server, raw.fqdn)).data).toBe(ADDR.routerWan);
    await secondaryAgrees(web.fqdn);
  });

  it('the client reaches the pod directly: the pod sees the client\'s own address', async () => {
    const h = await get(web.services[0]!.url, ADDR.routerWan);
    expect(h.status).toBe(200);
    expect(h.body).toContain(`peer ${ADDR.client}`);
    const s = await get(web.services[1]!.url, ADDR.routerWan);
    expect(s.sslVerifyResult).toBe(0);
    expect(s.body).toContain(`over https; path /; peer ${ADDR.client}`);
  });

  it('the entry redirects still work when the name points at the router', async () => {
    const h = await get(`http://${web.fqdn}/x?y=1`, ADDR.routerWan);
    expect(h.status).toBe(302);
    expect(h.location).toBe(`http://${web.fqdn}:${web.services[0]!.port}/x?y=1`);
    const s = await get(`https://${web.fqdn}/x?y=1`, ADDR.routerWan);
    expect(s.sslVerifyResult).toBe(0);
    expect(s.location).toBe(`https://${web.fqdn}:${web.services[1]!.port}/x?y=1`);
  });

  it('pipe2me status on the pod says the route is direct and why', async () => {
    await waitFor('status shows direct', async () => (await stack().pod<{ route: { route: string } | null }>(['status'])).json.route?.route === 'direct', { timeoutMs: 10_000 });
    const st = await stack().pod(['status'], { json: false });
    expect(st.stdout).toContain(`clients go straight to your router ${ADDR.routerWan}`);
  });
});

describe('DNS follows the probe, at most one probe interval + 2 s behind', () => {
  beforeAll(async () => {
    await stack().world.start({ name: 'probe-timer', host: 'srv', argv: [process.execPath, path.join(ROOT, 'test', 'stack', 'bin', 'every.mjs'), String(PROBE_INTERVAL_S), process.execPath, path.join(ROOT, 'bin', 'pipe2me-ctl.js'), '-c', stack().configFile, '-q', 'probe'] });
  });

  it('a removed mapping sends the name back to the server, and the client through the tunnel', async () => {
    await removeMapping(stack().world, web.services[0]!.port, 'TCP', 'pod');
    const ms = await waitAnswer(web.fqdn, ADDR.server, (PROBE_INTERVAL_S + 2) * 1000 + 3000);
    console.log(`direct route: a removed router mapping put the name back on the server after ${(ms / 1000).toFixed(1)} s`);
    const h = await get(web.services[0]!.url, ADDR.server);
    expect(h.body).toContain('peer 127.0.0.1'); // through the tunnel
    await secondaryAgrees(web.fqdn);
    const shown = (await stack().ctl<{ route_reason: string }>(['show', web.fqdn])).json;
    expect(shown.route_reason).toMatch(/back to the server: .*http \d+: no http answer/);
  });

  it('a working mapping turns into the changed DNS answer within one probe interval + 2 s', async () => {
    // pipe2me start maps again when it starts: restart it and time from its last mapping to the answer.
    await stack().world.restart('pod-pipe2me');
    // (procs.log gives the log since this start)
    await waitFor('all mapped', async () => /mapped router port 443/.test(stack().world.procs.log('pod-pipe2me')), { timeoutMs: 20_000 });
    await waitAnswer(web.fqdn, ADDR.routerWan, 30_000);
    const mapped = lastLogTime('pod-pipe2me', /mapped router port/);
    const changed = Date.now();
    const delay = (changed - mapped) / 1000;
    console.log(`direct route: from the last router mapping to the changed DNS answer: ${delay.toFixed(1)} s (probe interval ${PROBE_INTERVAL_S} s)`);
    expect(delay).toBeLessThanOrEqual(PROBE_INTERVAL_S + 2);
    await secondaryAgrees(web.fqdn);
  });

  it('a port on the router answered by something other than the pod is not taken as reachable', async () => {
    const s = stack();
    // An impostor on the LAN (pod2) with a self-signed certificate for the pod's own name takes the https port.
    const dir = s.world.mkdir('impostor', 0o755);
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', `/CN=${web.fqdn}`,
      '-addext', `subjectAltName=DNS:${web.fqdn}`, '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { timeout: 20_000 });
    await s.world.start({ name: 'impostor', host: 'pod2', argv: [process.execPath, POD_SERVICE, 'impostor', '9080', '9443', path.join(dir, 'key.pem'), path.join(dir, 'cert.pem')], ready: () => s.world.waitTcp('pod2', '127.0.0.1', 9443) });
    const httpsPort = web.services[1]!.port;
    await removeMapping(s.world, httpsPort, 'TCP', 'pod');
    const m = await s.world.inNs('pod2', ['upnpc', '-u', s.world.igdUrl, '-i', '-e', 'impostor', '-a', s.world.address('pod2'), '9443', String(httpsPort), 'TCP', '600'], { allowFailure: true });
    expect(m.stdout).toContain('is redirected to internal');
    // The impostor really answers there...
    const imp = await curl(s.world, `https://${web.fqdn}:${httpsPort}/`, { resolve: [`${web.fqdn}:${httpsPort}:${ADDR.routerWan}`], insecure: true });
    expect(imp.body).toContain('hello from impostor');
    // ...and the probe does not take it for the pod.
    await waitAnswer(web.fqdn, ADDR.server, (PROBE_INTERVAL_S + 2) * 1000 + 3000);
    const shown = (await s.ctl<{ route_reason: string; probes: { reason: string }[] }>(['show', web.fqdn])).json;
    expect(shown.route_reason).toMatch(/certificate that is not this pod's/);
    await secondaryAgrees(web.fqdn);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
