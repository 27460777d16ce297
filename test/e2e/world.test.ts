/**
 * The test world harness itself, end to end: real namespaces, real daemons (miniupnpd, stund, nsd,
 * openssl s_server), real tools (upnpc, curl, dig, openssl s_client). No mocks.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { run } from '../../src/util/exec.js';
import {
  ADDR,
  IGD_URL,
  MINIUPNPD,
  World,
  WorldSetupError,
  changeRouterPublicAddress,
  connectionCost,
  curl,
  cutPodLink,
  dig,
  currentOwner,
  findLeaks,
  formatLeaks,
  forgetAllMappings,
  helperArgv,
  isPodLinkCut,
  listNamespaces,
  pidsInNetns,
  recordFile,
  removeMapping,
  removeRecord,
  restartDaemon,
  restorePodLink,
  sClient,
  emptyScope,
  sweepNamespaces,
  takeSnapshot,
  tcpExchange,
  userExists,
  waitFor,
  worldRoot,
  worldProcesses,
  writeRecord,
  type HostName,
  type TeardownReport,
  whoamiSpec as whoami,
  whoamiPeer as peerOf,
} from '../world/index.js';

const WHOAMI_PORT = 7000;
const POD_PORT = 8080;



async function upnpc(world: World, args: string[], from: HostName = 'pod') {
  return world.inNs(from, ['upnpc', '-u', IGD_URL, '-i', ...args], { timeout: 10_000, allowFailure: true });
}

async function addMapping(world: World, ext: number, int: number, from: HostName = 'pod') {
  return upnpc(world, ['-e', `test ${ext}`, '-a', world.address(from), String(int), String(ext), 'TCP', '600'], from);
}

/** Everything of a world that must be gone after teardown. */
async function leftovers(prefix: string, inodes: number[], users: string[] = []): Promise<string[]> {
  const left: string[] = [];
  for (const n of await listNamespaces()) if (n.startsWith(`${prefix}-`)) left.push(`namespace ${n}`);
  for (const p of worldProcesses(prefix, inodes)) left.push(`process ${p.pid} (${p.why}): ${p.cmd}`);
  for (const u of users) if (userExists(u)) left.push(`user ${u}`);
  if (fs.existsSync(worldRoot(prefix))) left.push(`directory ${worldRoot(prefix)}`);
  if (fs.existsSync(recordFile(prefix))) left.push(`record ${recordFile(prefix)}`);
  if (fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(`/run/netns/${prefix}-`)) left.push('netns mounts');
  return left;
}

function dumpOnFailure(world: () => World | undefined) {
  return (ctx: TestContext) => {
    const w = world();
    if (ctx.task.result?.state === 'fail' && w && !w.destroyed) console.error(w.dumpLogs(30));
  };
}

// ================================================================================= one shared world

