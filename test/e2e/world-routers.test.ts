/**
 * The test world's other routers, end to end: one that speaks NAT-PMP only (natpmpc), one that speaks
 * UPnP only, an IPv6 LAN (2001:db8:77::/64) behind a stateful filter that only miniupnpd's IGD2
 * pinholes open (upnpc -6), and an IPv6-only uplink. Real daemons and tools, no mocks. The exact
 * outputs these tests pin down are written up in test/world/README.md.
 */
import * as fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import {
  ADDR,
  ADDR6,
  IGD6_URL,
  IGD_URL,
  MINIUPNPD,
  World,
  cutPodLink,
  forgetAllMappings,
  hexToIpv6,
  listNamespaces,
  listPinholes,
  podAddress6,
  recordFile,
  removePinholes,
  restartDaemon,
  restorePodLink,
  tcpExchange,
  waitFor,
  worldRoot,
  type HostName,
  whoamiSpec as whoami,
  whoamiPeer as peerOf,
} from '../world/index.js';

const WHOAMI_PORT = 7000;
const POD_PORT = 8080;



async function natpmpc(world: World, args: string[], from: HostName = 'pod') {
  return world.inNs(from, ['natpmpc', '-g', ADDR.routerLan, ...args], { timeout: 10_000, allowFailure: true });
}

async function upnpc(world: World, args: string[], from: HostName = 'pod') {
  return world.inNs(from, ['upnpc', '-u', IGD_URL, '-i', ...args], { timeout: 10_000, allowFailure: true });
}

/** upnpc over IPv6 to the IGD: the only way miniupnpd lets a pod open a pinhole to itself. */
async function upnpc6(world: World, args: string[], from: HostName = 'pod') {
  return world.inNs(from, ['upnpc', '-6', '-u', IGD6_URL, ...args], { timeout: 10_000, allowFailure: true });
}

async function addPinhole(world: World, port: number, opts: { from?: HostName; remote?: string; lease?: number; proto?: 'TCP' | 'UDP'; internal?: string } = {}) {
  const from = opts.from ?? 'pod';
  const r = await upnpc6(world, ['-A', opts.remote ?? '', '0', opts.internal ?? world.address6(from), String(port), opts.proto ?? 'TCP', String(opts.lease ?? 600)], from);
  const id = /Pinhole ID = (\d+)/.exec(r.output)?.[1];
  return { ...r, id: id === undefined ? undefined : Number(id) };
}

async function leftovers(world: World): Promise<string[]> {
  const left: string[] = [];
  for (const n of await listNamespaces()) if (n.startsWith(`${world.prefix}-`)) left.push(`namespace ${n}`);
  if (fs.existsSync(worldRoot(world.prefix))) left.push('root directory');
  if (fs.existsSync(recordFile(world.prefix))) left.push('record');
  return left;
}

function dumpOnFailure(world: () => World | undefined) {
  return (ctx: TestContext) => {
    const w = world();
    if (ctx.task.result?.state === 'fail' && w && !w.destroyed) console.error(w.dumpLogs(30));
  };
}

// ====================================================================================== NAT-PMP only

