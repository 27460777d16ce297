/**
 * See the fleet: a real Prometheus (Debian's 2.42) in the server's namespace scrapes the API's /metrics on
 * its loopback listener every second and evaluates the shipped alert rules (config/pipe2me.rules.yml).
 * `promtool check metrics` accepts the exposition; PromQL over Prometheus's HTTP API follows a web pod
 * through set-up (online, a tunnel login, its certificate), a probe (direct), a lost mapping (back to the
 * server), traffic through the tunnel (nftables byte counters), per-pod series turned on in the
 * configuration file, and its removal; the API's and apply's own counters and histograms; label values
 * that never name a pod unless metrics.per_pod says so; and the certificate alert firing once a pod holds
 * a certificate that expires within 3 days (ca.validity_days: 1), resolving when it is revoked.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ADDR, curl, removeMapping, waitFor } from '../world/index.js';
import { DOMAIN } from '../stack/stack.js';
import { useStack } from '../stack/hooks.js';
import { Prometheus } from '../stack/prometheus.js';
import { run } from '../../src/util/exec.js';

interface Setup { name: string; fqdn: string; services: { protocol: string; port: number; url: string }[] }
let prom: Prometheus;
let token: { token: string; ca_pin: string };
let web: Setup;
let setUpAt = 0;

// The API's prompt probes off: the route changes here come from explicit probe runs.
const stack = useStack({ promptProbe: false, flapWindow: '1s' }, async (s) => {
  // Pods' certificates valid for one day: under the 3-day line of the critical certificate alert.
  await s.startServer({ configExtra: 'ca:\n  validity_days: 1\n' });
  prom = await Prometheus.start(s.world, { apiPort: s.config.http.apiPort });
  token = (await s.ctl<{ token: string; ca_pin: string }>(['token', 'create', '--label', 'lab', '--max-ports', '4'])).json;
});

const scrape = async () => {
  const r = await stack().world.inNs('srv', ['curl', '-sS', '--fail', '--max-time', '5', `http://127.0.0.1:${stack().config.http.apiPort}/metrics`]);
  return r.stdout;
};
const certAlerts = async () => (await prom.alerts()).filter((a) => a.labels.alertname === 'Pipe2meCertificateExpiring');
/** Every pipe2me series Prometheus holds now. */
const allSeries = async () => prom.query('{__name__=~"pipe2me_.+"}');

describe('metrics: the exposition and the scrape', () => {
  it('promtool check metrics accepts /metrics: no problem printed', async () => {
    const text = await scrape();
    expect(text).toContain('# TYPE pipe2me_pods gauge');
    expect(text).toContain('# TYPE pipe2me_tunnel_logins_total counter');
    const r = await run('promtool', ['check', 'metrics'], { input: text, allowFailure: true, timeout: 20_000 });
    expect(r.output, r.output).toBe('');
    expect(r.exitCode).toBe(0);
    // No series twice in one scrape (Prometheus would drop the second sample as a duplicate).
    const series = text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.slice(0, l.lastIndexOf(' ')));
    expect(series.filter((x, i) => series.indexOf(x) !== i)).toEqual([]);
  });

  it('tokens sharing a label (or having none) are one series per label, summed', async () => {
    const s = stack();
    await s.ctl(['token', 'create', '--label', 'lab', '--max-ports', '2', '--max-subdomains', '3']);
    await s.ctl(['token', 'create', '--max-ports', '1']);
    await s.ctl(['token', 'create', '--max-ports', '1', '--max-subdomains', '2']);
    const text = await scrape();
    // lab: 10 subdomains of 4 ports (the defaults for --max-ports 4) and 3 of 2; unlabelled: 10 of 1 and 2 of 1.
    expect(text).toContain('pipe2me_token_subdomains_limit{token="lab"} 13\n');
    expect(text).toContain('pipe2me_token_ports_limit{token="lab"} 46\n');
    expect(text).toContain('pipe2me_token_subdomains_limit{token=""} 12\n');
    expect(text.match(/^pipe2me_token_ports\{/gm)).toHaveLength(2);
    await prom.waitValue('pipe2me_token_subdomains_limit{token="lab"}', (v) => v === 13);
    await prom.waitValue('pipe2me_token_ports_limit{token=""}', (v) => v === 12);
    expect(s.world.procs.log('prometheus')).not.toMatch(/duplicate|same timestamp/i);
  });

  it('is served on the loopback listener only: not through nginx', async () => {
    const r = await curl(stack().world, `https://server.${DOMAIN}/metrics`, { resolve: [`server.${DOMAIN}:443:${ADDR.server}`], cacert: stack().caFile() });
    expect(r.status).toBe(404);
    expect(r.body).toContain('not_found');
    expect(r.body).not.toContain('pipe2me_');
  });

  it('Prometheus scrapes it (job pipe2me) and loaded the shipped rules', async () => {
    await prom.waitValue('up{job="pipe2me"}', (v) => v === 1);
    const t = await prom.targets();
    expect(t.map((x) => [x.labels.job, x.health, x.scrapeUrl])).toEqual([['pipe2me', 'up', `http://127.0.0.1:${stack().config.http.apiPort}/metrics`]]);
    expect(await prom.value('pipe2me_pods')).toBe(0);
    expect(await prom.value('pipe2me_ports_range_size')).toBe(10_000);
    expect(await prom.value('pipe2me_build_info')).toBe(1);
    // The server's own certificates are 90 days: no certificate alert yet.
    await prom.waitValue('count(pipe2me_certificate_expiry_soonest_timestamp_seconds{kind="server"})', (v) => v >= 1);
    expect(await prom.query('pipe2me_certificate_expiry_soonest_timestamp_seconds - time() < 14 * 86400')).toEqual([]);
    expect(await certAlerts()).toEqual([]);
  });
});