describe('a world', () => {
  let world: World;
  let hostBefore: string;

  /** The host namespace's links, addresses, routes and firewall: the world must not change them. */
  async function hostState(): Promise<string> {
    const parts = await Promise.all([
      run('ip', ['-o', 'link', 'show'], { timeout: 5000 }),
      run('ip', ['-o', 'address', 'show'], { timeout: 5000 }),
      run('ip', ['route', 'show', 'table', 'all'], { timeout: 5000 }),
      run('nft', ['list', 'ruleset'], { timeout: 5000 }),
    ]);
    // Address lifetimes count down on their own; everything else must be byte for byte the same.
    return parts.map((p) => p.stdout.replace(/(valid|preferred)_lft \S+/g, '')).join('\n');
  }

  beforeAll(async () => {
    hostBefore = await hostState();
    world = await World.create();
    await Promise.all([
      world.start(whoami('srv-whoami', 'srv', ADDR.server, WHOAMI_PORT)),
      world.start(whoami('pod-whoami', 'pod', '0.0.0.0', POD_PORT)),
    ]);
  });
  afterEach(dumpOnFailure(() => world));
  afterAll(async () => {
    await world?.destroy();
  });

  it('comes up quickly and reports its timings', () => {
    expect(world.timings.upMs).toBeGreaterThan(0);
    expect(world.timings.upMs).toBeLessThan(5000);
    expect(world.timings.phases['topology']).toBeGreaterThan(0);
    expect(world.timings.phases['upnp']).toBeGreaterThan(0);
  });

  it('lives in namespaces with its own prefix and leaves the host namespace alone', async () => {
    expect(world.prefix).toMatch(/^p2m-[0-9a-f]{6}$/);
    const names = await listNamespaces();
    for (const h of ['hub', 'srv', 'rtr', 'pod', 'cli', 'ns2'] as const) expect(names).toContain(`${world.prefix}-${h}`);
    expect(await hostState()).toBe(hostBefore);
  });

  it('has a root directory sshd StrictModes accepts: root-owned, 0755 up to /, not under /tmp', () => {
    expect(world.root).toBe(`/run/pipe2me-worlds/${world.prefix}`);
    for (let p = world.root; p !== '/'; p = path.dirname(p)) {
      const st = fs.statSync(p);
      expect({ p, uid: st.uid, writableByOthers: (st.mode & 0o022) !== 0 }).toEqual({ p, uid: 0, writableByOthers: false });
    }
    expect((fs.statSync(world.root).mode & 0o777).toString(8)).toBe('755');
  });

  it('gives each host its address', async () => {
    const show = async (host: HostName, dev: string) => (await world.inNs(host, ['ip', '-4', '-o', 'address', 'show', 'dev', dev])).stdout;
    expect(await show('srv', 'wan0')).toContain(`${ADDR.server}/24`);
    expect(await show('srv', 'wan0')).toContain(`${ADDR.serverAlt}/24`);
    expect(await show('rtr', 'wan0')).toContain(`${ADDR.routerWan}/24`);
    expect(await show('rtr', 'lan0')).toContain(`${ADDR.routerLan}/24`);
    expect(await show('pod', 'eth0')).toContain(`${ADDR.pod}/24`);
    expect(await show('cli', 'wan0')).toContain(`${ADDR.client}/24`);
    expect(await show('ns2', 'wan0')).toContain(`${ADDR.ns2}/24`);
    expect(world.address('rtr')).toBe(ADDR.routerWan);
  });

  it('NATs the pod: the server sees the router public address', async () => {
    const r = await tcpExchange(world, { from: 'pod', address: ADDR.server, port: WHOAMI_PORT, until: '\n' });
    expect(r.connected).toBe(true);
    expect(peerOf(r.received)).toBe(ADDR.routerWan);
    expect(r.localAddress).toBe(ADDR.pod);
  });

  it('lets the client reach the server with its own address', async () => {
    const r = await tcpExchange(world, { from: 'cli', address: ADDR.server, port: WHOAMI_PORT, until: '\n' });
    expect(peerOf(r.received)).toBe(ADDR.client);
  });

  it('keeps the pod unreachable from the internet without a mapping', async () => {
    const direct = await tcpExchange(world, { from: 'cli', address: ADDR.pod, port: POD_PORT, timeoutMs: 1500 });
    expect(direct.connected).toBe(false);
    expect(direct.code).toBe('ENETUNREACH');
    const viaRouter = await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: POD_PORT, timeoutMs: 1500 });
    expect(viaRouter.connected).toBe(false);
  });

  describe('UPnP', () => {
    it('maps a router port to the pod, and the pod sees the client own address', async () => {
      const before = await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18080, timeoutMs: 1500 });
      expect(before.connected).toBe(false);

      const add = await addMapping(world, 18080, POD_PORT);
      expect(add.output).toContain(`external ${ADDR.routerWan}:18080 TCP is redirected to internal ${ADDR.pod}:${POD_PORT}`);
      const r = await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18080, until: '\n' });
      expect(r.connected).toBe(true);
      expect(peerOf(r.received)).toBe(ADDR.client);

      const list = await upnpc(world, ['-l']);
      expect(list.output).toMatch(new RegExp(`TCP\\s+18080->${ADDR.pod.replaceAll('.', '\\.')}:${POD_PORT}\\s+'test 18080'`));
      await removeMapping(world, 18080);
    });

    it('lets the LAN map the router 80 and 443 but no other low port', async () => {
      expect((await addMapping(world, 80, POD_PORT)).output).toContain('is redirected to internal');
      expect((await addMapping(world, 443, POD_PORT)).output).toContain('is redirected to internal');
      const denied = await addMapping(world, 22, POD_PORT);
      expect(denied.output).toMatch(/failed with code 606/);
      const r = await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 80, until: '\n' });
      expect(peerOf(r.received)).toBe(ADDR.client);
      await removeMapping(world, 80);
      await removeMapping(world, 443);
    });

    it('reports the router public address to the pod', async () => {
      const r = await upnpc(world, ['-s']);
      expect(r.output).toContain(`ExternalIPAddress = ${ADDR.routerWan}`);
    });
  });

  describe('faults', () => {
    it('cutPodLink drops the pod silently (timeouts, no refusal) and restorePodLink undoes it', async () => {
      await addMapping(world, 18081, POD_PORT);
      const ok = await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18081, until: '\n' });
      expect(peerOf(ok.received)).toBe(ADDR.client);

      await cutPodLink(world);
      expect(await isPodLinkCut(world)).toBe(true);
      const [out, inbound, igd] = await Promise.all([
        tcpExchange(world, { from: 'pod', address: ADDR.server, port: WHOAMI_PORT, timeoutMs: 1200 }),
        tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18081, timeoutMs: 1200 }),
        tcpExchange(world, { from: 'pod', address: ADDR.routerLan, port: 5000, timeoutMs: 1200 }),
      ]);
      // Silent: no RST (ECONNREFUSED), no ICMP (EHOSTUNREACH/ENETUNREACH), just nothing.
      expect(out.code).toBe('ETIMEDOUT');
      expect(inbound.code).toBe('ETIMEDOUT');
      expect(igd.code).toBe('ETIMEDOUT');

      await restorePodLink(world);
      expect(await isPodLinkCut(world)).toBe(false);
      const back = await tcpExchange(world, { from: 'pod', address: ADDR.server, port: WHOAMI_PORT, until: '\n' });
      expect(peerOf(back.received)).toBe(ADDR.routerWan);
      const backIn = await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18081, until: '\n' });
      expect(peerOf(backIn.received)).toBe(ADDR.client);
      await removeMapping(world, 18081);
    });

    it('cutPodLink "internet" keeps the LAN and the IGD but drops the internet', async () => {
      await cutPodLink(world, 'pod', 'internet');
      try {
        const out = await tcpExchange(world, { from: 'pod', address: ADDR.server, port: WHOAMI_PORT, timeoutMs: 1200 });
        expect(out.code).toBe('ETIMEDOUT');
        expect((await upnpc(world, ['-s'])).output).toContain('ExternalIPAddress');
      } finally {
        await restorePodLink(world);
      }
      expect((await tcpExchange(world, { from: 'pod', address: ADDR.server, port: WHOAMI_PORT, until: '\n' })).connected).toBe(true);
    });

    it('a silent cut keeps an established connection alive until it is restored', async () => {
      await world.start({ name: 'ticker', host: 'pod', argv: helperArgv('tcp-client.mjs', ['ticker', ADDR.server, WHOAMI_PORT, 100]) });
      await world.procs.waitLog('ticker', /reply "tick 1\\n"/);
      await cutPodLink(world);
      const since = world.procs.logSize('ticker');
      await new Promise((r) => setTimeout(r, 600));
      expect(world.procs.log('ticker', since)).not.toContain('reply');
      expect(world.procs.log('ticker', since)).not.toMatch(/error|closed/);
      await restorePodLink(world);
      // TCP retransmits what was queued; the same connection carries on.
      await world.procs.waitLog('ticker', 'reply', { since, timeoutMs: 5000 });
      expect(world.procs.log('ticker')).not.toMatch(/error|closed/);
      await world.procs.stop('ticker');
    });

    it('restartDaemon gives the daemon a new pid and it serves again', async () => {
      const old = world.procs.get('srv-whoami');
      const fresh = await restartDaemon(world, 'srv-whoami');
      expect(old.running).toBe(false);
      expect(fresh.pid).not.toBe(old.pid);
      expect(fresh.running).toBe(true);
      expect(fresh.generation).toBe(old.generation + 1);
      const r = await tcpExchange(world, { from: 'cli', address: ADDR.server, port: WHOAMI_PORT, until: '\n' });
      expect(peerOf(r.received)).toBe(ADDR.client);
    });

    it('restarting miniupnpd keeps the mappings (they come back from its lease file)', async () => {
      await addMapping(world, 18082, POD_PORT);
      const before = world.procs.get(MINIUPNPD).pid;
      const fresh = await restartDaemon(world, MINIUPNPD);
      expect(fresh.pid).not.toBe(before);
      expect((await upnpc(world, ['-l'])).output).toContain('18082->');
      expect(peerOf((await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18082, until: '\n' })).received)).toBe(ADDR.client);
      await removeMapping(world, 18082);
    });

    it('removeMapping takes a mapping away from the router; adding it again restores it', async () => {
      await addMapping(world, 18083, POD_PORT);
      expect((await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18083, until: '\n' })).connected).toBe(true);
      await removeMapping(world, 18083);
      expect((await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18083, timeoutMs: 1500 })).connected).toBe(false);
      expect((await upnpc(world, ['-l'])).output).not.toContain('18083->');
      const nft = await world.inNs('rtr', ['nft', 'list', 'chain', 'inet', 'filter', 'prerouting_miniupnpd']);
      expect(nft.stdout).not.toContain('dport 18083');
      await addMapping(world, 18083, POD_PORT);
      expect(peerOf((await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18083, until: '\n' })).received)).toBe(ADDR.client);
      await removeMapping(world, 18083);
    });

    it('forgetAllMappings is a router reboot: every mapping is gone, and new ones work', async () => {
      await addMapping(world, 18084, POD_PORT);
      await addMapping(world, 18085, POD_PORT);
      await forgetAllMappings(world);
      const list = await upnpc(world, ['-l']);
      expect(list.output).not.toContain('18084->');
      expect(list.output).not.toContain('18085->');
      expect((await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18084, timeoutMs: 1500 })).connected).toBe(false);
      await addMapping(world, 18084, POD_PORT);
      expect(peerOf((await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18084, until: '\n' })).received)).toBe(ADDR.client);
      await removeMapping(world, 18084);
    });

    it('changeRouterPublicAddress moves NAT, IGD and mappings to the new address; changing back restores them', async () => {
      await addMapping(world, 18086, POD_PORT);
      await world.start({ name: 'ticker2', host: 'pod', argv: helperArgv('tcp-client.mjs', ['ticker', ADDR.server, WHOAMI_PORT, 100]) });
      await world.procs.waitLog('ticker2', /reply "tick 1\\n"/);

      const change = await changeRouterPublicAddress(world, ADDR.routerWanAlt);
      expect(change).toEqual({ previous: ADDR.routerWan, current: ADDR.routerWanAlt });
      expect(world.routerPublicAddress).toBe(ADDR.routerWanAlt);
      // New connections leave from the new address.
      expect(peerOf((await tcpExchange(world, { from: 'pod', address: ADDR.server, port: WHOAMI_PORT, until: '\n' })).received)).toBe(ADDR.routerWanAlt);
      // The IGD reports it, and the existing mapping answers there (and no longer at the old address).
      expect((await upnpc(world, ['-s'])).output).toContain(`ExternalIPAddress = ${ADDR.routerWanAlt}`);
      expect(peerOf((await tcpExchange(world, { from: 'cli', address: ADDR.routerWanAlt, port: 18086, until: '\n' })).received)).toBe(ADDR.client);
      expect((await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18086, timeoutMs: 1000 })).connected).toBe(false);
      // The established connection is reset: its NAT state went with the old address.
      await world.procs.waitLog('ticker2', /error ECONNRESET/, { timeoutMs: 5000 });

      await changeRouterPublicAddress(world, ADDR.routerWan);
      expect(peerOf((await tcpExchange(world, { from: 'pod', address: ADDR.server, port: WHOAMI_PORT, until: '\n' })).received)).toBe(ADDR.routerWan);
      expect((await upnpc(world, ['-s'])).output).toContain(`ExternalIPAddress = ${ADDR.routerWan}`);
      expect(peerOf((await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18086, until: '\n' })).received)).toBe(ADDR.client);
      await removeMapping(world, 18086);
    });
  });

  describe('client tools', () => {
    let ca: TlsFiles;

    beforeAll(async () => {
      ca = await makeTls(world, 'alpha.pipe.test');
      await Promise.all([
        world.start({
          name: 'redirect',
          host: 'srv',
          argv: helperArgv('serve.mjs', ['http-redirect', ADDR.server, 8081, 'http://alpha.pipe.test:10001/']),
          ready: async (d, procs) => {
            await procs.waitLog(d.name, 'listening');
          },
        }),
        world.start({
          name: 'tls',
          host: 'srv',
          argv: ['openssl', 's_server', '-accept', `${ADDR.server}:8443`, '-cert', ca.leafCert, '-key', ca.leafKey, '-www'],
          ready: async () => world.waitTcp('cli', ADDR.server, 8443),
        }),
        startNsd(world),
      ]);
    });

    it('curl returns status, Location and body, and --resolve picks the address', async () => {
      const r = await curl(world, 'http://alpha.pipe.test:8081/some/path', { resolve: [`alpha.pipe.test:8081:${ADDR.server}`] });
      expect(r.ok).toBe(true);
      expect(r.status).toBe(302);
      expect(r.location).toBe('http://alpha.pipe.test:10001/');
      expect(r.headers['content-type']).toEqual(['text/plain']);
      expect(r.body).toBe('moved to http://alpha.pipe.test:10001/\n');
      expect(r.remoteIp).toBe(ADDR.server);
      expect(world.procs.log('redirect')).toContain(`${ADDR.client} GET /some/path host=alpha.pipe.test:8081`);
    });

    it('curl reports a failed connection instead of throwing', async () => {
      const r = await curl(world, `http://${ADDR.server}:8099/`, { timeoutMs: 2000 });
      expect(r.ok).toBe(false);
      expect(r.exitCode).toBe(7);
      expect(r.status).toBe(0);
      expect(r.error).toMatch(/Failed to connect|Couldn't connect/);
    });

    it('curl verifies https with --cacert and refuses it without', async () => {
      const resolve = [`alpha.pipe.test:8443:${ADDR.server}`];
      const good = await curl(world, 'https://alpha.pipe.test:8443/', { resolve, cacert: ca.rootCert });
      expect(good.ok).toBe(true);
      expect(good.status).toBe(200);
      expect(good.sslVerifyResult).toBe(0);
      const bad = await curl(world, 'https://alpha.pipe.test:8443/', { resolve });
      expect(bad.ok).toBe(false);
      expect(bad.exitCode).toBe(60);
    });

    it('openssl s_client shows the chain and the verify result', async () => {
      const ok = await sClient(world, { address: ADDR.server, port: 8443, servername: 'alpha.pipe.test', cafile: ca.rootCert, verifyHostname: 'alpha.pipe.test' });
      expect(ok.handshake).toBe(true);
      expect(ok.verified).toBe(true);
      expect(ok.verifyCode).toBe(0);
      expect(ok.chain[0]?.subject).toContain('CN = alpha.pipe.test');
      expect(ok.chain[0]?.issuer).toContain('CN = World Test Root');
      expect(ok.chain[0]?.pem).toContain('-----BEGIN CERTIFICATE-----');
      expect(ok.protocol).toMatch(/^TLSv1\.[23]$/);

      const noCa = await sClient(world, { address: ADDR.server, port: 8443, servername: 'alpha.pipe.test' });
      expect(noCa.handshake).toBe(true);
      expect(noCa.verified).toBe(false);
      expect([20, 21]).toContain(noCa.verifyCode);

      const wrongName = await sClient(world, { address: ADDR.server, port: 8443, servername: 'beta.pipe.test', cafile: ca.rootCert, verifyHostname: 'beta.pipe.test' });
      expect(wrongName.verifyCode).toBe(62);

      const nobody = await sClient(world, { address: ADDR.server, port: 8444, cafile: ca.rootCert });
      expect(nobody.handshake).toBe(false);
    });

    it('dig reads answers, TTL, flags and status from a real NSD on ns2', async () => {
      const r = await dig(world, { server: ADDR.ns2, name: 'alpha.pipe.test', norecurse: true });
      expect(r.ok).toBe(true);
      expect(r.status).toBe('NOERROR');
      expect(r.authoritative).toBe(true);
      expect(r.flags).toContain('qr');
      expect(r.answers).toEqual([{ name: 'alpha.pipe.test.', ttl: 60, class: 'IN', type: 'A', data: ADDR.server }]);

      const missing = await dig(world, { server: ADDR.ns2, name: 'nope.pipe.test' });
      expect(missing.status).toBe('NXDOMAIN');
      expect(missing.authority[0]?.type).toBe('SOA');

      const tcp = await dig(world, { server: ADDR.ns2, name: 'alpha.pipe.test', tcp: true });
      expect(tcp.answers[0]?.data).toBe(ADDR.server);

      const silent = await dig(world, { server: ADDR.serverAlt, name: 'alpha.pipe.test' });
      expect(silent.ok).toBe(false);
    });

    it('connectionCost measures back-to-back connects with their first round trip', async () => {
      const c = await connectionCost(world, { address: ADDR.server, port: WHOAMI_PORT, count: 8 });
      expect(c.samples).toHaveLength(8);
      expect(c.failures).toBe(0);
      expect(c.connectMs.median).toBeGreaterThan(0);
      expect(c.firstByteMs.median).toBeGreaterThan(0);
      expect(c.totalMs.max).toBeLessThan(1000);
      console.log(`new connection cost cli->srv: connect ${c.connectMs.median.toFixed(2)} ms, first round trip ${c.firstByteMs.median.toFixed(2)} ms (median of 8)`);

      const refused = await connectionCost(world, { address: ADDR.server, port: 8099, count: 2, timeoutMs: 1000 });
      expect(refused.failures).toBe(2);
    });
  });
});