describe('a router that speaks NAT-PMP only', () => {
  let world: World;

  beforeAll(async () => {
    world = await World.create({ routerProtocols: { upnp: false, natpmp: true } });
    await world.start(whoami('pod-whoami', 'pod', '0.0.0.0', POD_PORT));
  });
  afterEach(dumpOnFailure(() => world));
  afterAll(async () => {
    await world?.destroy();
    expect(await leftovers(world)).toEqual([]);
  });

  it('comes up once forwarding is enabled and NAT-PMP listens, with nothing on the IGD port', async () => {
    expect(world.upnp?.protocols).toEqual({ upnp: false, natpmp: true });
    expect(world.timings.upMs).toBeLessThan(5000);
    const conf = fs.readFileSync(world.upnp!.configFile, 'utf8');
    expect(conf).toContain('enable_upnp=no\n');
    expect(conf).toContain('enable_natpmp=yes\n');
    const log = world.procs.log(MINIUPNPD);
    expect(log).toContain('Port forwarding is now enabled');
    expect(log).toContain('Listening for NAT-PMP/PCP traffic on port 5351');
    expect(log).not.toContain('HTTP listening');
    const igd = await tcpExchange(world, { from: 'pod', address: ADDR.routerLan, port: 5000, timeoutMs: 1500 });
    expect(igd.code).toBe('ECONNREFUSED');
  });

  it('has no IGD for upnpc: exit 1, "No valid UPNP Internet Gateway Device found."', async () => {
    const r = await upnpc(world, ['-s']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe('connect: Connection refused\nNo valid UPNP Internet Gateway Device found.\n');
    expect(r.stdout).not.toContain('ExternalIPAddress');
  });

  it('tells the pod its public address', async () => {
    const r = await natpmpc(world, []);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('Public IP address : 203.0.113.2\n');
    expect(r.stdout).toMatch(/^epoch = \d+$/m);
  });

  it('maps a public port to the pod, the client reaches it with its own address, lifetime 0 removes it', async () => {
    expect((await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18080, timeoutMs: 1500 })).code).toBe('ECONNREFUSED');
    const add = await natpmpc(world, ['-a', '18080', String(POD_PORT), 'tcp', '3600']);
    expect(add.exitCode).toBe(0);
    expect(add.stdout).toContain(`Mapped public port 18080 protocol TCP to local port ${POD_PORT} liftime 3600\n`);
    const r = await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18080, until: '\n' });
    expect(peerOf(r.received)).toBe(ADDR.client);
    // In miniupnpd it is an ordinary redirect, described "NAT-PMP <port> <proto>".
    const rules = await world.inNs('rtr', ['nft', 'list', 'chain', 'inet', 'filter', 'prerouting_miniupnpd']);
    expect(rules.stdout).toContain(`th dport 18080 dnat ip to ${ADDR.pod}:${POD_PORT}`);

    const del = await natpmpc(world, ['-a', '18080', String(POD_PORT), 'tcp', '0']);
    expect(del.exitCode).toBe(0);
    expect(del.stdout).toContain(`Mapped public port 0 protocol TCP to local port ${POD_PORT} liftime 0\n`);
    // Without a mapping the router's own TCP stack answers: a RST, not silence.
    expect((await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18080, timeoutMs: 1500 })).code).toBe('ECONNREFUSED');
  });

  it('answers a public port the rules forbid with the next allowed one, and refuses only private port 0', async () => {
    // 22 is not allowed; miniupnpd walks up to the next allowed public port, 80, and says so.
    const low = await natpmpc(world, ['-a', '22', String(POD_PORT), 'tcp', '60']);
    expect(low.exitCode).toBe(0);
    expect(low.stdout).toContain(`Mapped public port 80 protocol TCP to local port ${POD_PORT} liftime 60\n`);
    expect(peerOf((await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 80, until: '\n' })).received)).toBe(ADDR.client);
    await natpmpc(world, ['-a', '0', String(POD_PORT), 'tcp', '0']);

    const refused = await natpmpc(world, ['-a', '18095', '0', 'tcp', '3600']);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain('readnatpmpresponseorretry() failed : not authorized');
    expect(refused.stdout).toContain('readnatpmpresponseorretry returned -51 (FAILED)');
  });

  it('forgetAllMappings restarts the NAT-PMP-only router clean', async () => {
    await natpmpc(world, ['-a', '18081', String(POD_PORT), 'tcp', '3600']);
    await forgetAllMappings(world);
    expect((await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18081, timeoutMs: 1500 })).connected).toBe(false);
    expect((await natpmpc(world, ['-a', '18081', String(POD_PORT), 'tcp', '3600'])).stdout).toContain('Mapped public port 18081 ');
    expect(peerOf((await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18081, until: '\n' })).received)).toBe(ADDR.client);
  });
});

describe('a router that speaks UPnP only', () => {
  it('refuses NAT-PMP at once (port unreachable) and maps with UPnP', async () => {
    const world = await World.create({ routerProtocols: { upnp: true, natpmp: false } });
    try {
      expect(fs.readFileSync(world.upnp!.configFile, 'utf8')).toContain('enable_natpmp=no\n');
      const r = await natpmpc(world, []);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain('readnatpmpresponseorretry() failed : the gateway does not support nat-pmp');
      expect(r.stdout).toContain('readnatpmpresponseorretry returned -7 (FAILED)');
      expect((await upnpc(world, ['-s'])).stdout).toContain(`ExternalIPAddress = ${ADDR.routerWan}`);
    } finally {
      await world.destroy();
    }
    expect(await leftovers(world)).toEqual([]);
  });

  it('is refused as a World option when the router would speak nothing', async () => {
    await expect(World.create({ routerProtocols: { upnp: false, natpmp: false }, log: null })).rejects.toThrow(/must speak UPnP or NAT-PMP/);
  });
});

