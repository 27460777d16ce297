/**
 * pipe2me on PostgreSQL, end to end: the server's state store is a PostgreSQL 15 primary with a
 * streaming standby (both in the server's namespace, password auth, state.url listing both with
 * target_session_attrs=read-write). Through the project's CLIs and real clients: the API, apply, the CA
 * and the probe work from PostgreSQL; 20 add-subdomain processes at once get distinct names and ports;
 * with the database down, the tunnel serves, the API says 503 store_unavailable and the CLI exits 11, and
 * all of it recovers alone; a failover to the promoted standby is followed without a restart.
 */
import { describe, expect, it } from 'vitest';
import { ADDR, curl, dig, waitFor } from '../world/index.js';
import { CTL, DOMAIN } from '../stack/stack.js';
import { useStack } from '../stack/hooks.js';
import { waitCaughtUp } from '../stack/postgres.js';

interface SetupJson { name: string; fqdn: string; services: { protocol: string; port: number; url: string }[] }
interface SubdomainJson { name: string; fqdn: string; ports: { port: number; protocol: string }[] }
interface StateInfo { engine: string; location: string; schema_version: number; tables: { table: string; rows: number }[] }

const API = `https://server.${DOMAIN}`;
let pod: SetupJson;
let token: string;

const stack = useStack({ upnp: false, store: 'postgres+standby' }, async (stack) => {
  await stack.startServer();
  const t = await stack.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--label', 'pg', '--max-ports', '3']);
  token = t.json.token;
  pod = (await stack.pod<SetupJson>(['setup', '--server', API, '--token', token, '--ca-pin', t.json.ca_pin, '--protocols', 'http,https', '--ports', '8080,8443'], { timeout: 120_000 })).json;
  await stack.startPodService('pod');
  await stack.startPod('pod', ['--no-upnp']);
}, 240_000);