// ========================================================================= isolation and teardown

describe('worlds side by side', () => {
  it('do not collide: same addresses, separate namespaces, faults stay local', async () => {
    const [a, b] = await Promise.all([World.create(), World.create()]);
    try {
      expect(a.prefix).not.toBe(b.prefix);
      await Promise.all([a.start(whoami('pod-whoami', 'pod', '0.0.0.0', POD_PORT)), b.start(whoami('pod-whoami', 'pod', '0.0.0.0', POD_PORT))]);
      await Promise.all([addMapping(a, 18090, POD_PORT), addMapping(b, 18090, POD_PORT)]);
      for (const w of [a, b]) {
        const r = await tcpExchange(w, { from: 'cli', address: ADDR.routerWan, port: 18090, until: '\n' });
        expect(peerOf(r.received)).toBe(ADDR.client);
      }
      await cutPodLink(a);
      const [cutA, fineB] = await Promise.all([
        tcpExchange(a, { from: 'cli', address: ADDR.routerWan, port: 18090, timeoutMs: 1000 }),
        tcpExchange(b, { from: 'cli', address: ADDR.routerWan, port: 18090, timeoutMs: 1000 }),
      ]);
      expect(cutA.code).toBe('ETIMEDOUT');
      expect(peerOf(fineB.received)).toBe(ADDR.client);
    } finally {
      await Promise.all([a.destroy(), b.destroy()]);
    }
    expect(await leftovers(a.prefix, [...a.topology.inodes.values()])).toEqual([]);
    expect(await leftovers(b.prefix, [...b.topology.inodes.values()])).toEqual([]);
  });
});