// ================================================================================ IPv6 LAN, pinholes

describe('a world with an IPv6 LAN (lan6)', () => {
  let world: World;
  const pod6 = ADDR6.pod;
  const pod26 = podAddress6(2);

  beforeAll(async () => {
    world = await World.create({ lan6: true, pods: 2 });
    await Promise.all([
      world.start(whoami('srv-whoami', 'srv', '::', WHOAMI_PORT)),
      world.start(whoami('pod-whoami', 'pod', '::', POD_PORT)),
      world.start(whoami('pod2-whoami', 'pod2', '::', POD_PORT)),
    ]);
  });
  afterEach(dumpOnFailure(() => world));
  afterAll(async () => {
    await world?.destroy();
    expect(await leftovers(world)).toEqual([]);
  });

  it('gives the LAN 2001:db8:77::/64 and routes it, and comes up as fast as before', async () => {
    expect(world.timings.upMs).toBeLessThan(5000);
    expect(world.lan6).toBe(true);
    expect(world.igd6Url).toBe('http://[2001:db8:77::1]:5000/rootDesc.xml');
    expect(world.upnp?.igd6Url).toBe(IGD6_URL);
    expect([world.address6('pod'), world.address6('pod2'), world.address6('rtr'), world.address6('cli')]).toEqual([
      '2001:db8:77::10',
      '2001:db8:77::11',
      ADDR6.routerWan,
      ADDR6.client,
    ]);
    const show = async (host: HostName, dev: string) => (await world.inNs(host, ['ip', '-6', '-o', 'address', 'show', 'dev', dev, 'scope', 'global'])).stdout;
    expect(await show('rtr', 'lan0')).toContain(`${ADDR6.routerLan}/64`);
    expect(await show('pod', 'eth0')).toContain(`${pod6}/64`);
    expect(await show('pod2', 'eth0')).toContain(`${pod26}/64`);
    expect((await world.inNs('pod', ['ip', '-6', 'route', 'show', 'default'])).stdout).toContain(`default via ${ADDR6.routerLan} dev eth0`);
    expect((await world.inNs('cli', ['ip', '-6', 'route', 'show', '2001:db8:77::/64'])).stdout).toContain(`via ${ADDR6.routerWan}`);
    expect(world.procs.log(MINIUPNPD)).toContain('HTTP IPv6 address given to control points : [2001:db8:77::1]');
  });

  it('routes the pod out over IPv6 without NAT, and still NATs IPv4', async () => {
    const six = await tcpExchange(world, { from: 'pod', address: ADDR6.server, port: WHOAMI_PORT, until: '\n' });
    expect(peerOf(six.received)).toBe(pod6);
    const four = await tcpExchange(world, { from: 'pod', address: ADDR.server, port: WHOAMI_PORT, until: '\n' });
    expect(peerOf(four.received)).toBe(ADDR.routerWan);
    // UPnP over IPv4 is as before.
    const map = await upnpc(world, ['-a', ADDR.pod, String(POD_PORT), '18080', 'TCP', '600']);
    expect(map.stdout).toContain(`external ${ADDR.routerWan}:18080 TCP is redirected to internal ${ADDR.pod}:${POD_PORT}`);
    expect(peerOf((await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18080, until: '\n' })).received)).toBe(ADDR.client);
    expect((await upnpc(world, ['-d', '18080', 'TCP'])).stdout).toContain('UPNP_DeletePortMapping() returned : 0');
  });

  it('drops inbound IPv6 without a pinhole, lets it in through one, and drops it again once deleted', async () => {
    const before = await tcpExchange(world, { from: 'cli', address: pod6, port: POD_PORT, timeoutMs: 1500 });
    expect(before.code).toBe('ETIMEDOUT');

    const add = await addPinhole(world, POD_PORT);
    expect(add.exitCode).toBe(0);
    expect(add.stdout).toMatch(new RegExp(`^AddPinhole: \\(\\[\\]:0 -> \\[${pod6}\\]:${POD_PORT}\\) / Pinhole ID = \\d+$`, 'm'));
    const r = await tcpExchange(world, { from: 'cli', address: pod6, port: POD_PORT, until: '\n' });
    expect(r.connected).toBe(true);
    expect(peerOf(r.received)).toBe(ADDR6.client);

    // Nothing else got in: the other pod's same port stays shut.
    expect((await tcpExchange(world, { from: 'cli', address: pod26, port: POD_PORT, timeoutMs: 1200 })).code).toBe('ETIMEDOUT');

    const del = await upnpc6(world, ['-D', String(add.id)]);
    expect(del.stdout).toContain('UPNP_DeletePinhole() returned : 0\n');
    expect((await tcpExchange(world, { from: 'cli', address: pod6, port: POD_PORT, timeoutMs: 1500 })).code).toBe('ETIMEDOUT');
    const again = await upnpc6(world, ['-D', String(add.id)]);
    expect(again.stdout).toContain('UPNP_DeletePinhole() returned : 402\n');
  });

  it('a pinhole for one remote host admits only that host', async () => {
    const add = await addPinhole(world, POD_PORT, { remote: ADDR6.client });
    expect(add.stdout).toContain(`AddPinhole: ([${ADDR6.client}]:0 -> [${pod6}]:${POD_PORT}) / Pinhole ID = ${add.id}`);
    expect(peerOf((await tcpExchange(world, { from: 'cli', address: pod6, port: POD_PORT, until: '\n' })).received)).toBe(ADDR6.client);
    expect((await tcpExchange(world, { from: 'ns2', address: pod6, port: POD_PORT, timeoutMs: 1200 })).code).toBe('ETIMEDOUT');
    const [p] = (await listPinholes(world)).filter((x) => x.id === add.id);
    expect(p).toMatchObject({ internalAddress: pod6, internalPort: POD_PORT, protocol: 'TCP', remoteAddress: ADDR6.client, pod: 'pod' });
    await removePinholes(world, { pod: 'pod' });
  });

  it('refuses ports below 1024 (80 and 443 too), other hosts, leases outside 1..86400, and requests over IPv4', async () => {
    for (const port of [80, 443, 1023]) {
      expect((await addPinhole(world, port)).stdout).toContain(`AddPinhole([]:0 -> [${pod6}]:${port}) failed with code 606 (Action not authorized)`);
    }
    expect((await addPinhole(world, POD_PORT, { internal: pod26 })).stdout).toContain(`AddPinhole([]:0 -> [${pod26}]:${POD_PORT}) failed with code 606 (Action not authorized)`);
    expect((await addPinhole(world, 9000, { lease: 0 })).stdout).toContain('failed with code 402 (Invalid Args)');
    expect((await addPinhole(world, 9000, { lease: 86401 })).stdout).toContain('failed with code 402 (Invalid Args)');
    // Over the IPv4 URL the request comes from 192.168.77.10, which is not the pinhole's client.
    const v4 = await world.inNs('pod', ['upnpc', '-6', '-u', IGD_URL, '-A', '', '0', pod6, '9001', 'TCP', '60'], { timeout: 10_000, allowFailure: true });
    expect(v4.stdout).toContain(`AddPinhole([]:0 -> [${pod6}]:9001) failed with code 606 (Action not authorized)`);
    // Every refusal above still exits 0.
    expect(v4.exitCode).toBe(0);
    expect((await listPinholes(world)).filter((p) => p.internalPort !== POD_PORT)).toEqual([]);
  });

  it('renews with UpdatePinhole, lists leases, and a pinhole expires on its own', async () => {
    const max = await addPinhole(world, 9002, { lease: 86400 });
    expect(max.id).toBeGreaterThan(0);
    const a = await addPinhole(world, 9003, { lease: 600 });
    const listed = (await listPinholes(world)).find((p) => p.id === a.id)!;
    expect(listed.leaseLeft).toBeGreaterThan(590);
    expect(listed.leaseLeft).toBeLessThanOrEqual(600);

    const upd = await upnpc6(world, ['-U', String(a.id), '3600']);
    expect(upd.stdout).toContain(`CheckPinholeWorking() failed with code 709 (NoPacketSent)\nUpdatePinhole: Pinhole ID = ${a.id} with Lease Time: 3600\n`);
    expect(upd.stdout).not.toContain('UpdatePinhole: ID (');
    expect((await listPinholes(world)).find((p) => p.id === a.id)!.leaseLeft).toBeGreaterThan(3590);
    const none = await upnpc6(world, ['-U', '999', '60']);
    expect(none.stdout).toContain('CheckPinholeWorking() failed with code 402 (Invalid Args)');
    expect(none.stdout).not.toContain('UpdatePinhole:');

    const short = await addPinhole(world, 9004, { lease: 1 });
    expect(short.id).toBeGreaterThan(0);
    await waitFor('the 1 s pinhole to expire', async () => !(await listPinholes(world)).some((p) => p.id === short.id), { timeoutMs: 4000 });
    expect(world.procs.log(MINIUPNPD)).toMatch(new RegExp(`removing expired pinhole 'pinhole-${short.id} ts-\\d+: IGD2 pinhole'`));
    await removePinholes(world);
    expect(await listPinholes(world)).toEqual([]);
  });

  it('puts each pinhole in miniupnpd chain as an accept rule that p2m_fw admits by mark', async () => {
    const a = await addPinhole(world, POD_PORT);
    const chain = await world.inNs('rtr', ['nft', 'list', 'chain', 'inet', 'filter', 'miniupnpd']);
    expect(chain.stdout).toContain(`iif "wan0" th dport ${POD_PORT} @nh,192,128 0x20010db8007700000000000000000010 @nh,48,8 0x6 accept`);
    expect(hexToIpv6('0x20010db8007700000000000000000010')).toBe(pod6);
    const fw = await world.inNs('rtr', ['nft', 'list', 'table', 'inet', 'p2m_fw']);
    expect(fw.stdout).toContain('iifname "wan0" oifname "lan0" meta nfproto ipv6 meta mark 0x00007032 accept');
    await upnpc6(world, ['-D', String(a.id)]);
  });

  it('removePinholes loses the pod pinholes: connections time out, -U finds nothing, adding again works', async () => {
    const a = await addPinhole(world, POD_PORT);
    const b = await addPinhole(world, POD_PORT, { from: 'pod2' });
    expect(peerOf((await tcpExchange(world, { from: 'cli', address: pod26, port: POD_PORT, until: '\n' })).received)).toBe(ADDR6.client);

    const removed = await removePinholes(world, { pod: 'pod' });
    expect(removed.map((p) => p.id)).toEqual([a.id]);
    expect((await tcpExchange(world, { from: 'cli', address: pod6, port: POD_PORT, timeoutMs: 1500 })).code).toBe('ETIMEDOUT');
    expect((await upnpc6(world, ['-U', String(a.id), '600'])).stdout).toContain('CheckPinholeWorking() failed with code 402 (Invalid Args)');
    // pod2 kept its own.
    expect(peerOf((await tcpExchange(world, { from: 'cli', address: pod26, port: POD_PORT, until: '\n' })).received)).toBe(ADDR6.client);

    const again = await addPinhole(world, POD_PORT);
    expect(again.id).toBeGreaterThan(0);
    expect(peerOf((await tcpExchange(world, { from: 'cli', address: pod6, port: POD_PORT, until: '\n' })).received)).toBe(ADDR6.client);
    expect((await removePinholes(world)).map((p) => p.id).sort()).toEqual([again.id, b.id].sort());
  });

  it('keeps pinholes over a miniupnpd restart (the router keeps its rules), and loses them on forgetAllMappings', async () => {
    await addPinhole(world, POD_PORT);
    await restartDaemon(world, MINIUPNPD);
    expect(peerOf((await tcpExchange(world, { from: 'cli', address: pod6, port: POD_PORT, until: '\n' })).received)).toBe(ADDR6.client);
    await forgetAllMappings(world);
    expect(await listPinholes(world)).toEqual([]);
    expect((await tcpExchange(world, { from: 'cli', address: pod6, port: POD_PORT, timeoutMs: 1500 })).code).toBe('ETIMEDOUT');
  });

  it('cutPodLink silences the pod IPv6 address too', async () => {
    const a = await addPinhole(world, POD_PORT);
    await cutPodLink(world);
    try {
      const [out, inbound] = await Promise.all([
        tcpExchange(world, { from: 'pod', address: ADDR6.server, port: WHOAMI_PORT, timeoutMs: 1200 }),
        tcpExchange(world, { from: 'cli', address: pod6, port: POD_PORT, timeoutMs: 1200 }),
      ]);
      expect(out.code).toBe('ETIMEDOUT');
      expect(inbound.code).toBe('ETIMEDOUT');
    } finally {
      await restorePodLink(world);
    }
    expect(peerOf((await tcpExchange(world, { from: 'pod', address: ADDR6.server, port: WHOAMI_PORT, until: '\n' })).received)).toBe(pod6);
    await upnpc6(world, ['-D', String(a.id)]);
  });
});