async function api(method: string, path: string, body?: unknown) {
  const r = await curl(stack().world, `${API}${path}`, {
    method, resolve: [`server.${DOMAIN}:443:${ADDR.server}`], cacert: stack().caFile(), timeoutMs: 15_000,
    ...(body === undefined ? {} : { data: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
  let json: any;
  try {
    json = JSON.parse(r.body);
  } catch {
    json = undefined;
  }
  return { status: r.status, json, headers: r.headers };
}

async function tunnelServes(): Promise<boolean> {
  const url = new URL(pod.services[0]!.url);
  const r = await curl(stack().world, url.href, { resolve: [`${url.hostname}:${url.port}:${ADDR.server}`], timeoutMs: 5000 }).catch(() => undefined);
  return Boolean(r?.ok && r.status === 200 && r.body.startsWith('hello from pod'));
}

const rows = (info: StateInfo, table: string) => info.tables.find((t) => t.table === table)?.rows ?? -1;

describe('pipe2me on PostgreSQL', () => {
  it('runs from PostgreSQL: the state, the CA\'s database and the online session are in it, and the pod is reached through the tunnel', async () => {
    const info = (await stack().ctl<StateInfo>(['state', 'info'])).json;
    expect(info.engine).toBe('postgres');
    expect(info.location).toMatch(/^postgres:\/\/pipe2me@127\.0\.0\.1:5432,127\.0\.0\.1:5433\/pipe2me/);
    expect(info.location).not.toContain(stack().pg[0]!.password!);
    expect(rows(info, 'subdomains')).toBe(1);
    // openssl's index, serial and CRL number (the pod's certificate was signed with them loaded from the
    // store), every certificate the CA issued (the server's two and the pod's) and the CA's CRL.
    expect(rows(info, 'ca_files')).toBe(4 + 3 + 1);
    expect(await tunnelServes()).toBe(true);
    // The API mirrors the session holder's records into the store (with a lease) every few seconds.
    await waitFor('the session in the store', async () => rows((await stack().ctl<StateInfo>(['state', 'info'])).json, 'sessions') === 1, { timeoutMs: 20_000, intervalMs: 500 });
    const shown = await stack().ctl<{ certificate: { serial: string | null } }>(['show', pod.name]);
    expect(shown.json.certificate.serial).toBeTruthy();
  });

  it('20 add-subdomain processes at once get 20 distinct names and port sets; one apply renders them all', async () => {
    const s = stack();
    const results = await Promise.all(Array.from({ length: 20 }, () => s.ctl<SubdomainJson>(['add-subdomain', '--ports', 'http,https', '--no-apply'], { timeout: 120_000 })));
    expect(new Set(results.map((r) => r.json.name)).size).toBe(20);
    expect(new Set(results.flatMap((r) => r.json.ports.map((p) => p.port))).size).toBe(40);
    await s.ctl(['apply']);
    const d = await dig(s.world, { server: ADDR.server, name: results[0]!.json.fqdn });
    expect(d.answers[0]?.data).toBe(ADDR.server);
  });

  it('the probe runs from PostgreSQL and records its results there', async () => {
    const before = rows((await stack().ctl<StateInfo>(['state', 'info'])).json, 'probe_results');
    await stack().ctl(['probe'], { timeout: 120_000 });
    const after = (await stack().ctl<StateInfo>(['state', 'info'])).json;
    expect(rows(after, 'probe_results')).toBeGreaterThan(before);
  });

  it('with the database down the tunnel serves, the API answers 503 store_unavailable, the CLI exits 11, the probe waits; all recover alone', async () => {
    const s = stack();
    const [primary, standby] = s.pg;
    await waitCaughtUp(standby!);
    // The standby alone is read-only: with target_session_attrs=read-write nothing qualifies.
    await primary!.stop('immediate');
    try {
      expect(await tunnelServes()).toBe(true);
      const created = await api('POST', '/v1/subdomains', { token, protocols: ['http'] });
      expect(created.status).toBe(503);
      expect(created.json.error.code).toBe('store_unavailable');
      expect(created.headers['retry-after']).toEqual(['5']);
      const list = await s.ctl(['list'], { allowFailure: true });
      expect(list.exitCode).toBe(11);
      expect(list.stderr).toMatch(/No PostgreSQL server of postgres:\/\/pipe2me@127.0.0.1:5432,127.0.0.1:5433\/pipe2me.* accepted a read-write connection/);
      expect(list.stderr).toMatch(/hint: .*temporary/i);
      expect(list.stderr).not.toContain(primary!.password!);
      expect(await tunnelServes()).toBe(true);
    } catch (e) {
      await primary!.start();
      throw e;
    }
    // The probe, as its timer runs it, waits for the store (saying so) instead of failing.
    const probing = s.ctl(['probe', '--wait-for-store', '40', '--log-format', 'json'], { json: false, timeout: 90_000 });
    await new Promise((r) => setTimeout(r, 2500));
    await primary!.start();
    const probed = await probing;
    expect(probed.exitCode).toBe(0);
    const waits = probed.stderr.split('\n').filter((l) => l.includes('"event":"state_unreachable"'));
    expect(waits.length).toBeGreaterThan(0);
    expect(waits[0]).toMatch(/waiting for the state store .*trying again in/);
    expect(probed.stderr).toContain('"event":"probe_run"');
    // The same API process, without a restart.
    await waitFor('the API to use the store again', async () => (await api('POST', '/v1/subdomains', { token, protocols: ['http'] })).status === 201, { timeoutMs: 30_000, intervalMs: 500 });
    expect((await s.ctl(['list'])).exitCode).toBe(0);
  });

  it('the watcher says once that it cannot read the store, backs off, and applies what changed once the store is back', async () => {
    const s = stack();
    const [primary] = s.pg;
    await s.world.start({ name: 'watch', host: 'srv', argv: [process.execPath, CTL, '-c', s.configFile, 'watch', '--debounce', '200', '--poll', '300'], ready: (d, p) => p.waitLog(d.name, 'watching') });
    await primary!.stop('fast');
    try {
      await waitFor('the watcher to notice', async () => s.world.procs.log('watch').includes('cannot read the state store, retrying with backoff'), { timeoutMs: 15_000, intervalMs: 200 });
      await new Promise((r) => setTimeout(r, 2000));
      // Said once, not at every poll.
      expect(s.world.procs.log('watch').split('cannot read the state store').length - 1).toBe(1);
      expect(s.world.procs.get('watch').running).toBe(true);
    } finally {
      await primary!.start();
    }
    await waitFor('the watcher to read the store again', async () => s.world.procs.log('watch').includes('the state store answers again'), { timeoutMs: 40_000, intervalMs: 250 });
    // A change made without apply is applied by the watcher (it polls the store's change stamp).
    const added = await s.ctl<SubdomainJson>(['add-subdomain', '--ports', 'http', '--no-apply']);
    await waitFor('the watcher to apply the new name', async () => (await dig(s.world, { server: ADDR.server, name: added.json.fqdn })).answers[0]?.data === ADDR.server, { timeoutMs: 20_000, intervalMs: 250 });
    await s.world.stop('watch');
  });

  it('a failover to the promoted standby is followed by the running API and by every command, without a restart', async () => {
    const s = stack();
    const [primary, standby] = s.pg;
    const before = (await s.ctl<SubdomainJson[]>(['list'])).json.length;
    await waitCaughtUp(standby!);
    await primary!.stop('immediate');
    await standby!.promote();
    const t0 = performance.now();
    await waitFor('the API to create on the new primary', async () => (await api('POST', '/v1/subdomains', { token, protocols: ['tcp'] })).status === 201, { timeoutMs: 30_000, intervalMs: 250 });
    console.log(`failover: the API created a subdomain on the promoted standby ${((performance.now() - t0) / 1000).toFixed(2)} s after the promotion`);
    const after = (await s.ctl<SubdomainJson[]>(['list'])).json;
    expect(after.length).toBe(before + 1);
    expect(await tunnelServes()).toBe(true);
    const applied = await s.ctl(['apply']);
    expect(applied.exitCode).toBe(0);
  });
});