describe('a world with two pods', () => {
  it('puts both behind the router, each mapping and cut on its own', async () => {
    const world = await World.create({ pods: 2 });
    try {
      expect(world.pods).toEqual(['pod', 'pod2']);
      expect(world.address('pod2')).toBe('192.168.77.11');
      await Promise.all([
        world.start(whoami('srv-whoami', 'srv', ADDR.server, WHOAMI_PORT)),
        world.start(whoami('pod-whoami', 'pod', '0.0.0.0', POD_PORT)),
        world.start(whoami('pod2-whoami', 'pod2', '0.0.0.0', POD_PORT)),
      ]);
      const out = await tcpExchange(world, { from: 'pod2', address: ADDR.server, port: WHOAMI_PORT, until: '\n' });
      expect(peerOf(out.received)).toBe(ADDR.routerWan);
      expect(peerOf((await tcpExchange(world, { from: 'pod', address: '192.168.77.11', port: POD_PORT, until: '\n' })).received)).toBe(ADDR.pod);
      expect((await addMapping(world, 18100, POD_PORT, 'pod')).output).toContain('is redirected to internal 192.168.77.10');
      expect((await addMapping(world, 18101, POD_PORT, 'pod2')).output).toContain('is redirected to internal 192.168.77.11');
      // secure_mode: a pod may not map a port to another pod.
      const theft = await upnpc(world, ['-a', '192.168.77.11', String(POD_PORT), '18102', 'TCP', '600'], 'pod');
      expect(theft.output).toMatch(/failed with code 718|failed with code 606/);

      await cutPodLink(world, 'pod2');
      const [one, two] = await Promise.all([
        tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18100, timeoutMs: 1000 }),
        tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18101, timeoutMs: 1000 }),
      ]);
      expect(peerOf(one.received)).toBe(ADDR.client);
      expect(two.code).toBe('ETIMEDOUT');
      await restorePodLink(world, 'pod2');
      expect(peerOf((await tcpExchange(world, { from: 'cli', address: ADDR.routerWan, port: 18101, until: '\n' })).received)).toBe(ADDR.client);
    } finally {
      await world.destroy();
    }
  });
});

