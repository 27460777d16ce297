/**
 * The IPv6 direct route on a dual-stack network: the pod's LAN has a routed prefix behind a router whose
 * IPv6 filter drops everything inbound except miniupnpd's IGD2 pinholes. The pod opens a pinhole per
 * port at its own address and reports the address from that address; the probe tests every port over
 * IPv6 as the pod; AAAA follows that decision and A its own; an address the pod does not hold is never
 * published.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ADDR, ADDR6, curl, dig, listPinholes, podAddress6, removePinholes, waitFor } from '../world/index.js';
import { DOMAIN, POD_SERVICE } from '../stack/stack.js';
import { useStack } from '../stack/hooks.js';

interface Setup { name: string; fqdn: string; services: { protocol: string; port: number; url: string }[] }
let tcp: Setup;
let web: Setup;

interface ShowJson {
  route: string;
  route6: string;
  route6_reason: string | null;
  direct_ipv6: string | null;
  reported_ipv6: string | null;
  ipv6_note: string | null;
  mappings: { family: number; external_port: number; via: string }[];
}
interface ProbeJson { results: { name: string; family: number; route: string; reason: string; address: string | null }[] }

const POD6 = podAddress6(1);

const stack = useStack({ lan6: true, ipv6: true, pods: 2, flapWindow: '1s', promptProbe: false }, async (stack) => {
  await stack.startServer();
  const t = (await stack.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--max-ports', '4'])).json;
  const setup = ['setup', '--server', `https://server.${DOMAIN}`, '--token', t.token, '--ca-pin', t.ca_pin];
  tcp = (await stack.pod<Setup>([...setup, '--protocols', 'tcp', '--ports', '8080'])).json;
  web = (await stack.pod<Setup>([...setup, '--protocols', 'http,https', '--ports', '8080,8443'], { host: 'pod2' })).json;
  // The tcp pod's service is an http server (so curl can show whom it sees) on every address of both families.
  await stack.world.start({ name: 'pod-service', host: 'pod', argv: [process.execPath, POD_SERVICE, 'pod', '8080', '', '', '', '::'], ready: () => stack.world.waitTcp('pod', '127.0.0.1', 8080) });
  await stack.startPodService('pod2');
  await stack.startPod('pod', ['--igd6', stack.world.igd6Url]);
  await stack.startPod('pod2', ['--igd6', stack.world.igd6Url]);
});

const show = async (s: Setup) => (await stack().ctl<ShowJson>(['show', s.name])).json;
const record = async (s: Setup, type: 'A' | 'AAAA') => (await dig(stack().world, { server: ADDR.server, name: s.fqdn, type })).answers.find((a) => a.type === type)?.data;
const probe = async () => (await stack().ctl<ProbeJson>(['probe'])).json.results;
const result = (r: ProbeJson['results'], s: Setup, family: number) => r.find((x) => x.name === s.name && x.family === family)!;
const port = (s: Setup) => s.services[0]!.port;

describe('the IPv6 direct route through a router that opens only its pinholes', () => {
  it('the pod opens a pinhole for its port at its own address and reports the address from there', async () => {
    await waitFor('the IPv6 report', async () => {
      const v = await show(tcp);
      return v.reported_ipv6 === POD6 && v.mappings.some((m) => m.family === 6 && m.external_port === port(tcp) && m.via === 'pinhole');
    }, { timeoutMs: 30_000, intervalMs: 300 });
    const holes = await listPinholes(stack().world);
    expect(holes.filter((h) => h.internalAddress === POD6).map((h) => h.internalPort)).toEqual([port(tcp)]);
    const st = await stack().pod<{ ipv6: { address: string; openings: { port: number; ok: boolean; via: string }[] } }>(['status']);
    expect(st.json.ipv6.address).toBe(POD6);
    expect(st.json.ipv6.openings).toEqual([expect.objectContaining({ port: port(tcp), ok: true, via: 'pinhole' })]);
    // Before a probe, AAAA is the server's own.
    expect(await record(tcp, 'AAAA')).toBe(ADDR6.server);
  });

  it('the probe verifies the port over IPv6 as the pod: AAAA answers the pod, A follows its own decision', async () => {
    const r = await probe();
    expect(result(r, tcp, 6), JSON.stringify(result(r, tcp, 6))).toMatchObject({ route: 'direct', address: POD6 });
    expect(result(r, tcp, 4).route).toBe('direct'); // UPnP maps it on the router for IPv4
    await waitFor('AAAA at the pod', async () => (await record(tcp, 'AAAA')) === POD6, { timeoutMs: 10_000 });
    expect(await record(tcp, 'A')).toBe(ADDR.routerWan);
    // A client over IPv6 reaches the pod straight: the pod's service sees the client's own address.
    const c = await curl(stack().world, `http://${tcp.fqdn}:${port(tcp)}/`, { resolve: [`${tcp.fqdn}:${port(tcp)}:[${POD6}]`], extraArgs: ['-6'] });
    expect(c.status, c.error).toBe(200);
    expect(c.body).toContain(`peer ${ADDR6.client}`);
    const text = await stack().ctl(['show', tcp.name], { json: false });
    expect(text.stdout).toContain(`route IPv6 (AAAA): direct to the pod's own address ${POD6}`);
  });

  it('a web pod cannot open 80 and 443 (the router refuses pinholes below 1024): its AAAA stays on the server, and both sides say why', async () => {
    await waitFor('the web pod reported', async () => (await show(web)).ipv6_note !== null, { timeoutMs: 30_000, intervalMs: 300 });
    expect((await show(web)).ipv6_note).toMatch(/80: the router refuses IPv6 pinholes for ports below 1024/);
    const r = await probe();
    expect(result(r, web, 6).route).toBe('server');
    expect(result(r, web, 6).reason).toMatch(/not every port is open at the pod's IPv6 address \(missing 80, 443\)/);
    expect(await record(web, 'AAAA')).toBe(ADDR6.server);
  });

  it('a pinhole lost on the router: AAAA goes back to the server, A stays where its own decision put it', async () => {
    await removePinholes(stack().world, { pod: 'pod' });
    const r = await probe();
    expect(result(r, tcp, 6).route).toBe('server');
    expect(result(r, tcp, 4).route).toBe('direct');
    await waitFor('AAAA back at the server', async () => (await record(tcp, 'AAAA')) === ADDR6.server, { timeoutMs: 10_000 });
    expect(await record(tcp, 'A')).toBe(ADDR.routerWan);
  });

  it('an IPv6 address the pod does not hold — another host that answers on the same port — is refused and never published', async () => {
    // ns2 answers on the pod's public port with the same service.
    await stack().world.start({ name: 'ns2-service', host: 'ns2', argv: [process.execPath, POD_SERVICE, 'pod', String(port(tcp)), '', '', '', '::'], ready: () => stack().world.waitTcp('ns2', '127.0.0.1', port(tcp)) });
    // The pod's own credentials, a report naming ns2's address, sent from the pod (headers and body in files: no secret on a command line).
    const dir = stack().podDir('pod');
    const secret = fs.readFileSync(path.join(dir, 'secret'), 'utf8').trim();
    const id = (JSON.parse(fs.readFileSync(path.join(dir, 'pod.json'), 'utf8')) as { id: string }).id;
    const hdr = path.join(dir, 'impostor.headers');
    const body = path.join(dir, 'impostor.json');
    fs.writeFileSync(hdr, `Authorization: Bearer ${secret}\nContent-Type: application/json\n`, { mode: 0o600 });
    const report = (what: unknown) => {
      fs.writeFileSync(body, JSON.stringify(what));
      return curl(stack().world, `https://server.${DOMAIN}/v1/subdomains/${id}/ipv6`, { from: 'pod', method: 'PUT', cacert: stack().caFile(), extraArgs: ['-H', `@${hdr}`, '--data-binary', `@${body}`] });
    };
    try {
      const c = await report({ address: ADDR6.ns2, openings: [{ port: port(tcp), via: 'open' }] });
      expect(c.status).toBe(403);
      expect(c.body).toMatch(/address_not_proven/);
      // Nor anything that is not a global unicast address, nor what is not an address at all: clear errors.
      const local = await report({ address: 'fe80::1', openings: [{ port: port(tcp), via: 'open' }] });
      expect(local.status).toBe(400);
      expect(local.body).toMatch(/address_not_publishable.*link-local/);
      const junk = await report({ address: '2001:db8::1\nevil', openings: [] });
      expect(junk.status).toBe(400);
      const other = await report({ address: POD6, openings: [{ port: 22, via: 'open' }] });
      expect(other.status).toBe(400);
      expect(other.body).toMatch(/mapping_not_yours/);
    } finally {
      fs.rmSync(hdr, { force: true });
      fs.rmSync(body, { force: true });
    }
    expect((await show(tcp)).reported_ipv6).toBe(POD6);
    const r = await probe();
    expect(result(r, tcp, 6).address).not.toBe(ADDR6.ns2);
    expect(await record(tcp, 'AAAA')).not.toBe(ADDR6.ns2);
    await stack().world.stop('ns2-service');
  });

  it('pinholes are renewed at half their lease (same pinhole, past its first lease) and removed on stop', async () => {
    await stack().world.stop('pod-pipe2me');
    await stack().startPod('pod', ['--igd6', stack().world.igd6Url, '--upnp-lease', '10']);
    let first = 0;
    await waitFor('a pinhole', async () => {
      const h = (await listPinholes(stack().world)).find((x) => x.internalAddress === POD6);
      first = h?.id ?? 0;
      return first > 0;
    }, { timeoutMs: 20_000, intervalMs: 200 });
    await new Promise((r) => setTimeout(r, 13_000)); // past the 10 s lease
    const still = (await listPinholes(stack().world)).filter((x) => x.internalAddress === POD6);
    expect(still.map((h) => h.id)).toEqual([first]);
    expect(stack().world.procs.log('miniupnpd')).toMatch(new RegExp(`updating lease duration to 10 for pinhole with ID: ${first}`));

    // The pod's stop withdraws its address through the API, which answers once DNS has the change: under a
    // loaded machine that takes longer than the world's default 3 s before SIGKILL (systemd gives 30 s).
    await stack().world.procs.stop('pod-pipe2me', { graceMs: 20_000 });
    expect((await listPinholes(stack().world)).filter((x) => x.internalAddress === POD6)).toEqual([]);
    const v = await show(tcp);
    expect(v.reported_ipv6).toBeNull();
    expect(v.mappings.filter((m) => m.family === 6)).toEqual([]);
  });
});