describe('metrics: a web pod through its life', () => {
  it('set up and started: the pod online, a tunnel login accepted, the token\'s use', async () => {
    const s = stack();
    web = (await s.pod<Setup>(['setup', '--server', `https://server.${DOMAIN}`, '--token', token.token, '--ca-pin', token.ca_pin, '--protocols', 'http,https', '--ports', '8080,8443'])).json;
    setUpAt = performance.now();
    await s.startPodService('pod');
    await s.startPod('pod');
    await prom.waitValue('pipe2me_pods', (v) => v === 1);
    await prom.waitValue('pipe2me_pods_online', (v) => v === 1);
    await prom.waitValue('pipe2me_subdomains{status="active"}', (v) => v === 1);
    await prom.waitValue('pipe2me_tunnel_logins_total{result="accepted"}', (v) => v >= 1);
    // Two services and the token's use (label "lab").
    expect(await prom.value('pipe2me_ports_allocated')).toBe(2);
    await prom.waitValue('pipe2me_token_subdomains{token="lab"}', (v) => v === 1);
    expect(await prom.value('pipe2me_token_ports{token="lab"}')).toBe(2);
    expect(await prom.value('pipe2me_pods_by_route{family="ipv4",route="server"}')).toBe(1);
  });

  it('a certificate that expires within 3 days: the certificate alert fires, warning and critical, for issuer private and kind pod', async () => {
    const critical = await prom.waitAlert({ alertname: 'Pipe2meCertificateExpiring', severity: 'critical', issuer: 'private', kind: 'pod' });
    const warning = await prom.waitAlert({ alertname: 'Pipe2meCertificateExpiring', severity: 'warning', issuer: 'private', kind: 'pod' });
    const firing = (Date.parse(critical.activeAt) - (performance.timeOrigin + setUpAt)) / 1000;
    console.log(`metrics: the critical certificate alert was active ${firing.toFixed(1)} s after the pod's set-up returned (scrape and evaluation every 1 s, no \`for\`)`);
    expect(firing).toBeLessThan(5);
    expect(critical.annotations.summary).toMatch(/^A pod certificate from the private issuer expires in 23h \d+m \d+s$/);
    expect(critical.annotations.runbook_url).toBe('file:///opt/pipe2me/docs/operations.md#pipe2mecertificateexpiring');
    expect(warning.annotations.description).toContain('(under 14 days)');
    // The server's own (90 days) do not fire.
    expect((await certAlerts()).filter((a) => a.labels.kind === 'server')).toEqual([]);
  });

  it('the API\'s request counters and latency by route pattern (never a raw path)', async () => {
    await prom.waitValue('sum(pipe2me_api_requests_total{route="/v1/subdomains",method="POST",code="2xx"})', (v) => v >= 1);
    await prom.waitValue('sum(pipe2me_api_requests_total{route="/v1/subdomains/:id/certificate",method="POST",code="2xx"})', (v) => v >= 1);
    await prom.waitValue('sum(pipe2me_api_request_duration_seconds_count{route="/v1/subdomains"})', (v) => v >= 1);
    const routes = new Set((await prom.query('pipe2me_api_requests_total')).map((x) => x.metric.route!));
    expect(routes.has('/v1/subdomains/:id/ssh-key')).toBe(true);
    const id = (JSON.parse(fs.readFileSync(path.join(stack().podDir('pod'), 'pod.json'), 'utf8')) as { id: string }).id;
    for (const r of routes) {
      expect(r, 'a route pattern').not.toMatch(/\/v1\/subdomains\/(?!:id)/);
      expect(r).not.toContain(id);
      expect(r).not.toContain(web.name);
    }
  });

  it('apply runs counted, with their step histogram', async () => {
    await prom.waitValue('pipe2me_apply_runs_total{outcome="ok"}', (v) => v >= 2);
    expect(await prom.value('pipe2me_apply_runs_total{outcome="failed"}')).toBe(0);
    expect(await prom.value('pipe2me_apply_last_run_failed')).toBe(0);
    const steps = (await prom.query('pipe2me_apply_step_duration_seconds_count')).map((x) => x.metric.step!).sort();
    expect(steps).toContain('plan');
    expect(steps.length).toBeGreaterThanOrEqual(3);
    for (const step of steps) {
      const count = await prom.value(`pipe2me_apply_step_duration_seconds_count{step="${step}"}`);
      expect(count, step).toBeGreaterThanOrEqual(1);
      expect(await prom.value(`pipe2me_apply_step_duration_seconds_bucket{step="${step}",le="+Inf"}`), step).toBe(count);
      expect(await prom.value(`histogram_quantile(0.5, pipe2me_apply_step_duration_seconds_bucket{step="${step}"})`), step).toBeGreaterThanOrEqual(0);
    }
    expect(await prom.value('pipe2me_reloads_total{daemon="nginx"}')).toBeGreaterThanOrEqual(1);
    const at = await prom.value('pipe2me_apply_last_success_timestamp_seconds');
    expect(Date.now() / 1000 - at!).toBeLessThan(300);
  });

  it('a probe sends it direct: by route, runs counted, results by outcome, a route change', async () => {
    const s = stack();
    await waitFor('4 mappings reported', async () => (await s.ctl<{ mappings: unknown[] }>(['show', web.name])).json.mappings.length === 4, { timeoutMs: 30_000, intervalMs: 300 });
    const r = await s.ctl<{ changed: string[] }>(['probe']);
    expect(r.json.changed).toEqual([web.name]);
    await prom.waitValue('pipe2me_pods_by_route{family="ipv4",route="direct"}', (v) => v === 1);
    expect(await prom.value('pipe2me_pods_by_route{family="ipv4",route="server"}')).toBe(0);
    expect(await prom.value('pipe2me_probe_runs_total')).toBeGreaterThanOrEqual(1);
    expect(await prom.value('pipe2me_probe_results_total{family="ipv4",outcome="ok"}')).toBeGreaterThanOrEqual(1);
    expect(await prom.value('pipe2me_probe_results_total{family="ipv4",outcome="failed"}')).toBe(0);
    expect(await prom.value('pipe2me_route_changes_total{family="ipv4",route="direct"}')).toBeGreaterThanOrEqual(1);
    expect(await prom.value('pipe2me_probe_duration_seconds_count')).toBeGreaterThanOrEqual(1);
    const last = await prom.value('pipe2me_probe_last_run_timestamp_seconds');
    expect(Math.abs(Date.now() / 1000 - last!)).toBeLessThan(60);
    expect(await prom.value('sum(pipe2me_pods_by_reason{family="ipv4"})')).toBe(1);
  });

  it('a lost mapping: the next probe sends it back to the server, a failed result and a route change counted', async () => {
    const s = stack();
    await removeMapping(s.world, web.services[0]!.port, 'TCP', 'pod');
    await s.ctl(['probe']);
    await prom.waitValue('pipe2me_pods_by_route{family="ipv4",route="server"}', (v) => v === 1);
    expect(await prom.value('pipe2me_pods_by_route{family="ipv4",route="direct"}')).toBe(0);
    expect(await prom.value('pipe2me_route_changes_total{family="ipv4",route="server"}')).toBeGreaterThanOrEqual(1);
    expect(await prom.value('pipe2me_probe_results_total{family="ipv4",outcome="failed"}')).toBeGreaterThanOrEqual(1);
    expect(await prom.value('pipe2me_probe_runs_total')).toBeGreaterThanOrEqual(2);
  });

  it('bytes through the tunnel grow with a client\'s request through it (nftables counters in pipe2me\'s table)', async () => {
    const s = stack();
    const table = s.config.firewall.table;
    const nft = await s.world.inNs('srv', ['nft', 'list', 'table', 'inet', table]);
    expect(nft.stdout).toContain('set tunnel_in4');
    expect(nft.stdout).toContain('chain count_in');
    const before = (await prom.value('pipe2me_tunnel_bytes_total{direction="in"}')) ?? 0;
    const beforeOut = (await prom.value('pipe2me_tunnel_bytes_total{direction="out"}')) ?? 0;
    const url = web.services[0]!.url;
    const h = await curl(s.world, url, { resolve: [`${web.fqdn}:${web.services[0]!.port}:${ADDR.server}`] });
    expect(h.status).toBe(200);
    expect(h.body).toContain('peer 127.0.0.1'); // through the tunnel
    const after = await prom.waitValue('pipe2me_tunnel_bytes_total{direction="in"}', (v) => v > before);
    const afterOut = await prom.waitValue('pipe2me_tunnel_bytes_total{direction="out"}', (v) => v > beforeOut + h.body.length);
    expect(after).toBeGreaterThan(0);
    expect(afterOut - beforeOut).toBeGreaterThan(h.body.length);
  });

  it('label sets stay bounded: no label value names the pod while metrics.per_pod is off', async () => {
    const series = await allSeries();
    expect(series.length).toBeGreaterThan(30);
    const named = series.filter((x) => Object.values(x.metric).some((v) => v === web.name || v === web.fqdn || v.includes(web.name)));
    expect(named).toEqual([]);
    expect(series.filter((x) => x.metric.__name__!.startsWith('pipe2me_pod_'))).toEqual([]);
    expect(await scrape()).not.toContain(web.name);
  });

  it('metrics.per_pod turned on in pipe2me.yml: the per-pod series appear within seconds', async () => {
    const s = stack();
    fs.appendFileSync(s.configFile, '\nmetrics:\n  per_pod: true\n');
    await prom.waitValue(`pipe2me_pod_online{subdomain="${web.name}"}`, (v) => v === 1, { timeoutMs: 10_000 });
    expect(await prom.value(`pipe2me_pod_route_direct{subdomain="${web.name}",family="ipv4"}`)).toBe(0);
    const expiry = await prom.value(`pipe2me_pod_certificate_expiry_timestamp_seconds{subdomain="${web.name}"}`);
    expect(expiry! - Date.now() / 1000).toBeGreaterThan(20 * 3600);
    expect(expiry! - Date.now() / 1000).toBeLessThanOrEqual(86_400);
    await prom.waitValue(`pipe2me_pod_tunnel_bytes_total{subdomain="${web.name}",direction="in"}`, (v) => v > 0);
    // Still nothing else names it: the subdomain label is on the pipe2me_pod_ series only.
    const named = (await allSeries()).filter((x) => Object.values(x.metric).includes(web.name));
    expect([...new Set(named.map((x) => x.metric.__name__))].sort()).toEqual(['pipe2me_pod_certificate_expiry_timestamp_seconds', 'pipe2me_pod_online', 'pipe2me_pod_route_direct', 'pipe2me_pod_tunnel_bytes_total']);
  });

  it('pipe2me-ctl remove: no pods, no active subdomain, the per-pod series and the certificate alert gone', async () => {
    const s = stack();
    await s.ctl(['remove', web.name]);
    await prom.waitValue('pipe2me_pods', (v) => v === 0);
    await prom.waitValue('pipe2me_subdomains{status="active"}', (v) => v === 0);
    await prom.waitValue('pipe2me_pods_online', (v) => v === 0);
    expect(await prom.value('pipe2me_ports_allocated')).toBe(0);
    await waitFor('the per-pod series gone', async () => (await prom.query(`{subdomain="${web.name}"}`)).length === 0, { timeoutMs: 8_000, intervalMs: 250 });
    // Its certificate was revoked: no pod certificate is valid, the alert resolves.
    await waitFor('the certificate alert resolved', async () => (await certAlerts()).length === 0, { timeoutMs: 8_000, intervalMs: 250 });
    await s.world.stop('pod-pipe2me').catch(() => undefined);
  });
});