describe('teardown', () => {
  it('removes namespaces, processes (stubborn ones too), users, root directory and record; twice is fine', async () => {
    const user = `p2mt${randomBytes(3).toString('hex')}`;
    const world = await World.create({ teardownGraceMs: 300 });
    let report: TeardownReport;
    try {
      await run('useradd', ['-M', '-d', '/nonexistent', '-s', '/usr/sbin/nologin', user], { timeout: 10_000 });
      world.trackUser(user);
      const stubborn = await world.start({
        name: 'stubborn',
        host: 'srv',
        argv: helperArgv('serve.mjs', ['stubborn']),
        ready: async (d, procs) => {
          await procs.waitLog(d.name, /stubborn \d+ \d+/);
        },
      });
      await startNsd(world);
      const grandchild = Number(/stubborn \d+ (\d+)/.exec(world.procs.log('stubborn'))?.[1]);
      expect(grandchild).toBeGreaterThan(0);
      let cleaned = false;
      world.onCleanup('mark', () => {
        cleaned = true;
      });
      expect(userExists(user)).toBe(true);
      expect(await leftovers(world.prefix, [...world.topology.inodes.values()], [user])).not.toEqual([]);

      report = await world.destroy();
      expect(cleaned).toBe(true);
      expect(report.sigkilled).toContain('stubborn');
      expect(report.sweptPids).toBeGreaterThan(0); // the grandchild, nsd's server child
      expect(report.errors).toEqual([]);
      expect(stubborn.running).toBe(false);
      expect(fs.existsSync(`/proc/${grandchild}/ns/net`)).toBe(false);
    } finally {
      await world.destroy().catch(() => undefined);
      if (userExists(user)) await run('userdel', [user], { timeout: 10_000, allowFailure: true });
    }
    expect(await leftovers(world.prefix, [...world.topology.inodes.values()], [user])).toEqual([]);
    expect(await world.destroy()).toBe(report);
    expect(world.timings.downMs).toBeGreaterThan(0);
  });

  it('tears down what a failed set-up built', async () => {
    // Without STUN, miniupnpd finds 203.0.113.2 on its reserved list and never enables forwarding.
    const err = await World.create({ stun: false, log: null }).then(
      (w) => w,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorldSetupError);
    const e = err as WorldSetupError;
    expect(e.message).toContain('Port forwarding is impossible');
    expect(e.teardown?.errors).toEqual([]);
    expect(await leftovers(e.prefix, [])).toEqual([]);
  });

  it('runs on SIGTERM of the process that holds the world', async () => {
    const user = `p2mt${randomBytes(3).toString('hex')}`;
    await run('useradd', ['-M', '-d', '/nonexistent', '-s', '/usr/sbin/nologin', user], { timeout: 10_000 });
    const holder = holdWorld(['--track-user', user]);
    try {
      const info = await holder.ready;
      expect(await listNamespaces()).toContain(`${info.prefix}-srv`);
      const inodes = info.namespaces.map((n) => fs.statSync(`/run/netns/${n}`).ino);
      holder.child.kill('SIGTERM');
      const exit = await holder.exited;
      // It tore down, then died of the signal as an uncaught SIGTERM would.
      expect(exit.signal).toBe('SIGTERM');
      expect(holder.stderr()).toMatch(new RegExp(`\\[world ${info.prefix}\\] down in \\d+ ms`));
      expect(await leftovers(info.prefix, inodes, [user])).toEqual([]);
      for (const d of info.daemons) expect(fs.existsSync(`/proc/${d.pid}/ns/net`)).toBe(false);
    } finally {
      holder.child.kill('SIGKILL');
      if (userExists(user)) await run('userdel', [user], { timeout: 10_000, allowFailure: true });
    }
  });

  it('sweeps the world of a SIGKILLed owner when the next world is created', async () => {
    const holder = holdWorld([]);
    const info = await holder.ready;
    holder.child.kill('SIGKILL');
    await holder.exited;
    const inodes = info.namespaces.map((n) => fs.statSync(`/run/netns/${n}`).ino);
    // Nothing cleaned up after the dead owner: its namespaces and daemons are still there.
    expect(await listNamespaces()).toContain(`${info.prefix}-rtr`);
    expect(pidsInNetns(new Set(inodes)).length).toBeGreaterThan(0);

    const next = await World.create({ upnp: false });
    try {
      // Another test file's world, created at the same moment, may be the one that swept it.
      const mine = next.swept.find((s) => s.prefix === info.prefix);
      if (mine) expect(mine.errors).toEqual([]);
      expect(await leftovers(info.prefix, inodes)).toEqual([]);
    } finally {
      await next.destroy();
    }
  });
});

