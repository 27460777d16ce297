/**
 * The direct route through a router that speaks only NAT-PMP (miniupnpd with UPnP off): the pod finds no
 * UPnP IGD, maps its ports by NAT-PMP, the probe verifies them, and DNS follows — to the router while the
 * mappings answer as the pod, back to the server when they are lost; on stop they are removed.
 */
import { describe, expect, it } from 'vitest';
import { ADDR, curl, dig, forgetAllMappings, waitFor } from '../world/index.js';
import { DOMAIN } from '../stack/stack.js';
import { useStack } from '../stack/hooks.js';

let web: { fqdn: string; name: string; services: { protocol: string; port: number; url: string }[] };

interface ShowJson {
  route: string;
  route_reason: string;
  mappings: { family: number; external_port: number; via: string }[];
  mapping_note: string | null;
}

const stack = useStack({ routerProtocols: { upnp: false, natpmp: true }, flapWindow: '1s', promptProbe: false }, async (stack) => {
  await stack.startServer();
  const t = (await stack.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--max-ports', '4'])).json;
  web = (await stack.pod<typeof web>(['setup', '--server', `https://server.${DOMAIN}`, '--token', t.token, '--ca-pin', t.ca_pin, '--protocols', 'http,https', '--ports', '8080,8443'])).json;
  await stack.startPodService('pod');
  await stack.startPod('pod');
});

const show = async () => (await stack().ctl<ShowJson>(['show', web.name])).json;
const aRecord = async () => (await dig(stack().world, { server: ADDR.server, name: web.fqdn })).answers.find((a) => a.type === 'A')?.data;
/** The router's NAT-PMP redirects to the pod, as miniupnpd put them in its nft chain. */
async function routerRedirects(): Promise<number> {
  const r = await stack().world.inNs('rtr', ['nft', 'list', 'chain', 'inet', 'filter', 'prerouting_miniupnpd']);
  return (r.stdout.match(/dnat ip to 192\.168\.77\.10:/g) ?? []).length;
}
const mappedByNatpmp = async (count: number) =>
  waitFor(`${count} NAT-PMP mappings reported`, async () => {
    const v = await show();
    return v.mappings.length === count && v.mappings.every((m) => m.family === 4 && m.via === 'natpmp');
  }, { timeoutMs: 30_000, intervalMs: 300 });

describe('a router that speaks only NAT-PMP', () => {
  it('the pod finds no UPnP IGD and maps every port by NAT-PMP; the server and the pod say so', async () => {
    await mappedByNatpmp(4); // http, https, and the entries 80 and 443
    expect(await routerRedirects()).toBe(4);
    const st = await stack().pod<{ router: { protocol: string; external_ip: string; mappings: { ok: boolean; via: string }[] } }>(['status']);
    expect(st.json.router.protocol).toBe('natpmp');
    expect(st.json.router.external_ip).toBe(ADDR.routerWan);
    expect(st.json.router.mappings.every((m) => m.ok && m.via === 'natpmp')).toBe(true);
    const text = await stack().ctl(['show', web.name], { json: false });
    expect(text.stdout).toMatch(/router mappings: .*\(NAT-PMP\)/);
    expect(await aRecord()).toBe(ADDR.server);
  });

  it('the probe verifies the NAT-PMP mappings and A answers the router; a client reaches the pod straight', async () => {
    const r = await stack().ctl<{ changed: string[]; results: { name: string; family: number; route: string; reason: string }[] }>(['probe']);
    const mine = r.json.results.find((x) => x.name === web.name && x.family === 4)!;
    expect(mine.route, mine.reason).toBe('direct');
    await waitFor('A at the router', async () => (await aRecord()) === ADDR.routerWan, { timeoutMs: 10_000 });
    const https = web.services.find((s) => s.protocol === 'https')!;
    const c = await curl(stack().world, https.url, { resolve: [`${web.fqdn}:${https.port}:${ADDR.routerWan}`], cacert: stack().caFile() });
    expect(c.status).toBe(200);
    expect(c.body).toContain(`peer ${ADDR.client}`); // the pod sees the client itself: no tunnel in between
  });

  it('pipe2me-ctl status shows the whole server on one screen, and exits 8 when a daemon is down', async () => {
    interface StatusJson { daemons: { name: string; running: boolean; last_reload: string | null }[]; api: { answering: boolean }; pods: { active: number; online: number; direct_ipv4: number }; certificates: { kind: string; issuer: string }[]; last_probe: string | null; last_apply: { ok: boolean } | null; problems: string[] }
    const st = await stack().ctl<StatusJson>(['status']);
    expect(st.exitCode, st.json.problems.join('; ')).toBe(0);
    expect(st.json.daemons.map((d) => [d.name, d.running])).toEqual([['sshd', true], ['nginx', true], ['named', true]]);
    expect(st.json.daemons.find((d) => d.name === 'named')!.last_reload).not.toBeNull();
    expect(st.json.api.answering).toBe(true);
    expect(st.json.pods).toMatchObject({ active: 1, online: 1, direct_ipv4: 1 });
    expect(st.json.certificates.some((c) => c.kind === 'pod' && c.issuer === 'private')).toBe(true);
    expect(st.json.last_probe).not.toBeNull();
    expect(st.json.last_apply?.ok).toBe(true);
    const text = await stack().ctl(['status'], { json: false });
    expect(text.stdout).toMatch(/pods: 1 active, 1 online \(100 %\); direct over IPv4 1 \(100 %\)/);
    expect(text.stdout).toContain('all well');

    const nginx = stack().world.procs.get('nginx').spec;
    await stack().world.stop('nginx');
    try {
      const down = await stack().ctl<StatusJson>(['status'], { allowFailure: true });
      expect(down.exitCode).toBe(8);
      expect(down.json.problems).toContain('nginx is not running');
    } finally {
      await stack().world.start(nginx);
    }
  });

  it('stop removes the NAT-PMP mappings from the router and the name goes back to the server', async () => {
    await stack().world.stop('pod-pipe2me');
    expect(await routerRedirects()).toBe(0);
    expect((await show()).mappings).toEqual([]);
    await waitFor('A back at the server', async () => (await aRecord()) === ADDR.server, { timeoutMs: 10_000 });
  });

  it('mappings lost on the router (a reboot): the next probe sends the name back to the server', async () => {
    await stack().startPod('pod');
    await mappedByNatpmp(4);
    const r = await stack().ctl<{ results: { name: string; family: number; route: string }[] }>(['probe']);
    expect(r.json.results.find((x) => x.name === web.name && x.family === 4)!.route).toBe('direct');
    await waitFor('A at the router', async () => (await aRecord()) === ADDR.routerWan, { timeoutMs: 10_000 });

    await forgetAllMappings(stack().world);
    const after = await stack().ctl<{ results: { name: string; family: number; route: string; reason: string }[] }>(['probe']);
    const mine = after.json.results.find((x) => x.name === web.name && x.family === 4)!;
    expect(mine.route).toBe('server');
    expect(mine.reason).toMatch(/back to the server/);
    await waitFor('A back at the server', async () => (await aRecord()) === ADDR.server, { timeoutMs: 10_000 });
  });
});