describe('an IPv6 LAN without miniupnpd', () => {
  it('lets nothing in', async () => {
    const world = await World.create({ lan6: true, upnp: false });
    try {
      await world.start(whoami('pod-whoami', 'pod', '::', POD_PORT));
      expect((await tcpExchange(world, { from: 'cli', address: ADDR6.pod, port: POD_PORT, timeoutMs: 1500 })).code).toBe('ETIMEDOUT');
      expect(await listPinholes(world)).toEqual([]);
    } finally {
      await world.destroy();
    }
  });
});

// ================================================================================== IPv6-only uplink

describe('an IPv6-only router (routerIpv4: false)', () => {
  let world: World;

  beforeAll(async () => {
    world = await World.create({ lan6: true, routerIpv4: false });
    await Promise.all([world.start(whoami('srv-whoami', 'srv', '::', WHOAMI_PORT)), world.start(whoami('pod-whoami', 'pod', '::', POD_PORT))]);
  });
  afterEach(dumpOnFailure(() => world));
  afterAll(async () => {
    await world?.destroy();
    expect(await leftovers(world)).toEqual([]);
  });

  it('has no IPv4 on the WAN and no IPv4 route off the LAN; the pod keeps its LAN address', async () => {
    expect(world.routerIpv4).toBe(false);
    expect((await world.inNs('rtr', ['ip', '-4', '-o', 'address', 'show', 'dev', 'wan0'])).stdout).toBe('');
    expect((await world.inNs('pod', ['ip', '-4', '-o', 'address', 'show', 'dev', 'eth0'])).stdout).toContain(`${ADDR.pod}/24`);
    expect(() => world.address('rtr')).toThrow(/routerIpv4: false/);
    expect(() => world.routerPublicAddress).toThrow(/routerIpv4: false/);
    expect((await world.inNs('rtr', ['nft', 'list', 'tables'])).stdout).not.toContain('p2m_nat');
    expect(world.procs.has('stund')).toBe(false);
  });

  it('reaches the server over IPv6 only', async () => {
    const four = await tcpExchange(world, { from: 'pod', address: ADDR.server, port: WHOAMI_PORT, timeoutMs: 1500 });
    expect(four.connected).toBe(false);
    expect(four.code).toBe('ENETUNREACH');
    const six = await tcpExchange(world, { from: 'pod', address: ADDR6.server, port: WHOAMI_PORT, until: '\n' });
    expect(peerOf(six.received)).toBe(ADDR6.pod);
  });

  it('still serves pinholes (miniupnpd runs without STUN), and has no public IPv4 address to tell', async () => {
    expect(world.procs.log(MINIUPNPD)).not.toContain('Port forwarding is now enabled');
    const a = await addPinhole(world, POD_PORT);
    expect(a.id).toBeGreaterThan(0);
    expect(peerOf((await tcpExchange(world, { from: 'cli', address: ADDR6.pod, port: POD_PORT, until: '\n' })).received)).toBe(ADDR6.client);
    const status = await upnpc6(world, ['-s']);
    expect(status.stdout).toContain('GetExternalIPAddress failed. (empty string)');
    const pmp = await natpmpc(world, []);
    expect(pmp.exitCode).toBe(1);
    expect(pmp.stdout).toContain('readnatpmpresponseorretry returned -52 (FAILED)');
    await removePinholes(world);
  });
});