describe('leak check', () => {
  it('reports the namespace, process, mount and record a world left behind, and nothing once they are gone', async () => {
    const suite = process.env['P2M_TEST_SUITE'] ?? null;
    // Only this test's own leftovers are in scope: the suite's other worlds are alive at this moment
    // (files run in parallel), and their namespaces, daemons and users are not leaks yet.
    const scope = emptyScope();
    const before = await takeSnapshot(scope);
    // A world of this suite that "forgot" to tear down: a record (with a live owner, so no concurrent
    // world sweeps it away under us), a namespace, and a process inside it.
    const prefix = `p2m-${randomBytes(3).toString('hex')}`;
    const ns = `${prefix}-leak`;
    await run('ip', ['netns', 'add', ns], { timeout: 5000 });
    const inode = fs.statSync(`/run/netns/${ns}`).ino;
    writeRecord({ prefix, ...currentOwner(), namespaces: [ns], inodes: [inode], users: [], root: worldRoot(prefix), suite, createdAt: new Date().toISOString() });
    scope.prefixes.add(prefix);
    scope.inodes.add(inode);
    const sleeper = spawn('ip', ['netns', 'exec', ns, 'sleep', '60'], { stdio: 'ignore', detached: true });
    try {
      await waitFor('sleeper in the namespace', () => pidsInNetns(new Set([inode])).length > 0, { timeoutMs: 3000 });
      const leaks = findLeaks(before, await takeSnapshot(scope), scope);
      expect(leaks.map((l) => l.kind).sort(), formatLeaks(leaks)).toEqual(['mount', 'namespace', 'process', 'record']);
      expect(leaks.find((l) => l.kind === 'namespace')?.what).toBe(ns);
      expect(leaks.find((l) => l.kind === 'process')?.what).toContain('sleep 60');
      expect(formatLeaks(leaks)).toContain(ns);
    } finally {
      await sweepNamespaces([ns], 500);
      removeRecord(prefix);
      sleeper.kill('SIGKILL');
    }
    expect(findLeaks(before, await takeSnapshot(scope), scope)).toEqual([]);
  });
});

