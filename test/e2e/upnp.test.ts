/**
 * The pod's UPnP side when the router is not cooperative: no gateway at all, a port another device already
 * holds (718), and a router whose public address changes — the tunnel stays up through all of it, and
 * the pod and the server both say why clients take the route they take.
 */
import { describe, expect, it } from 'vitest';
import { ADDR, changeRouterPublicAddress, dig, helperArgv, MINIUPNPD, waitFor } from '../world/index.js';
import { DOMAIN } from '../stack/stack.js';
import { useStack } from '../stack/hooks.js';

let pod: { fqdn: string; services: { port: number; url: string }[] };

async function routeOf(): Promise<{ route: string; route_reason: string; mapping_note: string | null; direct_ipv4: string | null }> {
  return (await stack().ctl<{ route: string; route_reason: string; mapping_note: string | null; direct_ipv4: string | null }>(['show', pod.fqdn])).json;
}

const stack = useStack({ pods: 2, flapWindow: '2s', promptProbe: false }, async (stack) => {
  await stack.startServer();
  const t = (await stack.ctl<{ token: string; ca_pin: string }>(['token', 'create'])).json;
  pod = (await stack.pod<typeof pod>(['setup', '--server', `https://server.${DOMAIN}`, '--token', t.token, '--ca-pin', t.ca_pin, '--protocols', 'tcp', '--ports', '9000'])).json;
  await stack.world.start({ name: 'pod-echo', host: 'pod', argv: helperArgv('serve.mjs', ['echo', '0.0.0.0', 9000]), ready: (d, p) => p.waitLog(d.name, 'listening').then(() => undefined) });
}, 180_000);

describe('UPnP on an uncooperative router', () => {
  it('no gateway: the tunnel works, and the pod and the server say why it is not direct', async () => {
    const s = stack();
    await s.world.stop(MINIUPNPD);
    await s.startPod('pod');
    await waitFor('no gateway logged', async () => s.world.procs.log('pod-pipe2me').includes('no UPnP IGD or NAT-PMP gateway answers'), { timeoutMs: 20_000 });
    const st = await s.pod<{ tunnel: { state: string }; router: { problem: string } }>(['status']);
    expect(st.json.tunnel.state).toBe('up');
    expect(st.json.router.problem).toBe('no UPnP IGD or NAT-PMP gateway found on the LAN');
    await waitFor('server knows', async () => (await routeOf()).mapping_note === 'no UPnP IGD or NAT-PMP gateway found on the LAN', { timeoutMs: 10_000 });
    const probe = await s.ctl<{ results: { reason: string }[] }>(['probe']);
    expect(probe.json.results[0]!.reason).toBe('the pod reported no router mappings');
    await s.world.stop('pod-pipe2me');
    await s.world.start(s.world.procs.get(MINIUPNPD).spec);
  });

  it('a port another device holds (718): reported, the name stays on the server, the tunnel stays up', async () => {
    const s = stack();
    const port = pod.services[0]!.port;
    const taken = await s.world.inNs('pod2', ['upnpc', '-u', s.world.igdUrl, '-i', '-e', 'someone else', '-a', s.world.address('pod2'), '9000', String(port), 'TCP', '600'], { allowFailure: true });
    expect(taken.stdout).toContain('is redirected to internal');
    await s.startPod('pod');
    await waitFor('conflict logged', async () => /could not map router port \d+ .*ConflictInMappingEntry/.test(s.world.procs.log('pod-pipe2me')), { timeoutMs: 20_000 });
    await waitFor('server knows', async () => /ConflictInMappingEntry/.test((await routeOf()).mapping_note ?? ''), { timeoutMs: 10_000 });
    await s.ctl(['probe']);
    const r = await routeOf();
    expect(r.route).toBe('server');
    expect(r.route_reason).toBe('the pod reported no router mappings');
    expect((await s.pod<{ tunnel: { state: string } }>(['status'])).json.tunnel.state).toBe('up');
    // The other device lets go; at its next lease renewal the pod maps the port and goes direct.
    await s.world.inNs('pod2', ['upnpc', '-u', s.world.igdUrl, '-i', '-d', String(port), 'TCP'], { allowFailure: true });
    await s.world.restart('pod-pipe2me');
    await waitFor('mapped', async () => (await stack().ctl<{ mappings: unknown[] }>(['show', pod.fqdn])).json.mappings.length === 1, { timeoutMs: 20_000 });
    await s.ctl(['probe']);
    expect((await routeOf()).route).toBe('direct');
  });

  it('a new public address on the router: the probe verifies it there and DNS follows', async () => {
    const s = stack();
    await changeRouterPublicAddress(s.world);
    try {
      // The pod reconnects from the new address (the server sees it there) and its mapping works there.
      await waitFor('seen at the new address', async () => {
        const v = await s.pod<{ online: { from: string } | null }>(['verify'], { allowFailure: true });
        return v.json?.online?.from === ADDR.routerWanAlt;
      }, { timeoutMs: 20_000 });
      await s.ctl(['probe']);
      const r = await routeOf();
      expect(r.route).toBe('direct');
      expect(r.direct_ipv4).toBe(ADDR.routerWanAlt);
      const d = await dig(s.world, { server: ADDR.server, name: pod.fqdn });
      expect(d.answers[0]?.data).toBe(ADDR.routerWanAlt);
    } finally {
      await changeRouterPublicAddress(s.world, ADDR.routerWan);
    }
  }, 60_000);
});
