/**
 * Bring up a world and hold it until SIGINT/SIGTERM, then tear it down. For poking around by hand
 * (`npx vite-node test/world/hold.ts`, then `ip netns exec p2m-xxxxxx-pod upnpc -u ... -l`), and the
 * child process of the signal and stale-world tests.
 *
 *   --pods N            pods behind the router (default 1)
 *   --no-upnp           skip miniupnpd/STUN
 *   --natpmp-only       miniupnpd speaks NAT-PMP only (routerProtocols { upnp: false, natpmp: true })
 *   --lan6              route 2001:db8:77::/64 to the LAN (pinholes via upnpc -6 -u IGD6_URL)
 *   --no-router-ipv4    IPv6-only uplink (routerIpv4: false)
 *   --track-user NAME   remove this (existing) user at teardown
 *
 * Prints one JSON line once ready: {"prefix", "root", "namespaces", "daemons": [{name, pid}]}.
 */
import { ADDR } from './addresses.js';
import { helperArgv } from './runner.js';
import { World } from './world.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const world = await World.create({
  pods: Number(arg('--pods') ?? 1),
  upnp: !process.argv.includes('--no-upnp'),
  ...(process.argv.includes('--natpmp-only') ? { routerProtocols: { upnp: false, natpmp: true } } : {}),
  lan6: process.argv.includes('--lan6'),
  routerIpv4: !process.argv.includes('--no-router-ipv4'),
  log: (line) => process.stderr.write(line + '\n'),
});
const user = arg('--track-user');
if (user) world.trackUser(user);
// One daemon of our own, so that there is something in a namespace to kill.
await world.start({
  name: 'whoami',
  host: 'srv',
  argv: helperArgv('serve.mjs', ['whoami', ADDR.server, 7000]),
  ready: async (d, procs) => {
    await procs.waitLog(d.name, 'listening');
  },
});
process.stdout.write(
  JSON.stringify({
    prefix: world.prefix,
    root: world.root,
    namespaces: world.topology.namespaces(),
    daemons: world.procs.list().map((d) => ({ name: d.name, pid: d.pid })),
  }) + '\n',
);
// Hold: the world's signal handlers tear it down and then let the signal end the process.
setInterval(() => undefined, 1 << 30);