// ==================================================================================== fixtures

interface TlsFiles {
  rootCert: string;
  leafCert: string;
  leafKey: string;
}

/** A throw-away root CA and a leaf for `name`, made with the openssl CLI in the world's directory. */
async function makeTls(world: World, name: string): Promise<TlsFiles> {
  const dir = world.mkdir('tls', 0o700);
  const f = (n: string) => path.join(dir, n);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', f('root.key'), '-out', f('root.crt'), '-days', '2', '-subj', '/CN=World Test Root',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], { timeout: 10_000 });
  await run('openssl', ['req', ...ec, '-keyout', f('leaf.key'), '-out', f('leaf.csr'), '-subj', `/CN=${name}`], { timeout: 10_000 });
  fs.writeFileSync(f('leaf.ext'), `subjectAltName=DNS:${name}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  await run('openssl', ['x509', '-req', '-in', f('leaf.csr'), '-CA', f('root.crt'), '-CAkey', f('root.key'), '-set_serial', '2', '-days', '2',
    '-extfile', f('leaf.ext'), '-out', f('leaf.crt')], { timeout: 10_000 });
  return { rootCert: f('root.crt'), leafCert: f('leaf.crt'), leafKey: f('leaf.key') };
}

/** NSD on ns2 serving pipe.test (its server child outlives the parent: the teardown sweep's job). */
async function startNsd(world: World): Promise<void> {
  const dir = world.mkdir('nsd');
  fs.writeFileSync(
    path.join(dir, 'pipe.test.zone'),
    `$TTL 60\n@ IN SOA ns1.pipe.test. hostmaster.pipe.test. ( 1 60 60 600 60 )\n  IN NS ns1.pipe.test.\nns1 IN A ${ADDR.server}\nalpha IN A ${ADDR.server}\n`,
  );
  fs.writeFileSync(
    path.join(dir, 'nsd.conf'),
    [
      'server:',
      `  ip-address: ${ADDR.ns2}`,
      '  port: 53',
      '  do-ip6: no',
      '  username: ""',
      '  chroot: ""',
      `  zonesdir: "${dir}"`,
      '  database: ""',
      `  pidfile: "${dir}/nsd.pid"`,
      `  xfrdfile: "${dir}/xfrd.state"`,
      `  xfrdir: "${dir}"`,
      `  zonelistfile: "${dir}/zone.list"`,
      '  server-count: 1',
      'remote-control:',
      '  control-enable: no',
      'zone:',
      '  name: "pipe.test"',
      '  zonefile: "pipe.test.zone"',
      '',
    ].join('\n'),
  );
  await world.start({
    name: 'nsd',
    host: 'ns2',
    argv: ['nsd', '-d', '-c', path.join(dir, 'nsd.conf')],
    ready: () => world.waitDns('cli', ADDR.ns2, 'alpha.pipe.test'),
  });
}

interface HoldInfo {
  prefix: string;
  root: string;
  namespaces: string[];
  daemons: { name: string; pid: number }[];
}

/** Run test/world/hold.ts in a child process (through vite-node, which runs TypeScript). */
function holdWorld(args: string[]): { child: ChildProcess; ready: Promise<HoldInfo>; exited: Promise<{ code: number | null; signal: string | null }>; stderr: () => string } {
  const repo = path.resolve(import.meta.dirname, '../..');
  const child = spawn(process.execPath, [path.join(repo, 'node_modules/vite-node/vite-node.mjs'), 'test/world/hold.ts', ...args], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const ready = new Promise<HoldInfo>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hold.ts not ready after 30 s: ${err}`)), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as HoldInfo);
      }
    });
    void exited.then(() => reject(new Error(`hold.ts exited before it was ready: ${err}`)));
  });
  return { child, ready, exited, stderr: () => err };
}
