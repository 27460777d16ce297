/**
 * The API as a pod and as an attacker see it, through nginx's TLS on the server's own name: quotas,
 * tokens, claims, hostile bodies, wrong secrets, expiry. Every error is a JSON body with a stable code
 * and a 4xx; nothing changes the state.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { ADDR, curl, dig, waitFor } from '../world/index.js';
import { CTL, DOMAIN } from '../stack/stack.js';
import { useStack } from '../stack/hooks.js';

const API = `https://server.${DOMAIN}`;

async function api(method: string, path: string, body?: unknown, opts: { auth?: string; raw?: string; contentType?: string } = {}) {
  const data = opts.raw ?? (body === undefined ? undefined : JSON.stringify(body));
  const r = await curl(stack().world, `${API}${path}`, {
    method, resolve: [`server.${DOMAIN}:443:${ADDR.server}`], cacert: stack().caFile(),
    headers: { ...(data !== undefined ? { 'content-type': opts.contentType ?? 'application/json' } : {}), ...(opts.auth ? { authorization: `Bearer ${opts.auth}` } : {}) },
    ...(data !== undefined ? { data } : {}), timeoutMs: 15_000,
  });
  let json: any;
  try {
    json = JSON.parse(r.body);
  } catch {
    json = undefined;
  }
  return { status: r.status, json, body: r.body };
}

async function stateSnapshot() {
  const list = (await stack().ctl<unknown[]>(['list'])).json;
  const tokens = (await stack().ctl<unknown[]>(['token', 'list'])).json;
  return JSON.stringify({ list, tokens });
}

const stack = useStack({ upnp: false }, async (stack) => {
  await stack.startServer();
}, 180_000);

describe('tokens are enforced quota classes', () => {
  it('a subdomain gets at most the token\'s ports; single-use tokens work once; revoked tokens never', async () => {
    const t = (await stack().ctl<{ token: string; id: string }>(['token', 'create', '--max-ports', '2', '--single-use'])).json;
    const before = await stateSnapshot();
    const tooMany = await api('POST', '/v1/subdomains', { token: t.token, protocols: ['http', 'https', 'tcp'] });
    expect(tooMany.status).toBe(403);
    expect(tooMany.json.error.code).toBe('too_many_ports');
    expect(await stateSnapshot()).toBe(before); // the refused request used neither the token nor a port
    const ok = await api('POST', '/v1/subdomains', { token: t.token, protocols: ['http', 'https'] });
    expect(ok.status).toBe(201);
    expect(ok.json.ports).toHaveLength(2);
    expect(ok.json.secret).toMatch(/^p2ms_/);
    expect(ok.json.ssh.host_key).toMatch(/^ssh-ed25519 /);
    expect(ok.json.ca).toContain('BEGIN CERTIFICATE');
    const again = await api('POST', '/v1/subdomains', { token: t.token, protocols: ['http'] });
    expect(again.status).toBe(401);
    expect(again.json.error.code).toBe('token_invalid');

    const r = (await stack().ctl<{ token: string; id: string }>(['token', 'create', '--max-ports', '4'])).json;
    await stack().ctl(['token', 'revoke', r.id]);
    expect((await api('POST', '/v1/subdomains', { token: r.token, protocols: ['http'] })).status).toBe(401);
  });

  it('the pod CLI says so: quota exceeded (10), bad token (9), server unreachable (11)', async () => {
    const t = (await stack().ctl<{ token: string; ca_pin: string }>(['token', 'create', '--max-ports', '1'])).json;
    const base = ['setup', '--server', API, '--ca-pin', t.ca_pin];
    const quota = await stack().pod([...base, '--token', t.token, '--protocols', 'http,https', '--ports', '1,2'], { allowFailure: true, dir: stack().world.path('pods', 'q1') });
    expect(quota.exitCode).toBe(10);
    expect(quota.stderr).toMatch(/at most 1/);
    const bad = await stack().pod([...base, '--token', 'p2mt_' + 'A'.repeat(43), '--protocols', 'http'], { allowFailure: true, dir: stack().world.path('pods', 'q2') });
    expect(bad.exitCode).toBe(9);
    expect(bad.stderr).toMatch(/token is not valid/);
    const away = await stack().pod(['setup', '--server', 'https://203.0.113.99', '--ca-pin', t.ca_pin, '--token', t.token, '--protocols', 'http'], { allowFailure: true, dir: stack().world.path('pods', 'q3'), timeout: 60_000 });
    expect(away.exitCode).toBe(11);
  });
});

describe('claims', () => {
  it('an operator-made subdomain is claimed once with its claim token', async () => {
    const made = (await stack().ctl<{ claim_token: string; fqdn: string }>(['add-subdomain', '--ports', 'http'])).json;
    const c1 = await api('POST', '/v1/claim', { claim_token: made.claim_token });
    expect(c1.status).toBe(200);
    expect(c1.json.fqdn).toBe(made.fqdn);
    const c2 = await api('POST', '/v1/claim', { claim_token: made.claim_token });
    expect(c2.status).toBe(401);
    expect(c2.json.error.code).toBe('claim_invalid');
  });
});

describe('hostile requests get a 4xx with a clear message, never a 5xx, and change nothing', () => {
  let id: string;
  let secret: string;
  beforeAll(async () => {
    const t = (await stack().ctl<{ token: string }>(['token', 'create', '--max-ports', '4'])).json;
    const r = await api('POST', '/v1/subdomains', { token: t.token, protocols: ['http'] });
    id = r.json.id;
    secret = r.json.secret;
  });

  const cases: [string, () => Promise<{ status: number; json: any }>, number, string][] = [
    ['malformed JSON', () => api('POST', '/v1/subdomains', undefined, { raw: '{"token": "x", ' }), 400, 'bad_json'],
    ['empty body', () => api('POST', '/v1/subdomains', undefined, { raw: '' }), 400, 'bad_json'],
    ['wrong content type', () => api('POST', '/v1/subdomains', undefined, { raw: 'token=x', contentType: 'application/x-www-form-urlencoded' }), 415, 'unsupported_media_type'],
    ['wrong types', () => api('POST', '/v1/subdomains', { token: 42, protocols: 'http' }), 400, 'invalid_request'],
    ['unknown protocol', () => api('POST', '/v1/subdomains', { token: 'p2mt_x', protocols: ['gopher'] }), 400, 'invalid_request'],
    ['unknown fields', () => api('POST', '/v1/subdomains', { token: 'p2mt_x', protocols: ['http'], admin: true }), 400, 'invalid_request'],
    ['a huge body', () => api('POST', '/v1/subdomains', undefined, { raw: JSON.stringify({ token: 'x'.repeat(100_000), protocols: ['http'] }) }), 413, 'body_too_large'],
    ['a bad name', () => api('POST', '/v1/subdomains', { token: 'p2mt_' + 'B'.repeat(43), protocols: ['http'], name: 'a\nb' }), 401, 'token_invalid'],
    ['no secret', () => api('GET', `/v1/subdomains/${id}`), 401, 'unauthorized'],
    ['a wrong secret', () => api('GET', `/v1/subdomains/${id}`, undefined, { auth: 'p2ms_' + 'C'.repeat(43) }), 401, 'unauthorized'],
    ['a malformed secret', () => api('GET', `/v1/subdomains/${id}`, undefined, { auth: 'hello' }), 401, 'unauthorized'],
    ['the id alone, on another subdomain\'s secret', () => api('DELETE', `/v1/subdomains/${'0'.repeat(32)}`, undefined, { auth: secret }), 401, 'unauthorized'],
    ['a bad ssh key', () => api('PUT', `/v1/subdomains/${id}/ssh-key`, { public_key: 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7' }, { auth: secret }), 400, 'bad_ssh_key'],
    ['a garbage CSR', () => api('POST', `/v1/subdomains/${id}/certificate`, { csr: 'hello' }, { auth: secret }), 400, 'csr_not_pem'],
    ['someone else\'s port in mappings', () => api('PUT', `/v1/subdomains/${id}/mappings`, { mappings: [{ external_port: 22, internal_port: 22 }] }, { auth: secret }), 400, 'mapping_not_yours'],
    ['an unknown endpoint', () => api('GET', '/v1/admin'), 404, 'not_found'],
    ['a wrong method', () => api('PATCH', `/v1/subdomains/${id}`, {}, { auth: secret }), 405, 'method_not_allowed'],
  ];
  for (const [what, call, status, code] of cases) {
    it(what, async () => {
      const before = await stateSnapshot();
      const r = await call();
      expect(r.status).toBe(status);
      if (code) expect(r.json?.error?.code).toBe(code);
      if (r.json) expect(typeof r.json.error.message).toBe('string');
      expect(await stateSnapshot()).toBe(before);
    });
  }
});

describe('expiry', () => {
  it("an expired subdomain's live tunnel is cut within seconds and its ports are freed", async () => {
    const s = stack();
    const t = (await s.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--max-ports', '1', '--lifespan', '25s'])).json;
    const dir = s.world.path('pods', 'shortlived');
    const setup = (await s.pod<{ services: { port: number }[]; fqdn: string }>(['setup', '--server', API, '--token', t.token, '--ca-pin', t.ca_pin, '--protocols', 'tcp', '--ports', '7', '--dir', dir], { dir })).json;
    const port = setup.services[0]!.port;
    await s.world.start({ name: 'shortlived', host: 'pod', argv: [process.execPath, (await import('../stack/stack.js')).POD, '--dir', dir, 'start', '--no-upnp'], ready: (d, p) => p.waitLog(d.name, 'tunnel up').then(() => undefined) });
    await s.world.waitTcp('cli', ADDR.server, port);
    const expires = new Date(((await s.ctl<{ expires: string }>(['show', setup.fqdn])).json).expires).getTime();
    await waitFor('port closed after expiry', async () => {
      const r = await s.world.inNs('srv', ['ss', '-Htln', `sport = :${port}`], { allowFailure: true });
      return r.stdout.trim() === '';
    }, { timeoutMs: 60_000, intervalMs: 250 });
    const late = (Date.now() - expires) / 1000;
    console.log(`expiry: the tunnel of ${setup.fqdn} was cut ${late.toFixed(1)} s after it expired`);
    expect(late).toBeLessThan(15);
    const shown = (await s.ctl<{ status: string; ports: unknown[] }>(['show', setup.fqdn])).json;
    expect(shown.status).toBe('expired');
    expect(shown.ports).toEqual([]);
    // The pod's start learns it is refused for good and stops (exit 9), instead of retrying forever.
    await waitFor('pod start gives up', async () => s.world.procs.log('shortlived').includes('the server refuses this pod'), { timeoutMs: 30_000 });
  }, 120_000);
});

describe('the entry of a name that nginx\'s maps do not hold yet', () => {
  const entry = (url: string, host: string, extra: { headers?: Record<string, string>; method?: string } = {}) => curl(stack().world, url, {
    from: 'cli', resolve: [`${host}:80:${ADDR.server}`, `${host}:443:${ADDR.server}`], cacert: stack().caFile(), timeoutMs: 10_000, ...extra,
  });
  const inMap = (fqdn: string) => fs.readFileSync(stack().layout.nginx.entryMap, 'utf8').includes(`\n${fqdn.split('.')[0]} "`);

  it('a subdomain made through the API is answered once its name resolves, and its http and https entries redirect at once', async () => {
    const t = (await stack().ctl<{ token: string }>(['token', 'create', '--max-ports', '2'])).json;
    const made = await api('POST', '/v1/subdomains', { token: t.token, protocols: ['http', 'https'] });
    expect(made.status).toBe(201);
    const fqdn = made.json.fqdn as string;
    const [http, https] = made.json.ports as { port: number }[];
    const a = await dig(stack().world, { from: 'cli', server: ADDR.server, name: fqdn, type: 'A' });
    expect(a.answers.map((x) => x.data)).toEqual([ADDR.server]);
    const r = await entry(`http://${fqdn}/p?q=1`, fqdn);
    expect(r.status).toBe(302);
    expect(r.location).toBe(`http://${fqdn}:${http!.port}/p?q=1`);
    const s = await entry(`https://${fqdn}/x`, fqdn);
    expect(s.status).toBe(302);
    expect(s.location).toBe(`https://${fqdn}:${https!.port}/x`);
    // nginx's maps take it in with the apply that follows the answer.
    await waitFor('the name in nginx\'s entry map', async () => inMap(fqdn), { timeoutMs: 10_000, intervalMs: 100 });
  });

  it('add-subdomain through the CLI while the API runs: it returns once the key index and the name are applied, its entries redirect at once (the API answers), and nginx\'s maps take it in right after', async () => {
    const added = await stack().ctl<{ fqdn: string; ports: { port: number }[]; entry_served_by: string; applied: { changed_units: string[] } }>(['add-subdomain', '--ports', 'http,https']);
    expect(added.json.entry_served_by).toBe('api');
    expect(added.json.applied.changed_units).not.toContain('nginx');
    const { fqdn, ports } = added.json;
    expect((await dig(stack().world, { from: 'cli', server: ADDR.server, name: fqdn, type: 'A' })).answers.map((x) => x.data)).toEqual([ADDR.server]);
    const r = await entry(`http://${fqdn}/p?q=1`, fqdn);
    expect([r.status, r.location]).toEqual([302, `http://${fqdn}:${ports[0]!.port}/p?q=1`]);
    const s = await entry(`https://${fqdn}/x`, fqdn);
    expect([s.status, s.location]).toEqual([302, `https://${fqdn}:${ports[1]!.port}/x`]);
    await waitFor('the name in nginx\'s entry map', async () => inMap(fqdn), { timeoutMs: 10_000, intervalMs: 100 });
    const human = await stack().ctl(['add-subdomain', '--ports', 'https'], { json: false });
    expect(human.stdout).toContain('answered by the API until nginx\'s maps take it in');
  });

  it('a name only in the store (recorded, not applied) is redirected by the API as the map would, which then has nginx\'s maps take it in; once removed, it gets nginx\'s 404 and text', async () => {
    const made = (await stack().ctl<{ fqdn: string; ports: { port: number }[] }>(['add-subdomain', '--ports', 'https', '--no-apply'])).json;
    expect(inMap(made.fqdn)).toBe(false);
    // POST, a body and a client's own X-Pipe2me-Request-Uri change nothing: the redirect is the name's and the request's.
    const r = await entry(`http://${made.fqdn}/a/b?c=d`, made.fqdn, { method: 'POST', headers: { 'x-pipe2me-request-uri': '/evil', cookie: 'a=b' } });
    expect(r.status).toBe(302);
    expect(r.location).toBe(`https://${made.fqdn}:${made.ports[0]!.port}/a/b?c=d`);
    // The maps were behind the store: the API had them take the name in (no watcher runs here).
    await waitFor('the name in nginx\'s entry map after the API answered for it', async () => inMap(made.fqdn), { timeoutMs: 10_000, intervalMs: 100 });
    await stack().ctl(['remove', made.fqdn]);
    const gone = await entry(`http://${made.fqdn}/`, made.fqdn);
    expect(gone.status).toBe(404);
    expect(gone.body).toBe('pipe2me: no service is published under this name.\n');
    const goneTls = await entry(`https://${made.fqdn}/`, made.fqdn);
    expect(goneTls.status).toBe(404);
    expect(goneTls.body).toBe('pipe2me: no https service is published under this name.\n');
    // A name of another domain, or a label nothing may be named, is not published either.
    for (const host of ['elsewhere.example.net', `no_such--name.${DOMAIN}`]) {
      const x = await entry(`http://${host}/`, host);
      expect(x.status, host).toBe(404);
      expect(x.body, host).toBe('pipe2me: no service is published under this name.\n');
    }
    // No path of a name is taken for the lookup: the API's path asked for on an entry is just a path.
    const paths = (await stack().ctl<{ fqdn: string; ports: { port: number }[] }>(['add-subdomain', '--ports', 'http', '--no-apply'])).json;
    for (const p of ['/v1/entry/http', '/v1/entry/https?x=1', '/.pipe2me-entry']) {
      const r = await entry(`http://${paths.fqdn}${p}`, paths.fqdn);
      expect(r.status, p).toBe(302);
      expect(r.location, p).toBe(`http://${paths.fqdn}:${paths.ports[0]!.port}${p}`);
    }
  });

  it('with the API down, a name not in the map gets nginx\'s 404 (never a 502), and names in the map redirect as before', async () => {
    // (In this order: an apply takes in every name recorded before it.)
    const applied = (await stack().ctl<{ fqdn: string; ports: { port: number }[] }>(['add-subdomain', '--ports', 'http'])).json;
    await waitFor('the name in nginx\'s entry map', async () => inMap(applied.fqdn), { timeoutMs: 10_000, intervalMs: 100 });
    const inStore = (await stack().ctl<{ fqdn: string }>(['add-subdomain', '--ports', 'http', '--no-apply'])).json;
    expect(inMap(inStore.fqdn)).toBe(false);
    await stack().world.stop('api');
    try {
      const x = await entry(`http://${inStore.fqdn}/`, inStore.fqdn);
      expect(x.status).toBe(404);
      expect(x.body).toBe('pipe2me: no service is published under this name.\n');
      const y = await entry(`http://${applied.fqdn}/`, applied.fqdn);
      expect(y.status).toBe(302);
      expect(y.location).toBe(`http://${applied.fqdn}:${applied.ports[0]!.port}/`);
      // With no API to answer for it, the CLI's add applies nginx itself before it returns.
      const alone = await stack().ctl<{ fqdn: string; ports: { port: number }[]; entry_served_by: string; applied: { changed_units: string[] } }>(['add-subdomain', '--ports', 'http']);
      expect(alone.json.entry_served_by).toBe('nginx');
      expect(alone.json.applied.changed_units).toContain('nginx');
      expect(inMap(alone.json.fqdn)).toBe(true);
      const z = await entry(`http://${alone.json.fqdn}/`, alone.json.fqdn);
      expect([z.status, z.location]).toEqual([302, `http://${alone.json.fqdn}:${alone.json.ports[0]!.port}/`]);
    } finally {
      await stack().world.start({
        name: 'api', host: 'srv', argv: [process.execPath, CTL, '-c', stack().configFile, 'serve'],
        ready: () => stack().world.waitTcp('srv', '127.0.0.1', stack().config.http.apiPort),
      });
    }
  });
});

// Last in this file: it uses up the client's request budget for the current minute.
describe('limits', () => {
  it('too many requests from one address get 429 with a JSON error and Retry-After', async () => {
    // One curl, 70 transfers; every body to /dev/null, every status on its own line.
    const transfers = Array.from({ length: 70 }, () => [`${API}/v1`, '-o', '/dev/null']).flat();
    const r = await stack().world.inNs('cli', ['curl', '-s', '--resolve', `server.${DOMAIN}:443:${ADDR.server}`, '--cacert', stack().caFile(),
      '-w', '%{http_code}\n', ...transfers], { timeout: 60_000 });
    const codes = r.stdout.trim().split('\n').map(Number);
    expect(codes).toHaveLength(70);
    expect(codes.filter((c) => c === 200).length).toBeLessThanOrEqual(stack().config.api.ratePerMinute);
    expect(codes.filter((c) => c === 429).length).toBeGreaterThan(0);
    const one = await api('GET', '/v1');
    expect(one.status).toBe(429);
    expect(one.json.error.code).toBe('rate_limited');
    expect(one.json.error.message).toMatch(/try again in \d+ s/);
  });
});
