/**
 * A pod on an IPv6-only network (its router has no IPv4 at all): it sets up through the server's API over
 * IPv6, tunnels to the server's sshd over IPv6, the server records the session with its family, and an
 * IPv4-only client reaches the pod by its name through the server.
 */
import { describe, expect, it } from 'vitest';
import { ADDR, ADDR6, curl, dig, podAddress6, waitFor } from '../world/index.js';
import { DOMAIN } from '../stack/stack.js';
import { useStack } from '../stack/hooks.js';

let web: { name: string; fqdn: string; services: { protocol: string; port: number; url: string }[] };

const stack = useStack({ lan6: true, routerIpv4: false, ipv6: true, promptProbe: false }, async (stack) => {
  // The pod can reach the server's nameserver only over IPv6.
  stack.resolveVia('pod', ADDR6.server);
  await stack.startServer();
  const t = (await stack.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--max-ports', '4'])).json;
  web = (await stack.pod<typeof web>(['setup', '--server', `https://server.${DOMAIN}`, '--token', t.token, '--ca-pin', t.ca_pin, '--protocols', 'http,https', '--ports', '8080,8443'])).json;
  await stack.startPodService('pod');
  await stack.startPod('pod', ['--igd6', stack.world.igd6Url]);
});

describe('a pod on an IPv6-only network', () => {
  it('has no IPv4 way out: the server is reachable only over IPv6', async () => {
    const v4 = await stack().world.inNs('pod', ['curl', '-sS', '--connect-timeout', '2', '-o', '/dev/null', `http://${ADDR.server}/`], { allowFailure: true, timeout: 10_000 });
    expect(v4.exitCode).not.toBe(0);
  });

  it('tunnels to the server over IPv6; the server sees the session from the pod\'s IPv6 address', async () => {
    const v = await waitFor('online', async () => {
      const s = (await stack().ctl<{ online: { from: string; family: number } | null }>(['show', web.name])).json;
      return s.online ? s : undefined;
    }, { timeoutMs: 30_000, intervalMs: 300 });
    expect(v.online).toEqual(expect.objectContaining({ from: podAddress6(1), family: 6 }));
    const text = await stack().ctl(['show', web.name], { json: false });
    expect(text.stdout).toContain(`from ${podAddress6(1)} (IPv6)`);
  });

  it('an IPv4 client reaches the pod by its name through the server (A is the server\'s)', async () => {
    const a = (await dig(stack().world, { server: ADDR.server, name: web.fqdn })).answers.find((x) => x.type === 'A')?.data;
    expect(a).toBe(ADDR.server);
    const https = web.services.find((s) => s.protocol === 'https')!;
    const c = await curl(stack().world, https.url, { resolve: [`${web.fqdn}:${https.port}:${ADDR.server}`], cacert: stack().caFile(), extraArgs: ['-4'] });
    expect(c.status, c.error).toBe(200);
    expect(c.body).toContain('hello from pod over https');
    // The entry redirect too, on the server's nginx.
    const e = await curl(stack().world, `http://${web.fqdn}/`, { resolve: [`${web.fqdn}:80:${ADDR.server}`], extraArgs: ['-4'] });
    expect(e.location).toBe(web.services.find((s) => s.protocol === 'http')!.url);
  });

  it('the probe has no IPv4 address to test and says so; IPv4 stays on the server', async () => {
    const r = (await stack().ctl<{ results: { name: string; family: number; route: string; reason: string }[] }>(['probe'])).json.results;
    const v4 = r.find((x) => x.name === web.name && x.family === 4)!;
    expect(v4.route).toBe('server');
    expect(v4.reason).toMatch(/no router mappings|has not seen the pod connect over IPv4/);
  });
});
